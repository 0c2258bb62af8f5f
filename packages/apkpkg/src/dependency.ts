/** Dependency tokens as apk writes them in `D:`, `p:`, `i:` and /etc/apk/world: `[!]name[@tag][op version]`. */
import { InvalidDependencyError } from './errors.js';
import { compareVersions, fuzzyMatchesVersion, isApkVersion } from './version.js';

export type VersionOperator = '<' | '<=' | '=' | '>=' | '>' | '~' | '><';

export interface Dependency {
  /** Package or virtual name: `busybox`, `so:libc.musl-x86_64.so.1`, `cmd:sh`, `pc:zlib`, `/bin/sh`. */
  name: string;
  /** `!name`: the named package must not be installed (in that version range, if one is given). */
  conflict: boolean;
  /** `@tag`: only from repositories with this tag. */
  tag?: string;
  operator?: VersionOperator;
  /** A version, or a `Q1…` package identity with `><`. */
  version?: string;
}

const OPERATORS: Record<string, VersionOperator> = {
  '<': '<',
  '<=': '<=',
  '=<': '<=',
  '=': '=',
  '>=': '>=',
  '=>': '>=',
  '>': '>',
  '~': '~',
  '=~': '~',
  '~=': '~',
  '><': '><',
};

/** Package names as abuild accepts them (apk itself is laxer). */
export const PACKAGE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.+-]*$/;

export function parseDependency(token: string): Dependency {
  const match = /^(!?)([^\s<>=~@!]+)(?:@([^\s<>=~@]+))?(?:([<>=~]+)(\S+))?$/.exec(token);
  if (!match) throw new InvalidDependencyError(`invalid dependency "${token}": expected [!]name[@tag][<|<=|=|>=|>|~ version]`);
  const [, bang, name, tag, op, version] = match;
  const dependency: Dependency = { name: name!, conflict: bang === '!' };
  if (tag) dependency.tag = tag;
  if (op !== undefined) {
    const operator = OPERATORS[op];
    if (!operator) throw new InvalidDependencyError(`invalid dependency "${token}": unknown operator "${op}"`);
    if (operator === '><' ? !/^Q1[A-Za-z0-9+/]{27}=$/.test(version!) : !isApkVersion(version!)) {
      throw new InvalidDependencyError(`invalid dependency "${token}": "${version}" is not a valid version`);
    }
    dependency.operator = operator;
    dependency.version = version!;
  }
  return dependency;
}

/** A `p:` token: a name another package may depend on, with the version it offers (none: a pure virtual). */
export interface ProvidedName {
  name: string;
  version?: string;
}

/** Parses a `p:` token (`so:libz.so.1=1.3.1`, `cmd:sh=1.36.1-r5`, `/bin/sh`), as apk does: `name[=version]`. */
export function parseProvided(token: string): ProvidedName {
  const at = token.indexOf('=');
  if (at === -1) return { name: token };
  const version = token.slice(at + 1);
  if (at === 0 || !isApkVersion(version)) throw new InvalidDependencyError(`invalid provides "${token}": expected name or name=version`);
  return { name: token.slice(0, at), version };
}

export function formatDependency(dep: Dependency): string {
  return `${dep.conflict ? '!' : ''}${dep.name}${dep.tag ? `@${dep.tag}` : ''}${dep.operator ? `${dep.operator}${dep.version}` : ''}`;
}

/** Whether a candidate version satisfies the dependency's version constraint (ignores `conflict`). */
export function versionSatisfies(dep: Dependency, version: string | undefined, identity?: string): boolean {
  if (!dep.operator) return true;
  if (dep.operator === '><') return identity === dep.version;
  if (version === undefined) return false;
  if (dep.operator === '~') return fuzzyMatchesVersion(version, dep.version!);
  const order = compareVersions(version, dep.version!);
  switch (dep.operator) {
    case '<':
      return order < 0;
    case '<=':
      return order <= 0;
    case '=':
      return order === 0;
    case '>=':
      return order >= 0;
    case '>':
      return order > 0;
  }
}
