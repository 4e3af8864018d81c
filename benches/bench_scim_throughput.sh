#!/usr/bin/env bash
# SCIM throughput, side by side in one run: airlock's /scim/v2 on SQLite, on PostgreSQL, and the
# Python `scim2-server` package (PyPI) serving the same requests.
#
#   benches/bench_scim_throughput.sh [USERS] [REQUESTS] [CONCURRENCY]     # defaults 1000 2000 16
#
# Each server gets USERS users, then REQUESTS filtered GETs (`userName eq "..."`) and REQUESTS
# PATCHes (replace displayName) with CONCURRENCY in flight, from the same Rust load generator
# (crates/airlock-server/examples/scim_load.rs). airlock runs as `airlock serve` whose only
# instance is unreachable, so no sync competes for the CPU: this measures the SCIM endpoint.
# Needs PostgreSQL on 127.0.0.1:5432 (trust auth). Everything binds 127.0.0.1 and stops at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS="${1:-1000}"; REQUESTS="${2:-2000}"; CONC="${3:-16}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/airlock-scim-bench.XXXXXX")
source benches/scim_lib.sh
cleanup() { stop_all
            psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS airlock_scim_bench WITH (FORCE)" >/dev/null 2>&1 || true
            rm -rf "$WORK"; }
trap cleanup EXIT

cargo build --release -q -p airlock-cli -p airlock-server --bins --example scim_load
# The reference server, pinned, in a cached venv (the version the closing notes compare with).
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/airlock/venvs/scim2-server-0.8.3"
if [[ ! -x "$VENV/bin/scim2-server" ]]; then
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q "scim2-server==0.8.3"
fi
psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS airlock_scim_bench WITH (FORCE)" >/dev/null
psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE airlock_scim_bench" >/dev/null
read -r SQLITE_URL SQLITE_TOKEN < <(airlock_server sqlite "sqlite://$WORK/sqlite/airlock.db")
read -r PG_URL PG_TOKEN < <(airlock_server postgres "postgres://postgres@127.0.0.1:5432/airlock_scim_bench")
PY_PORT=$(free_port)
"$VENV/bin/scim2-server" --hostname 127.0.0.1 --port "$PY_PORT" --bearer-token bench-token >"$WORK/scim2-server.log" 2>&1 &
echo $! >>"$WORK/pids"; wait_port "$PY_PORT"

echo "SCIM throughput: $USERS users, $REQUESTS requests per kind, $CONC in flight, $(nproc) CPUs"
for target in "airlock-sqlite $SQLITE_URL $SQLITE_TOKEN" "airlock-postgres $PG_URL $PG_TOKEN" "scim2-server http://127.0.0.1:$PY_PORT bench-token"; do
  read -r name url token <<<"$target"
  printf '%-17s %s\n' "$name" "$(timeout 900 target/release/examples/scim_load "$url" "$token" "$USERS" "$REQUESTS" "$CONC")"
done
