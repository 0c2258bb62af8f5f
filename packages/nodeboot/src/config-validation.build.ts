/**
 * The nodeboot program's schema checks, generated at build time: Ajv compiles the JSON Schema that
 * @psyops/siteapi publishes for `nodes/<name>.json` and `psynet/lighthouses.json` into plain
 * JavaScript (standalone code), which the bundle embeds in place of @psyops/siteapi/validators
 * (tsup.config.ts). The node then neither loads zod nor compiles a schema at boot. Nothing
 * generated is committed.
 */
import * as ajv2020 from 'ajv/dist/2020.js';
import * as standalone from 'ajv/dist/standalone/index.js';
import { siteJsonSchema } from '@psyops/siteapi/schemas';

// ajv is CommonJS: its default export arrives wrapped or not depending on the loader.
const unwrap = <T>(module: T | { default: T }): T => ((module as { default?: T }).default ?? module) as T;
const Ajv2020 = unwrap(ajv2020 as unknown as typeof ajv2020.default);
const standaloneCode = unwrap(standalone as unknown as typeof standalone.default);
const { _ } = ajv2020;

/**
 * Formats the zod schemas emit. `ipv4` and `starts_with` come with a `pattern` that checks them
 * already; `uri` is zod's z.url(): whatever the WHATWG URL parser accepts, after trimming.
 */
const uri = (value: string): boolean => URL.canParse(value.trim());
/** The same check, as source for the generated module (which Ajv's code refers to as `formats`). */
const FORMATS_SOURCE = `const formats = { uri: ${uri.toString()} };`;

/** What the generated module adds to Ajv's functions: the same API as @psyops/siteapi/validators. */
const WRAPPERS_SOURCE = `
function firstError(errors) {
  const error = errors && errors[0];
  if (!error) return 'invalid';
  const path = error.instancePath.split('/').slice(1).map((p) => p.replaceAll('~1', '/').replaceAll('~0', '~')).join('.') || '(top level)';
  const extra = error.params && error.params.additionalProperty !== undefined ? \` (\${error.params.additionalProperty})\` : '';
  return \`\${path}: \${error.message}\${extra}\`;
}
export function checkNodeConfig(value) {
  return validateNodeConfig(value) ? { ok: true, value } : { ok: false, error: firstError(validateNodeConfig.errors) };
}
export function checkLighthouses(value) {
  return validateLighthouses(value) ? { ok: true, value } : { ok: false, error: firstError(validateLighthouses.errors) };
}
`;

/** The ES module that replaces @psyops/siteapi/validators in the bundle. */
export function validatorsSource(): string {
  const ajv = new Ajv2020({
    // Code, not closures: the module is written out as source.
    code: { source: true, esm: true, formats: _`formats` },
    formats: { uri, ipv4: true, starts_with: true },
    // Defaults filled in as zod fills them, for a document that leaves one out (the site writes them all).
    useDefaults: true,
    // String lengths as zod counts them (UTF-16 units), and no run-time helper to import for it.
    unicode: false,
    strict: true,
    allowUnionTypes: true,
    // Ajv calls `unicode: false` deprecated, yet it is how to count as zod does; any other warning fails the build.
    logger: {
      log: () => undefined,
      warn: (message: unknown) => {
        if (!String(message).startsWith('DEPRECATED: option unicode')) throw new Error(`ajv: ${String(message)}`);
      },
      error: (message: unknown) => {
        throw new Error(`ajv: ${String(message)}`);
      },
    },
  });
  ajv.addSchema(siteJsonSchema('node-config'), 'node-config');
  ajv.addSchema(siteJsonSchema('lighthouses'), 'lighthouses');
  const code = standaloneCode(ajv, { validateNodeConfig: 'node-config', validateLighthouses: 'lighthouses' });
  // A run-time import would pull Ajv's helpers (or fail in the single-file bundle): refuse it here, at build time.
  if (/\brequire\(/.test(code)) throw new Error('the generated validators need an Ajv run-time helper; adjust the Ajv options');
  return `${FORMATS_SOURCE}\n${code}\n${WRAPPERS_SOURCE}`;
}
