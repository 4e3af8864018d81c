#!/usr/bin/env bash
# Conformance of airlock's /scim/v2 as judged by `scim-sanity probe` (PyPI, pinned), against a
# fresh `airlock serve` on SQLite whose SCIM store is the directory.
#
#   benches/scim_sanity.sh            # prints scim-sanity's report; exit status is scim-sanity's
#
# The probe creates, changes and deletes Users and Groups (that is its test). The service's only
# Airflow instance is unreachable, so nothing leaves this machine; everything binds 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
SCIM_SANITY_VERSION="${SCIM_SANITY_VERSION:-0.7.4}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/airlock-scim-sanity.XXXXXX")
source benches/scim_lib.sh
cleanup() { stop_all; rm -rf "$WORK"; }
trap cleanup EXIT

cargo build --release -q -p airlock-cli --bins
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q "scim-sanity==$SCIM_SANITY_VERSION"
read -r URL TOKEN < <(airlock_server sqlite "sqlite://$WORK/sqlite/airlock.db")
echo "scim-sanity $SCIM_SANITY_VERSION probe $URL"
"$WORK/venv/bin/scim-sanity" probe "$URL" --token "$TOKEN" --i-accept-side-effects
