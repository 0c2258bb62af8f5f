/**
 * Checks of the two documents a node fetches from the site, as a result instead of a throw (zod).
 * nodeboot imports this entry; its single-file bundle maps it, by this exact specifier, to
 * validators Ajv generates from the same schemas' JSON Schema, so that a node neither loads zod nor
 * compiles a schema at boot (nodeboot's tsup.config.ts; test/validators.test.ts there proves both
 * give the same verdicts).
 */
import { lighthousesSchema, nodeConfigSchema, type Lighthouse, type NodeConfig } from './schemas.js';

export type Checked<T> = { ok: true; value: T } | { ok: false; error: string };

function check<T>(
  schema: { safeParse(value: unknown): { success: true; data: T } | { success: false; error: { issues: { path: PropertyKey[]; message: string }[] } } },
  value: unknown,
): Checked<T> {
  const result = schema.safeParse(value);
  if (result.success) return { ok: true, value: result.data };
  const issue = result.error.issues[0];
  return { ok: false, error: issue ? `${issue.path.join('.') || '(top level)'}: ${issue.message}` : 'invalid' };
}

/** A `nodes/<name>.json` document (defaults filled in), or the first problem as `<path>: <message>`. */
export function checkNodeConfig(value: unknown): Checked<NodeConfig> {
  return check(nodeConfigSchema, value);
}

/** A `psynet/lighthouses.json` document, or the first problem. */
export function checkLighthouses(value: unknown): Checked<{ version: number; lighthouses: Lighthouse[] }> {
  return check(lighthousesSchema, value);
}
