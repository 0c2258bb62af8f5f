#!/usr/bin/env bash
# The README's main job until build-iso lands: a signing round trip through the built CLI, in a
# throw-away workspace, checked by the real minisign in both directions.
set -euo pipefail
cd "$(dirname "$0")/.."
cli="$(pwd)/packages/cli/dist/cli.js"
psyops() { node "$cli" "$@"; }

demo=$(mktemp -d "${TMPDIR:-/tmp}/psyops-demo.XXXXXX")
trap 'rm -rf "$demo"' EXIT

echo "== psyops init (a workspace with an unencrypted demo key)"
psyops init "$demo/workspace" --no-password
cd "$demo/workspace"
printf 'psyopsOS demo artifact\n' > artifact.txt

echo "== psyops sign, then verify with psyops and with the real minisign"
psyops sign -m artifact.txt -t "demo artifact"
psyops verify -m artifact.txt
minisign -V -p keys/minisign.pub -m artifact.txt

echo "== minisign signs, psyops verifies"
minisign -S -s keys/minisign.key -m artifact.txt -x artifact.txt.by-minisign.minisig -t "signed by minisign"
psyops verify -m artifact.txt -x artifact.txt.by-minisign.minisig

echo "== a changed file is refused"
echo tampered >> artifact.txt
if psyops verify -m artifact.txt; then echo "demo: tampering went unnoticed" >&2; exit 1; fi
echo "demo: signing round trip OK"
