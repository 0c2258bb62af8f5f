import { Command } from 'commander';
import { currentWorkspace } from '../context.js';

export function workspaceCommand(): Command {
  return new Command('workspace')
    .summary('show which workspace is in use and its settings')
    .description(
      'Print the workspace this command would use (--workspace, $PSYOPS_WORKSPACE, or the nearest ' +
        'psyops.config.json from the current directory upwards) and its settings with defaults filled in.',
    )
    .option('--json', 'print one JSON document {dir, config}')
    .action(async (options: { json?: boolean }, cmd: Command) => {
      const workspace = await currentWorkspace(cmd);
      if (options.json) {
        process.stdout.write(`${JSON.stringify({ dir: workspace.dir, config: workspace.config }, null, 2)}\n`);
        return;
      }
      const { config } = workspace;
      process.stdout.write(
        `workspace: ${workspace.dir}\n` +
          `site: ${config.site.url} (built into ${config.site.outDir}/)\n` +
          `signing key: ${config.signing.secretKey} (public: ${config.signing.publicKey})\n` +
          `repositories: ${config.repositories.map((r) => r.url).join(', ') || '(none)'}\n` +
          `psynet: ${config.psynet.network} (lighthouse ${config.psynet.pools.lighthouse}, client ${config.psynet.pools.client}, node ${config.psynet.pools.node})\n`,
      );
    });
}
