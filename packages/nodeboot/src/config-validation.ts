/**
 * Schema checks of the documents postboot fetches, in the library: zod, from @psyops/siteapi/schemas.
 * The nodeboot program replaces this module at build time with validators Ajv generated from the
 * same schemas' JSON Schema (config-validation.build.ts), so that the node neither loads zod nor compiles
 * a schema at boot. Both give the same accept/refuse (test/validators.test.ts).
 */
import { lighthousesSchema, nodeConfigSchema, type Lighthouse, type NodeConfig } from '@psyops/siteapi/schemas';

export type Checked<T> = { ok: true; value: T } | { ok: false; error: string };

function check<T>(schema: { safeParse(value: unknown): { success: true; data: T } | { success: false; error: { issues: { path: PropertyKey[]; message: string }[] } } }, value: unknown): Checked<T> {
  const result = schema.safeParse(value);
  if (result.success) return { ok: true, value: result.data };
  const issue = result.error.issues[0];
  return { ok: false, error: issue ? `${issue.path.join('.') || '(top level)'}: ${issue.message}` : 'invalid' };
}

/** A `nodes/<name>.json` document, or the first problem as `<path>: <message>`. */
export function checkNodeConfig(value: unknown): Checked<NodeConfig> {
  return check(nodeConfigSchema, value);
}

/** A `psynet/lighthouses.json` document, or the first problem. */
export function checkLighthouses(value: unknown): Checked<{ lighthouses: Lighthouse[] }> {
  return check(lighthousesSchema, value);
}
