#!/usr/bin/env bash
# Installs the pinned Apache Airflow versions the test kit runs, from PyPI, into cached
# virtualenvs under ${AIRLOCK_CACHE:-$HOME/.cache/airlock}/venvs. Idempotent: a venv whose
# marker file says the install completed is reused as it is.
#
#   scripts/install-airflow.sh            # both versions
#   scripts/install-airflow.sh 3          # only Airflow 3.3.2 + FAB 3.10.2
#   scripts/install-airflow.sh 2          # only Airflow 2.11.2
set -euo pipefail

CACHE="${AIRLOCK_CACHE:-$HOME/.cache/airlock}"
PYTHON="${AIRLOCK_PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3

install_one() {
  local name="$1"; shift
  local venv="$CACHE/venvs/$name"
  local marker="$venv/.airlock-installed"
  local want="$*"
  if [[ -f "$marker" && "$(cat "$marker")" == "$want" ]]; then
    echo "airflow venv $name: cached at $venv"
    return
  fi
  echo "airflow venv $name: installing $want"
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip setuptools wheel
  # shellcheck disable=SC2086
  "$venv/bin/pip" install --quiet $want
  "$venv/bin/airflow" version >/dev/null
  echo "$want" > "$marker"
  echo "airflow venv $name: ready"
}

which="${1:-all}"
if [[ "$which" == all || "$which" == 3 ]]; then
  install_one airflow-3.3.2 "apache-airflow==3.3.2 apache-airflow-providers-fab==3.10.2"
fi
if [[ "$which" == all || "$which" == 2 ]]; then
  # Airflow 2.11's FAB provider must stay on the 1.x line (2.x requires Airflow 3).
  install_one airflow-2.11.2 "apache-airflow==2.11.2 apache-airflow-providers-fab<2"
fi
