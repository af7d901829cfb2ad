"""A day whose processed files expired (the lake's retention) is made whole from raw before a
run remodels it, so its curated marts never shrink to the files that were left."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest
from helpers import dump_post, write_dump

from flows.main import reddit_pipeline
from tasks.config import PipelineConfig
from tasks.lake.local import LocalLake
from tasks.process.complete_days import could_have_expired, unprocessed_raw_keys

pytestmark = pytest.mark.e2e

MAY_1 = 1_714_521_600  # 2024-05-01 00:00 UTC

RECRAWLED = 10 * 86400  # retrieved ten days after creation


def _daily(lake_dir: Path, day: str) -> list[tuple]:
    path = lake_dir / f"curated/reddit/subreddit_daily/dt={day}/part-0.parquet"
    con = duckdb.connect()
    try:
        return con.execute(f"select * from read_parquet('{path}') order by all").fetchall()
    finally:
        con.close()


def test_a_run_touching_a_day_with_expired_processed_files_reprocesses_them_from_raw(
    prefect_api: str, paths: dict[str, Path], tmp_path: Path
) -> None:
    dumps = {
        sub: write_dump(
            tmp_path / "d1" / f"{sub}_submissions.zst",
            [
                dump_post(sub, i, MAY_1 + i * 6 * 3600, RECRAWLED) for i in range(12)
            ],  # 3 days, 4 a day
        )
        for sub in ("alpha", "beta")
    }
    reddit_pipeline(PipelineConfig(source="dump", dump_paths=list(dumps.values()), **paths))
    lake = LocalLake(paths["lake_dir"])
    before = _daily(paths["lake_dir"], "2024-05-03")
    assert {row[0] for row in before} == {"alpha", "beta"}

    # The retention expires beta's processed files (written by an older run than alpha's).
    beta_raw = [k for k in lake.list_keys("raw/reddit/posts/") if "subreddit=beta" in k]
    beta_batch = beta_raw[0].rsplit("/", 1)[-1].split(".")[0]
    expired = sorted(paths["lake_dir"].glob(f"processed/reddit/posts/dt=*/{beta_batch}.parquet"))
    assert len(expired) == 3
    for path in expired:
        path.unlink()
    assert len(unprocessed_raw_keys(lake, "posts", ["2024-05-03"])) == 1

    # A later run brings one new alpha post on 2024-05-03: that day is remodeled.
    later = write_dump(
        tmp_path / "d2" / "alpha_submissions.zst",
        [dump_post("alpha", i, MAY_1 + i * 6 * 3600, RECRAWLED) for i in range(12)]
        + [dump_post("alpha", 99, MAY_1 + 2 * 86400 + 3600 * 23, RECRAWLED)],
    )
    summary = reddit_pipeline(PipelineConfig(source="dump", dump_paths=[later], **paths))

    after = _daily(paths["lake_dir"], "2024-05-03")
    assert [r for r in after if r[0] == "beta"] == [r for r in before if r[0] == "beta"]
    assert summary.load is not None and summary.load.inserted_totals()["posts"] == 1
    # Only the touched day was reprocessed; the others stay expired until a run needs them.
    assert (
        paths["lake_dir"] / f"processed/reddit/posts/dt=2024-05-03/{beta_batch}.parquet"
    ).exists()
    assert not (
        paths["lake_dir"] / f"processed/reddit/posts/dt=2024-05-02/{beta_batch}.parquet"
    ).exists()
    assert unprocessed_raw_keys(lake, "posts", ["2024-05-03"]) == []


def test_only_days_older_than_the_least_retention_are_checked() -> None:
    """Files of the last week's days cannot have expired: routine runs list no raw folder."""
    today = date(2024, 5, 20)
    days = ["2024-05-12", "2024-05-13", "2024-05-14", "2024-05-20"]
    assert could_have_expired(days, today) == ["2024-05-12", "2024-05-13"]
