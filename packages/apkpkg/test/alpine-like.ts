/**
 * Deterministic repositories shaped like Alpine's main + community (no Alpine mirror is reachable
 * from the test machines): a hand-written core that carries the original psyopsOS world with the
 * provider situations Alpine has (several `/bin/sh` providers with `k:`, `cmd:sh` at different
 * versions, `so:` names from two packages, interface virtuals such as `ifupdown-any`, `openssh-client`
 * from two subpackages, `-openrc`/`-doc`/`-bash-completion` install_if subpackages and a two-level
 * install_if chain, a `!conflict`), plus seeded filler up to the wanted size, a small `@edge`
 * repository with newer versions, and the workspace's own repository (`own`: psyopsOS's
 * `psyopsOS-base` and `psyops-nodeboot`, as `psyops apk build` makes them). Only types come from src, so the benchmark can use it with the
 * built package.
 */
import { createHash } from 'node:crypto';
import type { IndexEntry } from '../src/read.ts';

/**
 * The image default for Alpine repositories (psyops.config.schema.json): the original psyopsOS
 * world plus what psyopsOS itself needs on the node (`nodejs`, `nebula`, `psyops-nodeboot`,
 * `psyopsOS-base`; `openssh` was there already).
 */
export const ORIGINAL_WORLD: readonly string[] = [
  'age',
  'alpine-base',
  'bash',
  'bind-tools',
  'busybox',
  'ca-certificates',
  'curl',
  'file',
  'git',
  'gzip',
  'k3s',
  'logger',
  'lsblk',
  'minisign',
  'nebula',
  'nodejs',
  'openssh',
  'pciutils',
  'psyops-nodeboot',
  'psyopsOS-base',
  'python3',
  'ripgrep',
  'shadow',
  'sqlite',
  'strace',
  'sudo',
  'tar',
  'usbutils',
  'util-linux',
  'vim',
];

export interface AlpineLikeOptions {
  /** Entries in main + community together (default 25,000, about Alpine's x86_64 main + community). */
  size?: number;
  seed?: number;
}

export interface AlpineLike {
  main: IndexEntry[];
  community: IndexEntry[];
  /** To be used with tag `edge`. */
  edge: IndexEntry[];
  /** The workspace's own repository: psyopsOS-base and psyops-nodeboot. */
  own: IndexEntry[];
}

interface Spec {
  depends?: string[];
  provides?: string[];
  installIf?: string[];
  k?: number;
  origin?: string;
}

function entry(repo: string, name: string, version: string, spec: Spec = {}): IndexEntry {
  const digest = createHash('sha1').update(`${repo}/${name}-${version}`).digest('base64');
  const e: IndexEntry = {
    identity: `Q1${digest}`,
    name,
    version,
    arch: 'x86_64',
    size: 1000 + (digest.charCodeAt(3) % 90) * 1000,
    installedSize: 4096,
    description: `${name} (generated)`,
    url: 'https://example.org',
    license: 'MIT',
    origin: spec.origin ?? name,
    depends: spec.depends ?? [],
    provides: spec.provides ?? [],
    installIf: spec.installIf ?? [],
  };
  if (spec.k) e.providerPriority = spec.k;
  return e;
}

const LIBC = 'so:libc.musl-x86_64.so.1';

/** main's core: the original world's closure and its alternatives. */
function coreMain(): IndexEntry[] {
  const out: IndexEntry[] = [];
  const add = (name: string, version: string, spec: Spec = {}) => out.push(entry('main', name, version, spec));
  const cmds = (version: string, ...names: string[]) => names.map((n) => `cmd:${n}=${version}`);
  // A subpackage family of `origin`: its install_if extras (-doc on docs, -bash-completion on bash-completion).
  const extras = (name: string, version: string, origin = name) => {
    add(`${name}-doc`, version, { installIf: [`docs`, `${name}=${version}`], origin });
    add(`${name}-bash-completion`, version, { installIf: [`${name}=${version}`, 'bash-completion'], origin });
  };

  const musl = '1.2.4_git20230717-r4';
  add('musl', musl, { provides: [`${LIBC}=1`] });
  add('musl-utils', musl, { depends: [LIBC], provides: cmds(musl, 'getent', 'ldd', 'iconv'), origin: 'musl' });
  const bb = '1.36.1-r15';
  add('busybox', bb, { depends: [LIBC], provides: cmds(bb, 'busybox') });
  // Three `/bin/sh` providers (the name without a version): apk picks by provider_priority.
  add('busybox-binsh', bb, { depends: [`busybox=${bb}`], provides: ['/bin/sh', `cmd:sh=${bb}`], k: 100, origin: 'busybox' });
  add('busybox-openrc', bb, { depends: ['openrc', `busybox=${bb}`], origin: 'busybox' });
  add('busybox-mdev-openrc', bb, { depends: ['openrc', `busybox=${bb}`], provides: ['dev-openrc'], k: 20, origin: 'busybox' });
  add('busybox-suid', bb, { depends: [`busybox=${bb}`], origin: 'busybox' });
  add('busybox-ifupdown', bb, { depends: [`busybox=${bb}`], provides: ['ifupdown-any'], k: 100, origin: 'busybox' });
  add('busybox-static', bb, { origin: 'busybox' });
  add('busybox-extras', bb, { depends: [`busybox=${bb}`, LIBC], provides: cmds(bb, 'telnet', 'httpd'), origin: 'busybox' });
  add('dash', '0.5.12-r3', { depends: [LIBC], provides: cmds('0.5.12-r3', 'dash') });
  add('dash-binsh', '0.5.12-r3', { depends: ['dash'], provides: ['/bin/sh', 'cmd:sh=0.5.12-r3'], k: 60, origin: 'dash' });
  add('mdevd-openrc', '0.1.6.2-r0', { depends: ['openrc'], provides: ['dev-openrc'], k: 30, origin: 'mdevd' });
  add('ifupdown-ng', '0.12.1-r4', { depends: [LIBC], provides: ['ifupdown-any', ...cmds('0.12.1-r4', 'ifup', 'ifdown', 'ifquery')], k: 200 });
  add('alpine-baselayout-data', '3.4.3-r2', { origin: 'alpine-baselayout' });
  add('alpine-baselayout', '3.4.3-r2', { depends: ['alpine-baselayout-data=3.4.3-r2', '/bin/sh'] });
  add('alpine-keys', '2.4-r1');
  add('alpine-release', '3.19.1-r0', { depends: ['alpine-keys'], origin: 'alpine-base' });
  add('alpine-conf', '3.17.2-r0', { depends: ['openrc>=0.24.1-r6', 'busybox>=1.26.1-r3', 'ifupdown-any', '/bin/sh'] });
  add('alpine-base', '3.19.1-r0', {
    depends: [
      'alpine-baselayout',
      'alpine-conf',
      'alpine-release',
      'apk-tools',
      'busybox',
      'busybox-mdev-openrc',
      'busybox-openrc',
      'busybox-suid',
      'musl-utils',
      'openrc',
    ],
  });
  const ssl = '3.1.4-r5';
  add('libcrypto3', ssl, { depends: [LIBC], provides: ['so:libcrypto.so.3=3'], origin: 'openssl' });
  add('libssl3', ssl, { depends: [LIBC, 'so:libcrypto.so.3'], provides: ['so:libssl.so.3=3'], origin: 'openssl' });
  add('openssl', ssl, { depends: [LIBC, 'so:libcrypto.so.3', 'so:libssl.so.3'], provides: cmds(ssl, 'openssl') });
  add('zlib', '1.3.1-r0', { depends: [LIBC], provides: ['so:libz.so.1=1.3.1', 'pc:zlib=1.3.1'] });
  add('apk-tools', '2.14.0-r5', {
    depends: ['musl>=1.2.3_git20230424', 'ca-certificates-bundle', LIBC, 'so:libcrypto.so.3', 'so:libssl.so.3', 'so:libz.so.1'],
    provides: ['so:libapk.so.2.14.0=2.14.0', 'cmd:apk=2.14.0-r5'],
  });
  const rc = '0.52.1-r2';
  add('openrc', rc, {
    depends: ['ifupdown-any', LIBC, 'so:libeinfo.so.1', 'so:librc.so.1', '/bin/sh'],
    provides: ['so:libeinfo.so.1=1', 'so:librc.so.1=1', ...cmds(rc, 'openrc', 'openrc-run', 'rc-update', 'rc-service')],
  });
  extras('openrc', rc);
  add('ca-certificates-bundle', '20240226-r0', { provides: ['ca-certificates-cacert=20240226-r0'], origin: 'ca-certificates' });
  add('ca-certificates', '20240226-r0', {
    depends: ['ca-certificates-bundle', '/bin/sh', LIBC, 'so:libcrypto.so.3'],
    provides: cmds('20240226-r0', 'update-ca-certificates'),
  });
  add('ncurses-terminfo-base', '6.4_p20231125-r0', { origin: 'ncurses' });
  add('ncurses-libs', '6.4_p20231125-r0', {
    depends: ['ncurses-terminfo-base', LIBC],
    provides: ['so:libncursesw.so.6=6.4', 'so:libformw.so.6=6.4', 'so:libmenuw.so.6=6.4', 'so:libpanelw.so.6=6.4'],
    origin: 'ncurses',
  });
  add('readline', '8.2.1-r2', { depends: [LIBC, 'so:libncursesw.so.6'], provides: ['so:libreadline.so.8=8.2'] });
  add('bash', '5.2.21-r0', { depends: ['/bin/sh', LIBC, 'so:libreadline.so.8'], provides: cmds('5.2.21-r0', 'bash') });
  extras('bash', '5.2.21-r0');
  add('bash-completion', '2.11-r6', { depends: ['bash'] });
  for (const [name, version, so] of [
    ['libuv', '1.47.0-r0', 'so:libuv.so.1=1.0.0'],
    ['json-c', '0.17-r0', 'so:libjson-c.so.5=5.3.0'],
    ['xz-libs', '5.4.5-r0', 'so:liblzma.so.5=5.4.5'],
    ['libbz2', '1.0.8-r6', 'so:libbz2.so.1=1.0.8'],
    ['libffi', '3.4.4-r3', 'so:libffi.so.8=8.1.2'],
    ['expat', '2.6.0-r0', 'so:libexpat.so.1=1.8.10'],
    ['brotli-libs', '1.1.0-r1', 'so:libbrotlidec.so.1=1.1.0'],
    ['libunistring', '1.1-r2', 'so:libunistring.so.5=5.0.0'],
    ['nghttp2-libs', '1.58.0-r0', 'so:libnghttp2.so.14=14.25.1'],
    ['zstd-libs', '1.5.5-r8', 'so:libzstd.so.1=1.5.5'],
    ['libgcc', '13.2.1_git20231014-r0', 'so:libgcc_s.so.1=1'],
    ['libsodium', '1.0.19-r0', 'so:libsodium.so.26=26.1.0'],
    ['libmnl', '1.0.5-r2', 'so:libmnl.so.0=0.2.0'],
    ['libnfnetlink', '1.0.2-r4', 'so:libnfnetlink.so.0=0.2.0'],
    ['libnftnl', '1.2.6-r0', 'so:libnftnl.so.11=11.6.0'],
    ['libeconf', '0.5.2-r2', 'so:libeconf.so.0=0.5.2'],
    ['libusb', '1.0.26-r3', 'so:libusb-1.0.so.0=0.3.0'],
    ['pciutils-libs', '3.10.0-r0', 'so:libpci.so.3=3.10.0'],
    ['sqlite-libs', '3.44.2-r0', 'so:libsqlite3.so.0=0.8.6'],
    ['pcre2', '10.42-r2', 'so:libpcre2-8.so.0=0.11.2'],
  ] as const) {
    add(name, version, { depends: [LIBC], provides: [so] });
  }
  // Alpine's nodejs is in main (psyops-nodeboot and psyopsOS-base run on it).
  add('nodejs', '20.15.1-r0', {
    depends: [
      LIBC,
      'so:libbrotlidec.so.1',
      'so:libcrypto.so.3',
      'so:libgcc_s.so.1',
      'so:libnghttp2.so.14',
      'so:libssl.so.3',
      'so:libuv.so.1',
      'so:libz.so.1',
      'ca-certificates',
    ],
    provides: ['cmd:node=20.15.1-r0'],
  });
  add('libidn2', '2.3.4-r4', { depends: [LIBC, 'so:libunistring.so.5'], provides: ['so:libidn2.so.0=0.3.8'] });
  add('libpsl', '0.21.5-r0', { depends: [LIBC, 'so:libidn2.so.0', 'so:libunistring.so.5'], provides: ['so:libpsl.so.5=5.3.4'] });
  add('libxml2', '2.11.7-r0', { depends: [LIBC, 'so:liblzma.so.5', 'so:libz.so.1'], provides: ['so:libxml2.so.2=2.11.7'] });
  add('libnetfilter_conntrack', '1.0.9-r2', { depends: [LIBC, 'so:libmnl.so.0', 'so:libnfnetlink.so.0'], provides: ['so:libnetfilter_conntrack.so.3=3.8.0'] });
  add('bind-libs', '9.18.24-r0', {
    depends: [LIBC, 'so:libcrypto.so.3', 'so:libssl.so.3', 'so:libuv.so.1', 'so:libjson-c.so.5', 'so:libxml2.so.2', 'so:libnghttp2.so.14'],
    provides: ['so:libbind9-9.18.24.so=0', 'so:libdns-9.18.24.so=0', 'so:libisc-9.18.24.so=0'],
    origin: 'bind',
  });
  add('bind-tools', '9.18.24-r0', {
    depends: [LIBC, 'so:libbind9-9.18.24.so', 'so:libdns-9.18.24.so', 'so:libisc-9.18.24.so'],
    provides: cmds('9.18.24-r0', 'dig', 'host', 'nslookup'),
    origin: 'bind',
  });
  add('libcurl', '8.5.0-r0', {
    depends: [
      'ca-certificates-bundle',
      LIBC,
      'so:libbrotlidec.so.1',
      'so:libcrypto.so.3',
      'so:libidn2.so.0',
      'so:libnghttp2.so.14',
      'so:libpsl.so.5',
      'so:libssl.so.3',
      'so:libz.so.1',
      'so:libzstd.so.1',
    ],
    provides: ['so:libcurl.so.4=4.8.0'],
    origin: 'curl',
  });
  add('curl', '8.5.0-r0', { depends: ['ca-certificates-bundle', LIBC, 'so:libcurl.so.4', 'so:libz.so.1'], provides: cmds('8.5.0-r0', 'curl') });
  extras('curl', '8.5.0-r0');
  add('libmagic', '5.45-r1', { depends: [LIBC, 'so:libz.so.1', 'so:libbz2.so.1', 'so:liblzma.so.5'], provides: ['so:libmagic.so.1=1.0.0'], origin: 'file' });
  add('file', '5.45-r1', { depends: [LIBC, 'so:libmagic.so.1'], provides: cmds('5.45-r1', 'file') });
  add('git', '2.43.0-r0', {
    depends: [LIBC, 'so:libcurl.so.4', 'so:libexpat.so.1', 'so:libpcre2-8.so.0', 'so:libz.so.1'],
    provides: cmds('2.43.0-r0', 'git', 'git-receive-pack', 'git-upload-pack'),
  });
  extras('git', '2.43.0-r0');
  add('gzip', '1.13-r0', { depends: [LIBC], provides: cmds('1.13-r0', 'gzip', 'gunzip', 'zcat') });
  add('conntrack-tools', '1.4.8-r0', {
    depends: [LIBC, 'so:libmnl.so.0', 'so:libnetfilter_conntrack.so.3', 'so:libnfnetlink.so.0'],
    provides: cmds('1.4.8-r0', 'conntrack'),
  });
  add('iptables', '1.8.10-r3', {
    depends: [LIBC, 'so:libmnl.so.0', 'so:libnftnl.so.11'],
    provides: ['so:libxtables.so.12=12.7.0', ...cmds('1.8.10-r3', 'iptables', 'ip6tables', 'xtables-nft-multi')],
  });
  add('iptables-openrc', '1.8.10-r3', { installIf: ['openrc', 'iptables=1.8.10-r3'], origin: 'iptables' });
  const ul = '2.39.3-r0';
  add('libblkid', ul, { depends: [LIBC, 'so:libeconf.so.0'], provides: ['so:libblkid.so.1=1.1.0'], origin: 'util-linux' });
  add('libmount', ul, { depends: [LIBC, 'so:libblkid.so.1'], provides: ['so:libmount.so.1=1.1.0'], origin: 'util-linux' });
  add('libsmartcols', ul, { depends: [LIBC], provides: ['so:libsmartcols.so.1=1.1.0'], origin: 'util-linux' });
  add('libuuid', ul, { depends: [LIBC], provides: ['so:libuuid.so.1=1.3.0'], origin: 'util-linux' });
  // Two providers of one so: name: apk takes the higher version of the requested name before k:.
  add('eudev-libs', '3.2.14-r0', { depends: [LIBC], provides: ['so:libudev.so.1=1.7.0'], origin: 'eudev' });
  add('libudev-zero', '1.0.3-r0', { depends: [LIBC], provides: ['so:libudev.so.1=1.0.3'], k: 50 });
  const utils: [string, string[], string[]][] = [
    ['blkid', ['so:libblkid.so.1'], ['blkid']],
    ['dmesg', [], ['dmesg']],
    ['findmnt', ['so:libblkid.so.1', 'so:libmount.so.1', 'so:libsmartcols.so.1'], ['findmnt']],
    ['flock', [], ['flock']],
    ['hexdump', [], ['hexdump']],
    ['logger', [], ['logger']],
    ['losetup', ['so:libsmartcols.so.1'], ['losetup']],
    ['lsblk', ['so:libblkid.so.1', 'so:libmount.so.1', 'so:libsmartcols.so.1', 'so:libudev.so.1'], ['lsblk']],
    ['mcookie', [], ['mcookie']],
    ['runuser', [], ['runuser', 'su']],
    ['setarch', [], ['setarch', 'linux32', 'linux64']],
    ['sfdisk', ['so:libblkid.so.1', 'so:libsmartcols.so.1'], ['sfdisk']],
    ['uuidgen', ['so:libuuid.so.1'], ['uuidgen']],
    ['wipefs', ['so:libblkid.so.1', 'so:libsmartcols.so.1'], ['wipefs']],
    ['util-linux-misc', ['so:libmount.so.1', 'so:libuuid.so.1'], ['cal', 'col', 'script', 'unshare']],
  ];
  for (const [name, libs, commands] of utils) add(name, ul, { depends: [LIBC, ...libs], provides: cmds(ul, ...commands), origin: 'util-linux' });
  add('util-linux-openrc', ul, { depends: ['openrc'], origin: 'util-linux' });
  add('util-linux', ul, { depends: [...utils.map(([name]) => name), 'util-linux-openrc'] });
  extras('util-linux', ul);
  const ssh = '9.6_p1-r0';
  add('openssh-keygen', ssh, { depends: [LIBC, 'so:libcrypto.so.3'], provides: cmds(ssh, 'ssh-keygen'), origin: 'openssh' });
  add('openssh-client-common', ssh, { depends: [LIBC, 'so:libcrypto.so.3'], provides: cmds(ssh, 'ssh-add', 'ssh-agent'), origin: 'openssh' });
  // Two providers of `openssh-client` at the same version: provider_priority decides.
  add('openssh-client-default', ssh, {
    depends: [`openssh-client-common=${ssh}`, `openssh-keygen=${ssh}`, LIBC, 'so:libcrypto.so.3', 'so:libz.so.1'],
    provides: [`openssh-client=${ssh}`, ...cmds(ssh, 'ssh', 'scp', 'sftp')],
    k: 100,
    origin: 'openssh',
  });
  add('krb5-libs', '1.21.2-r0', { depends: [LIBC, 'so:libcrypto.so.3'], provides: ['so:libkrb5.so.3=3.3', 'so:libgssapi_krb5.so.2=2.2'], origin: 'krb5' });
  add('openssh-client-krb5', ssh, {
    depends: [`openssh-client-common=${ssh}`, `openssh-keygen=${ssh}`, LIBC, 'so:libcrypto.so.3', 'so:libgssapi_krb5.so.2', 'so:libz.so.1'],
    provides: [`openssh-client=${ssh}`, ...cmds(ssh, 'ssh', 'scp', 'sftp')],
    k: 10,
    origin: 'openssh',
  });
  add('openssh-sftp-server', ssh, { depends: [LIBC], origin: 'openssh' });
  add('openssh-server-common', ssh, { origin: 'openssh' });
  add('openssh-server-common-openrc', ssh, { installIf: ['openrc', `openssh-server-common=${ssh}`], origin: 'openssh' });
  add('openssh-server', ssh, {
    depends: [`openssh-server-common=${ssh}`, `openssh-keygen=${ssh}`, LIBC, 'so:libcrypto.so.3', 'so:libz.so.1'],
    provides: cmds(ssh, 'sshd'),
    origin: 'openssh',
  });
  add('openssh', ssh, { depends: ['openssh-client', 'openssh-sftp-server', 'openssh-server'] });
  add('openssh-doc', ssh, { installIf: ['docs', `openssh=${ssh}`], origin: 'openssh' });
  add('hwdata-pci', '0.377.2-r0', { origin: 'hwdata' });
  add('hwdata-usb', '0.377.2-r0', { origin: 'hwdata' });
  add('pciutils', '3.10.0-r0', { depends: ['hwdata-pci', LIBC, 'so:libpci.so.3'], provides: cmds('3.10.0-r0', 'lspci', 'setpci') });
  const py = '3.11.8-r0';
  add('python3', py, {
    depends: [
      LIBC,
      'so:libbz2.so.1',
      'so:libexpat.so.1',
      'so:libffi.so.8',
      'so:libncursesw.so.6',
      'so:libpanelw.so.6',
      'so:libreadline.so.8',
      'so:libsqlite3.so.0',
      'so:libssl.so.3',
      'so:libcrypto.so.3',
      'so:liblzma.so.5',
      'so:libz.so.1',
      'so:libpython3.11.so.1.0',
    ],
    provides: ['so:libpython3.11.so.1.0=1.0', 'cmd:python3=3.11.8-r0', 'cmd:python3.11=3.11.8-r0', 'pc:python3=3.11', 'pc:python3-embed=3.11'],
  });
  // A two-level install_if chain: pyc + python3 -> python3-pyc; python3-pyc + pyc -> python3-pycache-pyc0.
  add('pyc', '3.19.1-r0', { origin: 'alpine-base' });
  add('python3-pyc', py, { installIf: [`python3=${py}`, 'pyc'], origin: 'python3' });
  add('python3-pycache-pyc0', py, { installIf: [`python3-pyc=${py}`, 'pyc'], origin: 'python3' });
  add('shadow', '4.14.2-r0', { depends: [LIBC], provides: cmds('4.14.2-r0', 'useradd', 'usermod', 'groupadd', 'chage') });
  add('sqlite', '3.44.2-r0', { depends: [LIBC, 'so:libreadline.so.8', 'so:libsqlite3.so.0', 'so:libz.so.1'], provides: cmds('3.44.2-r0', 'sqlite3') });
  add('libelf', '0.190-r1', { depends: [LIBC, 'so:libz.so.1', 'so:libzstd.so.1'], provides: ['so:libelf.so.1=0.190'], origin: 'elfutils' });
  add('libdw', '0.190-r1', {
    depends: [LIBC, 'so:libelf.so.1', 'so:libz.so.1', 'so:liblzma.so.5', 'so:libbz2.so.1', 'so:libzstd.so.1'],
    provides: ['so:libdw.so.1=0.190'],
    origin: 'elfutils',
  });
  add('strace', '6.6-r0', { depends: [LIBC, 'so:libdw.so.1'], provides: cmds('6.6-r0', 'strace') });
  add('sudo', '1.9.15_p5-r0', { depends: [LIBC, 'so:libz.so.1'], provides: cmds('1.9.15_p5-r0', 'sudo', 'sudoedit', 'visudo') });
  extras('sudo', '1.9.15_p5-r0');
  add('tar', '1.35-r2', { depends: [LIBC], provides: cmds('1.35-r2', 'tar') });
  add('usbutils', '017-r0', { depends: ['hwdata-usb', LIBC, 'so:libudev.so.1', 'so:libusb-1.0.so.0'], provides: cmds('017-r0', 'lsusb') });
  const vim = '9.0.2127-r0';
  add('xxd', vim, { depends: [LIBC], provides: cmds(vim, 'xxd'), origin: 'vim' });
  add('vim-common', vim, { origin: 'vim' });
  add('vim', vim, { depends: ['xxd', `vim-common=${vim}`, LIBC, 'so:libncursesw.so.6'], provides: cmds(vim, 'vim', 'vimdiff', 'ex') });
  extras('vim', vim);
  return out;
}

function coreCommunity(): IndexEntry[] {
  const out: IndexEntry[] = [];
  const add = (name: string, version: string, spec: Spec = {}) => out.push(entry('community', name, version, spec));
  // A third /bin/sh provider without provider_priority, and the highest cmd:sh version.
  add('yash', '2.55-r0', { depends: [LIBC, 'so:libncursesw.so.6'], provides: ['cmd:yash=2.55-r0'] });
  add('yash-binsh', '2.55-r0', { depends: ['yash'], provides: ['/bin/sh', 'cmd:sh=2.55-r0'], origin: 'yash' });
  add('age', '1.1.1-r9', { provides: ['cmd:age=1.1.1-r9', 'cmd:age-keygen=1.1.1-r9'] });
  add('minisign', '0.11-r1', { depends: [LIBC, 'so:libsodium.so.26'], provides: ['cmd:minisign=0.11-r1'] });
  add('ripgrep', '14.1.0-r0', { depends: [LIBC, 'so:libgcc_s.so.1', 'so:libpcre2-8.so.0'], provides: ['cmd:rg=14.1.0-r0'] });
  add('ripgrep-doc', '14.1.0-r0', { installIf: ['docs', 'ripgrep=14.1.0-r0'], origin: 'ripgrep' });
  add('cni-plugins', '1.4.0-r0');
  const k3s = '1.28.5.1-r0';
  add('k3s', k3s, { depends: ['cni-plugins', 'conntrack-tools', 'iptables'], provides: ['cmd:k3s=1.28.5.1-r0', 'cmd:kubectl=1.28.5.1-r0'] });
  add('k3s-openrc', k3s, { installIf: ['openrc', `k3s=${k3s}`], origin: 'k3s' });
  add('k3s-bash-completion', k3s, { installIf: [`k3s=${k3s}`, 'bash-completion'], origin: 'k3s' });
  // Go, statically linked; its init script comes with it in -openrc on openrc.
  add('nebula', '1.8.2-r3', { provides: ['cmd:nebula=1.8.2-r3', 'cmd:nebula-cert=1.8.2-r3'] });
  add('nebula-openrc', '1.8.2-r3', { installIf: ['openrc', 'nebula=1.8.2-r3'], origin: 'nebula' });
  add('doas', '6.8.2-r7', { depends: [LIBC], provides: ['cmd:doas=6.8.2-r7'] });
  // Stands in for sudo: must not be installed beside it (`!sudo`).
  add('doas-sudo-shim', '0.1.1-r1', { depends: ['doas', '!sudo'], provides: ['cmd:sudo=0.1.1-r1'] });
  return out;
}

/** The workspace's own repository, with the dependencies apkpkg's project specs give them (src/project.ts). */
function coreOwn(): IndexEntry[] {
  const out: IndexEntry[] = [];
  const add = (name: string, version: string, spec: Spec = {}) => out.push(entry('own', name, version, spec));
  add('psyopsOS-base', '0.1.0-r0', { depends: ['nodejs', 'cmd:openrc-run', 'cmd:rc-update'] });
  add('psyops-nodeboot', '0.1.0-r0', { depends: ['nodejs'] });
  return out;
}

function coreEdge(): IndexEntry[] {
  const out: IndexEntry[] = [];
  const add = (name: string, version: string, spec: Spec = {}) => out.push(entry('edge', name, version, spec));
  // k3s@edge needs a cni-plugins that only edge has: pinning is inherited by dependencies.
  add('k3s', '1.29.1.1-r0', { depends: ['cni-plugins>=1.4.1', 'conntrack-tools', 'iptables'], provides: ['cmd:k3s=1.29.1.1-r0'] });
  add('cni-plugins', '1.4.1-r0');
  add('k3s-openrc', '1.29.1.1-r0', { installIf: ['openrc', 'k3s=1.29.1.1-r0'], origin: 'k3s' });
  // Newer than main, but an untagged `busybox` must still come from main.
  add('busybox', '1.36.1-r20', { depends: [LIBC], provides: ['cmd:busybox=1.36.1-r20'] });
  add('conntrack-tools', '1.4.9-r0', { depends: [LIBC, 'so:libmnl.so.0'], provides: ['cmd:conntrack=1.4.9-r0'] });
  return out;
}

/** mulberry32: small, seeded, the same sequence on every machine. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SYLLABLES = ['ka', 'lo', 'mi', 'ne', 'qu', 'ra', 'si', 'tu', 'vo', 'xe', 'zy', 'bri', 'cor', 'dax', 'fen', 'gul', 'hob', 'jin', 'pex', 'wum'];
const FAMILIES = ['', 'lib', 'py3-', 'perl-', 'lua5.4-', 'font-', 'xf86-', 'php83-', 'ruby-', 'go-'];

/**
 * Filler: origins with a main package, `-dev`, `-doc`, `-openrc`, `-lang` and `-bash-completion`
 * subpackages where Alpine has them; `so:`/`cmd:`/`pc:` provides; dependencies on earlier filler
 * and on core libraries; virtual groups with several prioritised providers. Names never collide
 * with the core, so the original world resolves the same at every size.
 */
function filler(repo: string, count: number, rand: () => number, taken: Set<string>, libs: string[]): IndexEntry[] {
  const out: IndexEntry[] = [];
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rand() * list.length)]!;
  let serial = 0;
  while (out.length < count) {
    serial++;
    const base = `${pick(FAMILIES)}${pick(SYLLABLES)}${pick(SYLLABLES)}${serial.toString(36)}`;
    if (taken.has(base)) continue;
    taken.add(base);
    const version = `${1 + Math.floor(rand() * 20)}.${Math.floor(rand() * 30)}${rand() < 0.2 ? `.${Math.floor(rand() * 9)}` : ''}${rand() < 0.05 ? 'a' : ''}${rand() < 0.1 ? '_rc1' : rand() < 0.1 ? '_p2' : ''}-r${Math.floor(rand() * 5)}`;
    const depends = [LIBC];
    for (let i = Math.floor(rand() * 4); i > 0 && libs.length > 0; i--) {
      const lib = pick(libs);
      if (!depends.includes(lib)) depends.push(lib);
    }
    if (rand() < 0.1) depends.push('/bin/sh');
    const isLib = base.startsWith('lib') || rand() < 0.3;
    const provides: string[] = [];
    if (isLib) {
      const so = `so:${base}.so.${Math.floor(rand() * 5)}`;
      provides.push(`${so}=${Math.floor(rand() * 9)}.${Math.floor(rand() * 9)}.0`);
      libs.push(so);
    } else {
      provides.push(`cmd:${base}=${version}`);
    }
    const main = entry(repo, base, version, { depends, provides });
    out.push(main);
    const sub = (suffix: string, spec: Spec) => {
      if (out.length < count) out.push(entry(repo, `${base}-${suffix}`, version, { origin: base, ...spec }));
    };
    if (rand() < 0.5) sub('doc', { installIf: ['docs', `${base}=${version}`] });
    if (isLib && rand() < 0.6) sub('dev', { depends: [`${base}=${version}`, 'pkgconf'], provides: [`pc:${base}=${version.replace(/-r\d+$/, '')}`] });
    if (!isLib && rand() < 0.15) sub('openrc', { installIf: ['openrc', `${base}=${version}`] });
    if (!isLib && rand() < 0.2) sub('bash-completion', { installIf: [`${base}=${version}`, 'bash-completion'] });
    if (rand() < 0.1) sub('lang', { installIf: [`${base}=${version}`, 'lang'] });
    // Now and then a virtual group: several providers of one name, with and without k:.
    if (rand() < 0.02) {
      const virtual = `${base}-any`;
      for (let i = 0; i < 3 && out.length < count; i++) {
        out.push(entry(repo, `${base}-impl${i}`, version, { depends: [LIBC], provides: [virtual], k: i === 2 ? 0 : 10 * (i + 1), origin: base }));
      }
    }
  }
  return out;
}

/** main, community and edge entries; the same for the same options. */
export function alpineLike(options: AlpineLikeOptions = {}): AlpineLike {
  const size = options.size ?? 25_000;
  const rand = random(options.seed ?? 3_19_1);
  const main = coreMain();
  const community = coreCommunity();
  const taken = new Set([...main, ...community].map((e) => e.name));
  taken.add('pkgconf');
  main.push(entry('main', 'pkgconf', '2.1.0-r0', { depends: [LIBC], provides: ['cmd:pkgconf=2.1.0-r0', 'cmd:pkg-config=2.1.0-r0'] }));
  const rest = Math.max(0, size - main.length - community.length);
  const libs = ['so:libz.so.1', 'so:libcrypto.so.3', 'so:libssl.so.3', 'so:libncursesw.so.6'];
  main.push(...filler('main', Math.floor(rest * 0.3), rand, taken, libs));
  community.push(...filler('community', rest - Math.floor(rest * 0.3), rand, taken, libs));
  return { main, community, edge: coreEdge(), own: coreOwn() };
}
