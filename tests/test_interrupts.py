"""Ctrl-C (SIGINT) and SIGTERM stop a run at any stage: no task retries the interrupted step,
the run is recorded as cancelled, `python flows/main.py` exits 130 (143) with one line on
stderr, the warehouse holds the old state or the new one, and the next run completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from helpers import PROJECT_DIR, path_args, run_cli, warehouse_checksums, watermarks

from tasks.core.faults import INTERRUPT_ENV_VAR

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def clean_run(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One uninterrupted run of the sample: what every interrupted run plus its rerun equals."""
    root = tmp_path_factory.mktemp("clean")
    clean = {
        "lake_dir": root / "lake",
        "warehouse_path": root / "warehouse.duckdb",
        "state_path": root / "state.duckdb",
    }
    result = run_cli(path_args(clean), prefect_api)
    assert result.returncode == 0, result.stderr[-2000:]
    return clean


def _runs(state: Path) -> list[tuple[str, str | None]]:
    con = duckdb.connect(str(state), read_only=True)
    try:
        return con.execute("select status, error from pipeline_runs order by started_at").fetchall()
    finally:
        con.close()


def _assert_recorded_and_rerun_completes(
    prefect_api: str, paths: dict[str, Path], clean: dict[str, Path], signal_name: str
) -> None:
    assert _runs(paths["state_path"]) == [("cancelled", f"interrupted by {signal_name}")]
    # The old state or the new one, never half a load.
    warehouse = paths["warehouse_path"]
    assert (warehouse_checksums(warehouse) if warehouse.exists() else {}) in (
        {},
        warehouse_checksums(clean["warehouse_path"]),
    )
    rerun = run_cli(path_args(paths), prefect_api)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert warehouse_checksums(paths["warehouse_path"]) == warehouse_checksums(
        clean["warehouse_path"]
    )
    assert watermarks(paths["state_path"]) == watermarks(clean["state_path"])
    assert [status for status, _ in _runs(paths["state_path"])] == ["cancelled", "completed"]


@pytest.mark.parametrize(
    "point",
    [
        # inside the load's transaction, during a DuckDB statement (DuckDB reports the
        # interrupt as RuntimeError('Query interrupted'), which the load task used to retry)
        "load:comments@duckdb",
        "load:comments",  # inside the load's transaction, in Python
        "commit:watermark",  # inside the watermark commit's transaction
        "after:stage@duckdb",  # between stages
    ],
)
def test_an_interrupted_run_exits_130_is_recorded_cancelled_and_the_rerun_equals_a_clean_run(
    prefect_api: str, paths: dict[str, Path], clean_run: dict[str, Path], point: str
) -> None:
    interrupted = run_cli(path_args(paths), prefect_api, env={INTERRUPT_ENV_VAR: point})

    assert interrupted.returncode == 130, interrupted.stderr[-3000:]
    assert interrupted.stderr.splitlines() == [
        "error: the run was interrupted by SIGINT: it is recorded as cancelled, and the next "
        "run takes it up again"
    ]
    assert "retry" not in interrupted.stdout.lower()
    _assert_recorded_and_rerun_completes(prefect_api, paths, clean_run, "SIGINT")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_from_outside_during_a_run_stops_it_as_cancelled_and_the_rerun_completes(
    prefect_api: str, paths: dict[str, Path], clean_run: dict[str, Path], signum: int
) -> None:
    """As a user's Ctrl-C or a supervisor's SIGTERM would: sent once the first processed file
    is in the lake, while the stage, process, model, check and load stages run."""
    command = [sys.executable, str(PROJECT_DIR / "flows" / "main.py"), *path_args(paths)]
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    processed = paths["lake_dir"] / "processed"
    with subprocess.Popen(
        command, cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        deadline = time.monotonic() + 240
        while process.poll() is None and time.monotonic() < deadline:
            if processed.is_dir() and any(processed.rglob("*.parquet")):
                break
            time.sleep(0.02)
        process.send_signal(signum)
        _, err = process.communicate(timeout=300)

    name = signal.Signals(signum).name
    assert process.returncode == 128 + signum, err[-3000:]
    assert err.splitlines() == [
        f"error: the run was interrupted by {name}: it is recorded as cancelled, and the next "
        "run takes it up again"
    ]
    _assert_recorded_and_rerun_completes(prefect_api, paths, clean_run, name)


def test_an_interrupt_with_the_state_in_postgresql_records_it_and_frees_the_lock(
    prefect_api: str, paths: dict[str, Path], clean_run: dict[str, Path], pg_dsn: str
) -> None:
    """The production state store: Ctrl-C inside the watermark commit's transaction rolls it
    back, the run is recorded cancelled in PostgreSQL, no advisory lock outlives the process
    (the rerun does not wait for one), and the rerun leaves what a clean run leaves."""
    import psycopg

    env = {INTERRUPT_ENV_VAR: "commit:watermark", "REDDIT_PIPELINE_STATE_DSN": pg_dsn}
    args = path_args(paths)[:4]  # the lake and the warehouse; the state is the DSN
    interrupted = run_cli(args, prefect_api, env=env)
    assert interrupted.returncode == 130, interrupted.stderr[-3000:]
    assert len(interrupted.stderr.splitlines()) == 1
    with psycopg.connect(pg_dsn, autocommit=True) as con:
        runs = con.execute("select status, error from pipeline_runs").fetchall()
        assert runs == [("cancelled", "interrupted by SIGINT")]
        assert con.execute("select count(*) from watermarks").fetchone() == (0,)
        locks = con.execute(
            "select count(*) from pg_locks where locktype = 'advisory' and database = "
            "(select oid from pg_database where datname = current_database())"
        ).fetchone()
        assert locks == (0,)

    started = time.monotonic()
    rerun = run_cli(
        [*args, "--state-lock-wait", "5"], prefect_api, env={"REDDIT_PIPELINE_STATE_DSN": pg_dsn}
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert time.monotonic() - started < 240
    assert warehouse_checksums(paths["warehouse_path"]) == warehouse_checksums(
        clean_run["warehouse_path"]
    )
    with psycopg.connect(pg_dsn, autocommit=True) as con:
        marks = con.execute(
            "select source, subreddit, kind, created_utc, fullname from watermarks "
            "order by 1, 2, 3, 4, 5"
        ).fetchall()
        statuses = con.execute("select status from pipeline_runs order by started_at").fetchall()
    assert marks == watermarks(clean_run["state_path"])
    assert statuses == [("cancelled",), ("completed",)]
