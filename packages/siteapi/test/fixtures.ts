import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { generateKeyPair, type SecretKey } from '@psyops/signing';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { buildPackage, generateApkKey, indexRepository } from '@psyops/apkpkg';
import { afterAll } from 'vitest';

/** A temporary directory removed after the test file. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `psyops-siteapi-${prefix}-`));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface Workspace {
  dir: string;
  key: SecretKey;
  identity: string;
  recipient: string;
}

/** A workspace-like tree: two nodes (one with secrets), an image with its manifest, an APK repository. */
export async function makeInputs(dir: string): Promise<Workspace> {
  const key = generateKeyPair();
  const identity = await generateX25519Identity();
  const recipient = await identityToRecipient(identity);
  mkdirSync(join(dir, 'nodes'), { recursive: true });
  writeFileSync(
    join(dir, 'nodes', 'node-a.json'),
    JSON.stringify({
      ageRecipient: recipient,
      config: {
        version: 3,
        packages: ['k3s', 'htop'],
        services: ['sshd'],
        files: [
          { path: '/etc/motd', content: 'hello\n' },
          { path: '/etc/secret.conf', mode: '0600', content: { secret: 'very secret value' } },
        ],
        k3s: { role: 'server', token: { secret: 'k3s-token-123' } },
        firewall: [{ port: 6443, proto: 'tcp', groups: ['nodes'] }],
      },
    }),
  );
  writeFileSync(join(dir, 'nodes', 'node-b.json'), JSON.stringify({ config: { version: 1, hostname: 'bee' } }));
  mkdirSync(join(dir, 'out'), { recursive: true });
  writeFileSync(join(dir, 'out', 'psyopsOS-2026.11.1-x86_64.iso'), Buffer.alloc(300_000, 7));
  writeFileSync(join(dir, 'out', 'psyopsOS-2026.11.1-x86_64.json'), JSON.stringify({ version: '2026.11.1', kernel: '6.12.1', alpine: '3.22', packages: [] }));
  writeFileSync(join(dir, 'out', 'psyopsOS-2026.9.0-x86_64.iso'), Buffer.alloc(1000, 1));
  writeFileSync(join(dir, 'out', 'unrelated.txt'), 'not an image');
  await makeApkRepository(join(dir, 'apk'), join(dir, 'keys', 'apk'));
  return { dir, key, identity, recipient };
}

/** A real signed APK repository made with apkpkg: one package in `<repo>/x86_64/`, its public key in `keysDir`. */
export async function makeApkRepository(repo: string, keysDir: string): Promise<void> {
  const apkKey = await generateApkKey({ name: 'test', bits: 2048, now: 1_700_000_000 });
  const signingKey = { keyName: apkKey.keyName, privateKey: apkKey.privateKeyPem };
  mkdirSync(join(repo, 'x86_64'), { recursive: true });
  mkdirSync(keysDir, { recursive: true });
  writeFileSync(join(keysDir, apkKey.keyName), apkKey.publicKeyPem);
  const built = await buildPackage(
    { name: 'psyops-nodeboot', version: '1.0-r0', arch: 'x86_64', description: 'test package', url: 'https://example.org', license: 'MIT' },
    { sourceDateEpoch: 1_700_000_000, key: signingKey },
  );
  writeFileSync(join(repo, 'x86_64', built.fileName), built.bytes);
  await indexRepository(repo, { sourceDateEpoch: 1_700_000_000, key: signingKey });
}

export interface S3Server {
  endpoint: string;
  directory: string;
  /** Keys of the objects written so far, in the order the server stored them. */
  created: string[];
  close(): Promise<void>;
}

const S3RVER_PROCESS = join(import.meta.dirname, 's3rver-process.mjs');

/** A real S3-compatible server (s3rver) in its own process on 127.0.0.1, any free port, data in a temp directory. */
export async function startS3(buckets: string[]): Promise<S3Server> {
  // Removed by close(): startS3 runs inside hooks and tests, where a new afterAll would not run.
  const directory = mkdtempSync(join(tmpdir(), 'psyops-siteapi-s3-'));
  const child = execa('node', ['--openssl-legacy-provider', S3RVER_PROCESS, directory, ...buckets], {
    timeout: 600_000,
    reject: false,
    stdin: 'pipe',
    buffer: false,
  });
  const created: string[] = [];
  const port = await new Promise<number>((resolve, reject) => {
    let pending = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        const fact = JSON.parse(line) as { port?: number; created?: string };
        if (fact.port !== undefined) resolve(fact.port);
        if (fact.created !== undefined) created.push(fact.created);
      }
    });
    void child.then((result) => reject(new Error(`s3rver ended before it listened: ${String(result.stderr ?? '')}`)));
    setTimeout(() => reject(new Error('s3rver did not start within 30 s')), 30_000).unref();
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    directory,
    created,
    close: async () => {
      child.kill('SIGTERM');
      await child;
      rmSync(directory, { recursive: true, force: true });
    },
  };
}

export const S3_ENV = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
