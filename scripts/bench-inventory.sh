#!/usr/bin/env bash
# Benchmark: `airlock inventory` of an Airflow with many users, on Airflow 3 and Airflow 2.
#
#   scripts/bench-inventory.sh                       # 2000 users, 5 runs, Airflow 3 then 2
#   scripts/bench-inventory.sh --users 500 --runs 3 --versions 3
#
# For each version it starts a private Airflow on 127.0.0.1 (`airlock-dev airflow-up`), creates
# the synthetic users through the REST API, runs `airlock inventory --stats -o json` RUNS times
# and prints, per version: the wall time of the whole command and the inventory's own time
# (median, min, max), the HTTP calls made by kind, and the minimum possible, one call per page
# of users and of roles: ceil(users / 100) + ceil(roles / 100) (100 is Airflow's largest page).
# See benches/README.md. Everything is bounded in time; the servers are stopped at the end.
set -euo pipefail

usage() { sed -n '2,12s/^# \{0,1\}//p' "$0"; }

users=2000
runs=5
versions="3 2"
while (($#)); do
  case "$1" in
    --users) users=${2:?--users needs a number}; shift 2 ;;
    --runs) runs=${2:?--runs needs a number}; shift 2 ;;
    --versions) versions=${2:?--versions needs a list such as \"3 2\"}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench: unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
done
[[ "$users" =~ ^[0-9]+$ && "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "bench: --users and --runs take numbers" >&2; exit 2; }
for v in $versions; do
  [[ "$v" == 3 || "$v" == 2 ]] || { echo "bench: unknown version $v (3 or 2)" >&2; exit 2; }
done

cd "$(dirname "$0")/.."
AIRLOCK="$PWD/target/release/airlock"
AIRLOCK_DEV="$PWD/target/release/airlock-dev"
# Seeding is bounded by the server's password hashing (about 17 users/s on Airflow 3 and 4/s
# on Airflow 2 on a 2-core machine): allow 1 s per user plus start-up.
SEED_TIMEOUT_SECS="${AIRLOCK_BENCH_SEED_TIMEOUT:-$((300 + users))}"
RUN_TIMEOUT_SECS="${AIRLOCK_BENCH_RUN_TIMEOUT:-300}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/airlock-bench.XXXXXX")

dev_pid=""
dev_stdin=""
stop_dev() {
  [[ -n "$dev_pid" ]] || return 0
  [[ -n "$dev_stdin" ]] && exec {dev_stdin}>&-
  kill -TERM "$dev_pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while kill -0 "$dev_pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  dev_pid=""
  dev_stdin=""
}
cleanup() {
  local status=$?
  stop_dev
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT

echo "==> install Airflow (cached virtualenvs)"
for v in $versions; do scripts/install-airflow.sh "$v"; done
echo "==> build airlock and airlock-dev (release)"
cargo build --release -p airlock-cli -p airlock-testkit --bins

# "local: 2001 users, 5 roles in 1.23s; 24 HTTP calls (a=1, b=2), 0 retries, 1.10s waiting on
# Airflow" + wall seconds -> one summary row. Reads "WALL<TAB>STATS LINE" lines on stdin.
summarize() {
  awk -F'\t' -v airflow="$1" '
    function median(a, n,   i, j, t) {
      for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
      return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
    }
    function mmm(a, n,   s, lo, hi, i) {
      lo = a[1]; hi = a[1]
      for (i = 2; i <= n; i++) { if (a[i] < lo) lo = a[i]; if (a[i] > hi) hi = a[i] }
      return sprintf("%.2f / %.2f / %.2f", median(a, n), lo, hi)
    }
    {
      n++; wall[n] = $1; line = $2
      match(line, /[0-9]+ users/); u = substr(line, RSTART, RLENGTH) + 0
      match(line, /[0-9]+ roles/); r = substr(line, RSTART, RLENGTH) + 0
      match(line, /in [0-9.]+s;/); inv[n] = substr(line, RSTART + 3, RLENGTH - 5) + 0
      match(line, /[0-9]+ HTTP calls/); total = substr(line, RSTART, RLENGTH) + 0
      match(line, /\([^)]*\)/); kinds = substr(line, RSTART + 1, RLENGTH - 2)
      match(line, /[0-9]+ retries/); retries += substr(line, RSTART, RLENGTH) + 0
      if (n == 1) { first_total = total; first_kinds = kinds; users = u; roles = r }
      else if (total != first_total || kinds != first_kinds || u != users || r != roles) varied = 1
    }
    END {
      minimum = int((users + 99) / 100) + int((roles + 99) / 100)
      printf "%-8s %6d %5d %4d  %-20s  %-20s  %5d  %7d  %s%s\n", airflow, users, roles, n,
        mmm(wall, n), mmm(inv, n), first_total, minimum, first_kinds,
        (varied ? " (varied between runs, see above)" : "") (retries ? sprintf("; %d retries", retries) : "")
    }'
}

rows=()
seed_notes=()
for v in $versions; do
  echo
  echo "==> Airflow $v: start and create $users users (bounded at ${SEED_TIMEOUT_SECS} s)"
  dir="$WORK/v$v"
  mkdir -p "$dir"
  started=$SECONDS
  exec {dev_stdin}> >(exec "$AIRLOCK_DEV" airflow-up --version "$v" --users "$users" \
    --config-out "$dir/airlock.toml" --ready-file "$dir/ready" >"$dir/airlock-dev.log" 2>&1)
  dev_pid=$!
  deadline=$((SECONDS + SEED_TIMEOUT_SECS))
  until [[ -f "$dir/ready" ]]; do
    if ! kill -0 "$dev_pid" 2>/dev/null || ((SECONDS >= deadline)); then
      echo "bench: Airflow $v not ready (airlock-dev exited or ${SEED_TIMEOUT_SECS} s passed); its output:" >&2
      cat "$dir/airlock-dev.log" >&2
      exit 1
    fi
    sleep 1
  done
  grep -v 'synthetic users: ' "$dir/airlock-dev.log" || true
  seeded=$(grep -o 'created [0-9]* synthetic users in [0-9.]* s ([0-9.]* users/s)' "$dir/airlock-dev.log" || echo "no synthetic users")
  version=$(grep -o 'airflow [0-9.]* ready' "$dir/airlock-dev.log" | awk '{print $2}')
  seed_notes+=("Airflow $version: $seeded; ready $((SECONDS - started)) s after launch")

  echo "==> Airflow $version: $runs x airlock inventory --stats -o json"
  : >"$dir/results.tsv"
  for i in $(seq 1 "$runs"); do
    t0=$EPOCHREALTIME
    if ! timeout "$RUN_TIMEOUT_SECS" "$AIRLOCK" --config "$dir/airlock.toml" inventory --stats -o json \
      >/dev/null 2>"$dir/stderr"; then
      echo "bench: airlock inventory failed or took over ${RUN_TIMEOUT_SECS} s; its stderr:" >&2
      cat "$dir/stderr" >&2
      exit 1
    fi
    t1=$EPOCHREALTIME
    stats=$(grep -E '^[^ ]+: [0-9]+ users, ' "$dir/stderr" | head -n 1)
    [[ -n "$stats" ]] || { echo "bench: no --stats line in:" >&2; cat "$dir/stderr" >&2; exit 1; }
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    echo "run $i: ${wall}s wall; $stats"
    printf '%s\t%s\n' "$wall" "$stats" >>"$dir/results.tsv"
  done
  rows+=("$(summarize "$version" <"$dir/results.tsv")")
  echo "==> Airflow $version: stopping"
  stop_dev
done

echo
echo "== airlock inventory, $users synthetic users (+ admin), $runs runs per version, $(nproc 2>/dev/null || echo '?') CPUs"
echo "   wall = whole command (start-up, inventory, snapshot write); inventory = --stats' own time"
printf '%-8s %6s %5s %4s  %-20s  %-20s  %5s  %7s  %s\n' airflow users roles runs \
  "wall s (med/min/max)" "inv. s (med/min/max)" calls minimum "calls by kind"
for row in "${rows[@]}"; do echo "$row"; done
echo "   minimum = ceil(users / 100) + ceil(roles / 100): one call per page of users and of roles"
echo
echo "== seeding"
for note in "${seed_notes[@]}"; do echo "   $note"; done
