/**
 * The nodeboot program on the node (bundled into one file, /usr/lib/psyops/nodeboot.mjs):
 *   node nodeboot.mjs postboot [--print-status]   individuate this node (once per boot, from the boot hook);
 *                                 --print-status also prints status.json as one console line
 *   node nodeboot.mjs status     print /etc/psyopsOS/status.json
 *   node nodeboot.mjs check-secret DIR   validate a secret volume's files (prints no secret)
 */
import { basename } from 'node:path';
import { runPostboot } from './postboot.js';
import { readSecretVolume } from './secret-volume.js';
import { readNodeStatus } from './status.js';
import { LinuxSystem } from './system.js';

const USAGE = 'usage: nodeboot.mjs postboot [--print-status] | status | check-secret DIR';

async function main(args: string[]): Promise<number> {
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
