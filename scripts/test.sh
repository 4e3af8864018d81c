#!/usr/bin/env bash
# The one command that installs everything the tests need and runs them all:
#   - PostgreSQL on 127.0.0.1:5432 with trust auth for local test databases (installed from
#     Debian's packages if none answers),
#   - the pinned Airflow virtualenvs (scripts/install-airflow.sh),
#   - the pinned SCIM conformance checker's virtualenv (scripts/install-scim-tester.sh),
#   - the pinned OpenID Connect provider, npm's oidc-provider (scripts/install-oidc-provider.sh),
#   - then rustfmt check, clippy with warnings as errors, and the whole test suite.
# Real services only: tests start Airflow, proxies and servers on 127.0.0.1 themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf "\n== %s (at %ss)\n" "$*" "$SECONDS"; }

ensure_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    echo "postgresql: answering on 127.0.0.1:5432"
    return
  fi
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "postgresql: not installed; installing Debian's package"
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  # Test machines only: let local test code connect as postgres without a password.
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p 5432 && { echo "postgresql: started"; return; }
    sleep 0.5
  done
  echo "postgresql: did not come up on 127.0.0.1:5432" >&2
  exit 1
}

ensure_tools() {
  local missing=()
  command -v openssl >/dev/null || missing+=(openssl)
  command -v python3 >/dev/null || missing+=(python3 python3-venv)
  # OpenLDAP for the LDAP directory tests (the test kit runs its own slapd on free ports).
  [ -x /usr/sbin/slapd ] || missing+=(slapd)
  command -v ldapmodify >/dev/null || missing+=(ldap-utils)
  # rsyslog for the syslog sink's tests (the test kit runs its own rsyslogd on free ports).
  [ -x /usr/sbin/rsyslogd ] || missing+=(rsyslog)
  # Its TLS stream driver (gtls) for the syslog-over-TLS tests.
  compgen -G '/usr/lib/*/rsyslog/lmnsd_gtls.so' >/dev/null || missing+=(rsyslog-gnutls)
  if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

step "tools"
ensure_tools
step "postgresql"
ensure_postgres
step "airflow virtualenvs"
scripts/install-airflow.sh
step "scim conformance checker virtualenv"
scripts/install-scim-tester.sh
step "oidc provider (npm)"
scripts/install-oidc-provider.sh
step "rustfmt"
cargo fmt --all -- --check
step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "tests"
# Integration tests mostly wait on Airflow; more threads than cores keeps the run short.
RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}" cargo test --workspace --locked
