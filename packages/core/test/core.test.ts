import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  elfInterpreter,
  elfSection,
  FileAccessError,
  isElf,
  MissingToolError,
  compareReleases,
  produceDirectoryAtomically,
  produceFileAtomically,
  requireProgram,
  runTool,
  sha256File,
  ToolFailedError,
} from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'psyops-core-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('produceFileAtomically / produceDirectoryAtomically', () => {
  it('a failed file leaves neither the target nor a temporary file', async () => {
    const out = join(dir, 'file-fail', 'out');
    execFileSync('mkdir', ['-p', join(dir, 'file-fail')]);
    await expect(
      produceFileAtomically(out, async (temp) => {
        writeFileSync(temp, 'half');
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(readdirSync(join(dir, 'file-fail'))).toEqual([]);
  });

  it('a directory replaces the old one only when complete, with its mode', async () => {
    const target = join(dir, 'tree');
    await produceDirectoryAtomically(target, async (temp) => writeFileSync(join(temp, 'a'), 'old'));
    await expect(
      produceDirectoryAtomically(target, async (temp) => {
        writeFileSync(join(temp, 'a'), 'new');
        throw new Error('interrupted');
      }),
    ).rejects.toThrow('interrupted');
    expect(readFileSync(join(target, 'a'), 'utf8')).toBe('old');
    await produceDirectoryAtomically(target, async (temp) => writeFileSync(join(temp, 'b'), 'new'), { mode: 0o700 });
    expect(readdirSync(target)).toEqual(['b']);
    expect(statSync(target).mode & 0o777).toBe(0o700);
    expect(readdirSync(dir).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });
});

describe('sha256File', () => {
  it('agrees with sha256sum on a file larger than one chunk', async () => {
    const path = join(dir, 'big');
    writeFileSync(path, Buffer.alloc(3 * (1 << 20) + 17, 7));
    const expected = execFileSync('sha256sum', [path], { encoding: 'utf8' }).split(' ')[0];
    expect(await sha256File(path)).toBe(expected);
    expect(expected).toBe(createHash('sha256').update(readFileSync(path)).digest('hex'));
  });

  it('names a missing file', async () => {
    await expect(sha256File(join(dir, 'missing'), 'image')).rejects.toMatchObject({
      code: 'FILE_NOT_FOUND',
      message: expect.stringContaining('image not found'),
    });
  });
});

describe('the ELF reader', () => {
  // Real programs of this host, checked against readelf (binutils) where it is installed, else
  // against the dynamic loader the program itself runs with.
  const dynamic = process.execPath;

  it('finds the dynamic loader of a dynamically linked program, from a path and from bytes', () => {
    const loader = elfInterpreter(dynamic);
    expect(loader).toMatch(/^\/lib(64)?\/ld-linux-x86-64\.so\.2$/);
    expect(existsSync(loader!)).toBe(true);
    expect(elfInterpreter(readFileSync('/bin/sh'))).toBe(elfInterpreter('/bin/sh'));
  });

  it('finds no interpreter in a static program', () => {
    // busybox-static is a Debian package the image build needs anyway.
    expect(elfInterpreter('/bin/busybox')).toBeUndefined();
  });

  it('reads a named section and tells ELF from other files', () => {
    const comment = elfSection(process.execPath, '.comment');
    expect(comment?.toString('latin1')).toMatch(/GCC|clang/);
    expect(elfSection(process.execPath, '.no-such-section')).toBeUndefined();
    writeFileSync(join(dir, 'text'), '#!/bin/sh\necho hi\n');
    expect(isElf(join(dir, 'text'))).toBe(false);
    expect(isElf(process.execPath)).toBe(true);
    expect(() => elfInterpreter(join(dir, 'text'))).toThrow(/is not an ELF file/);
    expect(() => elfInterpreter(Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]))).toThrow(/truncated/);
    expect(() => elfInterpreter(join(dir, 'nope'))).toThrow(FileAccessError);
  });
});

describe('the tool runner', () => {
  it('finds programs and names the Debian package of a missing one', () => {
    expect(requireProgram('sh', 'dash')).toMatch(/\/sh$/);
    expect(() => requireProgram('psyops-no-such-program', 'psyops-pkg')).toThrow(MissingToolError);
    expect(() => requireProgram('psyops-no-such-program', 'psyops-pkg')).toThrow('install the Debian package psyops-pkg (apt-get install psyops-pkg)');
  });

  it('returns standard output, passes input, environment and C locale', async () => {
    expect(await runTool('/bin/sh', ['-c', 'cat; printf " $LC_ALL $EXTRA"'], { input: 'in', env: { EXTRA: 'x' } })).toBe('in C x');
    process.env.PSYOPS_CORE_TEST = 'inherited';
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell expansion
    expect(await runTool('/bin/sh', ['-c', 'printf "${PSYOPS_CORE_TEST:-removed}"'], { env: { PSYOPS_CORE_TEST: undefined } })).toBe('removed');
    delete process.env.PSYOPS_CORE_TEST;
  });

  it('fails with the program name and its first error line, on timeout, and on too much output', async () => {
    await expect(runTool('/bin/sh', ['-c', 'echo first >&2; echo second >&2; exit 3'])).rejects.toThrow(new ToolFailedError('sh failed: first'));
    await expect(runTool('/bin/sh', ['-c', 'exit 4'])).rejects.toThrow('sh failed: exit code 4');
    await expect(runTool('/bin/sleep', ['10'], { timeoutMs: 200 })).rejects.toThrow('sleep failed: timed out after 200 ms');
    await expect(runTool('/bin/sh', ['-c', 'head -c 100000 /dev/zero'], { maxOutputBytes: 1000 })).rejects.toThrow('sh failed: printed more than 1000 bytes');
    await expect(runTool(join(dir, 'missing-program'), [])).rejects.toThrow(/missing-program failed: .* not found/);
  });

  it('stops the program when cancelled', async () => {
    const controller = new AbortController();
    const run = runTool('/bin/sleep', ['10'], { signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    await expect(run).rejects.toThrow('sleep was cancelled');
  });
});

describe('compareReleases', () => {
  it('orders digit runs by value and the rest byte by byte', () => {
    const sorted = ['r10', 'r9', '2025.10', '2025.9', '251125', '251124', 'r2', 'r2a', '007', '7'].sort(compareReleases);
    expect(sorted).toEqual(['007', '7', '2025.9', '2025.10', '251124', '251125', 'r2', 'r2a', 'r9', 'r10']);
    expect(compareReleases('r1', 'r1')).toBe(0);
    expect(compareReleases('r2', 'r1')).toBeGreaterThan(0);
  });
});
