import { copyFileSync, readFileSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { errorLine, listing, psyops, tempDir } from './helpers.js';

const dir = tempDir('cli-signing');
const at = (name: string) => join(dir, name);
const minisign = (args: string[], input = '') => execa('minisign', args, { cwd: dir, input, reject: false, timeout: 60_000 });

beforeAll(async () => {
  writeFileSync(at('hello.txt'), 'hello psyops\n');
  writeFileSync(at('other.txt'), 'another file\n');
  const made = await psyops(['keygen', '-W', '-p', 'k.pub', '-s', 'k.key'], { cwd: dir });
  expect(made.exitCode, made.stderr).toBe(0);
  const theirs = await minisign(['-G', '-W', '-p', 'theirs.pub', '-s', 'theirs.key']);
  expect(theirs.exitCode, theirs.stderr).toBe(0);
});

describe('psyops keygen', () => {
  it('writes the secret key 0600 and the public key 0644, and says where', async () => {
    expect(statSync(at('k.key')).mode & 0o777).toBe(0o600);
    expect(statSync(at('k.pub')).mode & 0o777).toBe(0o644);
    expect(readFileSync(at('k.pub'), 'utf8')).toMatch(/^untrusted comment: minisign public key [0-9A-F]+\nRW[A-Za-z0-9+/]{54}\n$/);
  });

  it('refuses to overwrite existing keys without -f, and replaces both with -f', async () => {
    const before = readFileSync(at('k.key'));
    const refused = await psyops(['keygen', '-W', '-p', 'k.pub', '-s', 'k.key'], { cwd: dir });
    expect(refused.exitCode).toBe(1);
    expect(errorLine(refused).code).toBe('FILE_EXISTS');
    expect(readFileSync(at('k.key'))).toEqual(before);

    const forced = await psyops(['keygen', '-W', '-f', '-p', 'f.pub', '-s', 'f.key'], { cwd: dir });
    expect(forced.exitCode).toBe(0);
    const again = await psyops(['keygen', '-W', '-f', '-p', 'f.pub', '-s', 'f.key'], { cwd: dir });
    expect(again.exitCode).toBe(0);
  });

  it('encrypts with a password from the environment, a file or a command; minisign accepts each', async () => {
    writeFileSync(at('pw.txt'), 'from a file\nsecond line ignored\n');
    const cases = [
      { name: 'env', args: [], env: { PSYOPS_MINISIGN_PASSWORD: 'from env' }, password: 'from env' },
      { name: 'file', args: ['--password-file', 'pw.txt'], env: {}, password: 'from a file' },
      { name: 'cmd', args: ['--password-command', 'echo from-a-command'], env: {}, password: 'from-a-command' },
    ];
    for (const c of cases) {
      const made = await psyops(['keygen', '-p', `${c.name}.pub`, '-s', `${c.name}.key`, ...c.args], { cwd: dir, env: c.env });
      expect(made.exitCode, made.stderr).toBe(0);
      expect(made.stdout).toContain('(encrypted');
      expect(made.stdout + made.stderr).not.toContain(c.password);
      const signed = await minisign(['-S', '-s', `${c.name}.key`, '-m', 'hello.txt', '-x', `${c.name}.minisig`], `${c.password}\n`);
      expect(signed.exitCode, signed.stderr).toBe(0);
      const verified = await psyops(['verify', '-p', `${c.name}.pub`, '-m', 'hello.txt', '-x', `${c.name}.minisig`], { cwd: dir });
      expect(verified.exitCode).toBe(0);
    }
  });

  it('asks on the terminal, twice, without echoing', async () => {
    // `script` gives the CLI a real pseudo-terminal; the answers are typed into it.
    // The answers are typed a moment after the prompts appear, as a person would.
    const typing = "(sleep 2; printf 'typed secret\\r'; sleep 1; printf 'typed secret\\r'; sleep 1)";
    const cli = JSON.stringify(join(import.meta.dirname, '..', 'dist', 'cli.js'));
    const run = await execa('sh', ['-c', `${typing} | script -qec "node ${cli} keygen -p tty.pub -s tty.key" /dev/null`], {
      cwd: dir,
      env: { PSYOPS_MINISIGN_PASSWORD: undefined },
      reject: false,
      timeout: 60_000,
    });
    expect(run.exitCode, run.stdout).toBe(0);
    expect(run.stdout).toContain('Password for new secret key tty.key:');
    expect(run.stdout).not.toContain('typed secret');
    const signed = await minisign(['-S', '-s', 'tty.key', '-m', 'hello.txt', '-x', 'tty.minisig'], 'typed secret\n');
    expect(signed.exitCode, signed.stderr).toBe(0);
  });

  it('without any password source and no terminal, fails and writes nothing', async () => {
    const before = listing(dir);
    const result = await psyops(['keygen', '-p', 'none.pub', '-s', 'none.key'], { cwd: dir });
    expect(result.exitCode).toBe(1);
    expect(errorLine(result).code).toBe('PASSWORD_REQUIRED');
    expect(listing(dir)).toEqual(before);
  });

  it('a failing password command fails cleanly', async () => {
    const before = listing(dir);
    const result = await psyops(['keygen', '-p', 'x.pub', '-s', 'x.key', '--password-command', 'exit 3'], { cwd: dir });
    expect(errorLine(result)).toEqual({ code: 'PASSWORD_SOURCE_FAILED', message: '--password-command failed (exit code 3)' });
    expect(listing(dir)).toEqual(before);
  });
});

describe('psyops sign and verify', () => {
  it('round-trips, and the real minisign verifies what psyops signed', async () => {
    const signed = await psyops(['sign', '-s', 'k.key', '-m', 'hello.txt'], { cwd: dir });
    expect(signed.exitCode, signed.stderr).toBe(0);
    const ours = await psyops(['verify', '-p', 'k.pub', '-m', 'hello.txt'], { cwd: dir });
    expect(ours.exitCode).toBe(0);
    expect(ours.stdout).toMatch(/^Signature and comment signature verified\nTrusted comment: timestamp:\d+\tfile:hello\.txt\thashed\n$/);
    const theirs = await minisign(['-V', '-p', 'k.pub', '-m', 'hello.txt']);
    expect(theirs.exitCode, theirs.stderr).toBe(0);
  });

  it('--json: one JSON object on stdout for keygen, sign and verify; human text only on stderr', async () => {
    const sub = join(dir, 'json');
    mkdirSync(sub);
    copyFileSync(at('hello.txt'), join(sub, 'hello.txt'));
    copyFileSync(at('other.txt'), join(sub, 'other.txt'));
    const made = await psyops(['keygen', '-W', '-p', 'j.pub', '-s', 'j.key', '--json'], { cwd: sub });
    expect(made.exitCode, made.stderr).toBe(0);
    const key = JSON.parse(made.stdout);
    expect(key).toEqual({
      publicKey: 'j.pub',
      secretKey: 'j.key',
      // minisign prints key ids as hex without leading zeros (its "%" PRIX64), and so does psyops.
      keyId: expect.stringMatching(/^[1-9A-F][0-9A-F]{0,15}$/),
      publicKeyBase64: readFileSync(join(sub, 'j.pub'), 'utf8').split('\n')[1],
      encrypted: false,
    });
    expect(made.stderr).toContain(`public key: j.pub (key id ${key.keyId})\n`);

    const env = { SOURCE_DATE_EPOCH: '1700000000' };
    const signed = await psyops(['sign', '-s', 'j.key', '-m', 'hello.txt', 'other.txt', '--json'], { cwd: sub, env });
    expect(signed.exitCode, signed.stderr).toBe(0);
    expect(JSON.parse(signed.stdout)).toEqual({
      signatures: ['hello.txt', 'other.txt'].map((file) => ({
        file,
        signatureFile: `${file}.minisig`,
        keyId: key.keyId,
        algorithm: 'prehashed',
        trustedComment: `timestamp:1700000000\tfile:${file}\thashed`,
      })),
    });
    const legacy = await psyops(['sign', '-s', 'j.key', '-m', 'other.txt', '-x', 'other.legacy', '-l', '-t', 'old style', '--json'], { cwd: sub });
    expect(JSON.parse(legacy.stdout).signatures).toEqual([
      { file: 'other.txt', signatureFile: 'other.legacy', keyId: key.keyId, algorithm: 'legacy', trustedComment: 'old style' },
    ]);

    const verified = await psyops(['verify', '-p', 'j.pub', '-m', 'hello.txt', '--json'], { cwd: sub });
    expect([verified.exitCode, verified.stderr]).toEqual([0, '']);
    expect(JSON.parse(verified.stdout)).toEqual({
      file: 'hello.txt',
      signatureFile: 'hello.txt.minisig',
      keyId: key.keyId,
      algorithm: 'prehashed',
      trustedComment: 'timestamp:1700000000\tfile:hello.txt\thashed',
      untrustedComment: 'signature from minisign secret key',
    });
    const legacyVerified = await psyops(['verify', '-p', 'j.pub', '-m', 'other.txt', '-x', 'other.legacy', '--json'], { cwd: sub });
    expect(JSON.parse(legacyVerified.stdout)).toMatchObject({ signatureFile: 'other.legacy', algorithm: 'legacy', trustedComment: 'old style' });

    // A failure prints no JSON: the one error line and exit 1. --json with -q or -Q is a usage error.
    writeFileSync(join(sub, 'hello.txt'), 'changed\n');
    const bad = await psyops(['verify', '-p', 'j.pub', '-m', 'hello.txt', '--json'], { cwd: sub });
    expect([bad.exitCode, bad.stdout, errorLine(bad).code]).toEqual([1, '', 'BAD_SIGNATURE']);
    for (const flag of ['-q', '-Q']) {
      const usage = await psyops(['verify', '-p', 'j.pub', '-m', 'other.txt', '--json', flag], { cwd: sub });
      expect([usage.exitCode, usage.stdout, errorLine(usage).code], flag).toEqual([2, '', 'USAGE']);
    }

    // Without --json the output is what it always was.
    const plain = await psyops(['keygen', '-W', '-p', 'p.pub', '-s', 'p.key'], { cwd: sub });
    expect(plain.stdout).toMatch(/^secret key: p\.key \(not encrypted, keep it secret\)\npublic key: p\.pub \(key id [1-9A-F][0-9A-F]{0,15}\)\nverify with: /);
    expect(plain.stderr).toBe('');
    const quiet = await psyops(['sign', '-s', 'p.key', '-m', 'other.txt'], { cwd: sub });
    expect([quiet.exitCode, quiet.stdout, quiet.stderr]).toEqual([0, '', '']);
  });

  it('verifies what the real minisign signed, prehashed and legacy', async () => {
    for (const legacy of [false, true]) {
      const sig = `theirs-${legacy}.minisig`;
      const made = await minisign(['-S', ...(legacy ? ['-l'] : []), '-s', 'theirs.key', '-m', 'hello.txt', '-x', sig, '-t', `legacy ${legacy}`]);
      expect(made.exitCode, made.stderr).toBe(0);
      const result = await psyops(['verify', '-p', 'theirs.pub', '-m', 'hello.txt', '-x', sig, '-Q'], { cwd: dir });
      expect(result.exitCode, result.stderr).toBe(0);
      expect(result.stdout).toBe(`legacy ${legacy}\n`);
    }
    const refused = await psyops(['verify', '-H', '-p', 'theirs.pub', '-m', 'hello.txt', '-x', 'theirs-true.minisig'], { cwd: dir });
    expect(errorLine(refused).code).toBe('UNSUPPORTED_ALGORITHM');
  });

  it('signs several files at once, with comments, legacy on request; -q prints nothing', async () => {
    const signed = await psyops(['sign', '-s', 'k.key', '-m', 'hello.txt', 'other.txt', '-t', 'release 1', '-c', 'psyops test', '-l'], { cwd: dir });
    expect(signed.exitCode, signed.stderr).toBe(0);
    for (const file of ['hello.txt', 'other.txt']) {
      const sig = readFileSync(at(`${file}.minisig`), 'utf8').split('\n');
      expect(sig[0]).toBe('untrusted comment: psyops test');
      expect(sig[1]).toMatch(/^RW/); // legacy "Ed"
      expect(sig[2]).toBe('trusted comment: release 1');
      const quiet = await psyops(['verify', '-q', '-p', 'k.pub', '-m', file], { cwd: dir });
      expect([quiet.exitCode, quiet.stdout, quiet.stderr]).toEqual([0, '', '']);
      expect((await minisign(['-V', '-p', 'k.pub', '-m', file])).exitCode).toBe(0);
    }
  });

  it('honours SOURCE_DATE_EPOCH: the same file and key give the same bytes', async () => {
    const env = { SOURCE_DATE_EPOCH: '1700000000' };
    await psyops(['sign', '-s', 'k.key', '-m', 'hello.txt', '-x', 'a.minisig'], { cwd: dir, env });
    await psyops(['sign', '-s', 'k.key', '-m', 'hello.txt', '-x', 'b.minisig'], { cwd: dir, env });
    expect(readFileSync(at('a.minisig'), 'utf8')).toContain('trusted comment: timestamp:1700000000\tfile:hello.txt\thashed');
    expect(readFileSync(at('a.minisig'))).toEqual(readFileSync(at('b.minisig')));
  });

  it('a SOURCE_DATE_EPOCH that is not a number is refused before anything is written', async () => {
    const result = await psyops(['sign', '-s', 'k.key', '-m', 'hello.txt', '-x', 'epoch.minisig'], { cwd: dir, env: { SOURCE_DATE_EPOCH: 'yesterday' } });
    expect(result.exitCode).toBe(2);
    expect(errorLine(result)).toEqual({ code: 'USAGE', message: 'SOURCE_DATE_EPOCH must be a whole number of seconds, got "yesterday"' });
    expect(listing(dir)).not.toContain('epoch.minisig');
  });

  it('-x with several files is a usage error', async () => {
    const result = await psyops(['sign', '-s', 'k.key', '-m', 'hello.txt', 'other.txt', '-x', 'one.minisig'], { cwd: dir });
    expect(result.exitCode).toBe(2);
    expect(errorLine(result).code).toBe('USAGE');
  });
});

describe('bad input: one line, exit 1, nothing left behind', () => {
  const setUp = async (name: string) => {
    const sub = join(dir, name);
    mkdirSync(sub);
    copyFileSync(at('hello.txt'), join(sub, 'hello.txt'));
    const signed = await psyops(['sign', '-s', at('k.key'), '-m', 'hello.txt'], { cwd: sub });
    expect(signed.exitCode).toBe(0);
    return sub;
  };
  const verifyIn = (sub: string, extra: string[] = []) => psyops(['verify', '-p', at('k.pub'), '-m', 'hello.txt', ...extra], { cwd: sub });

  it('tampered file', async () => {
    const sub = await setUp('tampered-file');
    writeFileSync(join(sub, 'hello.txt'), 'hello psyop$\n');
    const result = await verifyIn(sub);
    expect(result.exitCode).toBe(1);
    expect(errorLine(result).code).toBe('BAD_SIGNATURE');
    expect(result.stdout).toBe('');
  });

  it('tampered trusted comment', async () => {
    const sub = await setUp('tampered-comment');
    const sigPath = join(sub, 'hello.txt.minisig');
    writeFileSync(sigPath, readFileSync(sigPath, 'utf8').replace('hashed', 'hashed\tadmin:yes'));
    expect(errorLine(await verifyIn(sub)).code).toBe('BAD_TRUSTED_COMMENT');
  });

  it('signature from another key', async () => {
    const sub = await setUp('other-key');
    const result = await psyops(['verify', '-p', at('theirs.pub'), '-m', 'hello.txt'], { cwd: sub });
    expect(result.exitCode).toBe(1);
    expect(errorLine(result).code).toBe('KEY_ID_MISMATCH');
  });

  it('truncated, garbage and wrong-length signature files', async () => {
    const sub = await setUp('bad-sigs');
    const sigPath = join(sub, 'hello.txt.minisig');
    const good = readFileSync(sigPath, 'utf8');
    const goodLines = good.split('\n');
    const variants = {
      truncated: good.slice(0, good.length - 40),
      'cut after two lines': goodLines.slice(0, 2).join('\n'),
      garbage: 'this is not a signature\n',
      binary: '\u0000\u00ff\u0001',
      'short base64': [goodLines[0], goodLines[1]!.slice(0, -8), goodLines[2], goodLines[3]].join('\n'),
      empty: '',
    };
    for (const [name, content] of Object.entries(variants)) {
      writeFileSync(sigPath, content);
      const result = await verifyIn(sub);
      expect(result.exitCode, name).toBe(1);
      expect(errorLine(result).code, name).toBe('MALFORMED_SIGNATURE');
    }
  });

  it('a secret key given as the public key', async () => {
    const sub = await setUp('seckey-as-pub');
    const result = await psyops(['verify', '-p', at('k.key'), '-m', 'hello.txt'], { cwd: sub });
    const error = errorLine(result);
    expect(error.code).toBe('MALFORMED_KEY');
    expect(error.message).toContain('found a secret key');
  });

  it('a public key given as the secret key: no signature written', async () => {
    const sub = await setUp('pub-as-seckey');
    const before = readFileSync(join(sub, 'hello.txt.minisig'));
    const result = await psyops(['sign', '-s', at('k.pub'), '-m', 'hello.txt'], { cwd: sub });
    expect(errorLine(result).code).toBe('MALFORMED_KEY');
    expect(readFileSync(join(sub, 'hello.txt.minisig'))).toEqual(before);
  });

  it('wrong password: no signature written', async () => {
    const sub = join(dir, 'wrong-password');
    mkdirSync(sub);
    writeFileSync(join(sub, 'data'), 'data\n');
    const env = { PSYOPS_MINISIGN_PASSWORD: 'right' };
    expect((await psyops(['keygen', '-p', 'w.pub', '-s', 'w.key'], { cwd: sub, env })).exitCode).toBe(0);
    const before = listing(sub);
    const result = await psyops(['sign', '-s', 'w.key', '-m', 'data'], { cwd: sub, env: { PSYOPS_MINISIGN_PASSWORD: 'wrong' } });
    expect(result.exitCode).toBe(1);
    expect(errorLine(result).code).toBe('WRONG_PASSWORD');
    expect(listing(sub)).toEqual(before);
  });

  it('a damaged encrypted secret key is reported as damaged, not as a wrong password', async () => {
    const sub = join(dir, 'damaged-key');
    mkdirSync(sub);
    writeFileSync(join(sub, 'data'), 'data\n');
    const env = { PSYOPS_MINISIGN_PASSWORD: 'right' };
    expect((await psyops(['keygen', '-p', 'd.pub', '-s', 'd.key'], { cwd: sub, env })).exitCode).toBe(0);
    const [comment, base64] = readFileSync(join(sub, 'd.key'), 'utf8').split('\n');
    // The encrypted part of the key: key id (bytes 54-61), seed, public half (94-125), checksum (126-157).
    for (const [at, part] of [
      [56, 'key id'],
      [100, 'public half'],
      [140, 'checksum'],
    ] as const) {
      const bytes = Buffer.from(base64!, 'base64');
      bytes[at]! ^= 0x01;
      writeFileSync(join(sub, 'bad.key'), `${comment}\n${bytes.toString('base64')}\n`);
      const before = listing(sub);
      const result = await psyops(['sign', '-s', 'bad.key', '-m', 'data'], { cwd: sub, env });
      expect(result.exitCode, part).toBe(1);
      expect(errorLine(result), part).toEqual({
        code: 'MALFORMED_KEY',
        message: 'secret key file bad.key is damaged (the password is right, but its key id, public half or checksum was altered)',
      });
      expect(listing(sub)).toEqual(before);
    }
  });

  it('verify names a missing FILE, not its missing FILE.minisig', async () => {
    const result = await psyops(['verify', '-p', at('k.pub'), '-m', 'nowhere.txt'], { cwd: dir });
    expect(result.exitCode).toBe(1);
    expect(errorLine(result)).toEqual({ code: 'FILE_NOT_FOUND', message: 'signed file not found: nowhere.txt' });
  });

  it('missing files, and a directory instead of a file', async () => {
    const sub = await setUp('missing');
    const cases: [string[], string][] = [
      [['verify', '-p', 'nope.pub', '-m', 'hello.txt'], 'FILE_NOT_FOUND'],
      [['verify', '-p', at('k.pub'), '-m', 'nope.txt'], 'FILE_NOT_FOUND'],
      [['verify', '-p', at('k.pub'), '-m', 'hello.txt', '-x', 'nope.minisig'], 'FILE_NOT_FOUND'],
      [['verify', '-p', sub, '-m', 'hello.txt'], 'NOT_A_FILE'],
      [['verify', '-p', at('k.pub'), '-m', 'hello.txt', '-x', sub], 'NOT_A_FILE'],
      [['sign', '-s', 'nope.key', '-m', 'hello.txt'], 'FILE_NOT_FOUND'],
      [['sign', '-s', at('k.key'), '-m', 'hello.txt', 'nope.txt'], 'FILE_NOT_FOUND'],
      [['sign', '-s', at('k.key'), '-m', sub], 'NOT_A_FILE'],
      [['sign', '-s', sub, '-m', 'hello.txt'], 'NOT_A_FILE'],
    ];
    const before = listing(sub);
    const sigBefore = readFileSync(join(sub, 'hello.txt.minisig'));
    for (const [args, code] of cases) {
      const result = await psyops(args, { cwd: sub });
      expect(result.exitCode, args.join(' ')).toBe(1);
      expect(errorLine(result).code, args.join(' ')).toBe(code);
    }
    expect(listing(sub)).toEqual(before);
    expect(readFileSync(join(sub, 'hello.txt.minisig'))).toEqual(sigBefore);
  });

  it('an unreadable file (a socket cannot be opened, even by root)', async () => {
    const sub = await setUp('unreadable');
    const { createServer } = await import('node:net');
    const server = createServer().listen(join(sub, 'sock'));
    await new Promise((resolve) => server.once('listening', resolve));
    try {
      const result = await psyops(['verify', '-p', 'sock', '-m', 'hello.txt'], { cwd: sub });
      expect(result.exitCode).toBe(1);
      expect(errorLine(result).code).toBe('FILE_UNREADABLE');
    } finally {
      server.close();
    }
  });

  it('--debug adds the stack; without it there is none', async () => {
    const sub = await setUp('debug');
    const plain = await psyops(['verify', '-p', 'nope.pub', '-m', 'hello.txt'], { cwd: sub });
    expect(plain.stderr).not.toContain('    at ');
    const debug = await psyops(['--debug', 'verify', '-p', 'nope.pub', '-m', 'hello.txt'], { cwd: sub });
    expect(debug.exitCode).toBe(1);
    expect(debug.stderr).toMatch(/^psyops: public key file not found: nope\.pub \(FILE_NOT_FOUND\)\n.*\n\s+at /);
  });
});
