import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateKeyPair } from '@psyops/signing';
import { describe, expect, it } from 'vitest';
import { buildSite } from '../src/index.ts';
import { nodeConfigSchema, nodeDefinitionSchema } from '../src/schemas.ts';
import { tempDir } from './fixtures.ts';

const definition = (config: object) => ({ config: { version: 1, ...config } });
const parse = (config: object) => nodeDefinitionSchema.safeParse(definition(config));
const firstIssue = (config: object) => {
  const result = parse(config);
  return result.success ? 'accepted' : `${result.error.issues[0]!.path.join('.')}: ${result.error.issues[0]!.message}`;
};

describe('node config rules: modes, special bits, names', () => {
  it('a secret file defaults to 0600, a plain one to 0644; a given mode is kept', () => {
    const result = parse({
      files: [
        { path: '/etc/a', content: { secret: 's' } },
        { path: '/etc/b', content: 'plain' },
        { path: '/etc/c', mode: '0640', content: { secret: 's' } },
      ],
    });
    expect(result.success && result.data.config.files.map((f) => f.mode)).toEqual(['0600', '0644', '0640']);
  });

  it('a mode above 0777 (setuid, setgid, sticky) is refused unless the file allows special bits', () => {
    for (const mode of ['4755', '04755', '2755', '1777'])
      expect(firstIssue({ files: [{ path: '/usr/bin/x', mode, content: 'x' }] }), mode).toBe(
        'config.files.0.mode: a mode above 0777 (setuid, setgid, sticky) needs "allowSpecialBits": true',
      );
    expect(firstIssue({ files: [{ path: '/usr/bin/x', mode: '4755', allowSpecialBits: false, content: 'x' }] })).toMatch(/allowSpecialBits/);
    expect(firstIssue({ files: [{ path: '/usr/bin/x', mode: '4755', allowSpecialBits: true, content: 'x' }] })).toBe('accepted');
    expect(firstIssue({ files: [{ path: '/usr/bin/x', mode: '0777', content: 'x' }] })).toBe('accepted');
  });

  it('service and package names: a conservative charset, no /, no .., no leading - (packages may carry @tag)', () => {
    expect(firstIssue({ packages: ['curl', 'py3-pip', 'g++', 'linux-lts@edge', 'abc.def_1'], services: ['app', 'net.eth0', 'k3s'] })).toBe('accepted');
    for (const bad of ['../evil', '-rf', '--allow-untrusted', 'a/b', 'a..b', '.hidden', 'a b', 'x;y', '', 'a@', '@edge', 'a@b@c'])
      expect(firstIssue({ packages: [bad] }), bad).toMatch(/^config\.packages\.0: must be an APK package name/);
    for (const bad of ['../evil', '-x', 'a/b', 'a..b', '.x', 'a b', 'app@edge', ''])
      expect(firstIssue({ services: [bad] }), bad).toMatch(/^config\.services\.0: must be an OpenRC service name/);
    // The published document checks the names too (the node's validators are generated from it).
    const published = { format: 'psyops-node-config/1', name: 'n1', version: 1, hostname: 'n1', services: ['../x'] };
    expect(nodeConfigSchema.safeParse(published).success).toBe(false);
  });

  it('site build publishes a setuid file with allowSpecialBits, so the node accepts it, and gives a secret file without a mode 0600', async () => {
    const dir = tempDir('rules-published');
    const nodesDir = join(dir, 'nodes');
    mkdirSync(nodesDir);
    const files = [
      { path: '/usr/bin/x', mode: '4755', allowSpecialBits: true, content: 'x' },
      { path: '/etc/token', content: { secret: 'hunter2' } },
    ];
    // The real age-keygen: the node's recipient that secrets are encrypted to.
    const ageRecipient = /age1[0-9a-z]+/.exec(execFileSync('age-keygen', { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }))![0];
    writeFileSync(join(nodesDir, 'n1.json'), JSON.stringify({ ageRecipient, ...definition({ files }) }));
    await buildSite({ outDir: join(dir, 'site'), signingKey: generateKeyPair(), nodesDir, lighthouses: [], timestamp: 1_700_000_000 });
    const published = JSON.parse(readFileSync(join(dir, 'site', 'nodes', 'n1.json'), 'utf8'));
    expect(published.files.map(({ path, mode, allowSpecialBits }: Record<string, unknown>) => ({ path, mode, allowSpecialBits }))).toEqual([
      { path: '/usr/bin/x', mode: '4755', allowSpecialBits: true },
      { path: '/etc/token', mode: '0600', allowSpecialBits: undefined },
    ]);
  });

  it('site build refuses a definition with a setuid file or a bad name, naming the file and the field', async () => {
    const dir = tempDir('rules');
    const nodesDir = join(dir, 'nodes');
    mkdirSync(nodesDir);
    const signingKey = generateKeyPair();
    for (const [config, message] of [
      [{ files: [{ path: '/usr/bin/x', mode: '4755', content: 'x' }] }, /n1\.json: config\.files\.0\.mode: a mode above 0777 .*allowSpecialBits/],
      [{ services: ['../../bin/sh'] }, /n1\.json: config\.services\.0: must be an OpenRC service name/],
      [{ packages: ['--allow-untrusted'] }, /n1\.json: config\.packages\.0: must be an APK package name/],
    ] as const) {
      writeFileSync(join(nodesDir, 'n1.json'), JSON.stringify(definition(config)));
      await expect(buildSite({ outDir: join(dir, 'site'), signingKey, nodesDir, lighthouses: [], timestamp: 1_700_000_000 })).rejects.toThrow(message);
    }
  });
});
