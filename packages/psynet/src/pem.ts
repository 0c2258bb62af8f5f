import { CertificateFormatError } from './errors.js';

/** PEM banners Nebula 1.6.1 reads and writes. */
export const PEM = {
  certificate: 'NEBULA CERTIFICATE',
  caPrivateKey: 'NEBULA ED25519 PRIVATE KEY',
  caPublicKey: 'NEBULA ED25519 PUBLIC KEY',
  hostPrivateKey: 'NEBULA X25519 PRIVATE KEY',
  hostPublicKey: 'NEBULA X25519 PUBLIC KEY',
} as const;

/** Go encoding/pem's output: base64 wrapped at 64 columns, no headers, final newline. */
export function encodePem(type: string, bytes: Uint8Array): string {
  const base64 = Buffer.from(bytes).toString('base64');
  const lines = base64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${type}-----\n${lines.map((line) => `${line}\n`).join('')}-----END ${type}-----\n`;
}

export interface PemBlock {
  type: string;
  bytes: Uint8Array;
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END ([A-Z0-9 ]+)-----/g;

/** Every PEM block in `text`, in order. Text between or around blocks is ignored, as Go does. */
export function decodePemBlocks(text: string, source: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  for (const match of text.matchAll(BLOCK)) {
    const [, begin, body, end] = match;
    if (begin !== end) throw new CertificateFormatError(`${source}: PEM block "${begin}" ends with "${end}"`);
    const compact = body!.replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact) || compact.length % 4 !== 0) {
      throw new CertificateFormatError(`${source}: PEM block "${begin}" is not valid base64`);
    }
    blocks.push({ type: begin!, bytes: new Uint8Array(Buffer.from(compact, 'base64')) });
  }
  return blocks;
}

/** The single block of the expected type (the first one, as nebula does), or a clear error. */
export function decodeSinglePem(text: string, type: string, source: string): Uint8Array {
  const first = decodePemBlocks(text, source)[0];
  if (!first) throw new CertificateFormatError(`${source}: no PEM block found (expected ${type})`);
  if (first.type !== type) throw new CertificateFormatError(`${source}: expected a ${type} block, found ${first.type}`);
  return first.bytes;
}
