import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { SecretVolumeError } from './errors.js';

/**
 * OpenSSH ed25519 host keys, written and read in the `openssh-key-v1` format (unencrypted), so
 * the node's sshd and `ssh-keygen -y` accept them without OpenSSH on the build host.
 */

const MAGIC = Buffer.from('openssh-key-v1\0', 'latin1');
const KEY_TYPE = 'ssh-ed25519';

const sshString = (data: string | Uint8Array) => {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
};
const uint32 = (value: number) => {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value);
  return out;
};

const publicBlob = (publicKey: Uint8Array) => Buffer.concat([sshString(KEY_TYPE), sshString(publicKey)]);

export interface SshHostKey {
  /** The private key file, OpenSSH format. */
  privateKey: string;
  /** `ssh-ed25519 AAAA… comment`. */
  publicKey: string;
}

/** A new ed25519 host key pair. */
export function generateSshHostKey(comment: string): SshHostKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const seed = Buffer.from(privateKey.export({ format: 'jwk' }).d!, 'base64url');
  const pub = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
  return { privateKey: encodeOpenSshPrivateKey(seed, pub, comment), publicKey: formatPublicKey(pub, comment) };
}

function formatPublicKey(publicKey: Uint8Array, comment: string): string {
  return `${KEY_TYPE} ${publicBlob(publicKey).toString('base64')}${comment ? ` ${comment}` : ''}`;
}

function encodeOpenSshPrivateKey(seed: Buffer, publicKey: Buffer, comment: string): string {
  const check = randomBytes(4);
  let section = Buffer.concat([check, check, sshString(KEY_TYPE), sshString(publicKey), sshString(Buffer.concat([seed, publicKey])), sshString(comment)]);
  // Padded with 1, 2, 3… to the cipher block size (8 for "none").
  const padding = (8 - (section.length % 8)) % 8;
  section = Buffer.concat([section, Buffer.from(Array.from({ length: padding }, (_, i) => i + 1))]);
  const body = Buffer.concat([MAGIC, sshString('none'), sshString('none'), sshString(''), uint32(1), sshString(publicBlob(publicKey)), sshString(section)]);
  const lines = body.toString('base64').match(/.{1,70}/g)!;
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${lines.join('\n')}\n-----END OPENSSH PRIVATE KEY-----\n`;
}

/** Reads SSH wire-format strings from `buf` starting at `at`. */
function wireReader(buf: Buffer, at: number, bad: (why: string) => Error) {
  return {
    string(): Buffer {
      if (at + 4 > buf.length) throw bad('truncated');
      const length = buf.readUInt32BE(at);
      if (at + 4 + length > buf.length) throw bad('truncated');
      const value = buf.subarray(at + 4, at + 4 + length);
      at += 4 + length;
      return value;
    },
    uint32(): number {
      if (at + 4 > buf.length) throw bad('truncated');
      at += 4;
      return buf.readUInt32BE(at - 4);
    },
  };
}

/** The public key line of an unencrypted OpenSSH ed25519 private key file (like `ssh-keygen -y`). */
export function sshPublicKeyOf(privateKeyText: string, source = 'ssh_host_ed25519_key'): string {
  const bad = (why: string) => new SecretVolumeError(`${source} is not an unencrypted OpenSSH ed25519 private key (${why})`);
  const match = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/.exec(privateKeyText);
  if (!match) throw bad('no OPENSSH PRIVATE KEY block');
  const body = Buffer.from(match[1]!.replace(/\s+/g, ''), 'base64');
  if (!body.subarray(0, MAGIC.length).equals(MAGIC)) throw bad('wrong magic');
  const outer = wireReader(body, MAGIC.length, bad);
  if (outer.string().toString() !== 'none' || outer.string().toString() !== 'none') throw bad('it is encrypted');
  outer.string(); // kdf options
  if (outer.uint32() !== 1) throw bad('not exactly one key');
  outer.string(); // the public blob, repeated inside the private section
  const section = wireReader(outer.string(), 0, bad);
  // biome-ignore lint/suspicious/noSelfCompare: two successive reads, OpenSSH's check integers
  if (section.uint32() !== section.uint32()) throw bad('check integers differ');
  if (section.string().toString() !== KEY_TYPE) throw bad('not ed25519');
  const publicKey = section.string();
  const secret = section.string();
  const comment = section.string().toString('utf8');
  if (publicKey.length !== 32 || secret.length !== 64 || !secret.subarray(32).equals(publicKey)) throw bad('inconsistent key');
  return formatPublicKey(publicKey, comment.replace(/[\r\n]/g, ''));
}
