import { Command, Option } from 'commander';
import { PsyopsError } from '@psyops/core';
import { UsageError } from '../errors.js';

/** The exit code of coreutils `timeout`, for a guest that did not power off in time. */
export const EXIT_TIMEOUT = 124;

/** The guest was still running when --timeout ran out. */
export class QemuTimeoutError extends PsyopsError {
  override readonly code = 'QEMU_TIMEOUT';
  readonly exitCode = EXIT_TIMEOUT;
}

interface BootCommandOptions {
  secret?: string;
  uefi?: boolean;
  timeout: string;
  serialLog?: string;
  accel: 'tcg' | 'kvm';
  memory: string;
  forward: string[];
}

interface Forward {
  guestAddress: string;
  guestPort: number;
  hostPort: number;
}

function wholeNumber(value: string, option: string, min: number, max: number): number {
  const number = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!(number >= min && number <= max)) throw new UsageError(`${option} must be a whole number from ${min} to ${max}, got "${value}"`);
  return number;
}

function parseForward(value: string): Forward {
  const match = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d+)=(\d+)$/.exec(value);
  if (!match) throw new UsageError(`--forward must look like GUESTADDR:PORT=HOSTPORT (e.g. 10.0.2.100:80=8080), got "${value}"`);
  return {
    guestAddress: match[1]!,
    guestPort: wholeNumber(match[2]!, '--forward guest port', 1, 65535),
    hostPort: wholeNumber(match[3]!, '--forward host port', 1, 65535),
  };
}

function bootCommand(): Command {
  return new Command('boot')
    .summary('boot an ISO in QEMU with its serial console on stdout')
    .description(
      [
        "Boot ISO in QEMU without a window: the guest's serial console (ttyS0) is streamed to stdout. " +
          'Exits 0 when the guest powers off (or reboots: QEMU runs with -no-reboot). When --timeout runs out, ' +
          `QEMU is stopped, one line goes to stderr and the exit code is ${EXIT_TIMEOUT}.`,
        'Acceleration is TCG (software emulation) unless --accel kvm is given: slower, but it works everywhere. ' +
          'KVM is never picked automatically because /dev/kvm can exist on machines where KVM does not work ' +
          '(nested or restricted virtualisation), and the boot would then fail.',
        'The guest has no network unless --forward is given. Then it gets QEMU user networking with restrict=on ' +
          '(no way out), where each forward relays connections to GUESTADDR:PORT (e.g. 10.0.2.100:80) to ' +
          '127.0.0.1:HOSTPORT on this machine, for example a `psyops site serve`.',
      ].join('\n\n'),
    )
    .argument('<ISO>', 'ISO image to boot from (CD-ROM)')
    .option('--secret <IMG>', 'raw disk image attached read-only as a USB stick (the psyops-secret volume)')
    .option('--uefi', 'boot with UEFI firmware (OVMF) instead of the BIOS')
    .option('--timeout <S>', 'stop the guest after this many seconds', '600')
    .option('--serial-log <FILE>', 'also write the serial console to FILE')
    .addOption(new Option('--accel <ACCEL>', 'tcg (software, the default) or kvm').choices(['tcg', 'kvm']).default('tcg'))
    .option('--memory <MIB>', 'guest memory in MiB', '1024')
    .addOption(
      new Option('--forward <GUESTADDR:PORT=HOSTPORT>', 'relay guest connections to GUESTADDR:PORT to 127.0.0.1:HOSTPORT (repeatable)')
        .argParser((value: string, previous: string[]) => [...previous, value])
        .default([], 'none'),
    )
    .action(async (iso: string, options: BootCommandOptions) => {
      const timeoutSeconds = wholeNumber(options.timeout, '--timeout', 1, 86_400);
      const memoryMiB = wholeNumber(options.memory, '--memory', 64, 1_048_576);
      const forwards = options.forward.map(parseForward);
      const { bootInQemu } = await import('@psyops/imagebuild');
      const controller = new AbortController();
      const interrupt = () => controller.abort();
      process.once('SIGINT', interrupt);
      process.once('SIGTERM', interrupt);
      try {
        const result = await bootInQemu({
          iso,
          secretImage: options.secret,
          uefi: options.uefi ?? false,
          accel: options.accel,
          memoryMiB,
          timeoutMs: timeoutSeconds * 1000,
          serialLog: options.serialLog,
          network: forwards.length > 0 ? { forwards } : undefined,
          onSerial: (text) => process.stdout.write(text),
          signal: controller.signal,
        });
        if (result.reason === 'timeout') {
          throw new QemuTimeoutError(`the guest did not power off within ${timeoutSeconds} s; QEMU was stopped`);
        }
      } finally {
        process.off('SIGINT', interrupt);
        process.off('SIGTERM', interrupt);
      }
    });
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
