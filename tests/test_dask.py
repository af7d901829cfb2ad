"""The backfill flow on a local Dask cluster: each day of the window is one reddit_pipeline
subflow run as a task in the cluster's worker process, and the days add up to the sample's
rows for them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

pytest.importorskip("prefect_dask")


@pytest.fixture
def dask_address() -> Iterator[str]:
    """A local cluster whose worker is its own process, as on a real cluster: the parts are
    pickled, sent to another interpreter and run there against the same Prefect API."""
    from dask.distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def _rows_by_day(warehouse: Path, table: str) -> dict[str, int]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rows = con.execute(
            f"select strftime(created_at, '%Y-%m-%d'), count(*) from {table} group by 1"
        ).fetchall()
    finally:
        con.close()
    return dict(rows)


@pytest.mark.e2e
def test_backfill_runs_two_days_of_the_sample_as_parts_on_dask(
    prefect_api: str, paths: dict[str, Path], dask_address: str, tmp_path: Path
) -> None:
    from flows.backfill import reddit_backfill
    from flows.main import reddit_pipeline
    from tasks.config import PipelineConfig

    window = {"since": datetime(2024, 3, 2, tzinfo=UTC), "until": datetime(2024, 3, 4, tzinfo=UTC)}
    from dask.distributed import Client, get_task_stream

    with Client(dask_address) as client, get_task_stream(client) as stream:
        results = reddit_backfill(
            PipelineConfig(source="sample", **window, **paths), dask_address=dask_address
        )
        workers = client.run(os.getpid)  # worker address -> its process id
    # The parts ran as tasks of the cluster, in its worker process, not in this one.
    ran_on = {task["worker"] for task in stream.data}
    assert stream.data and ran_on <= set(workers)
    assert os.getpid() not in {workers[address] for address in ran_on}
    assert [r["part"] for r in results] == ["2024-03-02", "2024-03-03"]
    assert all(r["status"] == "completed" for r in results)

    # The same window in one ordinary run gives the same rows per day.
    reference = {k: tmp_path / "reference" / v.name for k, v in paths.items()}
    reddit_pipeline(PipelineConfig(source="sample", **window, **reference))
    for table in ("posts", "comments"):
        by_day = _rows_by_day(paths["warehouse_path"], table)
        assert set(by_day) == {"2024-03-02", "2024-03-03"}
        assert by_day == _rows_by_day(reference["warehouse_path"], table)
