import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { validatorsSource } from '../src/config-validation.build.js';
import * as zodChecks from '@psyops/siteapi/validators';
import { NODE, makeWorld, tempDir, type World } from './fixtures.js';

type Checks = typeof zodChecks;

const AGE = '-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n-----END AGE ENCRYPTED FILE-----\n';

const validConfig = {
  format: 'psyops-node-config/1',
  name: 'node-1',
  version: 2,
  hostname: 'node-1.example.org',
  packages: ['curl'],
  services: ['app'],
  files: [
    { path: '/etc/motd', mode: '0644', content: 'hello\n' },
    { path: '/etc/app/token', mode: '600', content: { age: AGE } },
  ],
  k3s: { role: 'agent', serverUrl: 'https://10.10.8.10:6443', token: { age: AGE } },
  firewall: [
    { port: 22, proto: 'tcp', groups: ['admins'] },
    { port: 'any', proto: 'icmp', host: 'any' },
    { port: '8000-8080', proto: 'udp', cidr: '10.0.0.0/8' },
  ],
};

/** A copy of the valid config changed by `change`. */
const mutated = (change: (doc: any) => void): unknown => {
  const doc = structuredClone(validConfig);
  change(doc);
  return doc;
};

const configs: [string, unknown][] = [
  ['valid', validConfig],
  ['valid without k3s, empty lists', mutated((d) => (delete d.k3s, (d.packages = []), (d.services = []), (d.files = []), (d.firewall = [])))],
  ['valid serverUrl with spaces around (zod trims)', mutated((d) => (d.k3s.serverUrl = '  https://k3s.example.org:6443 '))],
  ['valid serverUrl of another scheme', mutated((d) => (d.k3s.serverUrl = 'mailto:root@example.org'))],
  ['valid k3s server without serverUrl', mutated((d) => ((d.k3s.role = 'server'), delete d.k3s.serverUrl))],
  ['not an object', 'config'],
  ['null', null],
  ['an array', [validConfig]],
  ['wrong format', mutated((d) => (d.format = 'psyops-node-config/2'))],
  ['valid without packages (a default, which the site always writes)', mutated((d) => delete d.packages)],
  ['valid without files', mutated((d) => delete d.files)],
  ['valid without a file mode', mutated((d) => delete d.files[0].mode)],
  ['valid without firewall', mutated((d) => delete d.firewall)],
  ['missing version', mutated((d) => delete d.version)],
  ['missing hostname', mutated((d) => delete d.hostname)],
  ['missing a file content', mutated((d) => delete d.files[0].content)],
  ['unknown top-level field', mutated((d) => (d.extra = 1))],
  ['unknown file field', mutated((d) => (d.files[0].owner = 'root'))],
  ['bad name', mutated((d) => (d.name = 'Node_1'))],
  ['name too long', mutated((d) => (d.name = 'a'.repeat(64)))],
  ['version 0', mutated((d) => (d.version = 0))],
  ['version 1.5', mutated((d) => (d.version = 1.5))],
  ['version as a string', mutated((d) => (d.version = '2'))],
  ['version beyond safe integers', mutated((d) => (d.version = 2 ** 53))],
  ['hostname with a space', mutated((d) => (d.hostname = 'node 1'))],
  ['empty package name', mutated((d) => (d.packages = ['']))],
  ['service not a string', mutated((d) => (d.services = [1]))],
  ['relative file path', mutated((d) => (d.files[0].path = 'etc/motd'))],
  ['file path with NUL', mutated((d) => (d.files[0].path = '/etc/mo\0td'))],
  ['mode 999', mutated((d) => (d.files[0].mode = '999'))],
  ['mode as a number', mutated((d) => (d.files[0].mode = 420))],
  ['content a plaintext secret', mutated((d) => (d.files[1].content = { secret: 'x' }))],
  ['content not armored age', mutated((d) => (d.files[1].content = { age: 'YWdl' }))],
  ['content with an extra field', mutated((d) => (d.files[1].content = { age: AGE, note: 'x' }))],
  ['k3s role master', mutated((d) => (d.k3s.role = 'master'))],
  ['k3s serverUrl not a URL', mutated((d) => (d.k3s.serverUrl = 'not a url'))],
  ['k3s token in plaintext', mutated((d) => (d.k3s.token = 'token'))],
  ['k3s without token', mutated((d) => delete d.k3s.token)],
  ['firewall port 70000', mutated((d) => (d.firewall[0].port = 70000))],
  ['firewall port -1', mutated((d) => (d.firewall[0].port = -1))],
  ['firewall port "ssh"', mutated((d) => (d.firewall[0].port = 'ssh'))],
  ['firewall proto sctp', mutated((d) => (d.firewall[0].proto = 'sctp'))],
  ['firewall groups not strings', mutated((d) => (d.firewall[0].groups = [1]))],
  ['firewall rule without proto', mutated((d) => delete d.firewall[0].proto)],
];

const validLighthouses = {
  format: 'psyops-lighthouses/1',
  version: 1,
  lighthouses: [{ name: 'lh1', overlayIp: '10.10.8.1', publicAddresses: ['203.0.113.10:4242'] }],
};
const lighthouseDocs: [string, unknown][] = [
  ['valid', validLighthouses],
  ['valid, none', { format: 'psyops-lighthouses/1', version: 7, lighthouses: [] }],
  ['no version', { format: 'psyops-lighthouses/1', lighthouses: [] }],
  ['version 0', { ...validLighthouses, version: 0 }],
  ['fractional version', { ...validLighthouses, version: 1.5 }],
  ['wrong format', { ...validLighthouses, format: 'psyops-lighthouses/0' }],
  ['missing lighthouses', { format: 'psyops-lighthouses/1', version: 1 }],
  ['overlayIp out of range', { ...validLighthouses, lighthouses: [{ ...validLighthouses.lighthouses[0], overlayIp: '10.10.8.256' }] }],
  ['overlayIp IPv6', { ...validLighthouses, lighthouses: [{ ...validLighthouses.lighthouses[0], overlayIp: 'fd00::1' }] }],
  ['overlayIp with a leading zero', { ...validLighthouses, lighthouses: [{ ...validLighthouses.lighthouses[0], overlayIp: '10.10.08.1' }] }],
  ['no public address', { ...validLighthouses, lighthouses: [{ ...validLighthouses.lighthouses[0], publicAddresses: [] }] }],
  ['empty name', { ...validLighthouses, lighthouses: [{ ...validLighthouses.lighthouses[0], name: '' }] }],
  ['extra field', { ...validLighthouses, lighthouses: [{ ...validLighthouses.lighthouses[0], port: 4242 }] }],
];

describe("the bundle's precompiled validators against the zod schemas", () => {
  let generated: Checks;
  let world: World;
  beforeAll(async () => {
    // The very module the bundle embeds, loaded as the node loads it.
    const file = join(tempDir('validators'), 'validators.mjs');
    writeFileSync(file, validatorsSource());
    generated = (await import(pathToFileURL(file).href)) as Checks;
    world = await makeWorld();
  });

  it('is plain code: no schema compiled, nothing imported at run time', () => {
    const source = validatorsSource();
    expect(source).not.toMatch(/\b(require\(|import )/);
    expect(source).not.toMatch(/new Function|\bajv\b/i);
  });

  it('accepts and refuses node configs exactly as zod does', () => {
    for (const [what, doc] of configs) {
      const expected = zodChecks.checkNodeConfig(doc);
      const actual = generated.checkNodeConfig(doc);
      expect(actual.ok, `${what}: ${actual.ok ? 'accepted' : actual.error} / zod: ${expected.ok ? 'accepted' : expected.error}`).toBe(expected.ok);
      expect(actual.ok, what).toBe(what.startsWith('valid'));
      if (!actual.ok) expect(actual.error).toMatch(/^\S.*: /);
    }
  });

  it('accepts and refuses lighthouse lists exactly as zod does', () => {
    for (const [what, doc] of lighthouseDocs) {
      const expected = zodChecks.checkLighthouses(doc);
      const actual = generated.checkLighthouses(doc);
      expect(actual.ok, `${what}: ${actual.ok ? 'accepted' : actual.error}`).toBe(expected.ok);
      expect(actual.ok, what).toBe(what.startsWith('valid'));
    }
  });

  it('needs no defaults filled in: what the site publishes already carries them', () => {
    // The fixture's node definition leaves packages, services, a file mode and more to their defaults.
    for (const path of [`nodes/${NODE}.json`, 'psynet/lighthouses.json']) {
      const text = readFileSync(join(world.siteDir, path), 'utf8');
      const check = path.startsWith('nodes/') ? 'checkNodeConfig' : 'checkLighthouses';
      const expected = zodChecks[check](JSON.parse(text));
      const actual = generated[check](JSON.parse(text));
      expect(actual.ok, path).toBe(true);
      // zod's output (defaults applied) and the generated validator's are the document as published: nothing was missing.
      expect(expected.ok && expected.value).toEqual(JSON.parse(text));
      expect(actual.ok && actual.value).toEqual(JSON.parse(text));
    }
    const published = JSON.parse(readFileSync(join(world.siteDir, `nodes/${NODE}.json`), 'utf8'));
    expect(published.packages).toEqual([]);
    expect(published.files[0].mode).toBe('0644');
  });

  it('fills in a left-out default as zod does', () => {
    const doc = mutated((d) => (delete d.packages, delete d.firewall, delete d.files[0].mode));
    const expected = zodChecks.checkNodeConfig(structuredClone(doc));
    const actual = generated.checkNodeConfig(structuredClone(doc));
    expect(expected.ok && expected.value).toMatchObject({ packages: [], firewall: [], files: [{ mode: '0644' }, {}] });
    expect(actual.ok && actual.value).toEqual(expected.ok && expected.value);
  });
});
