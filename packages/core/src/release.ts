/**
 * The order of psyopsOS release tags (`251125`, `r2`, `2025.10`): runs of digits compare as
 * numbers, everything else byte by byte, so `r10` follows `r9` and `2025.10` follows `2025.9`.
 * The operator's machine (site build's `latest`) and the node (update's downgrade check) share it.
 */
export function compareReleases(a: string, b: string): number {
  const runs = (tag: string) => tag.match(/\d+|\D+/g) ?? [];
  const left = runs(a);
  const right = runs(b);
  for (let i = 0; i < Math.min(left.length, right.length); i++) {
    const x = left[i]!;
    const y = right[i]!;
    if (x === y) continue;
    const numeric = /^\d/.test(x) && /^\d/.test(y);
    if (numeric) {
      const byValue = BigInt(x) < BigInt(y) ? -1 : BigInt(x) > BigInt(y) ? 1 : 0;
      if (byValue !== 0) return byValue;
    }
    return x < y ? -1 : 1;
  }
  return left.length - right.length || (a < b ? -1 : a > b ? 1 : 0);
}
