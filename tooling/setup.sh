#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine to build and test psyops, then builds it.
# Idempotent: what is already there is left alone, so running it again is quick.
#   bash tooling/setup.sh            install what is missing, install dependencies, build
set -euo pipefail
cd "$(dirname "$0")/.."

PNPM_VERSION=12.4.2
NODE_MIN=20.19
# Debian packages the tests use: the real minisign for interop; `script` (bsdutils) for a
# pseudo-terminal in the password-prompt test; nebula (nebula-cert, nebula) for psynet; openssl
# and age for APK signatures and site secrets. build-iso: the Debian kernel and static busybox the
# default image wraps, xorriso, squashfs-tools, mtools, grub and syslinux to make the ISO, kmod
# (depmod) and cpio; e2fsprogs for secret volumes; QEMU and OVMF to boot images.
APT_PACKAGES=(minisign bsdutils nebula openssl age
  linux-image-amd64 busybox-static xorriso squashfs-tools mtools grub-common grub-efi-amd64-bin
  isolinux syslinux-common kmod cpio e2fsprogs qemu-system-x86 ovmf)

step() { printf 'setup: %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Node.js: the one thing this script does not install (Debian's is older than psyops needs).
if ! command -v node >/dev/null; then
  echo "setup: Node.js >= $NODE_MIN is required and not installed" >&2
  exit 1
fi
if ! node -e "const [a,b]=process.versions.node.split('.').map(Number);const [x,y]='$NODE_MIN'.split('.').map(Number);process.exit(a>x||(a===x&&b>=y)?0:1)"; then
  echo "setup: Node.js >= $NODE_MIN is required, found $(node --version)" >&2
  exit 1
fi

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
  as_root npm install --global --no-fund --no-audit --loglevel=error "pnpm@$PNPM_VERSION"
fi

step "installing dependencies"
pnpm install --frozen-lockfile

step "building"
pnpm build
