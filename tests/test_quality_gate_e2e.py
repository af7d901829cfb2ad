"""A failed error-level contract check stops the load: the warehouse keeps its last good state
and the watermarks do not move. The results are read back from the Prefect API: the quality
table artifact, the flow run's state message and the `quality.failed` event."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import warehouse_checksums, watermarks, write_dump

import tasks.run.engines
from flows.main import reddit_pipeline
from tasks import settings
from tasks.config import PipelineConfig
from tasks.core.scope import RunScope
from tasks.lake.base import Lake
from tasks.model.duckdb_engine import ModelResult
from tasks.quality.contracts import ARTIFACT_KEY, QUALITY_FAILED_EVENT, QualityGateFailed

pytestmark = pytest.mark.e2e


def _post(n: int, created: float) -> dict:
    return {
        "id": f"q{n:05d}",
        "subreddit": "python",
        "author": "ann",
        "title": "t",
        "score": 1,
        "num_comments": 0,
        "created_utc": created,
        "retrieved_on": created + 60,
    }


def _one_day_hours(now: float) -> tuple[float, float]:
    """Two moments an hour apart, in the last hours and in one UTC day: the model rebuilds whole
    days, so two runs' posts meet in one mart only if they share a day (now - 2 h and now - 1 h
    straddle midnight between 00:00 and 02:00 UTC)."""
    midnight = now - now % 86400
    first = now - 7200 if now - 7200 >= midnight else midnight - 7200
    return first, first + 3600


def _quality_artifact(flow_run_id: UUID) -> list[dict[str, Any]]:
    """The rows of the run's `reddit-pipeline-quality` table artifact, from the Prefect API."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[ARTIFACT_KEY]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            )
        )
    assert len(artifacts) == 1, artifacts
    data = artifacts[0].data
    return json.loads(data) if isinstance(data, str) else data


def _latest_run_id(state_path: Path) -> str:
    con = duckdb.connect(str(state_path), read_only=True)
    row = con.execute(
        "select run_id from pipeline_runs order by started_at desc limit 1"
    ).fetchone()
    con.close()
    return str(row[0])


def _quality_failed_event(run_id: str, dataset: str, timeout: float = 30) -> Any:
    """The run's `reddit_pipeline.quality.failed` event for a dataset, once the server has
    stored it (events are written asynchronously)."""
    from prefect import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    event_filter = EventFilter(
        event=EventNameFilter(name=[QUALITY_FAILED_EVENT]),
        resource=EventResourceFilter(id=[f"reddit_pipeline.dataset.{dataset}"]),
    )
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            # The server takes at most 50 a page (the client's default of 100 is refused).
            page = client.read_events(filter=event_filter, limit=50)
            mine = [e for e in page.events if e.payload.get("run_id") == run_id]
            if mine or time.monotonic() > deadline:
                assert len(mine) == 1, f"{len(mine)} events for run {run_id}"
                return mine[0]
            time.sleep(0.5)


def test_error_level_failure_stops_the_load_and_keeps_the_watermarks(
    prefect_api: str, paths: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = time.time()
    good = write_dump(
        tmp_path / "a" / "python_submissions.zst", [_post(i, now - 7200 + i) for i in range(5)]
    )
    state = reddit_pipeline(
        PipelineConfig(source="dump", dump_paths=[good], **paths), return_state=True
    )
    assert state.is_completed()
    tables, marks = warehouse_checksums(paths["warehouse_path"]), watermarks(paths["state_path"])
    rows = _quality_artifact(state.state_details.flow_run_id)
    assert {r["dataset"] for r in rows} == {
        "processed_posts",
        "processed_comments",
        "posts",
        "comments",
        "subreddit_daily",
    }
    assert {r["outcome"] for r in rows if r["severity"] == "error"} == {"passed"}
    assert {
        "dataset": "posts",
        "check": "id duplicate",
        "outcome": "passed",
        "severity": "error",
        "figure": 0,
    } in rows
    # The dump has no comments: their row counts may be zero, and say so.
    assert {
        "dataset": "comments",
        "check": "row_count",
        "outcome": "passed",
        "severity": "error",
        "figure": 0,
    } in rows

    # An hour in the future, staged as a version with a looser bound than the contract's
    # (staging and the contracts now share settings.MAX_FUTURE_SECONDS): caught by the contract.
    monkeypatch.setitem(settings.SQL_BOUNDS, "MAX_FUTURE_SECONDS", 86400)
    bad = write_dump(
        tmp_path / "b" / "python_submissions.zst",
        [_post(i, now - 7200 + i) for i in range(5)] + [_post(99, now + 3600)],
    )
    with pytest.raises(QualityGateFailed) as failure:
        reddit_pipeline(PipelineConfig(source="dump", dump_paths=[bad], **paths))

    message = str(failure.value)
    assert "processed_posts" in message and "future" in message.lower()
    assert warehouse_checksums(paths["warehouse_path"]) == tables
    assert watermarks(paths["state_path"]) == marks
    con = duckdb.connect(str(paths["state_path"]), read_only=True)
    status, error = con.execute(
        "select status, error from pipeline_runs order by started_at desc limit 1"
    ).fetchone()
    failed_checks = con.execute(
        "select count(*) from check_results where outcome = 'failed'"
    ).fetchone()[0]
    con.close()
    assert status == "failed" and "QualityGateFailed" in error
    assert failed_checks >= 1


def _append_row(lake: Lake, key: str, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Rewrite one curated Parquet file with a changed copy of its first row appended."""
    path = lake.local_path(key)
    assert path is not None
    table = pq.read_table(path)
    extra = pa.Table.from_pylist([change(table.slice(0, 1).to_pylist()[0])], schema=table.schema)
    pq.write_table(pa.concat_tables([table, extra]), path)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda row: row, "- posts: id duplicate failed (figure 1)"),
        (
            lambda row: {**row, "id": "zzzzzz", "created_at": datetime(2100, 1, 2)},
            "- posts: created_at is not in the future failed (figure 1)",
        ),
    ],
    ids=["duplicate-id", "future-post"],
)
def test_damage_between_model_and_check_fails_the_flow_and_names_the_check(
    prefect_api: str,
    paths: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[[dict[str, Any]], dict[str, Any]],
    expected: str,
) -> None:
    """The real flow; only the curated posts the model wrote are damaged before the check."""
    first_hour, second_hour = _one_day_hours(time.time())
    config = {"source": "dump", "subreddits": ["python"], **paths}
    first = write_dump(
        tmp_path / "a" / "python_submissions.zst", [_post(i, first_hour + i) for i in range(5)]
    )
    reddit_pipeline(PipelineConfig(dump_paths=[first], **config))
    tables, marks = warehouse_checksums(paths["warehouse_path"]), watermarks(paths["state_path"])

    real_model_task = tasks.run.engines.model_task

    def model_then_damage(lake: Lake, scope: RunScope) -> ModelResult:
        result = real_model_task(lake, scope)
        _append_row(lake, result.curated_keys["posts"][0], change)
        return result

    monkeypatch.setattr(tasks.run.engines, "model_task", model_then_damage)
    second = write_dump(
        tmp_path / "b" / "python_submissions.zst", [_post(i, second_hour + i) for i in range(5, 9)]
    )
    state = reddit_pipeline(PipelineConfig(dump_paths=[second], **config), return_state=True)

    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, QualityGateFailed)
    assert expected in str(error).splitlines()
    assert len(error.report.failures) == 1, error.report.failure_message()
    assert warehouse_checksums(paths["warehouse_path"]) == tables
    assert watermarks(paths["state_path"]) == marks

    from prefect import get_client

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(state.state_details.flow_run_id)
    assert flow_run.state is not None and flow_run.state.is_failed()
    assert expected.removeprefix("- ") in (flow_run.state.message or "")

    failed = error.report.failures[0]
    rows = _quality_artifact(state.state_details.flow_run_id)
    assert {
        "dataset": "posts",
        "check": failed.check,
        "outcome": "failed",
        "severity": "error",
        "figure": 1,
    } in rows

    run_id = _latest_run_id(paths["state_path"])
    event = _quality_failed_event(run_id, "posts")
    assert event.resource["prefect.resource.name"] == "posts"
    assert event.resource["reddit_pipeline.run_id"] == run_id
    assert event.payload["dataset"] == "posts"
    assert event.payload["contract_errors"] == []
    assert event.payload["checks"] == [
        {
            "dataset": "posts",
            "check": failed.check,
            "outcome": "failed",
            "severity": "error",
            "figure": 1,
            "detail": "",
        }
    ]
    assert event.payload["summary"] == expected.removeprefix("- ")


def test_the_flow_checks_on_postgresql_when_told_and_stops_the_load_there(
    prefect_api: str,
    paths: dict[str, Path],
    tmp_path: Path,
    pg_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """check_engine 'postgres': the run's data is copied into reddit_check on the warehouse
    server and Soda's PostgreSQL data source finds the damage there."""
    import psycopg

    first_hour, second_hour = _one_day_hours(time.time())
    config = {
        "source": "dump",
        "subreddits": ["python"],
        "warehouse": "postgres",
        "warehouse_dsn": pg_dsn,
        "check_engine": "postgres",
        **paths,
    }
    first = write_dump(
        tmp_path / "a" / "python_submissions.zst", [_post(i, first_hour + i) for i in range(5)]
    )
    assert reddit_pipeline(PipelineConfig(dump_paths=[first], **config)).status == "completed"
    real_model_task = tasks.run.engines.model_task

    def model_then_damage(lake: Lake, scope: RunScope) -> ModelResult:
        result = real_model_task(lake, scope)
        _append_row(lake, result.curated_keys["posts"][0], lambda row: row)
        return result

    monkeypatch.setattr(tasks.run.engines, "model_task", model_then_damage)
    second = write_dump(
        tmp_path / "b" / "python_submissions.zst", [_post(i, second_hour + i) for i in range(5, 9)]
    )
    with pytest.raises(QualityGateFailed) as failure:
        reddit_pipeline(PipelineConfig(dump_paths=[second], **config))

    assert "- posts: id duplicate failed (figure 1)" in str(failure.value).splitlines()
    with psycopg.connect(pg_dsn) as pg:
        assert pg.execute("select count(*) from reddit.posts").fetchone() == (5,)
        # The day's mart: both runs' posts (the model rebuilds whole days), one twice.
        checked = pg.execute("select count(*), count(distinct id) from reddit_check.posts")
        assert checked.fetchone() == (10, 9)
