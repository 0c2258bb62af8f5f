/**
 * The nodeboot program on the node (bundled into one file, /usr/lib/psyops/nodeboot.mjs):
 *   node nodeboot.mjs postboot [--print-status]   individuate this node (once per boot, from the boot hook);
 *                                 --print-status also prints status.json as one console line
 *   node nodeboot.mjs status     print /etc/psyopsOS/status.json
 *   node nodeboot.mjs check-secret DIR   validate a secret volume's files (prints no secret)
 *   node nodeboot.mjs apply [--json]     fetch, verify and apply the node's config now, without a reboot
 *   node nodeboot.mjs upgrade [--json]   upgrade installed packages from the site's signed APK repository
 *   node nodeboot.mjs write-bootmedia ISO [DEVICE] [--signature FILE] [--json]   verify an ISO, write it over the boot media, read it back
 *   node nodeboot.mjs update [--check] [--version V] [--allow-downgrade] [--reboot] [--json]   write a signed release into the other disk slot, try it once at the next boot
 */
import { basename } from 'node:path';
import { runPostboot } from './postboot.js';
import { readSecretVolume } from './secret-volume.js';
import { readNodeStatus } from './status.js';
import { LinuxSystem } from './system.js';
import { opsCommands } from './ops/commands.js';
import { updateCommand } from './slot-update/update.js';

const USAGE =
  'usage: nodeboot.mjs postboot [--print-status] | status | check-secret DIR | apply [--json] | upgrade [--json] | write-bootmedia ISO [DEVICE] [--signature FILE] [--json] | update [--check] [--version V] [--allow-downgrade] [--reboot] [--json]';

async function main(args: string[]): Promise<number> {
  const operation = Object.hasOwn(opsCommands, args[0] ?? '') ? opsCommands[args[0]!] : undefined;
  if (operation) return operation(args.slice(1));
  if (args[0] === 'update') return updateCommand(args.slice(1));
  switch (args[0]) {
    case 'postboot':
      try {
        // performance.now() counts from the process start: node's own start-up and loading this bundle.
        const startupMs = Math.round(performance.now());
        return (await runPostboot(new LinuxSystem(), { printStatus: args.includes('--print-status'), startupMs })).exitCode;
      } catch (error) {
        // Only a broken root gets here (every step catches its own failures); the boot hook still gets its last line.
        process.stderr.write(`nodeboot: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}\n`);
        process.stdout.write('psyopsOS: postboot finished status=failed hostname=unknown config=none secret=missing\n');
        return 1;
      }
    case 'status':
      process.stdout.write(`${JSON.stringify(await readNodeStatus('/'), null, 2)}\n`);
      return 0;
    case 'check-secret': {
      if (args[1] === undefined) break;
      const volume = await readSecretVolume(args[1]);
      const files = Object.values(volume.paths)
        .map((path) => basename(path))
        .sort()
        .join(' ');
      process.stdout.write(`${volume.nodename}: valid secret volume (${files}${volume.testonlyToor ? '; TESTONLY toor user' : ''})\n`);
      return 0;
    }
  }
  process.stderr.write(`${USAGE}\n`);
  return 64;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`nodeboot: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}\n`);
    process.exitCode = 1;
  },
);
