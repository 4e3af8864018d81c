#!/usr/bin/env bash
# Quickstart: airlock's main job, a directory sync, against a throw-away local Airflow 3.
#
#   scripts/quickstart.sh           # run everything, then stop Airflow
#   scripts/quickstart.sh --keep    # leave Airflow running afterwards, to try more commands
#
# What it does, from the repository root:
#   1. installs Apache Airflow 3.3.2 into a cached virtualenv (scripts/install-airflow.sh 3;
#      minutes the first time, instant afterwards),
#   2. builds `airlock` and the developer tool `airlock-dev` (release),
#   3. starts a private Airflow 3 on 127.0.0.1 with a few sample users and a custom role
#      (`airlock-dev airflow-up`), which writes .airlock-quickstart/airlock.toml for it,
#   4. adds a sample directory and policy (examples/quickstart/), then runs `airlock instances`,
#      `airlock plan`, `airlock apply`, a leaver (removed from the directory, `airlock sync`),
#      `airlock inventory`, `airlock inventory diff` and `airlock audit verify`,
#   5. stops Airflow (unless --keep).
#
# Everything it writes is in .airlock-quickstart/ (git-ignored). Re-running starts over with a
# fresh Airflow and a fresh airlock store, after stopping one that an earlier --keep left.
set -euo pipefail

usage() { sed -n '2,19s/^# \{0,1\}//p' "$0"; }

keep=false
for arg in "$@"; do
  case "$arg" in
    --keep) keep=true ;;
    -h | --help) usage; exit 0 ;;
    *) echo "quickstart: unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
WORK=.airlock-quickstart
CONFIG="$WORK/airlock.toml"
READY="$WORK/airflow.ready"
LOG="$WORK/airlock-dev.log"
PIDFILE="$WORK/airlock-dev.pid"
AIRLOCK=target/release/airlock
AIRLOCK_DEV=target/release/airlock-dev
READY_TIMEOUT_SECS="${AIRLOCK_QUICKSTART_TIMEOUT:-300}"

step() { printf '\n==> %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

# Waits up to $2 seconds for process $1 to exit; returns non-zero if it is still there.
wait_gone() {
  local pid=$1 deadline=$((SECONDS + $2))
  while kill -0 "$pid" 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# Stops the airlock-dev an earlier `--keep` run left, if its pid file still names one.
stop_previous() {
  [[ -f "$PIDFILE" ]] || return 0
  local pid
  pid=$(cat "$PIDFILE")
  if [[ "$pid" =~ ^[0-9]+$ ]] && ps -p "$pid" -o args= 2>/dev/null | grep -q airlock-dev; then
    echo "stopping the Airflow an earlier --keep run left (airlock-dev, pid $pid)"
    kill -TERM "$pid"
    wait_gone "$pid" 30 || { echo "quickstart: airlock-dev pid $pid did not stop" >&2; exit 1; }
  fi
  rm -f "$PIDFILE"
}

dev_pid=""
succeeded=false
cleanup() {
  local status=$?
  if [[ -n "$dev_pid" ]] && ! { $keep && $succeeded; }; then
    echo
    echo "==> stopping Airflow (airlock-dev, pid $dev_pid)"
    # Closing its stdin is enough; SIGTERM makes it certain.
    [[ -n "${dev_stdin:-}" ]] && exec {dev_stdin}>&-
    kill -TERM "$dev_pid" 2>/dev/null || true
    wait_gone "$dev_pid" 30 || echo "quickstart: airlock-dev pid $dev_pid still running" >&2
    rm -f "$PIDFILE"
  fi
  exit "$status"
}
trap cleanup EXIT

step "install Airflow 3 (cached virtualenv)"
run scripts/install-airflow.sh 3

step "build airlock and airlock-dev (release)"
run cargo build --release -p airlock-cli -p airlock-testkit --bins

step "start a local Airflow 3 on 127.0.0.1 with sample users"
mkdir -p "$WORK"
stop_previous
# A fresh store each run: the previous run's Airflow, and so its snapshots, are gone.
rm -f "$READY" "$LOG" "$CONFIG" "$WORK/airflow-admin.password" "$WORK"/airlock.db*
dev_args=(airflow-up --version 3 --sample --config-out "$CONFIG" --ready-file "$READY")
if $keep; then
  # Detached (own session, stdin at /dev/null) so that it outlives this script.
  printf '$ %s %s &\n' "$AIRLOCK_DEV" "${dev_args[*]} --ignore-stdin"
  setsid "$AIRLOCK_DEV" "${dev_args[@]}" --ignore-stdin </dev/null >"$LOG" 2>&1 &
  dev_pid=$!
else
  # Its stdin is a pipe from this script: when the script ends, however it ends, airlock-dev
  # sees end-of-file and stops Airflow.
  printf '$ %s %s &\n' "$AIRLOCK_DEV" "${dev_args[*]}"
  exec {dev_stdin}> >(exec "$AIRLOCK_DEV" "${dev_args[@]}" >"$LOG" 2>&1)
  dev_pid=$!
fi
echo "$dev_pid" >"$PIDFILE"

echo "waiting for Airflow (output in $LOG) ..."
deadline=$((SECONDS + READY_TIMEOUT_SECS))
until [[ -f "$READY" ]]; do
  if ! kill -0 "$dev_pid" 2>/dev/null; then
    echo "quickstart: airlock-dev exited before Airflow was ready; its output:" >&2
    cat "$LOG" >&2
    exit 1
  fi
  if ((SECONDS >= deadline)); then
    echo "quickstart: Airflow not ready after ${READY_TIMEOUT_SECS} s; airlock-dev's output:" >&2
    cat "$LOG" >&2
    exit 1
  fi
  sleep 0.5
done
cat "$LOG"
echo
echo "the config airlock-dev wrote ($CONFIG; the admin password is in a file next to it):"
sed 's/^/    /' "$CONFIG"

step "add a sample directory and policy (examples/quickstart/)"
cp examples/quickstart/people.yaml examples/quickstart/policy.toml "$WORK/"
# `policy` is a top-level key, so it goes before the tables airlock-dev wrote.
{ printf 'policy = "policy.toml"\n\n[directory]\nkind = "file"\npath = "people.yaml"\n\n'; cat "$CONFIG"; } >"$CONFIG.new"
mv "$CONFIG.new" "$CONFIG"
run "$AIRLOCK" --config "$CONFIG" config check

step "airlock instances: can airlock reach the Airflow and log in?"
run "$AIRLOCK" --config "$CONFIG" instances

step "airlock inventory: who has access to what before the sync (stores a snapshot)"
run "$AIRLOCK" --config "$CONFIG" inventory

step "airlock plan: what the directory and the policy say should change"
run "$AIRLOCK" --config "$CONFIG" plan -v

step "airlock apply: make it so"
run "$AIRLOCK" --config "$CONFIG" apply --yes

step "a leaver: grace.hopper is removed from the directory; airlock sync suspends her at once"
python3 - "$WORK/people.yaml" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
start = text.index('  - id: "00u-grace"')
end = text.index('  - id: ', start + 1)
open(path, "w").write(text[:start] + text[end:])
PY
run "$AIRLOCK" --config "$CONFIG" sync

step "airlock sync again: nothing left to do"
run "$AIRLOCK" --config "$CONFIG" sync

step "airlock inventory and inventory diff: the result, and what changed"
"$AIRLOCK" --config "$CONFIG" inventory >/dev/null
run "$AIRLOCK" --config "$CONFIG" inventory diff

step "airlock audit: every change is in a tamper-evident trail"
run "$AIRLOCK" --config "$CONFIG" audit verify
printf '$ %s\n' "$AIRLOCK --config $CONFIG audit export | tail -n 3"
"$AIRLOCK" --config "$CONFIG" audit export | tail -n 3

succeeded=true
step "done"
if $keep; then
  cat <<EOF
Airflow keeps running at $(cat "$READY") (airlock-dev pid $dev_pid, log $LOG).
Try more commands, for example:
    $AIRLOCK --config $CONFIG inventory -o csv
    $AIRLOCK --config $CONFIG plan        # after editing $WORK/people.yaml or $WORK/policy.toml
Stop it with:
    kill $dev_pid        # or run scripts/quickstart.sh again, which stops it first
EOF
else
  echo "everything airlock wrote is in $WORK/; rerun with --keep to leave Airflow running"
fi
