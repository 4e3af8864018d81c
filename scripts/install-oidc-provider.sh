#!/usr/bin/env bash
# Installs the pinned OpenID Connect provider the test kit runs (npm's oidc-provider 9.13.3, as
# locked in crates/airlock-testkit/oidc/package-lock.json) with `npm ci` into a cached directory
# under ${AIRLOCK_CACHE:-$HOME/.cache/airlock}/node, as scripts/install-scim-tester.sh does with a
# virtualenv. Idempotent: an install whose marker matches the lock file is reused. Installs
# Debian's nodejs and npm when they are missing. crates/airlock-testkit/src/oidc.rs runs the
# provider from there.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${AIRLOCK_CACHE:-$HOME/.cache/airlock}"
name=oidc-provider-9.13.3
src=crates/airlock-testkit/oidc
dir="$CACHE/node/$name"
marker="$dir/.airlock-installed"

missing=()
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  echo "oidc provider: installing Debian's ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "oidc provider: \`$tool\` is missing" >&2; exit 1; }
done
# oidc-provider 9 needs Node.js 20.19 or later (Debian 12's own nodejs is 18).
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
  echo "oidc provider: Node.js $(node --version) is too old; oidc-provider 9 needs 20.19 or later" >&2
  exit 1
fi

want="$name $(sha256sum "$src/package-lock.json" | cut -d' ' -f1)"
if [[ -f "$marker" && "$(cat "$marker")" == "$want" ]]; then
  echo "oidc provider $name: cached at $dir"
  exit 0
fi
echo "oidc provider $name: installing from $src/package-lock.json"
rm -rf "$dir"
mkdir -p "$dir"
cp "$src/package.json" "$src/package-lock.json" "$dir/"
(cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
installed=$(node -p 'require(process.argv[1]).version' "$dir/node_modules/oidc-provider/package.json")
if [[ "$installed" != "${name#oidc-provider-}" ]]; then
  echo "oidc provider: npm installed oidc-provider $installed, want ${name#oidc-provider-}" >&2
  exit 1
fi
echo "$want" > "$marker"
echo "oidc provider $name: ready"
