#!/usr/bin/env bash
# Test the Airflow bridge in its own virtualenv: Airflow 3 and Prefect 3 cannot share one.
#
#   airflow_bridge/ci.sh              # from anywhere; `make test` calls it
#   airflow_bridge/ci.sh -k units     # extra arguments go to pytest
#
# Creates $AIRFLOW_VENV (default .venv-airflow at the repo root) with apache-airflow 3.x and
# this package, reinstalling only when pyproject.toml changed. Prefect itself comes from the
# main project's venv (REDDIT_PIPELINE_MAIN_VENV, default .venv): the end-to-end tests start a
# Prefect server and worker from it, so run `make` (or the main install) first.
set -euo pipefail

BRIDGE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$BRIDGE_DIR")"
PYTHON="${PYTHON:-python3}"
AIRFLOW_VENV="${AIRFLOW_VENV:-$REPO_DIR/.venv-airflow}"
# The tested minor. The floor in pyproject.toml (3.3.2) is the release these tests run on: its
# triggerer calls a trigger's on_kill when a user kills a deferred task (apache/airflow#65590).
AIRFLOW_SPEC="${AIRFLOW_SPEC:-apache-airflow>=3.3.2,<3.4}"
STAMP="$AIRFLOW_VENV/.bridge-installed"

# Reinstall when pyproject.toml changed or another AIRFLOW_SPEC is asked for.
if [[ ! -f "$STAMP" || "$BRIDGE_DIR/pyproject.toml" -nt "$STAMP" \
    || "$(cat "$STAMP")" != "$AIRFLOW_SPEC" ]]; then
    echo "ci.sh: installing Airflow and the bridge into $AIRFLOW_VENV"
    "$PYTHON" -m venv "$AIRFLOW_VENV"
    "$AIRFLOW_VENV/bin/pip" install --quiet --upgrade pip
    # Airflow's constraints file pins a tested set; use it when it can be fetched (it lives
    # outside the package registries, so offline CI goes on without it).
    constraint_args=()
    if [[ -n "${AIRFLOW_CONSTRAINTS_URL:-}" ]]; then
        constraints="$AIRFLOW_VENV/constraints.txt"
        if curl -fsSL --max-time 20 "$AIRFLOW_CONSTRAINTS_URL" -o "$constraints"; then
            constraint_args=(--constraint "$constraints")
        else
            echo "ci.sh: constraints not reachable ($AIRFLOW_CONSTRAINTS_URL); installing without"
        fi
    fi
    "$AIRFLOW_VENV/bin/pip" install --quiet "${constraint_args[@]}" \
        "$AIRFLOW_SPEC" -e "$BRIDGE_DIR[test]"
    echo "$AIRFLOW_SPEC" > "$STAMP"
fi

# Every Airflow setting the tests need is set by the tests; this home only keeps stray
# imports away from ~/airflow.
export AIRFLOW_HOME="${AIRFLOW_HOME:-$(mktemp -d -t airflow-bridge-XXXXXX)}"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export REDDIT_PIPELINE_MAIN_VENV="${REDDIT_PIPELINE_MAIN_VENV:-$REPO_DIR/.venv}"
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1

cd "$BRIDGE_DIR"
exec "$AIRFLOW_VENV/bin/python" -m pytest -p no:cacheprovider "$@"
