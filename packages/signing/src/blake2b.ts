import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';

/** An incremental BLAKE2b-512 hash (unkeyed, 64-byte digest): minisign's prehash. */
export interface Blake2b512 {
  update(chunk: Uint8Array): void;
  digest(): Uint8Array;
}

/** The part of sodium-native this module uses. */
interface SodiumGenericHash {
  crypto_generichash_STATEBYTES: number;
  crypto_generichash_init(state: Buffer, key: Buffer | null, outputLength: number): void;
  crypto_generichash_update(state: Buffer, input: Uint8Array): void;
  crypto_generichash_final(state: Buffer, output: Buffer): void;
}

let sodium: SodiumGenericHash | null | undefined;

/**
 * sodium-native is an optional dependency: it is libsodium itself, the library minisign hashes
 * with, and about 25% faster than OpenSSL's BLAKE2b on big files. Where it cannot load (no
 * prebuilt binary, or a single-file bundle) node:crypto gives the same digest.
 */
function loadSodium(): SodiumGenericHash | null {
  if (sodium === undefined) {
    try {
      sodium = createRequire(import.meta.url)('sodium-native') as SodiumGenericHash;
    } catch {
      sodium = null;
    }
  }
  return sodium;
}

/** Which implementation computes the BLAKE2b-512 prehash in this process. */
export function prehashBackend(): 'libsodium' | 'node:crypto' {
  return loadSodium() ? 'libsodium' : 'node:crypto';
}

/** Starts a BLAKE2b-512 hash; `backend` forces an implementation (tests compare both). */
export function createBlake2b512(backend: 'libsodium' | 'node:crypto' = prehashBackend()): Blake2b512 {
  const lib = backend === 'libsodium' ? loadSodium() : null;
  if (lib) {
    const state = Buffer.alloc(lib.crypto_generichash_STATEBYTES);
    lib.crypto_generichash_init(state, null, 64);
    return {
      update: (chunk) => lib.crypto_generichash_update(state, chunk),
      digest: () => {
        const out = Buffer.alloc(64);
        lib.crypto_generichash_final(state, out);
        return new Uint8Array(out);
      },
    };
  }
  const hash = createHash('blake2b512');
  return {
    update: (chunk) => hash.update(chunk),
    digest: () => new Uint8Array(hash.digest()),
  };
}

/**
 * BLAKE2b with a 32-byte digest: the checksum in minisign secret keys. The digest length is part
 * of BLAKE2's parameter block, so this is not a truncated BLAKE2b-512, and node:crypto cannot
 * compute it.
 */
export async function blake2b256(data: Uint8Array): Promise<Uint8Array> {
  // Imported on first use: only encrypted keys need it, and start-up time matters for a CLI.
  const { blake2b } = await import('@noble/hashes/blake2.js');
  return blake2b(data, { dkLen: 32 });
}
