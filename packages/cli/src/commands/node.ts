import { Command } from 'commander';

// Placeholder: replaced by the issue that builds this command.
export function nodeCommand(): Command {
  return new Command('node').summary('(not yet available)');
}
