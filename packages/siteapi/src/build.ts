import { createHash } from 'node:crypto';
import { copyFile, link, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { z } from 'zod';
import { signBytes, signFile, type SecretKey } from '@psyops/signing';
import { compareReleases, fileAccessError, sha256File } from '@psyops/core';
import { ImageInputError, NodeDefinitionError, SiteInputError } from './errors.js';
import {
  NODE_NAME,
  imageManifestSchema,
  lighthouseSchema,
  nodeDefinitionSchema,
  siteJsonSchema,
  siteSchemas,
  type Lighthouse,
  type ManifestEntry,
  type NodeConfig,
  type NodeDefinition,
  type OsImage,
  type OsLatest,
  type OsUpdate,
  type SiteSchemaName,
} from './schemas.js';
import { SecretEncryptor } from './secrets.js';
import { newestPerArch, readUpdateInput, UPDATE_NAME, updateTrustedComment } from './updates.js';

export interface BuildSiteOptions {
  /** Where the site goes; replaced as a whole, only once everything is built. */
  outDir: string;
  /** The workspace minisign key: signs every JSON document and every OS image. */
  signingKey: SecretKey;
  /** Unix time for signatures' trusted comments (SOURCE_DATE_EPOCH); absent: no timestamp, never "now". */
  timestamp?: number;
  /**
   * Unix time after which nodes refuse the signed JSON documents (`expires:` in each trusted
   * comment; a node then falls back to its last good config). Absent: they do not expire.
   */
  expiresAt?: number;
  /**
   * A node config that changed since the site in outDir was built while its version did not:
   * published with the next version (listed in the result) instead of refused.
   */
  bumpVersions?: boolean;
  /** The workspace's nodes/ folder: one `<name>.json` node definition per node. Missing: no nodes. */
  nodesDir?: string;
  /**
   * Folder of `psyopsOS-<release>-<arch>.iso` images with a `.json` manifest beside each, and of
   * update artifacts `psyopsOS-<release>-<arch>.tar` (build-disk). Missing: no images, no updates.
   */
  imagesDir?: string;
  /** APK repository folder holding `<arch>/APKINDEX.tar.gz` and packages (`psyops apk index` writes it). Missing: no repository. */
  apkRepositoryDir?: string;
  /**
   * Folder of trusted APK public keys (`*.rsa.pub`). When given, each APKINDEX must be signed by one
   * of them and every package it lists must be present with its indexed size, or nothing is built.
   */
  apkTrustedKeysDir?: string;
  /** Lighthouses to publish (from the psynet registry). */
  lighthouses?: readonly Lighthouse[];
  /** Cache of age ciphertexts, so unchanged secrets keep their bytes (see SecretEncryptor). Absent: secrets are encrypted afresh. */
  secretCacheFile?: string;
  /** One line per step. */
  onProgress?: (message: string) => void;
}

export interface BuildSiteResult {
  outDir: string;
  /** Every file of the site but manifest.json and its signature, sorted by path. */
  files: ManifestEntry[];
  nodes: string[];
  images: OsImage[];
  /** Every update artifact published (`os/<filename>` + `.minisig`), sorted by file name. */
  updates: UpdateArtifact[];
  /** The signed pointers `os/update-<arch>.json`: the newest update per architecture, sorted by arch. */
  updatePointers: OsUpdate[];
  apkArchitectures: string[];
  /** Node configs published with a higher version than their definitions give (bumpVersions, or an earlier bump kept). */
  bumped: { name: string; definitionVersion: number; version: number }[];
  /** The version of psynet/lighthouses.json: the previous site's, raised by one when the list changed. */
  lighthousesVersion: number;
}

/** An update artifact as published: what its pointer would say, and where its signature is. */
export type UpdateArtifact = Omit<OsUpdate, 'format'> & {
  /** Path of its `.minisig` in the site. */
  signature: string;
  /** The signature's trusted comment (`type=psyopsOS version=… filename=… kernel=… alpine=… arch=…`). */
  trustedComment: string;
};

/** The image file names the site publishes: `psyopsOS-<release>-<arch>.iso`. */
const IMAGE_NAME = /^psyopsOS-([A-Za-z0-9._+~-]+)-(x86_64|aarch64)\.iso$/;
const ARCH_NAME = /^[a-z0-9_]+$/;
const METADATA_VALUE = /^[^\s=]+$/;
const MAX_DEFINITION_BYTES = 4 * 1024 * 1024;

interface ImageInput {
  path: string;
  filename: string;
  arch: string;
  version: string;
  kernel: string;
  alpine: string;
}

interface ApkInput {
  arch: string;
  files: { name: string; path: string }[];
}

const byString = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function firstIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'is invalid';
  const where = issue.path.length > 0 ? issue.path.join('.') : '(top level)';
  return `${where}: ${issue.message}`;
}

async function listDir(dir: string | undefined, what: string): Promise<string[] | undefined> {
  if (dir === undefined) return undefined;
  try {
    return (await readdir(dir)).filter((name) => !name.startsWith('.')).sort(byString);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fileAccessError(error, dir, what);
  }
}

async function readNodeDefinitions(dir: string | undefined): Promise<{ name: string; file: string; definition: NodeDefinition }[]> {
  const names = (await listDir(dir, 'nodes folder')) ?? [];
  const nodes = [];
  for (const fileName of names.filter((n) => n.endsWith('.json'))) {
    const file = join(dir!, fileName);
    const name = fileName.slice(0, -'.json'.length);
    if (!NODE_NAME.test(name)) {
      throw new NodeDefinitionError(`${file}: node name "${name}" must be lower-case letters, digits and dashes (at most 63, not starting with a dash)`);
    }
    const info = await stat(file).catch((error: unknown) => Promise.reject(fileAccessError(error, file, 'node definition')));
    if (info.size > MAX_DEFINITION_BYTES) throw new NodeDefinitionError(`${file} is larger than ${MAX_DEFINITION_BYTES} bytes`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(await readFile(file, 'utf8'));
    } catch (error) {
      if (error instanceof SyntaxError) throw new NodeDefinitionError(`${file} is not valid JSON (${error.message})`);
      throw fileAccessError(error, file, 'node definition');
    }
    const result = nodeDefinitionSchema.safeParse(parsed);
    if (!result.success) throw new NodeDefinitionError(`${file}: ${firstIssue(result.error)}`);
    const definition = result.data;
    const hasSecrets = definition.config.k3s !== undefined || definition.config.files.some((f) => typeof f.content !== 'string');
    if (hasSecrets && definition.ageRecipient === undefined) {
      throw new NodeDefinitionError(`${file} has secrets but no ageRecipient to encrypt them to (psyops node create records it)`);
    }
    nodes.push({ name, file, definition });
  }
  return nodes;
}

async function readImageInputs(dir: string | undefined): Promise<ImageInput[]> {
  const names = (await listDir(dir, 'images folder')) ?? [];
  const images: ImageInput[] = [];
  for (const filename of names) {
    const match = IMAGE_NAME.exec(filename);
    if (!match) continue;
    const [, release, arch] = match as unknown as [string, string, string];
    const path = join(dir!, filename);
    // The image builder writes psyopsOS-<release>-<arch>.json; <iso>.json is accepted too.
    const candidates = [join(dir!, `${filename.slice(0, -'.iso'.length)}.json`), `${path}.json`];
    let manifest: z.infer<typeof imageManifestSchema> = {};
    for (const candidate of candidates) {
      let text: string;
      try {
        text = await readFile(candidate, 'utf8');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw fileAccessError(error, candidate, 'image manifest');
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch (error) {
        throw new ImageInputError(`${candidate} (manifest of ${filename}) is not valid JSON (${(error as Error).message})`);
      }
      const result = imageManifestSchema.safeParse(parsed);
      if (!result.success) throw new ImageInputError(`${candidate} (manifest of ${filename}): ${firstIssue(result.error)}`);
      manifest = result.data;
      break;
    }
    const image = { path, filename, arch, version: manifest.version ?? release, kernel: manifest.kernel ?? 'unknown', alpine: manifest.alpine ?? 'unknown' };
    for (const field of ['version', 'kernel', 'alpine'] as const) {
      // The image's trusted comment is space-separated key=value pairs.
      if (!METADATA_VALUE.test(image[field])) throw new ImageInputError(`manifest of ${filename}: ${field} "${image[field]}" must not contain spaces or "="`);
    }
    images.push(image);
  }
  return images;
}

async function readApkInputs(dir: string | undefined): Promise<ApkInput[]> {
  const arches = (await listDir(dir, 'APK repository folder')) ?? [];
  const repositories: ApkInput[] = [];
  for (const arch of arches) {
    const archDir = join(dir!, arch);
    if (!(await stat(archDir)).isDirectory() || !ARCH_NAME.test(arch)) continue;
    const files = [];
    for (const name of (await listDir(archDir, 'APK repository folder')) ?? []) {
      const path = join(archDir, name);
      if ((await stat(path)).isFile()) files.push({ name, path });
    }
    if (!files.some((f) => f.name === 'APKINDEX.tar.gz')) {
      throw new SiteInputError(`${archDir} has no APKINDEX.tar.gz: index and sign it first (psyops apk index)`);
    }
    repositories.push({ arch, files });
  }
  return repositories;
}

/** The published repository must be one apk will accept: a trusted signature, and no package missing. */
async function checkApkRepositories(repositories: ApkInput[], keysDir: string): Promise<void> {
  const { loadKeysDir, readIndex } = await import('@psyops/apkpkg');
  const keys = await loadKeysDir(keysDir);
  if (keys.size === 0) throw new SiteInputError(`${keysDir} has no APK public key (*.rsa.pub) to check the repository's APKINDEX with`);
  for (const repo of repositories) {
    const indexFile = repo.files.find((f) => f.name === 'APKINDEX.tar.gz')!;
    let index;
    try {
      index = readIndex(await readFile(indexFile.path), { keys, name: indexFile.path });
    } catch (error) {
      throw new SiteInputError(`${(error as Error).message} (re-index and sign it with: psyops apk index)`, { cause: error });
    }
    const sizes = new Map<string, number>();
    for (const file of repo.files) sizes.set(file.name, (await stat(file.path)).size);
    for (const entry of index.entries) {
      const name = `${entry.name}-${entry.version}.apk`;
      const size = sizes.get(name);
      if (size === undefined) throw new SiteInputError(`${indexFile.path} lists ${name}, which is not in the repository folder`);
      if (size !== entry.size) throw new SiteInputError(`${name} is ${size} bytes but its APKINDEX says ${entry.size}: re-index with psyops apk index`);
    }
  }
}

const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;

function html(title: string, body: string): string {
  return `<!doctype html>\n<html lang="en">\n<head><meta charset="utf-8"><title>${title}</title></head>\n<body>\n<h1>${title}</h1>\n${body}\n</body>\n</html>\n`;
}

/**
 * Builds the site from the workspace inputs into a fresh folder beside `outDir`, then swaps it
 * into place: a failure leaves the previous site untouched, and unchanged inputs give
 * byte-identical files (no clock is read; age ciphertexts come from the cache).
 */
export async function buildSite(options: BuildSiteOptions): Promise<BuildSiteResult> {
  const progress = options.onProgress ?? (() => undefined);
  // Read and check every input before writing anything.
  const nodes = await readNodeDefinitions(options.nodesDir);
  const imageInputs = await readImageInputs(options.imagesDir);
  const updateInputs = [];
  for (const filename of ((await listDir(options.imagesDir, 'images folder')) ?? []).filter((name) => UPDATE_NAME.test(name))) {
    updateInputs.push(await readUpdateInput(options.imagesDir!, filename));
  }
  const apkInputs = await readApkInputs(options.apkRepositoryDir);
  if (options.apkTrustedKeysDir !== undefined && apkInputs.length > 0) await checkApkRepositories(apkInputs, options.apkTrustedKeysDir);
  const lighthouses = (options.lighthouses ?? []).map((l, i) => {
    const result = lighthouseSchema.safeParse(l);
    if (!result.success) throw new SiteInputError(`lighthouse ${i + 1}: ${firstIssue(result.error)}`);
    return result.data;
  });

  await assertReplaceable(options.outDir);
  const previous = (path: string) => readPrevious(options.outDir, path);

  const key = options.signingKey;
  const trustedComment = (path: string) =>
    `${options.timestamp !== undefined ? `timestamp:${options.timestamp}\t` : ''}file:${path}${options.expiresAt !== undefined ? `\texpires:${options.expiresAt}` : ''}`;
  const parent = dirname(options.outDir);
  await mkdir(parent, { recursive: true });
  const staging = await mkdtemp(join(parent, `.${basename(options.outDir)}.build-`));
  const entries = new Map<string, ManifestEntry>();
  const documents: { path: string; signature: string; schema: string }[] = [];

  const put = async (path: string, data: string) => {
    const target = join(staging, path);
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, data);
    entries.set(path, { path, size: Buffer.byteLength(data), sha256: createHash('sha256').update(data).digest('hex') });
  };
  // Big artifacts are hard-linked (copied across file systems): the site build never duplicates an ISO.
  const place = async (path: string, source: string) => {
    const target = join(staging, path);
    await mkdir(dirname(target), { recursive: true });
    await link(source, target).catch(() => copyFile(source, target));
    entries.set(path, { path, size: (await stat(target)).size, sha256: await sha256File(target) });
  };
  const document = (value: unknown, schema: SiteSchemaName) => json(siteSchemas[schema].parse(value));
  const putSigned = async (path: string, value: unknown, schema: SiteSchemaName) => {
    const data = document(value, schema);
    await put(path, data);
    await put(`${path}.minisig`, signBytes(Buffer.from(data), key, { trustedComment: trustedComment(path) }));
    documents.push({ path, signature: `${path}.minisig`, schema: `schemas/${schema}.schema.json` });
  };

  try {
    for (const name of Object.keys(siteSchemas).sort(byString) as SiteSchemaName[]) {
      await put(`schemas/${name}.schema.json`, json(siteJsonSchema(name)));
    }

    for (const repo of apkInputs) {
      progress(`apk: ${repo.arch} (${repo.files.length} files)`);
      for (const file of repo.files) await place(`apk/psyopsOS/${repo.arch}/${file.name}`, file.path);
    }

    const images: OsImage[] = [];
    for (const input of imageInputs) {
      progress(`os: ${input.filename}`);
      const path = `os/${input.filename}`;
      await place(path, input.path);
      const signature = await signFile(input.path, key, {
        trustedComment: `filename=${input.filename} version=${input.version} kernel=${input.kernel} alpine=${input.alpine}`,
      });
      await put(`${path}.minisig`, signature);
      const entry = entries.get(path)!;
      images.push({
        filename: input.filename,
        path,
        arch: input.arch,
        version: input.version,
        kernel: input.kernel,
        alpine: input.alpine,
        size: entry.size,
        sha256: entry.sha256,
        signature: `${path}.minisig`,
      });
    }
    if (images.length > 0) {
      const newestPerArch: Record<string, OsImage> = {};
      for (const image of images) {
        const current = newestPerArch[image.arch];
        if (!current || compareReleases(image.version, current.version) > 0) newestPerArch[image.arch] = image;
      }
      const arches = Object.keys(newestPerArch).sort(byString);
      const current = newestPerArch.x86_64 ?? [...images].sort((a, b) => compareReleases(b.version, a.version))[0]!;
      const latest: OsLatest = {
        format: 'psyops-os-latest/1',
        ...current,
        architectures: Object.fromEntries(arches.map((arch) => [arch, newestPerArch[arch]!])),
      };
      await putSigned('os/latest.json', latest, 'os-latest');
    }

    // Update artifacts: the tar signed here (the node checks the trusted comment), then per
    // architecture a signed pointer to the newest one.
    const updates: UpdateArtifact[] = [];
    for (const input of updateInputs) {
      progress(`os: ${input.filename}`);
      const path = `os/${input.filename}`;
      await place(path, input.path);
      const comment = updateTrustedComment(input);
      await put(`${path}.minisig`, await signFile(input.path, key, { trustedComment: comment }));
      const { size, sha256 } = entries.get(path)!;
      const { version, arch, filename, kernel, alpine } = input;
      updates.push({ version, arch, filename, path, size, sha256, kernel, alpine, signature: `${path}.minisig`, trustedComment: comment });
    }
    const updatePointers: OsUpdate[] = [];
    for (const newest of newestPerArch(updates)) {
      const { signature: _signature, trustedComment: _comment, ...fields } = newest;
      const pointer: OsUpdate = { format: 'psyops-os-update/1', ...fields };
      await putSigned(`os/update-${newest.arch}.json`, pointer, 'os-update');
      updatePointers.push(siteSchemas['os-update'].parse(pointer));
    }

    const bumped: BuildSiteResult['bumped'] = [];
    const encryptor = await SecretEncryptor.open(key, options.secretCacheFile);
    for (const { name, file, definition } of nodes) {
      progress(`node: ${name}`);
      const recipient = definition.ageRecipient ?? '';
      const encrypt = async (secret: { secret: string }) => {
        try {
          return { age: await encryptor.encrypt(secret.secret, recipient) };
        } catch (error) {
          throw new NodeDefinitionError(`${file}: ageRecipient cannot be used (${(error as Error).message})`);
        }
      };
      const config = definition.config;
      const published: NodeConfig = {
        format: 'psyops-node-config/1',
        name,
        version: config.version,
        hostname: config.hostname ?? name,
        packages: config.packages,
        services: config.services,
        files: await Promise.all(
          config.files.map(async (f) => ({
            path: f.path,
            mode: f.mode,
            // The node refuses setuid, setgid and sticky modes unless the file says they are meant.
            ...(f.allowSpecialBits ? { allowSpecialBits: true } : {}),
            content: typeof f.content === 'string' ? f.content : await encrypt(f.content),
          })),
        ),
        ...(config.k3s
          ? {
              k3s: {
                role: config.k3s.role,
                ...(config.k3s.serverUrl !== undefined ? { serverUrl: config.k3s.serverUrl } : {}),
                token: await encrypt(config.k3s.token),
              },
            }
          : {}),
        firewall: config.firewall,
      };
      const path = `nodes/${name}.json`;
      const version = publishedVersion(
        path,
        (v) => document({ ...published, version: v }, 'node-config'),
        await previous(path),
        config.version,
        (before) => {
          if (options.bumpVersions) return;
          throw new NodeDefinitionError(
            `${file}: the config of ${name} changed since the site in ${options.outDir} was built (a setting, or secrets encrypted afresh), but its version is ${config.version} and the published one ${before}: ` +
              `nodes that applied version ${before} would refuse it. Raise config.version to ${before + 1}, or build with --bump-versions`,
          );
        },
      );
      if (version !== config.version) {
        bumped.push({ name, definitionVersion: config.version, version });
        progress(`node: ${name}: published as version ${version} (its definition says ${config.version})`);
      }
      await putSigned(path, { ...published, version }, 'node-config');
    }

    const lighthousesPath = 'psynet/lighthouses.json';
    const lighthouseList = (version: number) => ({ format: 'psyops-lighthouses/1', version, lighthouses });
    const lighthousesVersion = publishedVersion(
      lighthousesPath,
      (v) => document(lighthouseList(v), 'lighthouses'),
      await previous(lighthousesPath),
      1,
      () => undefined,
    );
    await putSigned(lighthousesPath, lighthouseList(lighthousesVersion), 'lighthouses');

    const links = (items: [string, string][]) => `<ul>\n${items.map(([href, text]) => `<li><a href="${href}">${text}</a></li>`).join('\n')}\n</ul>`;
    await put(
      'index.html',
      html(
        'psyopsOS site',
        `<p>Machine-readable files for psyopsOS nodes. Every JSON document has a minisign signature beside it (<code>.minisig</code>) and a schema under <code>schemas/</code>.</p>\n` +
          links([
            ['index.json', 'index.json: every API document'],
            ['manifest.json', 'manifest.json: every file with its size and sha256'],
            ...(images.length > 0 ? ([['os/latest.json', 'os/latest.json: the current OS image']] as [string, string][]) : []),
            ...updatePointers.map((p): [string, string] => [`os/update-${p.arch}.json`, `os/update-${p.arch}.json: the current update (${p.arch})`]),
            ['psynet/lighthouses.json', 'psynet/lighthouses.json: psynet lighthouses'],
            ...apkInputs.map((r): [string, string] => [`apk/psyopsOS/${r.arch}/APKINDEX.tar.gz`, `APK repository (${r.arch})`]),
          ]),
      ),
    );
    await put('error.html', html('Not found', '<p>There is no such file on this site. Start from <a href="/index.json">index.json</a>.</p>'));

    const nodeNames = nodes.map((n) => n.name);
    const apkArchitectures = apkInputs.map((r) => r.arch);
    await putSigned(
      'index.json',
      {
        format: 'psyops-site-index/1',
        documents: [...documents, { path: 'manifest.json', signature: 'manifest.json.minisig', schema: 'schemas/site-manifest.schema.json' }].sort((a, b) =>
          byString(a.path, b.path),
        ),
        nodes: nodeNames,
        architectures: { apk: apkArchitectures, os: [...new Set(images.map((i) => i.arch))].sort(byString) },
      },
      'site-index',
    );
    const files = [...entries.values()].sort((a, b) => byString(a.path, b.path));
    await putSigned('manifest.json', { format: 'psyops-site-manifest/1', files }, 'site-manifest');
    await encryptor.save();

    await swapInto(staging, options.outDir);
    progress(`site: ${files.length + 2} files in ${options.outDir}`);
    return { outDir: options.outDir, files, nodes: nodeNames, images, updates, updatePointers, apkArchitectures, bumped, lighthousesVersion };
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

/** A document of the site being replaced (a psyops site, assertReplaceable checked), or undefined. */
async function readPrevious(outDir: string, path: string): Promise<string | undefined> {
  try {
    return await readFile(join(outDir, path), 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * The version a versioned document is published with: `wanted` unless the previous site has it
 * at that version or higher. Then the previous version when the bytes are the same at it (nothing
 * changed, or an earlier bump is kept), else one more than the previous, after `onChangedAtSameVersion`
 * (which throws to refuse). Nodes take a version only once: the same version with other bytes is
 * a replay to them.
 */
function publishedVersion(
  path: string,
  bytesAt: (version: number) => string,
  previousBytes: string | undefined,
  wanted: number,
  onChangedAtSameVersion: (previousVersion: number) => void,
): number {
  let before: unknown;
  try {
    before = previousBytes === undefined ? undefined : (JSON.parse(previousBytes) as { version?: unknown }).version;
  } catch {
    before = undefined;
  }
  if (typeof before !== 'number' || !Number.isSafeInteger(before) || wanted > before) return wanted;
  if (bytesAt(before) === previousBytes) return before;
  onChangedAtSameVersion(before);
  if (before + 1 > Number.MAX_SAFE_INTEGER) throw new SiteInputError(`${path}: version ${before} cannot be raised`);
  return before + 1;
}

/**
 * The build replaces the output folder as a whole, so it must be a site built before (it has our
 * manifest.json) or empty: a mistyped --out must never wipe someone's files.
 */
async function assertReplaceable(outDir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(outDir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code === 'ENOTDIR') throw new SiteInputError(`${outDir} exists and is not a folder; refusing to replace it with the site`);
    throw fileAccessError(error, outDir, 'site output folder');
  }
  if (names.length === 0) return;
  let format: unknown;
  try {
    format = (JSON.parse(await readFile(join(outDir, 'manifest.json'), 'utf8')) as { format?: unknown }).format;
  } catch {
    format = undefined;
  }
  if (format !== 'psyops-site-manifest/1') {
    throw new SiteInputError(`${outDir} is not empty and is not a psyops site (no manifest.json of ours); refusing to replace it`);
  }
}

/** Replaces `target` with `staging` (two renames; the old site is removed afterwards). */
async function swapInto(staging: string, target: string): Promise<void> {
  const old = `${staging}.old`;
  let moved = false;
  try {
    await rename(target, old);
    moved = true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw new SiteInputError(`cannot replace ${target} (${code ?? (error as Error).message})`);
  }
  try {
    await rename(staging, target);
  } catch (error) {
    if (moved) await rename(old, target);
    throw error;
  }
  if (moved) await rm(old, { recursive: true, force: true });
}
