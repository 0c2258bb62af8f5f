import { Command } from 'commander';

// Placeholder: replaced by the issue that builds this command.
export function buildIsoCommand(): Command {
  return new Command('build-iso').summary('(not yet available)');
}
