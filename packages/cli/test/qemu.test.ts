import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBootFixture, buildBootFixtureIso } from '../../imagebuild/test/qemu-fixture.ts';
import { errorLine, psyops, tempDir } from './helpers.ts';

describe('psyops qemu boot', () => {
  let dir: string;
  let iso: string;
  let hangingIso: string;
  let secretImage: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'psyops-qemu-iso-'));
    const fixture = await buildBootFixture(dir);
    iso = await buildBootFixtureIso(join(dir, 'poweroff'), fixture, 'fixture.usb', 'fixture.net');
    mkdirSync(join(dir, 'secret'));
    secretImage = join(dir, 'secret.img');
    execFileSync('mkfs.ext4', ['-q', '-L', 'psyops-secret', '-d', join(dir, 'secret'), secretImage, '8M']);
    hangingIso = await buildBootFixtureIso(join(dir, 'hang'), fixture, 'fixture.hang');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('streams the serial console to stdout and exits 0 when the guest powers off', async () => {
    const serialLog = join(tempDir('qemu-boot'), 'serial.log');
    let requests = 0;
    const server = createServer((_request, response) => response.end(`answer-${++requests}`));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      // psyops() gives the command 60 s: the guest gets 50 of them, so a slow boot fails as a timeout.
      const result = await psyops([
        'qemu',
        'boot',
        iso,
        '--timeout',
        '50',
        '--serial-log',
        serialLog,
        '--memory',
        '512',
        '--secret',
        secretImage,
        '--forward',
        `10.0.2.100:80=${port}`,
      ]);
      expect(result.stderr).toBe('');
      expect(result.exitCode).toBe(0);
      expect(result.stdout).toContain('fixture: guest up');
      expect(result.stdout).toMatch(/fixture: sda at \S*usb/);
      expect(result.stdout).toContain('fixture: fetch 2 [answer-2]');
      expect(result.stdout).toContain('fixture: powering off');
      expect(readFileSync(serialLog, 'utf8')).toBe(result.stdout);
    } finally {
      server.close();
    }
  });

  it('stops a guest that does not power off: one line on stderr, exit 124', async () => {
    const result = await psyops(['qemu', 'boot', hangingIso, '--timeout', '3']);
    expect(result.exitCode).toBe(124);
    expect(errorLine(result)).toEqual({ code: 'QEMU_TIMEOUT', message: 'the guest did not power off within 3 s; QEMU was stopped' });
  });

  it('refuses a missing ISO and malformed options in one line', async () => {
    const missingIso = join(tempDir('qemu-bad'), 'missing.iso');
    const missing = await psyops(['qemu', 'boot', missingIso]);
    expect(missing.exitCode).toBe(1);
    expect(errorLine(missing)).toEqual({ code: 'FILE_NOT_FOUND', message: `ISO image not found: ${missingIso}` });
    const forward = await psyops(['qemu', 'boot', iso, '--forward', '10.0.2.100=8080']);
    expect(errorLine(forward).code).toBe('USAGE');
    const accel = await psyops(['qemu', 'boot', iso, '--accel', 'hvf']);
    expect(accel.exitCode).toBe(2);
    expect(errorLine(accel).code).toBe('USAGE');
  });

  it('--help explains the TCG default and why KVM is opt-in', async () => {
    const result = await psyops(['qemu', 'boot', '--help']);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain('Usage: psyops qemu boot [options] <ISO>');
    expect(result.stdout).toMatch(/TCG \(software emulation\) unless --accel kvm/);
    expect(result.stdout).toMatch(/KVM is never picked automatically because \/dev\/kvm can\s+exist/);
    for (const option of ['--secret', '--uefi', '--timeout', '--serial-log', '--accel', '--memory', '--forward']) {
      expect(result.stdout).toContain(option);
    }
  });
});
