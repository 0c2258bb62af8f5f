/** Package specs (JSON/YAML files or typed objects) and the file tree they describe. */
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { dirname, extname, join, resolve } from 'node:path';
import { fileAccessError } from '@psyops/core';
import type { DataEntry } from './archive.js';
import { parseDependency, PACKAGE_NAME } from './dependency.js';
import { InvalidSpecError } from './errors.js';
import { isValidVersion } from './version.js';

export const SCRIPT_NAMES = ['pre-install', 'post-install', 'pre-deinstall', 'post-deinstall', 'pre-upgrade', 'post-upgrade', 'trigger'] as const;
export type ScriptName = (typeof SCRIPT_NAMES)[number];

/** A script: a file path (relative to the spec's directory) or inline content. */
export type ScriptSource = string | { content: string } | { path: string };

export interface FileSpec {
  /** Path inside the package, relative (`etc/hello.conf`). */
  path: string;
  /** `file` (default), `dir` or `symlink`. */
  type?: 'file' | 'dir' | 'symlink';
  /** Octal string (`"0644"`) or number; default 0644 for files, 0755 for directories. */
  mode?: string | number;
  /** Inline content (UTF-8). */
  content?: string;
  /** Inline content, base64. */
  contentBase64?: string;
  /** Content from a file, relative to the spec's directory. */
  source?: string;
  /** Symlink target. */
  target?: string;
  uid?: number;
  gid?: number;
  /** Owner names apk maps through the target's passwd/group; default `root` for uid/gid 0. */
  uname?: string;
  gname?: string;
}

export interface PackageSpec {
  name: string;
  /** `pkgver-rN`, e.g. `1.2.3-r0`. */
  version: string;
  /** `x86_64`, `aarch64`, … or `noarch`. */
  arch: string;
  description: string;
  url: string;
  license: string;
  origin?: string;
  maintainer?: string;
  packager?: string;
  commit?: string;
  depends?: string[];
  provides?: string[];
  install_if?: string[];
  replaces?: string[];
  replaces_priority?: number;
  provider_priority?: number;
  /** Directories (absolute in the target) whose changes run the `trigger` script. */
  triggers?: string[];
  scripts?: Partial<Record<ScriptName, ScriptSource>>;
  /** A directory copied as the package root (relative to the spec's directory). */
  tree?: string;
  /** Files added to (or replacing entries of) the tree. */
  files?: FileSpec[];
}

const SPEC_KEYS = new Set([
  'name',
  'version',
  'arch',
  'description',
  'url',
  'license',
  'origin',
  'maintainer',
  'packager',
  'commit',
  'depends',
  'provides',
  'install_if',
  'replaces',
  'replaces_priority',
  'provider_priority',
  'triggers',
  'scripts',
  'tree',
  'files',
]);
const FILE_KEYS = new Set(['path', 'type', 'mode', 'content', 'contentBase64', 'source', 'target', 'uid', 'gid', 'uname', 'gname']);

/** `yaml`'s parse, whether the module arrives as ESM or (bundled) as CommonJS interop. */
async function yamlParse(): Promise<(text: string) => unknown> {
  const yaml = (await import('yaml')) as unknown as { parse?: (text: string) => unknown; default?: { parse: (text: string) => unknown } };
  return yaml.parse ?? yaml.default!.parse;
}

/** Reads a spec file (`.json`, `.yaml`, `.yml`); relative paths in it are relative to its directory. */
export async function readSpecFile(path: string): Promise<{ spec: PackageSpec; baseDir: string }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw fileAccessError(error, path, 'package spec');
  }
  let value: unknown;
  try {
    // yaml loads only for YAML specs: every other apk command starts faster without it.
    value = extname(path) === '.json' ? JSON.parse(text) : (await yamlParse())(text);
  } catch (error) {
    throw new InvalidSpecError(`${path} is not valid ${extname(path) === '.json' ? 'JSON' : 'YAML'}: ${(error as Error).message.split('\n')[0]}`);
  }
  return { spec: validateSpec(value, path), baseDir: dirname(resolve(path)) };
}

function fail(where: string, message: string): never {
  throw new InvalidSpecError(`${where}: ${message}`);
}

function stringList(where: string, key: string, value: unknown): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) fail(where, `"${key}" must be a list of strings`);
  return value as string[];
}

/** Checks a spec object and returns it typed; every problem is an InvalidSpecError naming the field. */
export function validateSpec(value: unknown, where = 'package spec'): PackageSpec {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(where, 'must be an object');
  const spec = value as Record<string, unknown>;
  for (const key of Object.keys(spec)) if (!SPEC_KEYS.has(key)) fail(where, `unknown field "${key}"`);
  for (const key of ['name', 'version', 'arch', 'description', 'url', 'license']) {
    if (typeof spec[key] !== 'string' || spec[key] === '') fail(where, `missing field "${key}" (a non-empty string)`);
  }
  const name = spec.name as string;
  if (!PACKAGE_NAME.test(name)) fail(where, `invalid package name "${name}" (letters, digits and . _ + - only, not starting with . + -)`);
  if (!isValidVersion(spec.version as string)) fail(where, `invalid version "${String(spec.version)}" (expected e.g. 1.2.3-r0)`);
  if (!/^[a-z0-9_]+$/.test(spec.arch as string)) fail(where, `invalid arch "${String(spec.arch)}"`);
  for (const key of ['description', 'url', 'license', 'origin', 'maintainer', 'packager', 'commit']) {
    const v = spec[key];
    if (v !== undefined && (typeof v !== 'string' || /[\n\r]/.test(v))) fail(where, `"${key}" must be a one-line string`);
  }
  if (spec.origin !== undefined && !PACKAGE_NAME.test(spec.origin as string)) fail(where, `invalid origin "${String(spec.origin)}"`);
  for (const key of ['depends', 'provides', 'install_if', 'replaces']) {
    for (const token of stringList(where, key, spec[key])) {
      try {
        const dep = parseDependency(token);
        if (key === 'provides' && (dep.conflict || (dep.operator && dep.operator !== '='))) fail(where, `provides "${token}" must be name or name=version`);
      } catch (error) {
        if (error instanceof InvalidSpecError) throw error;
        fail(where, `${key}: ${(error as Error).message}`);
      }
    }
  }
  for (const key of ['replaces_priority', 'provider_priority']) {
    const v = spec[key];
    if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < 0)) fail(where, `"${key}" must be a whole number`);
  }
  for (const trigger of stringList(where, 'triggers', spec.triggers)) {
    if (!trigger.startsWith('/') || /\s/.test(trigger)) fail(where, `trigger "${trigger}" must be an absolute path without spaces`);
  }
  if (spec.scripts !== undefined) {
    if (typeof spec.scripts !== 'object' || spec.scripts === null) fail(where, '"scripts" must be an object');
    for (const [script, source] of Object.entries(spec.scripts)) {
      if (!(SCRIPT_NAMES as readonly string[]).includes(script)) fail(where, `unknown script "${script}" (one of ${SCRIPT_NAMES.join(', ')})`);
      const ok =
        typeof source === 'string' ||
        (typeof source === 'object' && source !== null && (typeof source.content === 'string' || typeof source.path === 'string'));
      if (!ok) fail(where, `script "${script}" must be a file path or { content } / { path }`);
    }
  }
  if ((spec.triggers as string[] | undefined)?.length && !(spec.scripts as Record<string, unknown> | undefined)?.trigger)
    fail(where, '"triggers" needs a "trigger" script');
  if (spec.tree !== undefined && (typeof spec.tree !== 'string' || spec.tree === '')) fail(where, '"tree" must be a directory path');
  if (spec.files !== undefined) {
    if (!Array.isArray(spec.files)) fail(where, '"files" must be a list');
    spec.files.forEach((file: unknown, i: number) => {
      const at = `${where}: files[${i}]`;
      if (typeof file !== 'object' || file === null) fail(at, 'must be an object');
      const f = file as Record<string, unknown>;
      for (const key of Object.keys(f)) if (!FILE_KEYS.has(key)) fail(at, `unknown field "${key}"`);
      if (typeof f.path !== 'string') fail(at, 'missing "path"');
      checkEntryPath(f.path, at);
      const type = f.type ?? 'file';
      if (!['file', 'dir', 'symlink'].includes(type as string)) fail(at, `type must be file, dir or symlink`);
      if (type === 'symlink' && typeof f.target !== 'string') fail(at, 'a symlink needs "target"');
      const sources = ['content', 'contentBase64', 'source'].filter((k) => f[k] !== undefined);
      if (type === 'file' && sources.length !== 1) fail(at, 'a file needs exactly one of "content", "contentBase64", "source"');
      if (f.mode !== undefined) parseMode(f.mode, at);
    });
  }
  return spec as unknown as PackageSpec;
}

export function parseMode(mode: string | number | unknown, where: string): number {
  if (typeof mode === 'number' && Number.isInteger(mode) && mode >= 0 && mode <= 0o7777) return mode;
  if (typeof mode === 'string' && /^0?[0-7]{3,4}$/.test(mode)) return parseInt(mode, 8);
  return fail(where, `mode must be an octal string like "0644", got ${JSON.stringify(mode)}`);
}

/** Package paths are relative, without `.`/`..`/empty components or control characters. */
export function checkEntryPath(path: string, where: string): string {
  const clean = path.replace(/\/+$/, '');
  if (clean === '' || clean.startsWith('/')) fail(where, `path "${path}" must be relative to the package root`);
  // eslint-disable-next-line no-control-regex
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it refuses
  if (/[\x00-\x1f\x7f]/.test(clean)) fail(where, `path ${JSON.stringify(path)} contains control characters`);
  const parts = clean.split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..')) fail(where, `path "${path}" escapes the package or is not normalised`);
  if (parts[0]!.startsWith('.')) fail(where, `path "${path}": apk skips top-level names starting with "."`);
  return clean;
}

function defaultOwner(uid: number): string {
  return uid === 0 ? 'root' : '';
}

async function walkTree(root: string, entries: Map<string, DataEntry>, maxEntries: number): Promise<void> {
  const pending = [''];
  while (pending.length > 0) {
    const rel = pending.pop()!;
    const dir = rel === '' ? root : join(root, rel);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (error) {
      throw fileAccessError(error, dir, 'package tree directory');
    }
    for (const name of names) {
      const path = rel === '' ? name : `${rel}/${name}`;
      const full = join(root, path);
      checkEntryPath(path, `tree ${root}`);
      const stat = await lstat(full);
      const base = { path, mode: stat.mode & 0o7777, uid: 0, gid: 0, uname: 'root', gname: 'root' };
      if (stat.isDirectory()) {
        entries.set(path, { ...base, type: 'dir' });
        pending.push(path);
      } else if (stat.isFile()) {
        entries.set(path, { ...base, type: 'file', source: full, size: stat.size });
      } else if (stat.isSymbolicLink()) {
        entries.set(path, { ...base, mode: 0o777, type: 'symlink', target: await readlink(full) });
      } else {
        fail(`tree ${root}`, `${path} is not a file, directory or symlink`);
      }
      if (entries.size > maxEntries) fail(`tree ${root}`, `more than ${maxEntries} entries`);
    }
  }
}

/** The package contents: the tree, the inline files over it, and every missing parent directory. */
export async function collectContents(spec: PackageSpec, baseDir: string, maxEntries = 1_000_000): Promise<DataEntry[]> {
  const entries = new Map<string, DataEntry>();
  if (spec.tree !== undefined) {
    const root = resolve(baseDir, spec.tree);
    const stat = await lstat(root).catch((error: unknown) => {
      throw fileAccessError(error, root, 'package tree');
    });
    if (!stat.isDirectory()) fail('package spec', `tree ${root} is not a directory`);
    await walkTree(root, entries, maxEntries);
  }
  for (const [i, file] of (spec.files ?? []).entries()) {
    const where = `package spec: files[${i}]`;
    const path = checkEntryPath(file.path, where);
    const type = file.type ?? 'file';
    const uid = file.uid ?? 0;
    const gid = file.gid ?? 0;
    const base = { path, uid, gid, uname: file.uname ?? defaultOwner(uid), gname: file.gname ?? defaultOwner(gid) };
    if (type === 'dir') {
      entries.set(path, { ...base, type, mode: file.mode === undefined ? 0o755 : parseMode(file.mode, where) });
    } else if (type === 'symlink') {
      entries.set(path, { ...base, type, mode: 0o777, target: file.target! });
    } else {
      let data: Buffer;
      if (file.content !== undefined) data = Buffer.from(file.content, 'utf8');
      else if (file.contentBase64 !== undefined) data = Buffer.from(file.contentBase64, 'base64');
      else {
        const source = resolve(baseDir, file.source!);
        data = await readFile(source).catch((error: unknown) => {
          throw fileAccessError(error, source, `source of ${path}`);
        });
      }
      entries.set(path, { ...base, type: 'file', mode: file.mode === undefined ? 0o644 : parseMode(file.mode, where), data });
    }
  }
  for (const path of [...entries.keys()]) {
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/');
      const existing = entries.get(parent);
      if (!existing) entries.set(parent, { path: parent, type: 'dir', mode: 0o755, uid: 0, gid: 0, uname: 'root', gname: 'root' });
      else if (existing.type !== 'dir') fail('package spec', `${parent} is a ${existing.type} but ${path} is inside it`);
    }
  }
  return [...entries.values()];
}

/** Script contents by name, read from files relative to `baseDir` or inline. */
export async function collectScripts(spec: PackageSpec, baseDir: string): Promise<{ name: ScriptName; data: Buffer }[]> {
  const scripts: { name: ScriptName; data: Buffer }[] = [];
  for (const name of SCRIPT_NAMES) {
    const source = spec.scripts?.[name];
    if (source === undefined) continue;
    if (typeof source === 'object' && 'content' in source) {
      scripts.push({ name, data: Buffer.from(source.content, 'utf8') });
      continue;
    }
    const path = resolve(baseDir, typeof source === 'string' ? source : source.path);
    const data = await readFile(path).catch((error: unknown) => {
      throw fileAccessError(error, path, `${name} script`);
    });
    scripts.push({ name, data });
  }
  return scripts;
}
