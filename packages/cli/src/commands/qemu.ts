import { PassThrough } from 'node:stream';
import { Command, Option } from 'commander';
import { PsyopsError } from '@psyops/core';
import { EXIT_INTERRUPTED, InterruptedError } from '../errors.js';

/** The exit code of coreutils `timeout`, for a guest that did not power off in time. */
export const EXIT_TIMEOUT = 124;
const EXIT_USAGE = 2;
const EXIT_FAILURE = 1;
/** Ctrl-] (as in telnet and virsh console) ends an interactive console. */
const CONSOLE_ESCAPE = 0x1d;

/** The guest was still running when --timeout ran out. */
export class QemuTimeoutError extends PsyopsError {
  override readonly code = 'QEMU_TIMEOUT';
  readonly exitCode = EXIT_TIMEOUT;
}

/** With --until, the guest powered off before its console showed the expression. */
export class QemuUntilMissedError extends PsyopsError {
  override readonly code = 'QEMU_UNTIL_MISSED';
}

/** A command line `qemu boot` cannot use (exit 2): malformed, or naming a file or port that cannot be used. */
class QemuUsageError extends PsyopsError {
  override readonly code: string;
  readonly exitCode = EXIT_USAGE;

  constructor(message: string, code = 'USAGE', options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

interface BootCommandOptions {
  secret?: string;
  uefi?: boolean;
  timeout: string;
  serialLog?: string;
  accel: 'tcg' | 'kvm';
  memory: string;
  forward: string[];
  publish: string[];
  mac?: string;
  disk: string[];
  link: string[];
  until?: string;
  json?: boolean;
}

type Outcome = 'poweroff' | 'matched' | 'timeout' | 'interrupted' | 'failed';

function usage(message: string): never {
  throw new QemuUsageError(message);
}

function wholeNumber(value: string, option: string, min: number, max: number): number {
  const number = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!(number >= min && number <= max)) usage(`${option} must be a whole number from ${min} to ${max}, got "${value}"`);
  return number;
}

function parseForward(value: string): { guestAddress: string; guestPort: number; hostPort: number } {
  const match = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d+)=(\d+)$/.exec(value);
  if (!match) usage(`--forward must look like GUESTADDR:PORT=HOSTPORT (e.g. 10.0.2.100:80=8080), got "${value}"`);
  return {
    guestAddress: match[1]!,
    guestPort: wholeNumber(match[2]!, '--forward guest port', 1, 65535),
    hostPort: wholeNumber(match[3]!, '--forward host port', 1, 65535),
  };
}

function parsePublish(value: string): { hostPort: number; guestPort: number } {
  const match = /^(\d+):(\d+)$/.exec(value);
  if (!match) usage(`--publish must look like HOSTPORT:GUESTPORT (e.g. 6443:6443), got "${value}"`);
  return { hostPort: wholeNumber(match[1]!, '--publish host port', 1, 65535), guestPort: wholeNumber(match[2]!, '--publish guest port', 1, 65535) };
}

function parseMac(value: string): string {
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(value)) usage(`--mac must look like 52:54:00:12:34:56, got "${value}"`);
  if (Number.parseInt(value.slice(0, 2), 16) & 1) usage(`--mac must be a unicast MAC (its first byte even), got "${value}"`);
  return value.toLowerCase();
}

function parseLinks(values: string[]): { name: string }[] {
  for (const [index, name] of values.entries()) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) {
      usage(`--link names a link with 1 to 64 letters, digits, '.', '_' or '-' (starting with a letter or digit), got "${name}"`);
    }
    if (values.indexOf(name) !== index) usage(`--link ${name} is given twice`);
  }
  return values.map((name) => ({ name }));
}

function parseUntil(value: string): RegExp {
  try {
    return new RegExp(value);
  } catch (error) {
    usage(`--until is not a valid regular expression: ${(error as Error).message}`);
  }
}

// FileAccessError's codes (a file named on the command line), QemuOptionError's and NotAnIsoError's.
const PRE_START_CODES = new Set(['FILE_NOT_FOUND', 'NOT_A_FILE', 'FILE_UNREADABLE', 'BAD_QEMU_OPTION', 'NOT_AN_ISO']);

/** Errors bootInQemu raises before QEMU starts, about what the command line names: exit 2, their own code kept. */
function asUsageError(error: unknown): unknown {
  if (!(error instanceof PsyopsError)) return error;
  if (PRE_START_CODES.has(error.code)) {
    return new QemuUsageError(error.message, error.code, { cause: error });
  }
  return error;
}

const repeatable = (value: string, previous: string[]) => [...previous, value];

function bootCommand(): Command {
  return new Command('boot')
    .summary('boot an ISO in QEMU with its serial console on stdout')
    .description(
      [
        "Boot ISO in QEMU without a window: the guest's serial console (ttyS0) is streamed to stdout. " +
          'Exits 0 when the guest powers off (or reboots: QEMU runs with -no-reboot), or, with --until, as soon as ' +
          `the console shows the expression. When --timeout runs out, QEMU is stopped, one line goes to stderr and the exit code is ${EXIT_TIMEOUT}. ` +
          'A command line that cannot be used (a malformed option, a missing file, a file that is not an ISO 9660 image, ' +
          'a --publish port already in use) fails at once, before QEMU starts, with one line on stderr and exit code 2; ' +
          'any other failure exits 1.',
        'Acceleration is TCG (software emulation) unless --accel kvm is given: slower, but it works everywhere. ' +
          'KVM is never picked automatically because /dev/kvm can exist on machines where KVM does not work ' +
          '(nested or restricted virtualisation), and the boot would then fail.',
        'The guest has no network unless --mac, --forward, --publish or --link is given. --mac, --forward and --publish ' +
          'give it QEMU user networking with restrict=on on its first NIC (eth0): the guest gets 10.0.2.15 by DHCP and ' +
          'reaches nothing but the forwards. Each --link adds one more NIC, in the order given (eth1, eth2… after the ' +
          'user network, eth0, eth1… without one).',
        "When stdin is a terminal the console is interactive: what you type goes to the guest's serial port, Ctrl-C " +
          'included, and Ctrl-] stops the guest (exit 130). Otherwise stdin is not read.',
        'With --json the console goes to stderr instead, and at the end one JSON object is printed to stdout (not when the command line is refused with exit 2): ' +
          '{"reason":"poweroff|matched|timeout|interrupted|failed","exitCode":N,"durationMs":N,"serialLog":"FILE"}, ' +
          'exitCode being the exit code of this command and serialLog present with --serial-log.',
      ].join('\n\n'),
    )
    .argument('<ISO>', 'ISO image to boot from (CD-ROM); it must be an ISO 9660 image')
    .option('--secret <IMG>', 'Attach the raw disk image IMG read-only as a USB stick (the psyops-secret volume).')
    .addOption(
      new Option(
        '--disk <IMG>',
        'Attach the raw disk image IMG read-write as a virtio disk: the guest sees /dev/vda, /dev/vdb… in the order given and its writes land in IMG (repeatable; e.g. the psyops-state volume).',
      )
        .argParser(repeatable)
        .default([], 'none'),
    )
    .option('--uefi', 'Boot with UEFI firmware (OVMF) instead of the BIOS.')
    .option('--timeout <S>', 'Stop the guest after this many seconds and exit 124.', '600')
    .option(
      '--until <REGEX>',
      'Stop the guest and exit 0 as soon as the console output so far matches this JavaScript regular expression; powering off before it matches is a failure.',
    )
    .option('--serial-log <FILE>', 'Also write the serial console to FILE.')
    .addOption(new Option('--accel <ACCEL>', 'tcg (software emulation) or kvm').choices(['tcg', 'kvm']).default('tcg'))
    .option('--memory <MIB>', 'Guest memory in MiB.', '1024')
    .option('--mac <MAC>', "The MAC of the guest's user-network NIC (eth0; default 52:54:00:12:34:56). It also seeds the MACs of its --link NICs.")
    .addOption(
      new Option(
        '--forward <GUESTADDR:PORT=HOSTPORT>',
        'Guest to host: relay connections the guest makes to GUESTADDR:PORT (e.g. 10.0.2.100:80) to 127.0.0.1:HOSTPORT on this machine, for example a `psyops site serve` (repeatable).',
      )
        .argParser(repeatable)
        .default([], 'none'),
    )
    .addOption(
      new Option(
        '--publish <HOSTPORT:GUESTPORT>',
        "Host to guest: connections to 127.0.0.1:HOSTPORT on this machine reach the guest's TCP port GUESTPORT on 10.0.2.15 (repeatable). HOSTPORT must be free.",
      )
        .argParser(repeatable)
        .default([], 'none'),
    )
    .addOption(
      new Option(
        '--link <NAME>',
        'Add a NIC on the Ethernet link NAME, shared by every guest on this machine started with the same NAME (a multicast socket on 127.0.0.1; nothing leaves the host). Its MAC is derived from --mac and NAME, so guests with different --mac never collide; without --mac it is random (repeatable).',
      )
        .argParser(repeatable)
        .default([], 'none'),
    )
    .option('--json', 'Send the console to stderr and print one JSON object about the boot to stdout at the end.')
    .action(async (iso: string, options: BootCommandOptions) => {
      const timeoutSeconds = wholeNumber(options.timeout, '--timeout', 1, 86_400);
      const memoryMiB = wholeNumber(options.memory, '--memory', 64, 1_048_576);
      const forwards = options.forward.map(parseForward);
      const publish = options.publish.map(parsePublish);
      const mac = options.mac === undefined ? undefined : parseMac(options.mac);
      const links = parseLinks(options.link);
      const until = options.until === undefined ? undefined : parseUntil(options.until);
      const userNet = mac !== undefined || forwards.length > 0 || publish.length > 0;
      const serialOut = options.json ? process.stderr : process.stdout;
      const { bootInQemu } = await import('@psyops/imagebuild');

      const controller = new AbortController();
      const interrupt = () => controller.abort();
      process.once('SIGINT', interrupt);
      process.once('SIGTERM', interrupt);
      const terminal = process.stdin.isTTY ? attachTerminal(controller) : undefined;
      const started = performance.now();
      let outcome: Outcome | undefined;
      let exitCode = 0;
      try {
        const result = await bootInQemu({
          iso,
          secretImage: options.secret,
          drives: options.disk.map((file) => ({ file })),
          uefi: options.uefi ?? false,
          accel: options.accel,
          memoryMiB,
          timeoutMs: timeoutSeconds * 1000,
          until,
          serialLog: options.serialLog,
          network: userNet ? { forwards, publish, mac } : undefined,
          links,
          onSerial: (text) => {
            terminal?.greet();
            serialOut.write(text);
          },
          serialInput: terminal?.input,
          signal: controller.signal,
        }).catch((error: unknown) => {
          const failed = asUsageError(error);
          if (failed instanceof QemuUsageError) throw failed; // nothing ran: no JSON
          outcome = error instanceof PsyopsError && error.code === 'INTERRUPTED' ? 'interrupted' : 'failed';
          exitCode = outcome === 'interrupted' ? EXIT_INTERRUPTED : EXIT_FAILURE;
          if (terminal?.quit && error instanceof PsyopsError && error.code === 'INTERRUPTED') {
            throw new InterruptedError('the console was closed with Ctrl-]; QEMU was stopped', { cause: error });
          }
          throw failed;
        });
        outcome = result.reason;
        if (result.reason === 'timeout') {
          exitCode = EXIT_TIMEOUT;
          throw new QemuTimeoutError(
            until
              ? `the console did not show ${until} within ${timeoutSeconds} s; QEMU was stopped`
              : `the guest did not power off within ${timeoutSeconds} s; QEMU was stopped`,
          );
        }
        if (result.reason === 'poweroff' && until) {
          exitCode = EXIT_FAILURE;
          throw new QemuUntilMissedError(`the guest powered off before the console showed ${until}`);
        }
      } finally {
        terminal?.detach();
        process.off('SIGINT', interrupt);
        process.off('SIGTERM', interrupt);
        if (options.json && outcome) {
          const report = {
            reason: outcome,
            exitCode,
            durationMs: Math.round(performance.now() - started),
            ...(options.serialLog ? { serialLog: options.serialLog } : {}),
          };
          process.stdout.write(`${JSON.stringify(report)}\n`);
        }
      }
    });
}

/** Puts the terminal in raw mode and forwards keys to the guest until Ctrl-], which aborts the boot. */
function attachTerminal(controller: AbortController): { input: PassThrough; readonly quit: boolean; greet(): void; detach(): void } {
  const input = new PassThrough();
  let quit = false;
  const onData = (chunk: Buffer) => {
    const at = chunk.indexOf(CONSOLE_ESCAPE);
    if (at < 0) return void input.write(chunk);
    if (at > 0) input.write(chunk.subarray(0, at));
    quit = true;
    controller.abort();
  };
  process.stdin.setRawMode(true);
  process.stdin.on('data', onData);
  process.stdin.resume();
  let greeted = false;
  return {
    input,
    /** Says how to leave, once, when the guest's console starts (not before a usage error). */
    greet() {
      if (!greeted) process.stderr.write('[psyops qemu boot: interactive console; Ctrl-] stops the guest]\r\n');
      greeted = true;
    },
    get quit() {
      return quit;
    },
    detach() {
      process.stdin.off('data', onData);
      process.stdin.setRawMode(false);
      process.stdin.pause();
      input.end();
    },
  };
}

export function qemuCommand(): Command {
  return (
    new Command('qemu')
      .summary('run psyopsOS images in QEMU')
      .description('Run psyopsOS images in QEMU, headless, for testing: see `psyops qemu boot --help`.')
      .addCommand(bootCommand())
      // createProgram gives `qemu` the CLI's exit and error-output settings; its subcommand needs them too.
      .hook('preSubcommand', (qemu, subcommand) => {
        subcommand.exitOverride().configureOutput(qemu.configureOutput());
      })
  );
}
