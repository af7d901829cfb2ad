"""The example DAG end to end: `airflow dags test` (deferral and triggerer included) against a
real Prefect server whose process worker runs the real pipeline into a temporary warehouse."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import MAIN_BIN, REPO_DIR, Deployment

pytestmark = pytest.mark.e2e

DAG_ID = "reddit_pipeline_daily"
DAGS_TEST_TIMEOUT = 1200  # seconds; a busy 2-core machine


def dags_test(
    env: dict[str, str], logical_date: str, **extra_env: Any
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "dags", "test", DAG_ID, logical_date],
        env={**env, **{k: str(v) for k, v in extra_env.items()}},
        capture_output=True,
        text=True,
        timeout=DAGS_TEST_TIMEOUT,
    )


def flow_runs_of(deployment: Deployment, warehouse: Path) -> list[dict[str, Any]]:
    """The deployment's runs whose config wrote to this warehouse (this test's runs only)."""
    with deployment.server.client() as client:
        response = client.post(
            "/flow_runs/filter",
            json={"flow_runs": {"deployment_id": {"any_": [deployment.id]}}, "limit": 200},
        )
    response.raise_for_status()
    return [
        run
        for run in response.json()
        if (run["parameters"].get("config") or {}).get("warehouse_path") == str(warehouse)
    ]


def task_try(env: dict[str, str], idempotency_key: str) -> tuple[int, str]:
    """The Airflow task instance behind a Prefect run (its key names the Airflow run), read from
    the metadata database: its try number and state."""
    run_id = idempotency_key.split("/")[3]
    database = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")
    with sqlite3.connect(database) as con:
        row = con.execute(
            "select try_number, state from task_instance where dag_id = ? and run_id = ?"
            " and task_id = 'run_reddit_pipeline'",
            (DAG_ID, run_id),
        ).fetchone()
    assert row is not None, f"no task instance for run {run_id!r}"
    return row[0], row[1]


def warehouse_windows(warehouse: Path) -> dict[str, list[Any]]:
    """Per table: row count and the created_at range, read with the main venv's duckdb."""
    script = (
        "import duckdb, json, sys\n"
        "con = duckdb.connect(sys.argv[1], read_only=True)\n"
        "print(json.dumps({t: list(con.execute(f'select count(*), min(created_at)::varchar,"
        " max(created_at)::varchar from {t}').fetchone()) for t in ('posts', 'comments')}))\n"
    )
    done = subprocess.run(
        [str(MAIN_BIN / "python"), "-c", script, str(warehouse)],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_dag_runs_the_pipeline_over_its_data_interval(
    deployment: Deployment, airflow_env: dict[str, str], tmp_path: Path
) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    # The DAG's default deployment (prefect.yaml's `daily`); the run's paths through the
    # Airflow Variable.
    done = dags_test(
        airflow_env,
        # A manual run's data interval is the last complete day before it: 03-02..03-03.
        "2024-03-03T00:00:00+00:00",
        AIRFLOW_VAR_REDDIT_PIPELINE_CONFIG=json.dumps(
            {
                "source": "sample",
                "lake_dir": str(tmp_path / "lake"),
                "warehouse_path": str(warehouse),
                "state_path": str(tmp_path / "state.duckdb"),
            }
        ),
    )
    output = done.stdout + done.stderr
    (tmp_path / "dags_test.log").write_text(output)
    assert done.returncode == 0, output[-6000:]
    runs = flow_runs_of(deployment, warehouse)
    assert len(runs) == 1, runs
    assert runs[0]["state"]["type"] == "COMPLETED"
    config = runs[0]["parameters"]["config"]
    assert config["since"].startswith("2024-03-02T00:00:00")
    assert config["until"].startswith("2024-03-03T00:00:00")
    assert runs[0]["idempotency_key"].startswith(f"airflow/{DAG_ID}/run_reddit_pipeline/")

    tables = warehouse_windows(warehouse)
    for table, (rows, first, last) in tables.items():
        assert rows > 0, f"{table} is empty"
        assert first >= "2024-03-02" and last < "2024-03-03", (table, first, last)


def test_a_backfill_of_an_earlier_day_after_a_later_one_loads_the_earlier_day(
    deployment: Deployment, airflow_env: dict[str, str], tmp_path: Path
) -> None:
    """What `airflow backfill` does once the DAG has been running: an earlier day's window
    after a later one's, into the same warehouse and state (watermarks past that day)."""
    warehouse = tmp_path / "warehouse.duckdb"
    variables = {
        "AIRFLOW_VAR_REDDIT_PIPELINE_CONFIG": json.dumps(
            {
                "source": "sample",
                "lake_dir": str(tmp_path / "lake"),
                "warehouse_path": str(warehouse),
                "state_path": str(tmp_path / "state.duckdb"),
            }
        )
    }
    # Dates no other test here uses: a logical date names the Airflow run, and so the key.
    for logical_date in ("2024-03-07T00:00:00+00:00", "2024-03-06T00:00:00+00:00"):
        done = dags_test(airflow_env, logical_date, **variables)
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-6000:]
    runs = flow_runs_of(deployment, warehouse)
    assert sorted(r["parameters"]["config"]["since"][:10] for r in runs) == [
        "2024-03-05",
        "2024-03-06",
    ]
    assert {r["state"]["type"] for r in runs} == {"COMPLETED"}
    for table, (_rows, first, last) in warehouse_windows(warehouse).items():
        # The earlier day's rows are there, though the later day ran first.
        assert first.startswith("2024-03-05") and last < "2024-03-07", (table, first, last)


def test_a_failed_prefect_run_fails_the_dag_with_prefects_message_and_one_run(
    deployment: Deployment, airflow_env: dict[str, str], tmp_path: Path
) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    missing = tmp_path / "missing" / "RC_2024-03.zst"
    # Through the run's conf (params): valid parameters that fail once the flow runs.
    conf = {
        "config": {
            "source": "dump",
            "dump_paths": [str(missing)],
            "lake_dir": str(tmp_path / "lake"),
            "warehouse_path": str(warehouse),
            "state_path": str(tmp_path / "state.duckdb"),
        },
    }
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "airflow"),
            "dags",
            "test",
            DAG_ID,
            "2024-03-05T00:00:00+00:00",
            "-c",
            json.dumps(conf),
        ],
        env=airflow_env,
        capture_output=True,
        text=True,
        timeout=DAGS_TEST_TIMEOUT,
    )
    output = done.stdout + done.stderr
    (tmp_path / "dags_test.log").write_text(output)
    assert done.returncode != 0, output[-6000:]
    assert "ended Failed" in output, output[-6000:]
    assert "dump file not found" in output, output[-6000:]
    runs = flow_runs_of(deployment, warehouse)
    assert len(runs) == 1, runs
    assert runs[0]["state"]["type"] == "FAILED"
    # The task was retried (REDDIT_PIPELINE_DAG_RETRIES=1): the second try found the first
    # try's run by its idempotency key, and failed with its message, starting no second run.
    try_number, state = task_try(airflow_env, runs[0]["idempotency_key"])
    assert (try_number, state) == (2, "failed"), output[-6000:]
