/** The apkovl, read back with GNU tar and busybox tar (what /init extracts it with). */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApkovl, type ApkovlOptions } from '../src/apkovl.js';
import { ImageConfigError } from '../src/errors.js';

const MTIME = 1_764_028_800;

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'psyops-apkovl-test-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function options(out: string, extra: Partial<ApkovlOptions> = {}): ApkovlOptions {
  return {
    hostname: 'psyopsOS-bootstrap',
    world: ['alpine-base', 'openssh', 'psyopsOS-base>=1.2'],
    release: '251125',
    arch: 'x86_64',
    buildInfo: { date: '2025-11-25T00:00:00.000Z', gitRevision: 'abc123', gitDirty: true },
    postbootHook: '#!/bin/sh\necho "psyopsOS: postboot"\n',
    out,
    mtime: MTIME,
    ...extra,
  };
}

function tarList(archive: string): string[] {
  return execFileSync('tar', ['-tvzf', archive, '--numeric-owner', '--full-time'], { env: { ...process.env, TZ: 'UTC' } })
    .toString()
    .trim()
    .split('\n')
    .map((line) => line.replace(/ +/g, ' '));
}

function extractWithBusybox(archive: string, name: string): string {
  const target = join(dir, name);
  mkdirSync(target);
  execFileSync('busybox', ['tar', '-C', target, '-xzf', archive]);
  return target;
}

describe('buildApkovl', () => {
  it('holds what the original genapkovl wrote: etc/... names, directories, root owner, fixed time', async () => {
    const out = join(dir, 'plain.apkovl.tar.gz');
    await buildApkovl(options(out));
    const listing = tarList(out);
    expect(listing.every((line) => line.includes(' 0/0 ') && line.includes(' 2025-11-25 00:00:00 '))).toBe(true);
    const names = listing.map((line) => line.split(' ')[5] ?? '');
    expect(names).toEqual([...names].sort());
    expect(names.some((name) => name.startsWith('./') || name.startsWith('/'))).toBe(false);
    expect(listing).toEqual(
      expect.arrayContaining([
        'drwxr-xr-x 0/0 0 2025-11-25 00:00:00 etc/',
        '-rw-r--r-- 0/0 19 2025-11-25 00:00:00 etc/hostname',
        '-rwxr-xr-x 0/0 36 2025-11-25 00:00:00 etc/local.d/000-psyopsOS-postboot.start',
        'lrwxrwxrwx 0/0 0 2025-11-25 00:00:00 etc/runlevels/default/sshd -> /etc/init.d/sshd',
        'drwx------ 0/0 0 2025-11-25 00:00:00 mnt/psyops-secret/',
      ]),
    );
    const links = listing.filter((line) => line.startsWith('l')).map((line) => line.split(' ')[5]);
    expect(links).toEqual([
      ...['bootmisc', 'hostname', 'hwclock', 'modules', 'sysctl', 'syslog'].map((s) => `etc/runlevels/boot/${s}`),
      ...['local', 'sshd'].map((s) => `etc/runlevels/default/${s}`),
      ...['killprocs', 'mount-ro', 'savecache'].map((s) => `etc/runlevels/shutdown/${s}`),
      ...['devfs', 'dmesg', 'hwdrivers', 'mdev', 'modloop'].map((s) => `etc/runlevels/sysinit/${s}`),
    ]);

    const root = extractWithBusybox(out, 'plain');
    expect(readFileSync(join(root, 'etc/hostname'), 'utf8')).toBe('psyopsOS-bootstrap\n');
    expect(readFileSync(join(root, 'etc/apk/world'), 'utf8')).toBe('alpine-base\nopenssh\npsyopsOS-base>=1.2\n');
    expect(readFileSync(join(root, 'etc/ssh/sshd_config'), 'utf8')).toMatch(/^PermitRootLogin prohibit-password$/m);
    expect(readFileSync(join(root, 'etc/ssh/sshd_config'), 'utf8')).toMatch(/^PasswordAuthentication no$/m);
    // The host key postboot installs from the secret volume; no PAM (the image has none).
    expect(readFileSync(join(root, 'etc/ssh/sshd_config'), 'utf8')).toMatch(/^HostKey \/etc\/ssh\/ssh_host_ed25519_key$/m);
    expect(readFileSync(join(root, 'etc/ssh/sshd_config'), 'utf8')).toMatch(/^UsePAM no$/m);
    expect(readFileSync(join(root, 'etc/issue'), 'utf8')).toContain('psyopsOS 251125 x86_64');
    expect(readFileSync(join(root, 'etc/motd'), 'utf8')).toContain('251125');
    expect(JSON.parse(readFileSync(join(root, 'etc/psyopsOS/iso.json'), 'utf8'))).toEqual({
      generated: { iso8601: '2025-11-25T00:00:00.000Z', revision: 'abc123', dirty: true },
      release: '251125',
      arch: 'x86_64',
    });
    expect(readlinkSync(join(root, 'etc/runlevels/sysinit/modloop'))).toBe('/etc/init.d/modloop');
    expect(lstatSync(join(root, 'mnt/psyops-secret')).mode & 0o777).toBe(0o700);
    expect(lstatSync(join(root, 'etc/local.d/000-psyopsOS-postboot.start')).mode & 0o777).toBe(0o755);
    // gzip header: no name and no time stamp.
    const bytes = readFileSync(out);
    expect(bytes.readUInt32LE(4)).toBe(0);
    expect(bytes[3]! & 0x08).toBe(0);
  });

  it('is byte-identical when built twice', async () => {
    await buildApkovl(options(join(dir, 'a.tar.gz')));
    await buildApkovl(options(join(dir, 'b.tar.gz')));
    expect(readFileSync(join(dir, 'a.tar.gz'))).toEqual(readFileSync(join(dir, 'b.tar.gz')));
  });

  it('adds extra files, then the overlay with its modes; the overlay wins', async () => {
    const overlay = join(dir, 'overlay');
    mkdirSync(join(overlay, 'etc/apk/keys'), { recursive: true });
    mkdirSync(join(overlay, 'root/.ssh'), { recursive: true });
    chmodSync(join(overlay, 'root'), 0o700);
    writeFileSync(join(overlay, 'etc/hostname'), 'from-overlay\n');
    writeFileSync(join(overlay, 'root/.ssh/authorized_keys'), 'ssh-ed25519 AAAA test\n');
    chmodSync(join(overlay, 'root/.ssh/authorized_keys'), 0o600);
    writeFileSync(join(overlay, 'usr-local-tool'), '#!/bin/sh\n');
    chmodSync(join(overlay, 'usr-local-tool'), 0o750);
    symlinkSync('../hostname', join(overlay, 'etc/apk/hostname-link'));
    symlinkSync('/usr/share/zoneinfo/UTC', join(overlay, 'etc/localtime'));
    // A deep path needs the ustar prefix field.
    const deep = `etc/${'d'.repeat(60)}/${'e'.repeat(60)}`;
    mkdirSync(join(overlay, deep), { recursive: true });
    writeFileSync(join(overlay, deep, 'file'), 'deep\n');
    const out = join(dir, 'overlay.apkovl.tar.gz');
    await buildApkovl(
      options(out, {
        overlayDir: overlay,
        extraFiles: [
          { path: 'etc/apk/keys/build.rsa.pub', content: 'KEY\n', mode: 0o644 },
          { path: 'etc/hostname', content: 'from-extra\n', mode: 0o644 },
        ],
      }),
    );
    const root = extractWithBusybox(out, 'overlay-extracted');
    expect(readFileSync(join(root, 'etc/hostname'), 'utf8')).toBe('from-overlay\n');
    expect(readFileSync(join(root, 'etc/apk/keys/build.rsa.pub'), 'utf8')).toBe('KEY\n');
    expect(lstatSync(join(root, 'root')).mode & 0o777).toBe(0o700);
    expect(lstatSync(join(root, 'root/.ssh/authorized_keys')).mode & 0o777).toBe(0o600);
    expect(lstatSync(join(root, 'usr-local-tool')).mode & 0o777).toBe(0o750);
    expect(readlinkSync(join(root, 'etc/apk/hostname-link'))).toBe('../hostname');
    expect(readlinkSync(join(root, 'etc/localtime'))).toBe('/usr/share/zoneinfo/UTC');
    expect(readFileSync(join(root, deep, 'file'), 'utf8')).toBe('deep\n');
    expect(readFileSync(join(root, 'etc/apk/world'), 'utf8')).toContain('openssh'); // generated files stay
  });

  it('refuses symlinks leaving the root and special files, writing nothing', async () => {
    const escaping = join(dir, 'overlay-escaping');
    mkdirSync(join(escaping, 'etc'), { recursive: true });
    symlinkSync('../../outside', join(escaping, 'etc/link'));
    await expect(buildApkovl(options(join(dir, 'escaping.tar.gz'), { overlayDir: escaping }))).rejects.toThrow(/points outside the root/);

    const fifo = join(dir, 'overlay-fifo');
    mkdirSync(fifo);
    execFileSync('mkfifo', [join(fifo, 'pipe')]);
    await expect(buildApkovl(options(join(dir, 'fifo.tar.gz'), { overlayDir: fifo }))).rejects.toThrow(ImageConfigError);

    await expect(buildApkovl(options(join(dir, 'host.tar.gz'), { hostname: 'bad host' }))).rejects.toThrow(ImageConfigError);
    await expect(buildApkovl(options(join(dir, 'missing.tar.gz'), { overlayDir: join(dir, 'no-such-dir') }))).rejects.toThrow(/not a directory/);
    expect(readdirSync(dir).filter((name) => /^(escaping|fifo|host|missing)/.test(name) || name.endsWith('.tmp'))).toEqual([]);
  });

  it('once its signal has aborted writes nothing, not even the folder of its output', async () => {
    // As a stage built after Ctrl-C: its folder was removed, and recreating it would leave it behind.
    const folder = join(dir, 'aborted-stage');
    const reason = new Error('interrupted');
    await expect(buildApkovl(options(join(folder, 'x.apkovl.tar.gz'), { signal: AbortSignal.abort(reason) }))).rejects.toBe(reason);
    expect(existsSync(folder)).toBe(false);
  });
});
