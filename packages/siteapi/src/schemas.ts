import { z } from 'zod';
import { NODE_NAME } from './names.js';

export { NODE_NAME };

const absolutePath = z.string().regex(/^\/[^\0]*$/, 'must be an absolute path');
const fileMode = z.string().regex(/^0?[0-7]{3,4}$/, 'must be an octal mode such as "0644"');

/**
 * An APK package (`name`, or `name@tag` for a tagged repository) or an OpenRC service: a conservative
 * charset, no `/`, no `..`, no leading `-`. The node passes them to `apk add` and to
 * `/etc/init.d/<name>`: nothing in them may read as an option or a path.
 */
const SAFE_NAME = '(?!.*\\.\\.)[A-Za-z0-9][A-Za-z0-9._+-]{0,127}';
const packageName = z
  .string()
  .regex(
    new RegExp(`^${SAFE_NAME}(@[A-Za-z0-9][A-Za-z0-9._-]{0,63})?$`),
    'must be an APK package name (letters, digits and ._+-, starting with a letter or digit, no ..), optionally @tag',
  );
const serviceName = z
  .string()
  .regex(new RegExp(`^${SAFE_NAME}$`), 'must be an OpenRC service name (letters, digits and ._+-, starting with a letter or digit, no ..)');

/** Modes above 0777 (setuid, setgid, sticky) only when the file says so. */
const hasSpecialBits = (mode: string | undefined) => mode !== undefined && Number.parseInt(mode, 8) > 0o777;

const MODE_DESCRIPTION =
  'Octal mode. Default: "0600" for a secret, "0644" for plain text (site build writes it out). Above 0777 (setuid, setgid, sticky) only with allowSpecialBits.';

/** What the published and the workspace file have in common but their content and mode default. */
const fileFields = {
  path: absolutePath,
  allowSpecialBits: z.boolean().optional().describe('true to allow a mode above 0777 (setuid, setgid, sticky bits); refused otherwise.'),
};
const contentOf = <S extends z.ZodType>(secret: S) => z.union([z.string(), secret]).describe('File content: plain text, or a secret.');
const specialBitsNeedConsent = (file: { mode?: string | undefined; allowSpecialBits?: boolean | undefined }) =>
  !hasSpecialBits(file.mode) || file.allowSpecialBits === true;
const SPECIAL_BITS_REFUSED = { message: 'a mode above 0777 (setuid, setgid, sticky) needs "allowSpecialBits": true', path: ['mode'] };

// ---------- workspace inputs ----------

/** A secret in a workspace node definition, in plaintext: `{ "secret": "…" }`. */
export const plainSecretSchema = z
  .strictObject({ secret: z.string().min(1) })
  .describe('A secret in plaintext; the site publishes it age-encrypted to the node.');

/** A secret as published: the age ciphertext (ASCII armor) for the node's recipient. */
export const encryptedSecretSchema = z
  .strictObject({ age: z.string().startsWith('-----BEGIN AGE ENCRYPTED FILE-----') })
  .describe("A secret encrypted with age to the node's X25519 recipient, ASCII-armored.");

function nodeConfigShape<S extends z.ZodType, F extends z.ZodType>(secret: S, file: F) {
  return {
    version: z
      .number()
      .int()
      .min(1)
      .describe(
        'Config version: raise it with every change. Nodes refuse an older version than their last good one, and the same version with other content; site build refuses a changed config whose version did not rise (or raises it with --bump-versions).',
      ),
    hostname: z
      .string()
      .regex(/^[a-zA-Z0-9][a-zA-Z0-9.-]{0,252}$/)
      .describe('Hostname the node sets.'),
    packages: z.array(packageName).default([]).describe('APK packages to add (`name` or `name@tag`).'),
    services: z.array(serviceName).default([]).describe('OpenRC services to enable and start.'),
    files: z.array(file).default([]).describe('Files to write.'),
    k3s: z
      .strictObject({
        role: z.enum(['server', 'agent']),
        serverUrl: z.url().optional().describe('URL of the server to join (agents, and servers joining a cluster).'),
        token: secret.describe('Cluster token.'),
      })
      .optional()
      .describe('k3s settings; absent: k3s is not configured.'),
    firewall: z
      .array(
        z.strictObject({
          port: z.union([z.number().int().min(0).max(65535), z.string().regex(/^(any|\d+(-\d+)?)$/)]),
          proto: z.enum(['any', 'tcp', 'udp', 'icmp']),
          host: z.string().optional(),
          groups: z.array(z.string()).optional(),
          cidr: z.string().optional(),
        }),
      )
      .default([])
      .describe('Extra psynet (Nebula) inbound firewall rules.'),
  };
}

/** A workspace file: its mode, when left out, from its content (a secret is 0600: never world-readable by default). */
const workspaceFileSchema = z
  .strictObject({ ...fileFields, mode: fileMode.optional().describe(MODE_DESCRIPTION), content: contentOf(plainSecretSchema) })
  .refine(specialBitsNeedConsent, SPECIAL_BITS_REFUSED)
  .transform((file) => ({ ...file, mode: file.mode ?? (typeof file.content === 'string' ? '0644' : '0600') }));

/**
 * A published file: site build always writes its mode; "0644" fills in for a hand-made document.
 * The special-bits rule is nodeboot's here, checked before it writes the file: a JSON Schema (the
 * node's generated validators) cannot relate two fields, and zod and the node must agree.
 */
const publishedFileSchema = z.strictObject({
  ...fileFields,
  mode: fileMode.default('0644').describe(MODE_DESCRIPTION),
  content: contentOf(encryptedSecretSchema),
});

/**
 * A node in the workspace: `nodes/<name>.json`. Secrets are plaintext here; the workspace is
 * private. `ageRecipient` is the node's public age key (recorded by `psyops node create`).
 */
export const nodeDefinitionSchema = z.strictObject({
  $schema: z.string().optional(),
  ageRecipient: z
    .string()
    .regex(/^age1[02-9ac-hj-np-z]{58}$/, 'must be an age X25519 recipient (age1…)')
    .optional(),
  sshHostPublicKey: z
    .string()
    .regex(/^ssh-ed25519 [A-Za-z0-9+/]+={0,2}( [^\n]*)?$/, 'must be an OpenSSH ed25519 public key line')
    .optional()
    .describe("The node's SSH host public key (recorded by `psyops node create`); the private key exists only on its secret volume."),
  psynetAddress: z.ipv4().optional().describe("The node's psynet address (recorded by `psyops node create`)."),
  psynet: z
    .strictObject({
      role: z.literal('lighthouse'),
      underlay: z.array(z.string().min(1)).describe("The lighthouse's own fixed HOST:PORT endpoints on the underlay network; it listens on their port."),
    })
    .optional()
    .describe('Present when the node is a psynet lighthouse (recorded by `psyops node create --lighthouse`); site build publishes its endpoints.'),
  config: z.strictObject({
    ...nodeConfigShape(plainSecretSchema, workspaceFileSchema),
    hostname: nodeConfigShape(plainSecretSchema, workspaceFileSchema).hostname.optional().describe('Hostname; default: the node name.'),
  }),
});
export type NodeDefinition = z.infer<typeof nodeDefinitionSchema>;

/** The JSON manifest the image builder writes beside `psyopsOS-<release>-<arch>.iso`. Unknown fields are kept. */
export const imageManifestSchema = z.looseObject({
  version: z.string().min(1).optional(),
  kernel: z.string().min(1).optional(),
  alpine: z.string().min(1).optional(),
});

/** One psynet lighthouse as the site publishes it. */
export const lighthouseSchema = z.strictObject({
  name: z.string().min(1),
  overlayIp: z.ipv4().describe('Address inside psynet.'),
  publicAddresses: z.array(z.string().min(1)).min(1).describe('host:port where the lighthouse is reached from the internet.'),
});
export type Lighthouse = z.infer<typeof lighthouseSchema>;

// ---------- published documents ----------

/** `nodes/<name>.json`: what nodeboot fetches, verifies and applies. */
export const nodeConfigSchema = z.strictObject({
  format: z.literal('psyops-node-config/1'),
  name: z.string().regex(NODE_NAME),
  ...nodeConfigShape(encryptedSecretSchema, publishedFileSchema),
});
export type NodeConfig = z.infer<typeof nodeConfigSchema>;

const osImageSchema = z.strictObject({
  filename: z.string(),
  path: z.string().describe('Path of the image in the site.'),
  arch: z.string(),
  version: z.string(),
  kernel: z.string(),
  alpine: z.string(),
  size: z.number().int().min(0),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  signature: z.string().describe('Path of the image’s .minisig in the site.'),
});

/** `os/latest.json`: the current image (the newest x86_64 one, else the newest), and the newest per architecture. */
export const osLatestSchema = z.strictObject({
  format: z.literal('psyops-os-latest/1'),
  ...osImageSchema.shape,
  architectures: z.record(z.string(), osImageSchema),
});
export type OsLatest = z.infer<typeof osLatestSchema>;
export type OsImage = z.infer<typeof osImageSchema>;

/**
 * `os/update-<arch>.json`: the newest update artifact (slot tar) of one architecture, which
 * `psyops-node update` fetches first. Its `.minisig` is the site's; the tar's own `.minisig`
 * (`<path>.minisig`) carries `type=psyopsOS version= filename= kernel= alpine= arch=`.
 */
export const osUpdateSchema = z.strictObject({
  format: z.literal('psyops-os-update/1'),
  version: z.string().describe('The release in the tar.'),
  arch: z.string(),
  filename: z.string().describe('psyopsOS-<version>-<arch>.tar'),
  path: z.string().describe('Path of the tar in the site (os/<filename>); its signature is <path>.minisig.'),
  size: z.number().int().min(0),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  kernel: z.string(),
  alpine: z.string(),
});
export type OsUpdate = z.infer<typeof osUpdateSchema>;

/** `psynet/lighthouses.json`. */
export const lighthousesSchema = z.strictObject({
  format: z.literal('psyops-lighthouses/1'),
  version: z
    .number()
    .int()
    .min(1)
    .describe('List version: site build raises it when the list changes; nodes refuse an older one, and the same one with other content.'),
  lighthouses: z.array(lighthouseSchema),
});

/** `index.json`: every API document, its signature and schema. */
export const siteIndexSchema = z.strictObject({
  format: z.literal('psyops-site-index/1'),
  documents: z.array(z.strictObject({ path: z.string(), signature: z.string(), schema: z.string() })),
  nodes: z.array(z.string()),
  architectures: z.strictObject({ apk: z.array(z.string()), os: z.array(z.string()) }),
});

/** `manifest.json`: every file of the site but itself and its signature. */
export const siteManifestSchema = z.strictObject({
  format: z.literal('psyops-site-manifest/1'),
  files: z.array(z.strictObject({ path: z.string(), size: z.number().int().min(0), sha256: z.string().regex(/^[0-9a-f]{64}$/) })),
});
export type ManifestEntry = z.infer<typeof siteManifestSchema>['files'][number];

/** Every schema the site publishes under `schemas/<name>.schema.json`, by name. */
export const siteSchemas = {
  'node-config': nodeConfigSchema,
  'node-definition': nodeDefinitionSchema,
  'os-latest': osLatestSchema,
  'os-update': osUpdateSchema,
  lighthouses: lighthousesSchema,
  'site-index': siteIndexSchema,
  'site-manifest': siteManifestSchema,
} as const;
export type SiteSchemaName = keyof typeof siteSchemas;

/** The JSON Schema (draft 2020-12) of one site document. */
export function siteJsonSchema(name: SiteSchemaName): Record<string, unknown> {
  // Workspace inputs are documented as written (defaults optional); published documents as produced.
  return z.toJSONSchema(siteSchemas[name], { io: name === 'node-definition' ? 'input' : 'output' }) as Record<string, unknown>;
}
