/**
 * Name rules without zod: nodeboot's single-file bundle checks node names with this alone, so
 * loading it does not evaluate zod (seconds under emulation). schemas.ts re-exports it.
 */

/** Names used in paths (node names, architectures): no separators, no dots at the start. */
export const NODE_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
