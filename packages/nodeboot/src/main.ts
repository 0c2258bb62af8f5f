/**
 * The nodeboot program on the node (bundled into one file, /usr/lib/psyops/nodeboot.mjs):
 *   node nodeboot.mjs postboot   individuate this node (run once per boot by the boot hook)
 *   node nodeboot.mjs status     print /etc/psyopsOS/status.json
 */
import { runPostboot } from './postboot.js';
import { readNodeStatus } from './status.js';
import { LinuxSystem } from './system.js';

const USAGE = 'usage: nodeboot.mjs postboot | status';

async function main(args: string[]): Promise<number> {
  switch (args[0]) {
    case 'postboot':
      try {
        return (await runPostboot(new LinuxSystem())).exitCode;
      } catch (error) {
        // Only a broken root gets here (every step catches its own failures); the boot hook still gets its last line.
        process.stderr.write(`nodeboot: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}\n`);
        process.stdout.write('psyopsOS: postboot finished status=failed hostname=unknown config=none secret=missing\n');
        return 1;
      }
    case 'status':
      process.stdout.write(`${JSON.stringify(await readNodeStatus('/'), null, 2)}\n`);
      return 0;
    default:
      process.stderr.write(`${USAGE}\n`);
      return 64;
  }
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
