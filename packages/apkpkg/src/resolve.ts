/**
 * A dependency resolver for building root filesystems from APKINDEXes: picks one provider per
 * name (greedy, like apk's preference order, without apk's full backtracking solver) and returns
 * the install set in dependency order.
 */
import { formatDependency, parseDependency, versionSatisfies, type Dependency } from './dependency.js';
import { UnsatisfiableError } from './errors.js';
import type { IndexEntry } from './read.js';
import { compareVersions } from './version.js';

export interface RepositoryIndex {
  entries: readonly IndexEntry[];
  /** Higher wins over version (default 0); among equal priorities the earlier repository wins ties. */
  priority?: number;
  /** Repository tag: only `name@tag` dependencies may use its packages (they may also use untagged repositories). */
  tag?: string;
  /** Where it came from (URL or path), passed through to the result. */
  source?: string;
}

export interface ResolvedPackage {
  entry: IndexEntry;
  /** Position of its repository in the `indexes` argument. */
  repository: number;
  /** What pulled it in: `world` or a package name. */
  requiredBy: string[];
}

interface Candidate {
  entry: IndexEntry;
  repository: number;
  priority: number;
  tag: string | undefined;
  /** Version the candidate offers for the name being resolved (its own, or its provides=version). */
  providedVersion: string | undefined;
  direct: boolean;
}

function providesName(entry: IndexEntry): { name: string; version?: string }[] {
  const result: { name: string; version?: string }[] = [{ name: entry.name, version: entry.version }];
  for (const token of entry.provides) {
    const at = token.indexOf('=');
    result.push(at === -1 ? { name: token } : { name: token.slice(0, at), version: token.slice(at + 1) });
  }
  return result;
}

/**
 * Resolves `world` (dependency strings such as `alpine-base`, `busybox>=1.36`, `so:libc.musl-x86_64.so.1`,
 * `!foo`) against repository indexes, earlier repositories first. Returns packages so that every
 * package comes after its dependencies. Throws UnsatisfiableError naming the chain that failed.
 */
export function resolve(world: readonly string[], indexes: readonly RepositoryIndex[], options: { maxSteps?: number } = {}): ResolvedPackage[] {
  const maxSteps = options.maxSteps ?? 1_000_000;
  const byName = new Map<string, Candidate[]>();
  indexes.forEach((index, repository) => {
    for (const entry of index.entries) {
      for (const provided of providesName(entry)) {
        const list = byName.get(provided.name) ?? [];
        list.push({
          entry,
          repository,
          priority: index.priority ?? 0,
          tag: index.tag,
          providedVersion: provided.version,
          direct: provided.name === entry.name,
        });
        byName.set(provided.name, list);
      }
    }
  });

  const chosen = new Map<string, ResolvedPackage>(); // by package name
  const providers = new Map<string, ResolvedPackage>(); // by every name a chosen package provides
  const constraints = new Map<string, { dep: Dependency; chain: string[] }[]>();
  const conflicts: { dep: Dependency; chain: string[] }[] = [];
  const edges = new Map<string, Set<string>>(); // package name -> names of packages it depends on
  const queue: { dep: Dependency; chain: string[]; from: string }[] = [];
  for (const token of world) queue.push({ dep: parseDependency(token), chain: ['world'], from: 'world' });

  const unsatisfiable = (chain: string[], dep: Dependency, why: string): never => {
    const path = [...chain, formatDependency(dep)];
    throw new UnsatisfiableError(`unsatisfiable: ${path.join(' -> ')}: ${why}`, path);
  };
  const conflictsWith = (entry: IndexEntry): { dep: Dependency; chain: string[] } | undefined =>
    conflicts.find(({ dep }) => providesName(entry).some((p) => p.name === dep.name && versionSatisfies(dep, p.version, entry.identity)));

  const choose = (candidate: Candidate, chain: string[], from: string): void => {
    const entry = candidate.entry;
    const resolved: ResolvedPackage = { entry, repository: candidate.repository, requiredBy: [from] };
    chosen.set(entry.name, resolved);
    for (const provided of providesName(entry)) if (!providers.has(provided.name)) providers.set(provided.name, resolved);
    edges.set(entry.name, new Set());
    // Constraints recorded earlier for names this package now provides must hold.
    for (const provided of providesName(entry)) {
      for (const c of constraints.get(provided.name) ?? []) {
        if (!versionSatisfies(c.dep, provided.version, entry.identity)) unsatisfiable(c.chain, c.dep, `${entry.name}-${entry.version} was chosen`);
      }
    }
    for (const token of entry.depends) queue.push({ dep: parseDependency(token), chain: [...chain, `${entry.name}-${entry.version}`], from: entry.name });
  };

  let steps = 0;
  const drain = (): void => {
    while (queue.length > 0) {
      if (++steps > maxSteps) throw new UnsatisfiableError(`dependency resolution did not finish in ${maxSteps} steps`, []);
      const { dep, chain, from } = queue.shift()!;
      if (dep.conflict) {
        conflicts.push({ dep, chain });
        for (const pkg of chosen.values())
          if (conflictsWith(pkg.entry))
            unsatisfiable(chain, dep, `${pkg.entry.name}-${pkg.entry.version} is already selected (required by ${pkg.requiredBy.join(', ')})`);
        continue;
      }
      const list = constraints.get(dep.name) ?? [];
      list.push({ dep, chain });
      constraints.set(dep.name, list);
      const existing = providers.get(dep.name);
      if (existing) {
        const provided = providesName(existing.entry).find((p) => p.name === dep.name);
        if (!versionSatisfies(dep, provided?.version, existing.entry.identity)) {
          unsatisfiable(chain, dep, `${existing.entry.name}-${existing.entry.version} is already selected (required by ${existing.requiredBy.join(', ')})`);
        }
        if (!existing.requiredBy.includes(from)) existing.requiredBy.push(from);
        if (from !== 'world') edges.get(from)?.add(existing.entry.name);
        continue;
      }
      const all = byName.get(dep.name) ?? [];
      if (all.length === 0) unsatisfiable(chain, dep, 'no package provides it');
      const usable = all.filter(
        (c) =>
          // Tagged repositories serve only `name@tag`; a pinned name may still come from untagged ones.
          (c.tag === undefined || c.tag === dep.tag) &&
          // A provides entry without a version is a pure virtual: apk never picks it on its own.
          (c.direct || c.providedVersion !== undefined) &&
          (constraints.get(dep.name) ?? []).every((k) => versionSatisfies(k.dep, c.providedVersion, c.entry.identity)) &&
          !conflictsWith(c.entry) &&
          !chosen.has(c.entry.name),
      );
      if (usable.length === 0) {
        const versions = [...new Set(all.map((c) => `${c.entry.name}-${c.entry.version}`))].join(', ');
        const virtualOnly = all.every((c) => !c.direct && c.providedVersion === undefined);
        unsatisfiable(
          chain,
          dep,
          virtualOnly ? `only provided as a virtual name by ${versions}: select one of them explicitly` : `no candidate fits (available: ${versions})`,
        );
      }
      usable.sort(
        (a, b) =>
          Number(b.direct) - Number(a.direct) ||
          b.priority - a.priority ||
          compareVersions(b.providedVersion ?? '0', a.providedVersion ?? '0') ||
          (b.entry.providerPriority ?? 0) - (a.entry.providerPriority ?? 0) ||
          a.repository - b.repository,
      );
      const pick = usable[0]!;
      choose(pick, chain, from);
      if (from !== 'world') edges.get(from)?.add(pick.entry.name);
    }
  };
  drain();

  // install_if: a package whose conditions are all installed joins the set (repeat until stable).
  for (let round = 0; round < 1000; round++) {
    let added = false;
    for (const [name, list] of byName) {
      for (const c of list) {
        if (!c.direct || c.entry.installIf.length === 0 || chosen.has(c.entry.name) || name !== c.entry.name || c.tag !== undefined) continue;
        const met = c.entry.installIf.map(parseDependency).every((dep) => {
          const p = providers.get(dep.name);
          return dep.conflict
            ? !p
            : p !== undefined && versionSatisfies(dep, providesName(p.entry).find((x) => x.name === dep.name)?.version, p.entry.identity);
        });
        if (met && !conflictsWith(c.entry)) {
          queue.push({ dep: parseDependency(c.entry.name), chain: ['install_if'], from: 'install_if' });
          drain();
          added = true;
        }
      }
    }
    if (!added) break;
  }

  // Dependencies first; ties (and cycles) broken by name so the order is deterministic.
  const order: ResolvedPackage[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string): void => {
    if (state.has(name)) return;
    state.set(name, 'visiting');
    for (const dep of [...(edges.get(name) ?? [])].sort()) visit(dep);
    state.set(name, 'done');
    order.push(chosen.get(name)!);
  };
  for (const name of [...chosen.keys()].sort()) visit(name);
  return order;
}
