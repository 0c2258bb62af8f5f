import { existsSync, statSync } from 'node:fs';
import { mkdir, readFile, readdir } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { PsyopsError, fileAccessError, writeFilesAtomically, readTextIfExists } from '@psyops/core';
import schema from './psyops.config.schema.json';

export const CONFIG_FILE = 'psyops.config.json';
export const GITIGNORE_FILE = '.gitignore';
export const SCHEMA_FILE = 'psyops.config.schema.json';
export const WORKSPACE_ENV = 'PSYOPS_WORKSPACE';

/** Where things live in a workspace, relative to its directory: named here and nowhere else. */
export const WORKSPACE_LAYOUT = {
  /** Private: the minisign key pair and the APK signing keys. */
  keys: 'keys',
  /** The APK signing key pair; its public keys are what the workspace's own repository is trusted with. */
  apkKeys: 'keys/apk',
  /** The psynet registry and CA. */
  psynet: 'psynet',
  /** Node definitions, `nodes/<name>.json`. */
  nodes: 'nodes',
  /** Files laid over every image's root. */
  overlay: 'overlay',
  /** APK packages the site's repository publishes, `apk/<arch>/`. */
  apk: 'apk',
  /** Build caches (stages, packages, indexes) and the site's secret cache. */
  cache: 'cache',
  /** Built images, read by `site build`. */
  out: 'out',
} as const;

export type WorkspacePlace = keyof typeof WORKSPACE_LAYOUT;

/** Folders `psyops init` creates; later commands fill them. */
export const WORKSPACE_FOLDERS = (['keys', 'apkKeys', 'psynet', 'nodes', 'overlay'] as const).map((place) => WORKSPACE_LAYOUT[place]);

/** psyops.config.json with every default filled in. */
export interface WorkspaceConfig {
  version: 1;
  site: { url: string; outDir: string };
  signing: { publicKey: string; secretKey: string };
  alpine: { mirror: string };
  repositories: WorkspaceRepository[];
  psynet: {
    network: string;
    pools: { lighthouse: string; client: string; node: string };
    lighthouses: Record<string, string[]>;
    lighthousePort: number;
    domain: string;
  };
  image: {
    flavor: 'pc' | 'rpi';
    release?: string;
    world: string[];
    kernel: string;
    initramfsPackages: string[];
    overlay: string;
    kernelCmdline: string;
    hostname: string;
    outDir: string;
  };
}

/**
 * One entry of `repositories`, as loaded: an Alpine repository (`alpine`, a path below
 * `alpine.mirror`, its `url` derived from them) or any repository by `url`; `keys` filled in.
 */
export interface WorkspaceRepository {
  /** The http(s) URL or directory; for an Alpine repository `<alpine.mirror>/<alpine>`. */
  url: string;
  /** For an Alpine repository: its path below the mirror (e.g. `v3.22/main`). */
  alpine?: string;
  /** `ALPINE_KEYS` or a directory of trusted `*.rsa.pub` keys (relative to the workspace). */
  keys: string;
  /** apk's repository tag: the repository serves only world entries `name@<tag>` (and their dependencies). */
  tag?: string;
}

/** The `keys` value that names Alpine's release keys shipped with psyops (@psyops/imagebuild's alpine-keys/). */
export const ALPINE_KEYS = '@alpine';

/** `<mirror>/<path>`, without doubled or trailing slashes. */
export function alpineRepositoryUrl(mirror: string, path: string): string {
  return `${mirror.replace(/\/+$/, '')}/${path.replace(/^\/+|\/+$/g, '')}`;
}

/** Fills in what a repository entry leaves out: the URL of an Alpine repository, and its keys. */
function completeRepositories(config: WorkspaceConfig): void {
  config.repositories = config.repositories.map((repository) => {
    const raw = repository as Partial<WorkspaceRepository>;
    const tag = raw.tag !== undefined ? { tag: raw.tag } : {};
    if (raw.alpine !== undefined)
      return { url: alpineRepositoryUrl(config.alpine.mirror, raw.alpine), alpine: raw.alpine, keys: raw.keys ?? ALPINE_KEYS, ...tag };
    return { url: raw.url!, keys: raw.keys ?? WORKSPACE_LAYOUT.apkKeys, ...tag };
  });
}

export interface Workspace {
  /** Absolute path of the workspace directory. */
  dir: string;
  config: WorkspaceConfig;
  /** Resolves a path from the config against the workspace directory. */
  path(relative: string): string;
  /** The absolute path of one of the workspace's places (WORKSPACE_LAYOUT), with `parts` below it. */
  place(place: WorkspacePlace, ...parts: string[]): string;
}

export class NoWorkspaceError extends PsyopsError {
  override readonly code = 'NO_WORKSPACE';
}

export class ConfigError extends PsyopsError {
  override readonly code = 'BAD_CONFIG';
}

export class WorkspaceExistsError extends PsyopsError {
  override readonly code = 'WORKSPACE_EXISTS';
}

type ConfigValidator = ((data: unknown) => data is WorkspaceConfig) & {
  errors?: { instancePath: string; keyword?: string; message?: string; params: Record<string, unknown> }[] | null;
};
let validateConfig: ConfigValidator | undefined;

// useDefaults fills every missing section from the schema's `default`s: the schema is the one
// place defaults are written down, and an older config gains new sections on load. ajv is
// loaded on first use, keeping it out of the start-up of commands that need no config.
async function configValidator(): Promise<ConfigValidator> {
  if (!validateConfig) {
    // ajv is CommonJS: its class is the default export both under Node and in the bundled CLI.
    const Ajv = (await import('ajv')).default;
    validateConfig = new Ajv({ useDefaults: true, allErrors: false, strict: true }).compile<WorkspaceConfig>(schema) as ConfigValidator;
  }
  return validateConfig;
}

/** The documented JSON schema of psyops.config.json. */
export const configSchema: object = schema;

/** Checks a parsed config and fills in defaults; `source` names the file in errors. */
export async function parseConfig(value: unknown, source: string): Promise<WorkspaceConfig> {
  const config = structuredClone(value);
  const validate = await configValidator();
  if (!validate(config)) {
    // A repository with neither or both of url and alpine: say so, not what one branch of the oneOf missed.
    const either = validate.errors?.find((error) => error.keyword === 'oneOf' && /^\/repositories\/\d+$/.test(error.instancePath));
    if (either) throw new ConfigError(`${source}: ${either.instancePath} must have exactly one of "url" and "alpine"`);
    const first = validate.errors?.[0];
    const where = first?.instancePath || '(top level)';
    const extra = first?.params && 'additionalProperty' in first.params ? ` "${String(first.params.additionalProperty)}"` : '';
    throw new ConfigError(`${source}: ${where} ${first?.message ?? 'is invalid'}${extra}`);
  }
  completeRepositories(config);
  return config;
}

/** A new config with every default, as `psyops init` writes it (an Alpine repository without its derived URL). */
export async function defaultConfig(): Promise<WorkspaceConfig & { $schema: string }> {
  const config = await parseConfig({}, 'defaults');
  const repositories = config.repositories.map(({ url, ...repository }) => (repository.alpine !== undefined ? repository : { url, ...repository }));
  return { $schema: `./${SCHEMA_FILE}`, ...config, repositories: repositories as WorkspaceRepository[] };
}

/**
 * Finds the workspace directory: `explicit` (--workspace), else $PSYOPS_WORKSPACE, else the
 * nearest directory holding psyops.config.json from `cwd` upwards.
 */
export function findWorkspace(options: { explicit?: string | undefined; env?: NodeJS.ProcessEnv; cwd?: string } = {}): string {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const given = options.explicit ?? env[WORKSPACE_ENV];
  if (given !== undefined && given !== '') {
    const dir = resolve(cwd, given);
    const how = options.explicit !== undefined ? '--workspace' : WORKSPACE_ENV;
    if (!existsSync(join(dir, CONFIG_FILE))) {
      throw new NoWorkspaceError(`${how} names ${dir}, which has no ${CONFIG_FILE} (create one with: psyops init ${given})`);
    }
    return dir;
  }
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    if (existsSync(join(dir, CONFIG_FILE))) return dir;
    if (dirname(dir) === dir) break;
  }
  throw new NoWorkspaceError(
    `no psyops workspace here: no ${CONFIG_FILE} in ${resolve(cwd)} or above; create one with "psyops init DIR", or point to one with --workspace DIR or ${WORKSPACE_ENV}`,
  );
}

/** Reads and validates a workspace's config. */
export async function loadWorkspace(dir: string): Promise<Workspace> {
  const file = join(dir, CONFIG_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw fileAccessError(error, file, 'workspace config');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`${file} is not valid JSON (${(error as Error).message})`);
  }
  const config = await parseConfig(parsed, file);
  return { dir, config, path: (relative) => resolve(dir, relative), place: (place, ...parts) => resolve(dir, WORKSPACE_LAYOUT[place], ...parts) };
}

/** Makes sure `dir` can become a workspace: absent, or a directory without a config. */
export async function checkNewWorkspaceDir(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  if (!statSync(dir).isDirectory()) throw new WorkspaceExistsError(`${dir} exists and is not a directory`);
  if (existsSync(join(dir, CONFIG_FILE))) throw new WorkspaceExistsError(`${dir} is already a psyops workspace (it has ${CONFIG_FILE})`);
  const taken = (await readdir(dir)).filter((name) => name === WORKSPACE_LAYOUT.keys);
  if (taken.length > 0) throw new WorkspaceExistsError(`${dir} already has a keys/ folder; refusing to mix a new workspace into it`);
}

/** Creates the empty folders of a new workspace (the keys folder is private). */
export async function createWorkspaceFolders(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const folder of WORKSPACE_FOLDERS) {
    await mkdir(join(dir, folder), { recursive: true, mode: folder === WORKSPACE_LAYOUT.keys ? 0o700 : 0o755 });
  }
}

/** The first line of the block psyops keeps in a workspace's .gitignore: present once, never re-added after that. */
export const GITIGNORE_MARKER = '# psyops: private keys, plaintext secrets, secret volumes and build output stay out of git';

/** `relative` (a path inside the workspace) as a .gitignore pattern matching that path only. */
function gitignorePattern(path: string, directory: boolean): string {
  const escaped = path
    .split(sep)
    .join('/')
    .replace(/[\\*?[\]!#]/g, '\\$&')
    .replace(/ $/, '\\ ');
  return `/${escaped}${directory ? '/' : ''}`;
}

/**
 * What `psyops init` writes to .gitignore, so that the workspace can be committed: the private
 * keys (minisign secret key, psynet CA and host keys, APK `*.rsa` but not `*.rsa.pub`, Nebula configs
 * with an inlined key), plaintext secrets kept beside it, secret volume images, the registry lock and what is built again from
 * the rest (the site, images, caches, including the site's secret cache). Public keys, the psynet
 * registry and certificates, node definitions and the overlay are committed.
 */
export function workspaceGitignore(config: Pick<WorkspaceConfig, 'signing' | 'site' | 'image'>): string {
  const secretKey = isAbsolute(config.signing.secretKey) ? undefined : config.signing.secretKey;
  const dir = (path: string) => (isAbsolute(path) ? [] : [gitignorePattern(path, true)]);
  return [
    GITIGNORE_MARKER,
    '# Back the private keys up elsewhere (a password manager, an encrypted backup): git does not keep them.',
    '# Private keys: minisign (signs the site and images), psynet CA and host keys, APK signing keys (*.rsa; *.rsa.pub is public)',
    ...(secretKey !== undefined ? [gitignorePattern(secretKey, false)] : []),
    '*.key',
    '*.rsa',
    '# Nebula configs (psyops psynet config) inline the host private key; the registry lock is transient',
    `/${WORKSPACE_LAYOUT.psynet}/hosts/*.yml`,
    `/${WORKSPACE_LAYOUT.psynet}/*.lock`,
    '# Plaintext secrets kept in the workspace (password files, tokens): put them in secrets/ or name them *.secret',
    '/secrets/',
    '*.secret',
    '# Secret volumes (psyops node create --out) and other disk images',
    '*.img',
    '# Built again from what is committed; the cache holds the site secret cache',
    ...dir(config.site.outDir),
    ...dir(config.image.outDir),
    gitignorePattern(WORKSPACE_LAYOUT.cache, true),
    '',
  ].join('\n');
}

/**
 * Keeps the workspace's .gitignore complete: adds psyops's block when it has none (a workspace
 * made by an older version, or a .gitignore written by hand), and a line for each of `paths`
 * inside the workspace (a node's secret volume written there) that it does not list yet.
 * Returns the lines added.
 */
export async function ensureGitignore(workspace: Workspace, paths: readonly { path: string; directory: boolean }[] = []): Promise<string[]> {
  const file = join(workspace.dir, GITIGNORE_FILE);
  const text = (await readTextIfExists(file, 'workspace .gitignore')) ?? '';
  const lines = new Set(text.split('\n').map((line) => line.trim()));
  const added: string[] = [];
  if (!lines.has(GITIGNORE_MARKER)) added.push(...workspaceGitignore(workspace.config).trimEnd().split('\n'));
  for (const { path, directory } of paths) {
    const inside = relative(workspace.dir, resolve(path));
    if (inside === '' || inside === '..' || inside.startsWith(`..${sep}`) || isAbsolute(inside)) continue;
    const pattern = gitignorePattern(inside, directory);
    if (!lines.has(pattern) && !added.includes(pattern)) added.push(pattern);
  }
  if (added.length === 0) return [];
  const separator = text === '' || text.endsWith('\n') ? '' : '\n';
  await writeFilesAtomically([{ path: file, data: `${text}${separator}${added.join('\n')}\n`, mode: 0o644 }]);
  return added;
}
