"""A failed error-level contract check stops the load: the warehouse keeps its last good state
and the watermarks do not move."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pytest
from helpers import warehouse_checksums, watermarks, write_dump

from flows.main import reddit_pipeline
from tasks.check import QualityGateFailed
from tasks.config import PipelineConfig

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


def test_error_level_failure_stops_the_load_and_keeps_the_watermarks(
    prefect_api: str, paths: dict[str, Path], tmp_path: Path
) -> None:
    now = time.time()
    good = write_dump(
        tmp_path / "a" / "python_submissions.zst", [_post(i, now - 7200 + i) for i in range(5)]
    )
    reddit_pipeline(PipelineConfig(source="dump", dump_paths=[good], **paths))
    tables, marks = warehouse_checksums(paths["warehouse_path"]), watermarks(paths["state_path"])

    # An hour in the future: past staging's sanity bound (a day), caught by the contract.
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
