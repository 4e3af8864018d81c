#!/usr/bin/env bash
# Installs the pinned SCIM conformance checker (scim2-tester, from the python-scim project on
# PyPI) into a cached virtualenv under ${AIRLOCK_CACHE:-$HOME/.cache/airlock}/venvs, as
# scripts/install-airflow.sh does for Airflow. Idempotent: a venv whose marker says the install
# completed is reused. crates/airlock-cli/tests/scim_conformance.rs runs it against
# `airlock serve` through scripts/scim-conformance.py.
set -euo pipefail

CACHE="${AIRLOCK_CACHE:-$HOME/.cache/airlock}"
PYTHON="${AIRLOCK_PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3

name=scim2-tester-0.5.2
# The checker and what it resolved to when its totals were recorded, so that they stay comparable.
want="scim2-tester[httpx2]==0.5.2 scim2-client==0.13.2 scim2-models==0.12.3 httpx2==2.16.2"
venv="$CACHE/venvs/$name"
marker="$venv/.airlock-installed"
if [[ -f "$marker" && "$(cat "$marker")" == "$want" ]]; then
  echo "scim checker venv $name: cached at $venv"
  exit 0
fi
echo "scim checker venv $name: installing $want"
rm -rf "$venv"
"$PYTHON" -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
# shellcheck disable=SC2086
"$venv/bin/pip" install --quiet $want
"$venv/bin/python" -c "import scim2_tester, httpx2"
echo "$want" > "$marker"
echo "scim checker venv $name: ready"
