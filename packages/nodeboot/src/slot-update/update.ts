/**
 * `psyops-node update`: the newest (or a named) signed release written into the slot that is not
 * booted, and GRUB told to try it once at the next boot. Never touches the booted slot.
 */
import { createPublicKey, verify } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { readTar } from '@psyops/apkpkg/format';
import { PsyopsError, compareReleases } from '@psyops/core';
import { parseSignature, verifyBytes, type PublicKey } from '@psyops/signing';
import { verifySigned } from '../postboot/site.js';
import { mountedSecretVolume, siteUrlOf } from '../ops/node-identity.js';
import { LinuxSystem, type NodeSystem } from '../system.js';
import { commandMounter, updateGrubEnv, withVolume, type VolumeMounter } from './volumes.js';

class UpdateError extends PsyopsError {
  constructor(
    message: string,
    override readonly code: string,
  ) {
    super(message);
  }
}
class UsageError extends PsyopsError {
  override readonly code = 'USAGE';
}

export type SlotLetter = 'A' | 'B';

export interface UpdateOptions {
  check?: boolean;
  version?: string;
  allowDowngrade?: boolean;
  /** How the other slot and the ESP are mounted (default: mount/umount through system.run). */
  mounter?: VolumeMounter;
  /** Deadline of the tar download (default 30 min). */
  downloadDeadlineMs?: number;
}

export interface UpdateReport {
  action: 'updated' | 'up-to-date' | 'available';
  from: string;
  to: string;
  slot: SlotLetter;
  bytes: number;
  ms: number;
}

const RELEASE = /^[A-Za-z0-9._+~-]+$/;
const DOC_LIMITS = { deadlineMs: 30_000, maxBytes: 1024 * 1024 };
/** A slot is a kernel, an initramfs, a modloop and a root squashfs: far below this. */
const MAX_TAR_BYTES = 4 * 1024 * 1024 * 1024 - 1;

/** The words of /proc/cmdline as a map (`psyopsos.slot` → `psyopsOS-A`). */
export async function kernelWords(system: NodeSystem): Promise<Map<string, string>> {
  const text = (await system.readFile('/proc/cmdline'))?.toString('utf8') ?? '';
  return new Map(
    text
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map((word) => [word.split('=')[0]!, word.slice(word.indexOf('=') + 1)] as [string, string]),
  );
}

/** The slot this boot came from, or null when booted from the ISO (no psyopsos.slot word). */
export async function bootedSlot(system: NodeSystem): Promise<SlotLetter | null> {
  const label = (await kernelWords(system)).get('psyopsos.slot');
  if (label === undefined) return null;
  const match = /^psyopsOS-([AB])$/.exec(label);
  if (!match) throw new UpdateError(`psyopsos.slot=${label} on the kernel command line is not psyopsOS-A or psyopsOS-B`, 'BAD_CMDLINE');
  return match[1] as SlotLetter;
}

/** `<release> <arch>` of the booted boot media (/media/boot/.psyopsOS-release). */
export async function bootedRelease(system: NodeSystem): Promise<{ release: string; arch: string | undefined } | undefined> {
  const words = (await system.readFile('/media/boot/.psyopsOS-release'))?.toString('utf8').trim().split(/\s+/);
  if (!words?.[0]) return undefined;
  return { release: words[0], arch: words[1] };
}

const ARCHES: Record<string, string> = { x64: 'x86_64', arm64: 'aarch64' };

/** Only the global signature (over signature + trusted comment): the comment can be trusted before the file is fetched. */
function verifyTrustedComment(text: string, key: PublicKey, source: string): string {
  const signature = parseSignature(text, source);
  if (Buffer.compare(Buffer.from(signature.keyId), Buffer.from(key.keyId)) !== 0)
    throw new UpdateError(`${source} is not signed by the secret volume's key`, 'BAD_SIGNATURE');
  const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), Buffer.from(key.publicKey)]);
  const message = Buffer.concat([Buffer.from(signature.signature), Buffer.from(signature.trustedComment, 'utf8')]);
  if (!verify(null, message, createPublicKey({ key: spki, format: 'der', type: 'spki' }), signature.globalSignature))
    throw new UpdateError(`${source}: the trusted comment's signature does not verify`, 'BAD_SIGNATURE');
  return signature.trustedComment;
}

async function fetchOk(system: NodeSystem, url: string, limits: { deadlineMs: number; maxBytes: number }): Promise<Buffer> {
  let response: Awaited<ReturnType<NodeSystem['fetch']>>;
  try {
    response = await system.fetch(url, limits);
  } catch (error) {
    throw new UpdateError(`GET ${url}: ${(error as Error).message.split('\n')[0]}`, 'SITE_UNREACHABLE');
  }
  if (response.status === 404) throw new UpdateError(`${url} is not on the site (404)`, 'NOT_ON_SITE');
  if (response.status !== 200) throw new UpdateError(`GET ${url}: HTTP ${response.status}`, 'SITE_UNREACHABLE');
  return response.body;
}

interface SlotDescription {
  version: string;
  arch: string;
  files: { path: string; size: number; sha256: string }[];
}

/** The slot's files from the verified tar, each checked against psyopsOS-slot.json. */
function slotFiles(tar: Buffer, version: string, arch: string): { description: Buffer; files: Map<string, Buffer> } {
  const bad = (why: string) => new UpdateError(`the update tar is not a psyopsOS slot: ${why}`, 'BAD_UPDATE_TAR');
  let entries: { name: string; content: Buffer }[];
  try {
    const read = readTar(tar);
    if (!read.endMarker) throw new Error('the tar has no end-of-archive blocks');
    const other = read.entries.find((entry) => entry.type !== 'file');
    if (other) throw new Error(`tar entry ${other.path} is not a regular file`);
    entries = read.entries.map((entry) => ({ name: entry.path, content: entry.data }));
  } catch (error) {
    throw bad((error as Error).message);
  }
  if (entries[0]?.name !== 'psyopsOS-slot.json' || entries[1]?.name !== 'psyopsOS-slot.json.minisig')
    throw bad('it does not start with psyopsOS-slot.json and psyopsOS-slot.json.minisig');
  let slot: SlotDescription;
  try {
    slot = JSON.parse(entries[0].content.toString('utf8')) as SlotDescription;
  } catch {
    throw bad('psyopsOS-slot.json is not JSON');
  }
  if (slot.version !== version || slot.arch !== arch || !Array.isArray(slot.files))
    throw bad(`psyopsOS-slot.json is for ${slot.version} ${slot.arch}, not ${version} ${arch}`);
  const files = new Map<string, Buffer>([['psyopsOS-slot.json.minisig', entries[1].content]]);
  for (const { name, content } of entries.slice(2)) {
    if (name.startsWith('/') || normalize(name) !== name || name.startsWith('..') || files.has(name)) throw bad(`bad or repeated path ${name}`);
    files.set(name, content);
  }
  const listed = new Set(slot.files.map((file) => file.path));
  for (const name of files.keys()) if (name !== 'psyopsOS-slot.json.minisig' && !listed.has(name)) throw bad(`${name} is not listed in psyopsOS-slot.json`);
  // Sizes only: the tar's signature already binds every byte, so hashing the files again (slow under
  // emulation) could only catch a broken build, which the signer would have signed all the same.
  for (const file of slot.files) {
    const content = files.get(file.path);
    if (content === undefined) throw bad(`${file.path} is listed but missing`);
    if (content.length !== file.size) throw bad(`${file.path} is ${content.length} bytes, psyopsOS-slot.json says ${file.size}`);
  }
  return { description: entries[0].content, files };
}

function writeDurably(path: string, data: Buffer): void {
  mkdirSync(dirname(path), { recursive: true });
  const fd = openSync(path, 'wx', 0o644);
  try {
    let at = 0;
    while (at < data.length) at += writeSync(fd, data, at, data.length - at);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Replaces the slot's content: the description removed first and written last, so a half-written slot never looks complete. */
function writeSlot(dir: string, description: Buffer, files: Map<string, Buffer>): void {
  rmSync(join(dir, 'psyopsOS-slot.json'), { force: true });
  for (const name of readdirSync(dir)) if (name !== 'lost+found') rmSync(join(dir, name), { recursive: true, force: true });
  for (const [name, content] of [...files].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) writeDurably(join(dir, name), content);
  writeDurably(join(dir, 'psyopsOS-slot.json'), description);
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export async function runUpdate(system: NodeSystem, options: UpdateOptions = {}): Promise<UpdateReport> {
  const started = system.now();
  const booted = await bootedSlot(system);
  if (booted === null) throw new UpdateError('booted from an ISO: use psyopsOS-write-bootmedia', 'NOT_A_DISK_BOOT');
  const slot: SlotLetter = booted === 'A' ? 'B' : 'A';
  const running = await bootedRelease(system);
  if (!running) throw new UpdateError('no /media/boot/.psyopsOS-release: the booted release is unknown', 'NO_RELEASE');
  const arch = running.arch ?? ARCHES[process.arch] ?? process.arch;
  const volume = await mountedSecretVolume(system);
  const site = await siteUrlOf(system, volume);
  const key = volume.minisignPublicKey;

  let version: string;
  let pointerSize: number | undefined;
  if (options.version !== undefined) {
    if (!RELEASE.test(options.version)) throw new UsageError(`--version ${options.version} is not a release tag`);
    version = options.version;
  } else {
    const path = `os/update-${arch}.json`;
    const document = {
      json: await fetchOk(system, `${site}/${path}`, DOC_LIMITS),
      signature: (await fetchOk(system, `${site}/${path}.minisig`, DOC_LIMITS)).toString('utf8'),
    };
    let value: Record<string, unknown>;
    try {
      value = verifySigned(document, path, key, system.now()).value as Record<string, unknown>;
    } catch (error) {
      throw new UpdateError((error as Error).message, 'BAD_SIGNATURE');
    }
    const v = value.version;
    if (
      value.format !== 'psyops-os-update/1' ||
      typeof v !== 'string' ||
      !RELEASE.test(v) ||
      value.arch !== arch ||
      value.filename !== `psyopsOS-${v}-${arch}.tar`
    )
      throw new UpdateError(`${path} does not name a ${arch} update`, 'BAD_POINTER');
    if (typeof value.size !== 'number') throw new UpdateError(`${path} has no size`, 'BAD_POINTER');
    version = v;
    pointerSize = value.size;
  }
  const filename = `psyopsOS-${version}-${arch}.tar`;
  const sigText = (await fetchOk(system, `${site}/os/${filename}.minisig`, DOC_LIMITS)).toString('utf8');
  const comment = verifyTrustedComment(sigText, key, `os/${filename}.minisig`);
  const fields = new Map(comment.split(' ').map((pair) => [pair.split('=')[0]!, pair.slice(pair.indexOf('=') + 1)] as [string, string]));
  for (const [name, expected] of [
    ['type', 'psyopsOS'],
    ['arch', arch],
    ['filename', filename],
    ['version', version],
  ] as const)
    if (fields.get(name) !== expected)
      throw new UpdateError(`os/${filename}.minisig: ${name}=${fields.get(name) ?? ''}, expected ${expected}`, 'BAD_TRUSTED_COMMENT');

  const order = compareReleases(version, running.release);
  const report = (action: UpdateReport['action'], bytes = 0): UpdateReport => ({
    action,
    from: running.release,
    to: version,
    slot,
    bytes,
    ms: system.now() - started,
  });
  if (options.check) return report(order > 0 || (order < 0 && options.allowDowngrade) ? 'available' : 'up-to-date');
  if (order === 0) throw new UpdateError(`already running ${version}`, 'ALREADY_RUNNING');
  if (order < 0 && !options.allowDowngrade)
    throw new UpdateError(`${version} is older than the running ${running.release} (--allow-downgrade)`, 'DOWNGRADE_REFUSED');

  // Whole tar in RAM, verified before anything is written: a tampered tar leaves both slots as they were.
  const tar = await fetchOk(system, `${site}/os/${filename}`, {
    deadlineMs: options.downloadDeadlineMs ?? 30 * 60_000,
    maxBytes: pointerSize ?? MAX_TAR_BYTES,
  });
  try {
    verifyBytes(tar, key, sigText, { source: `os/${filename}.minisig` });
  } catch (error) {
    throw new UpdateError(`os/${filename}: ${(error as Error).message}`, 'BAD_SIGNATURE');
  }
  // The size is enough here: the signature just verified binds the bytes.
  if (pointerSize !== undefined && tar.length !== pointerSize)
    throw new UpdateError(`os/${filename} is ${tar.length} bytes, the update pointer says ${pointerSize}`, 'BAD_POINTER');
  const { description, files } = slotFiles(tar, version, arch);
  const mounter = options.mounter ?? commandMounter(system);
  await withVolume(mounter, `psyopsOS-${slot}`, 'ext4', 'rw', async (dir) => writeSlot(dir, description, files));
  await updateGrubEnv(mounter, { psyops_try: slot });
  return report('updated', tar.length);
}

const USAGE = 'usage: psyops-node update [--check] [--version V] [--allow-downgrade] [--reboot] [--json]';

export interface UpdateIo {
  system: NodeSystem;
  out: (text: string) => void;
  err: (text: string) => void;
  mounter?: VolumeMounter;
}

/** The command with its io: exit 0 done, 1 refused or failed (one line on stderr), 2 usage. */
export async function updateCommandWith(args: string[], io: UpdateIo): Promise<number> {
  try {
    const options: UpdateOptions = io.mounter ? { mounter: io.mounter } : {};
    let json = false;
    let reboot = false;
    for (let i = 0; i < args.length; i++) {
      const arg = args[i]!;
      if (arg === '--check') options.check = true;
      else if (arg === '--allow-downgrade') options.allowDowngrade = true;
      else if (arg === '--json') json = true;
      else if (arg === '--reboot') reboot = true;
      else if (arg === '--version' && args[i + 1] !== undefined) options.version = args[++i]!;
      else throw new UsageError(`unknown argument ${arg}; ${USAGE}`);
    }
    const report = await runUpdate(io.system, options);
    if (json) io.out(`${JSON.stringify(report)}\n`);
    else if (report.action === 'updated')
      io.out(
        `psyopsOS ${report.to} written to slot ${report.slot} (${report.bytes} bytes in ${(report.ms / 1000).toFixed(1)} s); the next boot tries it (was ${report.from})\n`,
      );
    else
      io.out(
        report.action === 'available'
          ? `${report.to} is available (running ${report.from}); it would go to slot ${report.slot}\n`
          : `up to date: running ${report.from} (site: ${report.to})\n`,
      );
    if (reboot && report.action === 'updated') await io.system.run('reboot', [], 60_000);
    return 0;
  } catch (error) {
    const code = error instanceof PsyopsError ? error.code : 'FAILED';
    io.err(`psyops-node: ${(error instanceof Error ? error.message : String(error)).split('\n')[0]} (${code})\n`);
    return error instanceof UsageError ? 2 : 1;
  }
}

/** `psyops-node update …` on the node itself. */
export function updateCommand(args: string[]): Promise<number> {
  return updateCommandWith(args, { system: new LinuxSystem(), out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) });
}
