/**
 * World resolution with apk-tools 2.14's solver rules (`src/solver.c`), for building root
 * filesystems from APKINDEXes. Like apk's solver it never backtracks: constraints are recorded as
 * they appear, names with a single usable provider are settled first, and the remaining choices
 * are made by apk's provider order (`compare_providers`):
 *
 * 1. providers whose own dependencies can still be met (apk: "prefer without errors");
 * 2. the preferred pinning: for `name@tag` in the world the repository tagged `tag`, else untagged ones;
 * 3. (psyops only) the higher `RepositoryIndex.priority`;
 * 4. the higher version of the requested name (a provides without version compares as unknown);
 * 5. for the same package name, the higher package version;
 * 6. the higher `provider_priority` (`k:`);
 * 7. the earlier repository.
 *
 * A provider of a name without a version (`p:/bin/sh`) is chosen on its own only when it declares
 * a provider_priority or its own name is required (apk's `is_provider_auto_selectable`); a
 * tagged repository serves only `name@tag` and what such packages depend on (pinning is inherited,
 * apk's `inherit_pinning_and_flags`); install_if packages join once every condition is installed.
 */
import { type Dependency, formatDependency, type ProvidedName, parseDependency, parseProvided, versionSatisfies } from './dependency.js';
import { InvalidDependencyError, UnsatisfiableError } from './errors.js';
import type { IndexEntry } from './read.js';
import { compareVersions } from './version.js';

export interface RepositoryIndex {
  entries: readonly IndexEntry[];
  /**
   * psyops' own preference, not apk's: a higher priority wins over the version (default 0). apk
   * itself orders repositories only by position (the earlier wins a tie) and by tags.
   */
  priority?: number;
  /** Repository tag (`@edge`): its packages serve only `name@tag` world entries and what those depend on. */
  tag?: string;
  /** Where it came from (URL or path), passed through to the result. */
  source?: string;
}

export interface ResolvedPackage {
  entry: IndexEntry;
  /** Position of its repository in the `indexes` argument. */
  repository: number;
  /** What pulled it in: `world`, `install_if` or package names. */
  requiredBy: string[];
}

export interface ResolveOptions {
  /** Upper bound on selection steps (default 1,000,000), against pathological indexes. */
  maxSteps?: number;
}

interface Parsed {
  /** The package's own name and version first, then its `p:` names. */
  provides: ProvidedName[];
  installIf: Dependency[];
  /** Parsed on first use: most entries of a big index are never looked at. */
  depends?: Dependency[];
}

// Parsed tokens and per-repository name tables are kept per IndexEntry / entries array, so a
// second resolve against the same indexes (another world, the boot set) costs only the walk.
const parsedCache = new WeakMap<IndexEntry, Parsed>();

function parsed(entry: IndexEntry): Parsed {
  let result = parsedCache.get(entry);
  if (!result) {
    result = named(entry, () => ({
      provides: [{ name: entry.name, version: entry.version }, ...entry.provides.map(parseProvided)],
      installIf: entry.installIf.length === 0 ? [] : entry.installIf.map(parseDependency),
    }));
    parsedCache.set(entry, result);
  }
  return result;
}

function dependsOf(entry: IndexEntry): Dependency[] {
  const p = parsed(entry);
  p.depends ??= named(entry, () => entry.depends.map(parseDependency));
  return p.depends;
}

/** Names the index entry in a token error, so one bad entry of a foreign index is easy to find. */
function named<T>(entry: IndexEntry, read: () => T): T {
  try {
    return read();
  } catch (error) {
    if (error instanceof InvalidDependencyError) throw new InvalidDependencyError(`${entry.name}-${entry.version}: ${error.message}`, { cause: error });
    throw error;
  }
}

interface RepositoryTable {
  size: number;
  byName: Map<string, { entry: IndexEntry; version: string | undefined }[]>;
  /** Name -> names of packages with an install_if condition on it. */
  installIfOn: Map<string, Set<string>>;
}

const tableCache = new WeakMap<readonly IndexEntry[], RepositoryTable>();

function tableOf(entries: readonly IndexEntry[]): RepositoryTable {
  const cached = tableCache.get(entries);
  if (cached && cached.size === entries.length) return cached;
  const table: RepositoryTable = { size: entries.length, byName: new Map(), installIfOn: new Map() };
  for (const entry of entries) {
    const p = parsed(entry);
    for (const provided of p.provides) {
      const list = table.byName.get(provided.name);
      const item = { entry, version: provided.version };
      if (list) list.push(item);
      else table.byName.set(provided.name, [item]);
    }
    for (const dep of p.installIf) {
      if (dep.conflict) continue;
      const set = table.installIfOn.get(dep.name);
      if (set) set.add(entry.name);
      else table.installIfOn.set(dep.name, new Set([entry.name]));
    }
  }
  tableCache.set(entries, table);
  return table;
}

interface Candidate {
  entry: IndexEntry;
  repository: number;
  tag: string | undefined;
  priority: number;
  /** The version it offers for the name being resolved; undefined for a provides without version. */
  version: string | undefined;
}

interface Constraint {
  dep: Dependency;
  /** `world` or the package label that asked. */
  by: string;
  chain: string[];
}

interface Chosen {
  candidate: Candidate;
  label: string;
  /** Repository tags its dependencies may use (inherited pinning). */
  tags: Set<string>;
  viaInstallIf: boolean;
}

interface Lock {
  chosen: Chosen;
  version: string | undefined;
}

const label = (entry: IndexEntry): string => `${entry.name}-${entry.version}`;

class Solver {
  private readonly tables: RepositoryTable[];
  private readonly providerCache = new Map<string, Candidate[]>();
  /** Every name a selected package provides -> that package (apk's `name->ss.chosen`). */
  private readonly locked = new Map<string, Lock>();
  /** Selected packages by package name. */
  readonly chosen = new Map<string, Chosen>();
  private readonly constraints = new Map<string, Constraint[]>();
  /** Name -> who asked for it (`world` or package names), in order. */
  private readonly requirers = new Map<string, string[]>();
  private readonly allowedTags = new Map<string, Set<string>>();
  private readonly preferredTag = new Map<string, string>();
  private readonly pending = new Set<string>();
  private readonly installIfDirty = new Set<string>();
  private steps = 0;

  constructor(
    private readonly indexes: readonly RepositoryIndex[],
    private readonly maxSteps: number,
  ) {
    this.tables = indexes.map((index) => tableOf(index.entries));
  }

  providers(name: string): Candidate[] {
    let list = this.providerCache.get(name);
    if (!list) {
      list = [];
      for (let repository = 0; repository < this.tables.length; repository++) {
        const index = this.indexes[repository]!;
        for (const item of this.tables[repository]!.byName.get(name) ?? []) {
          list.push({ entry: item.entry, repository, tag: index.tag, priority: index.priority ?? 0, version: item.version });
        }
      }
      this.providerCache.set(name, list);
    }
    return list;
  }

  private fail(chain: readonly string[], what: string, why: string): never {
    const path = [...chain, what];
    throw new UnsatisfiableError(`unsatisfiable: ${path.join(' -> ')}: ${why}`, path);
  }

  private requiredBy(chosen: Chosen): string[] {
    const result: string[] = [];
    for (const provided of parsed(chosen.candidate.entry).provides) {
      for (const who of this.requirers.get(provided.name) ?? []) if (!result.includes(who)) result.push(who);
    }
    if (chosen.viaInstallIf && !result.includes('install_if')) result.push('install_if');
    return result;
  }

  private selectedText(lock: Lock): string {
    return `${lock.chosen.label} is already selected (required by ${this.requiredBy(lock.chosen).join(', ')})`;
  }

  /** Adds a dependency of `by` (world or a selected package) and checks it against what is selected. */
  require(dep: Dependency, by: Chosen | 'world', chain: string[]): void {
    const byLabel = by === 'world' ? 'world' : by.label;
    const list = this.constraints.get(dep.name);
    const constraint = { dep, by: byLabel, chain };
    if (list) list.push(constraint);
    else this.constraints.set(dep.name, [constraint]);
    const lock = this.locked.get(dep.name);
    if (dep.conflict) {
      // apk_dep_is_provided for `!name`: any selected provider in the range breaks it.
      if (lock && versionSatisfies(dep, lock.version, lock.chosen.candidate.entry.identity)) this.fail(chain, formatDependency(dep), this.selectedText(lock));
      return;
    }
    const who = by === 'world' ? 'world' : by.candidate.entry.name;
    const requirers = this.requirers.get(dep.name);
    if (requirers) {
      if (!requirers.includes(who)) requirers.push(who);
    } else this.requirers.set(dep.name, [who]);
    const tags = this.allowedTags.get(dep.name) ?? new Set<string>();
    if (by === 'world') {
      if (dep.tag) {
        tags.add(dep.tag);
        this.preferredTag.set(dep.name, dep.tag);
      }
    } else for (const tag of by.tags) tags.add(tag);
    this.allowedTags.set(dep.name, tags);
    if (lock) {
      if (!versionSatisfies(dep, lock.version, lock.chosen.candidate.entry.identity)) this.fail(chain, formatDependency(dep), this.selectedText(lock));
      return;
    }
    this.pending.add(dep.name);
  }

  private tagOk(candidate: Candidate, name: string): boolean {
    return candidate.tag === undefined || (this.allowedTags.get(name)?.has(candidate.tag) ?? false);
  }

  /** Why `candidate` can no longer be selected (apk's disqualify_package reasons), or undefined. */
  private excluded(candidate: Candidate): string | undefined {
    const entry = candidate.entry;
    const same = this.chosen.get(entry.name);
    if (same && same.candidate.entry !== entry) return `${same.label} is already selected`;
    for (const provided of parsed(entry).provides) {
      for (const { dep, by } of this.constraints.get(provided.name) ?? []) {
        const inRange = versionSatisfies(dep, provided.version, entry.identity);
        if (dep.conflict && inRange) return `conflicts with ${by} (${formatDependency(dep)})`;
        if (!dep.conflict && !inRange) return `not ${formatDependency(dep)} (required by ${by})`;
      }
      // Two packages may share a name only when neither gives it a version (apk's assign_name).
      const lock = this.locked.get(provided.name);
      if (lock && lock.chosen.candidate.entry !== entry && !(lock.version === undefined && provided.version === undefined)) {
        return `${lock.chosen.label} already provides ${provided.name}`;
      }
    }
    return undefined;
  }

  /** apk's is_provider_auto_selectable: a provides without version needs a provider_priority or its package named. */
  private autoSelectable(candidate: Candidate): boolean {
    return candidate.version !== undefined || (candidate.entry.providerPriority ?? 0) !== 0 || this.requirers.has(candidate.entry.name);
  }

  private usable(name: string): Candidate[] {
    return this.providers(name).filter((c) => this.tagOk(c, name) && this.autoSelectable(c) && this.excluded(c) === undefined);
  }

  /** One step of apk's dependency_satisfiable over the candidate's dependencies. */
  private depsSatisfiable(candidate: Candidate): boolean {
    for (const dep of dependsOf(candidate.entry)) {
      const lock = this.locked.get(dep.name);
      const inRange = lock !== undefined && versionSatisfies(dep, lock.version, lock.chosen.candidate.entry.identity);
      if (dep.conflict) {
        if (inRange) return false;
        continue;
      }
      if (lock) {
        if (!inRange) return false;
        continue;
      }
      if (
        !this.providers(dep.name).some(
          (p) => p.entry !== candidate.entry && versionSatisfies(dep, p.version, p.entry.identity) && this.excluded(p) === undefined,
        )
      )
        return false;
    }
    return true;
  }

  /** Best first, in compare_providers' order (see the file comment). */
  private best(name: string, candidates: Candidate[]): Candidate {
    const preferred = this.preferredTag.get(name);
    const satisfiable = new Map(candidates.map((c) => [c, this.depsSatisfiable(c)]));
    const pinned = (c: Candidate): boolean => (preferred !== undefined ? c.tag === preferred : c.tag === undefined);
    const sorted = [...candidates].sort(
      (a, b) =>
        Number(satisfiable.get(b)) - Number(satisfiable.get(a)) ||
        Number(pinned(b)) - Number(pinned(a)) ||
        b.priority - a.priority ||
        (a.version !== undefined && b.version !== undefined ? compareVersions(b.version, a.version) : 0) ||
        (a.entry.name === b.entry.name ? compareVersions(b.entry.version, a.entry.version) : 0) ||
        (b.entry.providerPriority ?? 0) - (a.entry.providerPriority ?? 0) ||
        a.repository - b.repository,
    );
    return sorted[0]!;
  }

  private select(candidate: Candidate, tags: Set<string>, chain: string[], viaInstallIf: boolean): void {
    const entry = candidate.entry;
    const chosen: Chosen = { candidate, label: label(entry), tags, viaInstallIf };
    this.chosen.set(entry.name, chosen);
    for (const provided of parsed(entry).provides) {
      if (!this.locked.has(provided.name)) this.locked.set(provided.name, { chosen, version: provided.version });
      this.pending.delete(provided.name);
      for (const table of this.tables) for (const name of table.installIfOn.get(provided.name) ?? []) this.installIfDirty.add(name);
    }
    const next = [...chain, chosen.label];
    for (const dep of dependsOf(entry)) this.require(dep, chosen, next);
  }

  /** Why nothing can be selected for `name`, as one line. */
  private failName(name: string): never {
    const constraint = (this.constraints.get(name) ?? []).find((c) => !c.dep.conflict)!;
    const what = formatDependency(constraint.dep);
    const all = this.providers(name);
    if (all.length === 0) this.fail(constraint.chain, what, 'no package provides it');
    const reasons = all.map((c) => {
      const why = this.excluded(c);
      if (why) return { c, why, kind: why.startsWith('not ') ? 'version' : 'other' };
      if (!this.tagOk(c, name)) return { c, why: `only in the repository tagged @${c.tag} (ask for ${name}@${c.tag})`, kind: 'tag' };
      return { c, why: 'provides it without a version and has no provider_priority', kind: 'virtual' };
    });
    const names = [...new Set(all.map((c) => label(c.entry)))].join(', ');
    if (reasons.every((r) => r.kind === 'virtual')) {
      this.fail(constraint.chain, what, `virtual name provided by ${names}, none with a provider_priority: name one of them in the world`);
    }
    if (reasons.every((r) => r.kind === 'version' && r.why.endsWith(`(required by ${constraint.by})`) && r.why.startsWith(`not ${what} `))) {
      this.fail(constraint.chain, what, `no candidate fits (available: ${names})`);
    }
    const unique = [...new Set(reasons.map((r) => `${label(r.c.entry)} ${r.why}`))];
    this.fail(constraint.chain, what, unique.length === 1 ? unique[0]! : `no candidate fits: ${unique.join('; ')}`);
  }

  private tick(): void {
    if (++this.steps > this.maxSteps) throw new UnsatisfiableError(`dependency resolution did not finish in ${this.maxSteps} steps`, []);
  }

  /** Settles every pending name: names with one usable provider first (apk: names without options). */
  drain(): void {
    while (this.pending.size > 0) {
      this.tick();
      let pick: string | undefined;
      let usable: Candidate[] = [];
      let fallback: string | undefined;
      let fallbackUsable: Candidate[] = [];
      let empty: string | undefined;
      for (const name of this.pending) {
        const list = this.usable(name);
        if (list.length === 1) {
          pick = name;
          usable = list;
          break;
        }
        if (list.length > 1 && fallback === undefined) {
          fallback = name;
          fallbackUsable = list;
        }
        if (list.length === 0 && empty === undefined) empty = name;
      }
      if (pick === undefined && fallback !== undefined) {
        pick = fallback;
        usable = fallbackUsable;
      }
      if (pick === undefined) this.failName(empty!);
      this.pending.delete(pick);
      const first = (this.constraints.get(pick) ?? []).find((c) => !c.dep.conflict);
      this.select(this.best(pick, usable), new Set(this.allowedTags.get(pick)), first?.chain ?? ['world'], false);
    }
  }

  /** Adds the install_if packages whose conditions are now all installed; true when one was added. */
  installIf(): boolean {
    const names = [...this.installIfDirty].sort();
    this.installIfDirty.clear();
    let added = false;
    for (const name of names) {
      if (this.locked.has(name)) continue;
      const triggered: Candidate[] = [];
      let tags = new Set<string>();
      for (const c of this.providers(name)) {
        if (c.entry.name !== name || c.entry.installIf.length === 0 || this.excluded(c) !== undefined) continue;
        const conditionTags = new Set<string>();
        const met = parsed(c.entry).installIf.every((dep) => {
          const lock = this.locked.get(dep.name);
          if (dep.conflict) return !(lock && versionSatisfies(dep, lock.version, lock.chosen.candidate.entry.identity));
          if (!lock || !versionSatisfies(dep, lock.version, lock.chosen.candidate.entry.identity)) return false;
          for (const tag of lock.chosen.tags) conditionTags.add(tag);
          return true;
        });
        // The triggered package inherits the pinning of the packages that triggered it.
        if (met && (c.tag === undefined || conditionTags.has(c.tag))) {
          triggered.push(c);
          tags = new Set([...tags, ...conditionTags]);
        }
      }
      if (triggered.length === 0) continue;
      this.select(this.best(name, triggered), tags, ['install_if'], true);
      added = true;
    }
    return added;
  }

  /** Every selected package with its dependencies before it; ties and cycles broken by name. */
  ordered(): ResolvedPackage[] {
    const order: ResolvedPackage[] = [];
    const state = new Set<string>();
    const visit = (name: string): void => {
      if (state.has(name)) return;
      state.add(name);
      const chosen = this.chosen.get(name)!;
      const deps = new Set<string>();
      for (const dep of dependsOf(chosen.candidate.entry)) {
        const lock = dep.conflict ? undefined : this.locked.get(dep.name);
        if (lock && lock.chosen !== chosen) deps.add(lock.chosen.candidate.entry.name);
      }
      for (const dep of [...deps].sort()) visit(dep);
      order.push({ entry: chosen.candidate.entry, repository: chosen.candidate.repository, requiredBy: this.requiredBy(chosen) });
    };
    for (const name of [...this.chosen.keys()].sort()) visit(name);
    return order;
  }
}

/**
 * Resolves `world` (apk world tokens: `alpine-base`, `busybox>=1.36`, `so:libc.musl-x86_64.so.1`,
 * `!foo`, `foo@edge`) against repository indexes, earlier repositories first, as apk add would on
 * an empty root. Returns the packages so that each comes after its dependencies. Throws
 * UnsatisfiableError naming the chain and the rule that failed.
 */
export function resolve(world: readonly string[], indexes: readonly RepositoryIndex[], options: ResolveOptions = {}): ResolvedPackage[] {
  const solver = new Solver(indexes, options.maxSteps ?? 1_000_000);
  // apk sorts the world by name before solving (apk_solver_solve), so its order does not matter.
  const deps = world.map(parseDependency).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const dep of deps) solver.require(dep, 'world', ['world']);
  do solver.drain();
  while (solver.installIf());
  return solver.ordered();
}
