import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
// The built CLI's command tree: which options are required, to check their help says so.
import { createProgram } from '../dist/index.js';
import { CLI, errorLine, listing, psyops, tempDir } from './helpers.js';

const root = tempDir('cli-workspace');
const NO_PASSWORD = ['--no-password'];

describe('psyops init', () => {
  it('creates a workspace with documented defaults, a key pair and the folders', async () => {
    const ws = join(root, 'first');
    const result = await psyops(['init', ws, ...NO_PASSWORD]);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(listing(ws)).toEqual(['.gitignore', 'keys', 'nodes', 'overlay', 'psynet', 'psyops.config.json', 'psyops.config.schema.json']);
    const config = JSON.parse(readFileSync(join(ws, 'psyops.config.json'), 'utf8'));
    expect(config).toMatchObject({
      $schema: './psyops.config.schema.json',
      version: 1,
      signing: { publicKey: 'keys/minisign.pub', secretKey: 'keys/minisign.key' },
      psynet: { network: '10.10.8.0/22', pools: { lighthouse: '10.10.8.0/24', client: '10.10.9.0/24', node: '10.10.10.0/23' } },
    });
    expect(config.site.url).toMatch(/^https:\/\//);
    expect(config.repositories.length).toBeGreaterThan(0);
    const schema = JSON.parse(readFileSync(join(ws, 'psyops.config.schema.json'), 'utf8'));
    expect(schema.properties.psynet.properties.network.default).toBe('10.10.8.0/22');
    expect(statSync(join(ws, 'keys/minisign.key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(ws, 'keys')).mode & 0o777).toBe(0o700);
    expect(statSync(ws).mode & 0o777).toBe(0o755);
    // The key pair works with the real minisign.
    writeFileSync(join(ws, 'data'), 'x');
    expect((await psyops(['sign', '-m', 'data'], { cwd: ws })).exitCode).toBe(0);
    expect((await execa('minisign', ['-V', '-p', 'keys/minisign.pub', '-m', 'data'], { cwd: ws, reject: false, timeout: 60_000 })).exitCode).toBe(0);
  });

  it('ends with the next steps, from the directory it was run in', async () => {
    const result = await psyops(['init', 'next', ...NO_PASSWORD], { cwd: root });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toBe('');
    const steps = result.stdout.slice(result.stdout.indexOf('next steps:\n'));
    expect(steps.split('\n').map((line) => line.replace(/\s+#.*/, ''))).toEqual([
      'next steps:',
      '  cd next',
      '  psyops apk keygen --name EMAIL',
      '  psyops apk project psyopsOS-base',
      '  psyops apk project psyops-nodeboot --bundle FILE',
      '  psyops apk index apk',
      '  psyops build-iso',
      '  psyops psynet ca init --name NAME',
      '  psyops node create NAME --mac MAC --out NAME.img',
      '  psyops site build',
      '  git init && git add -A',
      '',
    ]);
    mkdirSync(join(root, 'next-here'));
    const here = await psyops(['init', ...NO_PASSWORD], { cwd: join(root, 'next-here') });
    expect(here.exitCode, here.stderr).toBe(0);
    expect(here.stdout).toContain('next steps:\n  psyops apk keygen --name EMAIL ');
  });

  it('on a terminal says it is deriving the key from the password; piped, it says nothing of it', async () => {
    const run = await execa('script', ['-q', '-e', '-c', `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} init tty-pw`, '/dev/null'], {
      cwd: root,
      env: { PSYOPS_MINISIGN_PASSWORD: 'pw', PSYOPS_WORKSPACE: undefined },
      reject: false,
      timeout: 60_000,
    });
    expect(run.exitCode, run.stdout).toBe(0);
    expect(run.stdout).toMatch(/^deriving the key from the password \(scrypt, a few seconds\)…\r\nworkspace created: /);
    const piped = await psyops(['init', join(root, 'piped-pw')], { env: { PSYOPS_MINISIGN_PASSWORD: 'pw' } });
    expect(piped.exitCode, piped.stderr).toBe(0);
    expect(piped.stderr).toBe('');
  });

  it('encrypts the key with a password from the sources; refuses without one', async () => {
    const ws = join(root, 'encrypted');
    const refused = await psyops(['init', ws]);
    expect(errorLine(refused).code).toBe('PASSWORD_REQUIRED');
    expect(existsSync(ws)).toBe(false);
    const made = await psyops(['init', ws], { env: { PSYOPS_MINISIGN_PASSWORD: 'pw' } });
    expect(made.exitCode, made.stderr).toBe(0);
    writeFileSync(join(ws, 'data'), 'x');
    const wrong = await psyops(['sign', '-m', 'data'], { cwd: ws, env: { PSYOPS_MINISIGN_PASSWORD: 'nope' } });
    expect(errorLine(wrong).code).toBe('WRONG_PASSWORD');
    const signed = await execa('minisign', ['-S', '-s', 'keys/minisign.key', '-m', 'data'], { cwd: ws, input: 'pw\n', reject: false, timeout: 60_000 });
    expect(signed.exitCode, signed.stderr).toBe(0);
    expect((await psyops(['verify', '-m', 'data'], { cwd: ws })).exitCode).toBe(0);
  });

  it('refuses to initialise over an existing workspace and changes nothing', async () => {
    const ws = join(root, 'twice');
    expect((await psyops(['init', ws, ...NO_PASSWORD])).exitCode).toBe(0);
    const key = readFileSync(join(ws, 'keys/minisign.key'));
    const again = await psyops(['init', ws, ...NO_PASSWORD]);
    expect(again.exitCode).toBe(1);
    expect(errorLine(again).code).toBe('WORKSPACE_EXISTS');
    expect(readFileSync(join(ws, 'keys/minisign.key'))).toEqual(key);
  });

  it('initialises the current directory by default, keeping what is there', async () => {
    const ws = join(root, 'here');
    mkdirSync(ws);
    writeFileSync(join(ws, 'notes.txt'), 'mine');
    expect((await psyops(['init', ...NO_PASSWORD], { cwd: ws })).exitCode).toBe(0);
    expect(readFileSync(join(ws, 'notes.txt'), 'utf8')).toBe('mine');
    expect(existsSync(join(ws, 'psyops.config.json'))).toBe(true);
  });
});

describe("the workspace's .gitignore", () => {
  const MAC = '52:54:00:12:34:56';
  async function ok(ws: string, args: string[]): Promise<string> {
    const result = await psyops(args, { cwd: ws });
    expect(result.exitCode, `psyops ${args.join(' ')}: ${result.stderr}`).toBe(0);
    return result.stdout;
  }
  const git = (ws: string, args: string[]) => execa('git', ['-c', 'init.defaultBranch=main', ...args], { cwd: ws, reject: false, timeout: 60_000 });

  it('lets the real git commit the workspace without a private key, plaintext secret, secret volume or build output', async () => {
    const ws = join(root, 'committed');
    await ok(root, ['init', ws, ...NO_PASSWORD]);
    const configFile = join(ws, 'psyops.config.json');
    const config = JSON.parse(readFileSync(configFile, 'utf8'));
    config.psynet.lighthouses = { lh1: ['203.0.113.10:4242'] };
    writeFileSync(configFile, JSON.stringify(config, null, 2));
    // Every command that writes a key or a secret into the workspace.
    await ok(ws, ['psynet', 'ca', 'init', '--name', 'git test']);
    await ok(ws, ['psynet', 'allocate', 'lh1', '--role', 'lighthouse']);
    await ok(ws, ['psynet', 'sign', 'lh1']);
    await ok(ws, ['psynet', 'config', 'lh1']);
    await ok(ws, ['apk', 'keygen', '--name', 'test@example.org', '--bits', '2048']);
    await ok(ws, ['node', 'create', 'node-a', '--mac', MAC, '--out', 'node-a.img']);
    mkdirSync(join(ws, 'volumes'));
    const created = await ok(ws, ['node', 'create', 'node-b', '--mac', MAC, '--dir', 'volumes/node-b']);
    expect(created).toContain('added to .gitignore: /volumes/node-b/\n');
    const nodeA = join(ws, 'nodes', 'node-a.json');
    const definition = JSON.parse(readFileSync(nodeA, 'utf8'));
    definition.config.files = [{ path: '/etc/app/token', content: { secret: 'file-secret-token' } }];
    writeFileSync(nodeA, JSON.stringify(definition, null, 2));
    await ok(ws, ['site', 'build']);
    mkdirSync(join(ws, 'out'));
    writeFileSync(join(ws, 'out', 'psyopsOS-test-x86_64.iso'), 'image');
    mkdirSync(join(ws, 'secrets'));
    writeFileSync(join(ws, 'secrets', 'k3s-token'), 'k3s-plaintext-token\n');
    writeFileSync(join(ws, 'minisign-password.secret'), 'hunter2\n');

    const apkKeys = readdirSync(join(ws, 'keys', 'apk')).sort();
    expect(apkKeys).toHaveLength(2);
    const [apkPrivate, apkPublic] = [apkKeys.find((n) => n.endsWith('.rsa'))!, apkKeys.find((n) => n.endsWith('.rsa.pub'))!];
    const secretFiles = [
      'keys/minisign.key',
      `keys/apk/${apkPrivate}`,
      'psynet/ca.key',
      'psynet/hosts/lh1.key',
      'psynet/hosts/lh1.yml',
      'node-a.img',
      'volumes/node-b/age.key',
      'volumes/node-b/ssh_host_ed25519_key',
      'volumes/node-b/psynet.host.key',
      'cache/site-secrets.json',
      'site/index.json',
      'out/psyopsOS-test-x86_64.iso',
      'secrets/k3s-token',
      'minisign-password.secret',
    ];
    for (const file of secretFiles) expect(existsSync(join(ws, file)), file).toBe(true);

    expect((await git(ws, ['init', '-q'])).exitCode).toBe(0);
    const added = await git(ws, ['add', '-A']);
    expect(added.exitCode, added.stderr).toBe(0);
    const staged = (await git(ws, ['diff', '--cached', '--name-only'])).stdout.split('\n').filter(Boolean).sort();
    expect(staged).toEqual(
      [
        '.gitignore',
        'keys/minisign.pub',
        `keys/apk/${apkPublic}`,
        'nodes/node-a.json',
        'nodes/node-b.json',
        'psynet/ca.crt',
        'psynet/hosts/lh1.crt',
        'psynet/hosts/node-a.crt',
        'psynet/hosts/node-b.crt',
        'psynet/registry.json',
        'psyops.config.json',
        'psyops.config.schema.json',
      ].sort(),
    );
    // No staged file holds any private key's text.
    const stagedText = staged.map((file) => readFileSync(join(ws, file), 'utf8')).join('\n');
    expect(stagedText).not.toMatch(/PRIVATE KEY-----|AGE-SECRET-KEY-|k3s-plaintext-token|hunter2/);
    for (const file of ['keys/minisign.key', `keys/apk/${apkPrivate}`, 'psynet/ca.key', 'psynet/hosts/lh1.key']) {
      const secret = readFileSync(join(ws, file), 'utf8').trim().split('\n').at(-1)!;
      expect(stagedText, file).not.toContain(secret);
    }
  });

  it('is completed by node create in a workspace made before it listed the keys, once', async () => {
    const ws = join(root, 'older');
    await ok(root, ['init', ws, ...NO_PASSWORD]);
    const older = '# Build output and caches: made again from what is committed.\n/site/\n/out/\n/cache/\n*.log';
    writeFileSync(join(ws, '.gitignore'), older);
    await ok(ws, ['psynet', 'ca', 'init', '--name', 'older']);
    expect((await git(ws, ['init', '-q'])).exitCode).toBe(0);
    expect((await git(ws, ['check-ignore', '-q', 'keys/minisign.key'])).exitCode).toBe(1);
    await ok(ws, ['node', 'create', 'n1', '--mac', MAC, '--dir', 'n1-secret']);
    await ok(ws, ['node', 'create', 'n2', '--mac', MAC, '--out', join(root, 'n2-outside.img')]);
    const text = readFileSync(join(ws, '.gitignore'), 'utf8');
    expect(text.startsWith(`${older}\n`)).toBe(true);
    expect(text.match(/^# psyops: /gm)).toHaveLength(1);
    expect(text.split('\n').filter((line) => line === '/n1-secret/')).toHaveLength(1);
    expect(text).not.toContain('n2-outside');
    for (const path of ['keys/minisign.key', 'psynet/ca.key', 'n1-secret/age.key'])
      expect((await git(ws, ['check-ignore', '-q', path])).exitCode, path).toBe(0);
    expect((await git(ws, ['check-ignore', '-q', 'nodes/n1.json'])).exitCode).toBe(1);
  });

  it('keeps what a .gitignore already in the directory says', async () => {
    const ws = join(root, 'hadignore');
    mkdirSync(ws);
    writeFileSync(join(ws, '.gitignore'), '*.log\n');
    await ok(root, ['init', ws, ...NO_PASSWORD]);
    const text = readFileSync(join(ws, '.gitignore'), 'utf8');
    expect(text.startsWith('*.log\n# psyops: ')).toBe(true);
    expect(text).toContain('\n/keys/minisign.key\n');
  });
});

describe('finding the workspace', () => {
  const ws = join(root, 'found');
  const elsewhere = join(root, 'elsewhere');

  it('walks up from a subdirectory, or takes --workspace or PSYOPS_WORKSPACE', async () => {
    expect((await psyops(['init', ws, ...NO_PASSWORD])).exitCode).toBe(0);
    mkdirSync(join(ws, 'nodes', 'deep', 'er'), { recursive: true });
    mkdirSync(elsewhere, { recursive: true });
    const fromSub = await psyops(['workspace', '--json'], { cwd: join(ws, 'nodes', 'deep', 'er') });
    expect(JSON.parse(fromSub.stdout).dir).toBe(ws);
    const byFlag = await psyops(['--workspace', ws, 'workspace', '--json'], { cwd: elsewhere });
    expect(JSON.parse(byFlag.stdout).dir).toBe(ws);
    const byFlagAfter = await psyops(['workspace', '--json', '--workspace', ws], { cwd: elsewhere });
    expect(JSON.parse(byFlagAfter.stdout).dir).toBe(ws);
    const byEnv = await psyops(['workspace', '--json'], { cwd: elsewhere, env: { PSYOPS_WORKSPACE: ws } });
    expect(JSON.parse(byEnv.stdout).dir).toBe(ws);
  });

  it('says clearly when there is none', async () => {
    const none = await psyops(['workspace'], { cwd: elsewhere });
    expect(none.exitCode).toBe(1);
    const error = errorLine(none);
    expect(error.code).toBe('NO_WORKSPACE');
    expect(error.message).toContain('psyops init');
    const wrongFlag = await psyops(['--workspace', elsewhere, 'workspace']);
    expect(errorLine(wrongFlag).message).toContain(`--workspace names ${elsewhere}`);
    writeFileSync(join(elsewhere, 'x'), 'x');
    const signNoKey = await psyops(['sign', '-m', 'x'], { cwd: elsewhere });
    expect(errorLine(signNoKey).code).toBe('NO_WORKSPACE');
    const wrongEnv = await psyops(['sign', '-m', 'x'], { cwd: elsewhere, env: { PSYOPS_WORKSPACE: join(root, 'missing') } });
    expect(errorLine(wrongEnv).message).toContain('PSYOPS_WORKSPACE names');
  });

  it('fills sections an older config lacks with defaults', async () => {
    const old = join(root, 'old');
    mkdirSync(old);
    writeFileSync(join(old, 'psyops.config.json'), JSON.stringify({ version: 1, site: { url: 'https://example.net' } }));
    const result = await psyops(['workspace', '--json'], { cwd: old });
    expect(result.exitCode, result.stderr).toBe(0);
    const { config } = JSON.parse(result.stdout);
    expect(config.site).toEqual({ url: 'https://example.net', outDir: 'site' });
    expect(config.psynet.pools.node).toBe('10.10.10.0/23');
    expect(config.signing.secretKey).toBe('keys/minisign.key');
  });

  it("trusts Alpine's shipped keys for the Alpine repositories of a new workspace, below one mirror; other repositories default to keys/apk", async () => {
    const ws = join(root, 'alpine');
    const init = await psyops(['init', ws, ...NO_PASSWORD]);
    expect(init.exitCode, init.stderr).toBe(0);
    expect(init.stdout).toContain(
      "\n  repositories  Alpine v3.22/main, v3.22/community from https://dl-cdn.alpinelinux.org/alpine, trusted with Alpine's release keys shipped with psyops; apk (keys: keys/apk)\n",
    );
    const written = JSON.parse(readFileSync(join(ws, 'psyops.config.json'), 'utf8'));
    expect(written.alpine).toEqual({ mirror: 'https://dl-cdn.alpinelinux.org/alpine' });
    expect(written.repositories).toEqual([
      { url: 'apk', keys: 'keys/apk' },
      { alpine: 'v3.22/main', keys: '@alpine' },
      { alpine: 'v3.22/community', keys: '@alpine' },
    ]);
    written.alpine.mirror = 'https://mirror.example.org/alpine/';
    written.repositories = [...written.repositories.slice(1), { url: 'apk' }, { url: 'https://example.org/extra', keys: 'keys/extra' }];
    written.repositories.push({ alpine: 'edge/testing', tag: 'testing' });
    writeFileSync(join(ws, 'psyops.config.json'), JSON.stringify(written));
    const shown = await psyops(['workspace', '--json'], { cwd: ws });
    expect(shown.exitCode, shown.stderr).toBe(0);
    expect(JSON.parse(shown.stdout).config.repositories).toEqual([
      { url: 'https://mirror.example.org/alpine/v3.22/main', alpine: 'v3.22/main', keys: '@alpine' },
      { url: 'https://mirror.example.org/alpine/v3.22/community', alpine: 'v3.22/community', keys: '@alpine' },
      { url: 'apk', keys: 'keys/apk' },
      { url: 'https://example.org/extra', keys: 'keys/extra' },
      { url: 'https://mirror.example.org/alpine/edge/testing', alpine: 'edge/testing', keys: '@alpine', tag: 'testing' },
    ]);
    const text = await psyops(['workspace'], { cwd: ws });
    expect(text.stdout).toContain('repositories: https://mirror.example.org/alpine/v3.22/main, https://mirror.example.org/alpine/v3.22/community, apk, ');

    const cases: [unknown, RegExp][] = [
      [{ repositories: [{ url: 'https://x.example', alpine: 'v3.22/main' }] }, /\/repositories\/0 must have exactly one of "url" and "alpine"$/],
      [{ repositories: [{ keys: '@alpine' }] }, /\/repositories\/0 must have exactly one of "url" and "alpine"$/],
      [{ repositories: [{ alpine: '/v3.22/main' }] }, /\/repositories\/0\/alpine must match pattern/],
      [{ alpine: { mirror: 'mirror.example.org' } }, /\/alpine\/mirror must match pattern/],
      [{ repositories: [{ alpine: 'edge/testing', tag: '@testing' }] }, /\/repositories\/0\/tag must match pattern/],
    ];
    for (const [content, message] of cases) {
      writeFileSync(join(ws, 'psyops.config.json'), JSON.stringify(content));
      const error = errorLine(await psyops(['workspace'], { cwd: ws }));
      expect(error.code).toBe('BAD_CONFIG');
      expect(error.message).toMatch(message);
    }
  });

  it('refuses a broken config with the file and the field', async () => {
    const bad = join(root, 'bad');
    mkdirSync(bad);
    const cases: [string, RegExp][] = [
      ['{ not json', /is not valid JSON/],
      [JSON.stringify({ psynet: { network: '10.10.8.0/33' } }), /\/psynet\/network must match pattern/],
      [JSON.stringify({ sites: {} }), /must NOT have additional properties "sites"/],
      [JSON.stringify({ version: 2 }), /\/version must be equal to constant/],
    ];
    for (const [content, message] of cases) {
      writeFileSync(join(bad, 'psyops.config.json'), content);
      const result = await psyops(['workspace'], { cwd: bad });
      const error = errorLine(result);
      expect(error.code).toBe('BAD_CONFIG');
      expect(error.message).toMatch(message);
    }
  });
});

describe('help and version', () => {
  it('prints the version and help for the program and every command', async () => {
    const version = await psyops(['--version']);
    expect(version.exitCode).toBe(0);
    expect(version.stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
    const help = await psyops(['--help']);
    expect(help.exitCode).toBe(0);
    for (const command of ['init', 'workspace', 'keygen', 'sign', 'verify']) {
      expect(help.stdout).toContain(command);
      const commandHelp = await psyops([command, '--help']);
      expect(commandHelp.exitCode, command).toBe(0);
      expect(commandHelp.stdout).toContain(`Usage: psyops ${command}`);
    }
  });

  it('an unknown command or option is one usage line and exit 2', async () => {
    for (const args of [['frobnicate'], ['verify', '--frobnicate', '-m', 'x'], ['psynet', 'allocate', 'n1']]) {
      const result = await psyops(args);
      expect(result.exitCode).toBe(2);
      expect(errorLine(result).code).toBe('USAGE');
    }
    const typo = await psyops(['sgin']);
    expect(errorLine(typo)).toEqual({ code: 'USAGE', message: "unknown command 'sgin' (Did you mean sign?)" });
  });
});

/**
 * The help rules every command's --help follows, checked on the help the built CLI prints (80 columns,
 * as when piped):
 * - Sentences: commander wraps text at the width itself, so a hard line break belongs only at the end of
 *   a sentence. A line of a description (or of an argument's or option's text) that is followed by
 *   another and does not end a sentence (. ! ? : ; possibly followed by a closing quote or bracket)
 *   must be one commander wrapped: the next line's first word would not have fitted on it. The last
 *   line of each paragraph of a command's description ends a sentence. Lines that start with blanks
 *   are entries of a list or table, and are exempt.
 * - Required options (requiredOption, which commander's help does not show) say "(required)".
 * - A default is stated once: "default" followed by a value ("default: x", "default x") appears at
 *   most once in an option's or argument's text; commander appends "(default: x)" for defaults it
 *   knows, so the text must not repeat them.
 */
const HELP_WIDTH = 80;
const SENTENCE_END = /[.!?:;]["'`)\]]*$/;
const SECTION = /^[A-Z][A-Za-z ]*:$/;

interface HelpItem {
  section: string;
  term: string;
  /** The column the item's text starts at. */
  column: number;
  lines: string[];
}

/** The description paragraphs and the items (arguments, options, subcommands) of a --help text. */
function parseHelp(text: string): { paragraphs: string[][]; items: HelpItem[] } {
  const lines = text.replace(/\n$/, '').split('\n');
  const paragraphs: string[][] = [];
  const items: HelpItem[] = [];
  let index = 1; // after "Usage: …"
  let paragraph: string[] = [];
  for (; index < lines.length && !SECTION.test(lines[index]!); index++) {
    const line = lines[index]!;
    if (line !== '') paragraph.push(line);
    else if (paragraph.length > 0) paragraphs.push(paragraph), (paragraph = []);
  }
  if (paragraph.length > 0) paragraphs.push(paragraph);
  let section: string | undefined;
  for (; index < lines.length; index++) {
    const line = lines[index]!;
    if (SECTION.test(line)) section = line;
    else if (line === '')
      section = undefined; // the end of a section; what follows (addHelpText) is not checked
    else if (section !== undefined && /^ {2}\S/.test(line)) {
      const match = /^ {2}(\S.*?)(\s{2,})(\S.*)$/.exec(line);
      items.push(
        match
          ? { section, term: match[1]!, column: 2 + match[1]!.length + match[2]!.length, lines: [match[3]!] }
          : { section, term: line.trim(), column: 0, lines: [] },
      );
    } else if (section !== undefined) items.at(-1)?.lines.push(line.trim());
  }
  return { paragraphs, items };
}

/** The lines of a text block that end mid-sentence where commander did not wrap. */
function brokenLines(lines: string[], column: number): string[] {
  return lines.filter((line, at) => {
    const next = lines[at + 1];
    if (next === undefined || /^\s/.test(line) || SENTENCE_END.test(line)) return false;
    return column + line.length + 1 + next.split(/\s/)[0]!.length <= HELP_WIDTH;
  });
}

/** Every rule a command's --help breaks, one line each. */
function helpProblems(help: string, command: Pick<Command, 'options'>): string[] {
  const problems: string[] = [];
  const { paragraphs, items } = parseHelp(help);
  for (const paragraph of paragraphs) {
    for (const line of brokenLines(paragraph, 0)) problems.push(`description line ends mid-sentence: "${line}"`);
    if (!SENTENCE_END.test(paragraph.at(-1)!)) problems.push(`description paragraph ends mid-sentence: "${paragraph.at(-1)}"`);
  }
  for (const item of items) {
    for (const line of brokenLines(item.lines, item.column)) problems.push(`${item.term}: line ends mid-sentence: "${line}"`);
    const text = item.lines.join(' ');
    if ((text.match(/\bdefault:?\s/gi) ?? []).length > 1) problems.push(`${item.term}: the default is stated twice: "${text}"`);
  }
  for (const option of command.options) {
    const item = items.find((candidate) => candidate.section === 'Options:' && candidate.term === option.flags);
    if (item === undefined) problems.push(`${option.flags}: missing from the help`);
    else if (option.mandatory && !item.lines.join(' ').includes('(required)'))
      problems.push(`${option.flags}: required, but its help does not say "(required)"`);
  }
  return problems;
}

function commandTree(command: Command, path: string[] = []): { path: string[]; command: Command }[] {
  return [{ path, command }, ...command.commands.flatMap((sub) => commandTree(sub, [...path, sub.name()]))];
}

describe('every --help reads as sentences, marks required options and states a default once', () => {
  it('the rules catch what they are meant to', () => {
    const help = [
      'Usage: psyops demo [options]',
      '',
      'A sentence broken in the',
      'middle. A sentence that ends here.',
      '',
      'Options:',
      '  --out <DIR>   where to write (required)',
      '  --size <N>    size (default 16) (default: "16")',
      '  --name <N>    a name',
      '',
    ].join('\n');
    const options = [
      { flags: '--out <DIR>', mandatory: true },
      { flags: '--size <N>', mandatory: false },
      { flags: '--name <N>', mandatory: true },
    ] as unknown as Command['options'];
    expect(helpProblems(help, { options })).toEqual([
      'description line ends mid-sentence: "A sentence broken in the"',
      '--size <N>: the default is stated twice: "size (default 16) (default: "16")"',
      '--name <N>: required, but its help does not say "(required)"',
    ]);
    // A line commander wrapped (the next word did not fit) is no break.
    const long = `${'word '.repeat(15)}endless`;
    expect(brokenLines([long, 'continues here.'], 0)).toEqual([]);
    expect(brokenLines([long, 'continues here.'], 10)).toEqual([]);
    expect(brokenLines(['short', 'continues here.'], 0)).toEqual(['short']);
  });

  for (const { path, command } of commandTree(createProgram())) {
    it(['psyops', ...path, '--help'].join(' '), async () => {
      const result = await psyops([...path, '--help']);
      expect(result.exitCode).toBe(0);
      expect(result.stdout).toMatch(new RegExp(`^Usage: ${['psyops', ...path].join(' ')}\\b`));
      expect(helpProblems(result.stdout, command)).toEqual([]);
    });
  }
});
