import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { type AddressInfo, createServer as createTcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBootFixture, buildBootFixtureIso } from '../../imagebuild/test/qemu-fixture.ts';
import { exchange, freePort, publishScript, scriptedGuest } from '../../imagebuild/test/qemu-script-fixture.ts';
import { CLI, errorLine, psyops, tempDir } from './helpers.ts';

/** What each guest gets: a fixture boots in seconds on a quiet machine, many times that with both cores busy. */
const GUEST_SECONDS = '150';

describe('psyops qemu boot', () => {
  let dir: string;
  let iso: string;
  let hangingIso: string;
  let publishIso: string;
  let consoleIso: string;
  let plainIso: string;
  let secretImage: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'psyops-qemu-iso-'));
    const fixture = await buildBootFixture(dir);
    iso = await buildBootFixtureIso(join(dir, 'poweroff'), fixture, 'fixture.usb', 'fixture.net');
    mkdirSync(join(dir, 'secret'));
    secretImage = join(dir, 'secret.img');
    execFileSync('mkfs.ext4', ['-q', '-L', 'psyops-secret', '-d', join(dir, 'secret'), secretImage, '8M']);
    hangingIso = await buildBootFixtureIso(join(dir, 'hang'), fixture, 'fixture.hang');
    plainIso = await buildBootFixtureIso(join(dir, 'plain'), fixture);
    publishIso = await buildBootFixtureIso(join(dir, 'publish'), await scriptedGuest(dir, 'publish', publishScript(8080)));
    consoleIso = await buildBootFixtureIso(
      join(dir, 'console'),
      await scriptedGuest(dir, 'console', ['echo "console: ready"', 'read -r line', 'echo "console: got [$line]"', 'while :; do sleep 1; done']),
    );
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('streams the serial console to stdout and exits 0 when the guest powers off', async () => {
    const serialLog = join(tempDir('qemu-boot'), 'serial.log');
    let requests = 0;
    const server = createServer((_request, response) => response.end(`answer-${++requests}`));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      // psyops() gives the command 170 s: the guest gets 150 of them, so a slow boot fails as a timeout.
      const result = await psyops([
        'qemu',
        'boot',
        iso,
        '--timeout',
        GUEST_SECONDS,
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

  it('publishes a guest port with --publish, attaches --disk read-write, gives eth0 --mac; --json reports on stdout, the console on stderr', async () => {
    const hostPort = await freePort();
    const disk = join(tempDir('qemu-disk'), 'state.img');
    writeFileSync(disk, Buffer.alloc(1024 * 1024));
    const boot = execa(
      'node',
      [
        CLI,
        'qemu',
        'boot',
        publishIso,
        '--timeout',
        GUEST_SECONDS,
        '--memory',
        '512',
        '--publish',
        `${hostPort}:8080`,
        '--mac',
        '52:54:00:AB:CD:01',
        '--disk',
        disk,
        '--json',
      ],
      { reject: false, timeout: 170_000, stdin: 'ignore', env: { PSYOPS_WORKSPACE: undefined } },
    );
    let answer: Promise<string> | undefined;
    let serial = '';
    boot.stderr.on('data', (chunk: Buffer) => {
      serial += chunk.toString();
      if (!answer && serial.includes('guest: listening')) answer = exchange(hostPort, 'host-token', 30_000);
    });
    const result = await boot;
    expect(result.exitCode, String(result.stderr)).toBe(0);
    expect(await answer).toBe('guest-token\n');
    expect(result.stderr).toContain('guest: got [host-token]');
    expect(result.stderr).toContain('guest: eth0 52:54:00:ab:cd:01');
    expect(result.stderr).toContain('guest: vda ro=0');
    expect(result.stderr).toContain('guest: vda written');
    expect(readFileSync(disk).subarray(0, 14).toString()).toBe('guest-was-here');
    const report = JSON.parse(String(result.stdout));
    expect(report).toEqual({ reason: 'poweroff', exitCode: 0, durationMs: expect.any(Number) });
  });

  it('--until exits 0 as soon as the console shows it; --json says matched', async () => {
    const serialLog = join(tempDir('qemu-until'), 'serial.log');
    const result = await psyops([
      'qemu',
      'boot',
      hangingIso,
      '--timeout',
      GUEST_SECONDS,
      '--memory',
      '512',
      '--until',
      'fixture: hang+ing',
      '--json',
      '--serial-log',
      serialLog,
    ]);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toContain('fixture: hanging');
    expect(JSON.parse(result.stdout)).toEqual({ reason: 'matched', exitCode: 0, durationMs: expect.any(Number), serialLog });
    expect(readFileSync(serialLog, 'utf8')).toContain('fixture: hanging');
  });

  it('--until fails when the guest powers off first; --json still reports', async () => {
    const result = await psyops(['qemu', 'boot', plainIso, '--timeout', GUEST_SECONDS, '--memory', '512', '--until', 'never shown', '--json']);
    expect(result.exitCode).toBe(1);
    const lines = result.stderr.trimEnd().split('\n');
    expect(lines.at(-1)).toBe('psyops: the guest powered off before the console showed /never shown/ (QEMU_UNTIL_MISSED)');
    expect(JSON.parse(result.stdout)).toEqual({ reason: 'poweroff', exitCode: 1, durationMs: expect.any(Number) });
  });

  it('gives a terminal an interactive console: keys reach the guest, Ctrl-] stops it (exit 130)', async () => {
    // script(1) runs the command on a pseudo-terminal and copies its own stdin to it.
    const command = ['node', CLI, 'qemu', 'boot', consoleIso, '--timeout', GUEST_SECONDS, '--memory', '512'].map((word) => `'${word}'`).join(' ');
    const boot = execa('script', ['-q', '-e', '-c', command, '/dev/null'], { reject: false, timeout: 170_000, env: { PSYOPS_WORKSPACE: undefined } });
    let output = '';
    let typed = false;
    boot.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (!typed && output.includes('console: ready')) {
        typed = true;
        boot.stdin.write('hello guest\r');
      }
      if (output.includes('console: got [hello guest]')) boot.stdin.write('\x1d');
    });
    const result = await boot;
    expect(output).toContain('Ctrl-] stops the guest');
    expect(output).toContain('console: got [hello guest]');
    expect(output).toContain('psyops: the console was closed with Ctrl-]; QEMU was stopped (INTERRUPTED)');
    expect(result.exitCode).toBe(130);
  });

  it('refuses what it cannot use at once, in one line, exit 2, before QEMU starts', async () => {
    const bad = tempDir('qemu-bad');
    const missingIso = join(bad, 'missing.iso');
    const notIso = join(bad, 'not.iso');
    writeFileSync(notIso, Buffer.alloc(64 * 1024));
    const busy = createTcpServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const { port } = busy.address() as AddressInfo;
    const cases: [string[], string, string | RegExp][] = [
      [[missingIso], 'FILE_NOT_FOUND', `ISO image not found: ${missingIso}`],
      [[notIso], 'NOT_AN_ISO', `not an ISO 9660 image (no "CD001" at byte 32769): ${notIso}`],
      [[iso, '--disk', join(bad, 'missing.img')], 'FILE_NOT_FOUND', `disk image not found: ${join(bad, 'missing.img')}`],
      [[iso, '--forward', '10.0.2.100=8080'], 'USAGE', /^--forward must look like/],
      [[iso, '--mac', '52:54:00:12:34'], 'USAGE', '--mac must look like 52:54:00:12:34:56, got "52:54:00:12:34"'],
      [[iso, '--mac', '01:00:5e:00:00:01'], 'USAGE', /^--mac must be a unicast MAC/],
      [[iso, '--publish', '8080'], 'USAGE', /^--publish must look like HOSTPORT:GUESTPORT/],
      [[iso, '--publish', '70000:80'], 'USAGE', '--publish host port must be a whole number from 1 to 65535, got "70000"'],
      [[iso, '--publish', `${port}:80`], 'BAD_QEMU_OPTION', `qemu: host port 127.0.0.1:${port} is in use`],
      [[iso, '--link', 'no spaces'], 'USAGE', /^--link names a link with/],
      [[iso, '--link', 'a', '--link', 'a'], 'USAGE', '--link a is given twice'],
      [[iso, '--until', '('], 'USAGE', /^--until is not a valid regular expression/],
      [[iso, '--timeout', '0'], 'USAGE', '--timeout must be a whole number from 1 to 86400, got "0"'],
      [[iso, '--accel', 'hvf'], 'USAGE', /argument 'hvf' is invalid/],
    ];
    try {
      for (const [args, code, message] of cases) {
        const result = await psyops(['qemu', 'boot', ...args, '--json']);
        expect([args, result.exitCode, result.stdout]).toEqual([args, 2, '']);
        expect(errorLine(result)).toEqual({ code, message: typeof message === 'string' ? message : expect.stringMatching(message) });
      }
    } finally {
      busy.close();
    }
  });

  it('--help explains the TCG default, why KVM is opt-in, and every option', async () => {
    const result = await psyops(['qemu', 'boot', '--help']);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain('Usage: psyops qemu boot [options] <ISO>');
    expect(result.stdout).toMatch(/TCG \(software emulation\) unless --accel kvm/);
    expect(result.stdout).toMatch(/KVM is never picked automatically because \/dev\/kvm can\s+exist/);
    expect(result.stdout).toMatch(/Ctrl-\]\s+stops the guest/);
    for (const option of [
      '--secret',
      '--disk',
      '--uefi',
      '--timeout',
      '--until',
      '--serial-log',
      '--accel',
      '--memory',
      '--mac',
      '--forward',
      '--publish',
      '--link',
      '--json',
    ]) {
      expect(result.stdout).toContain(option);
    }
  });
});
