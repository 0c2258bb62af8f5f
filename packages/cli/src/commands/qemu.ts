import { Command } from 'commander';

// Placeholder: replaced by the issue that builds this command.
export function qemuCommand(): Command {
  return new Command('qemu').summary('(not yet available)');
}
