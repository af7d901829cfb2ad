"""The same flow with another warehouse: PostgreSQL on this machine, chosen by config."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from aws_fixtures import moto_lake_block
from pydantic import SecretStr

from flows.main import reddit_pipeline
from tasks import settings
from tasks.config import PipelineConfig

pytestmark = pytest.mark.e2e


def test_sample_into_postgres_warehouse_then_rerun_without_duplicates(
    prefect_api: str, paths: dict[str, Path], pg_dsn: str
) -> None:
    config = PipelineConfig(warehouse="postgres", warehouse_dsn=SecretStr(pg_dsn), **paths)

    first = reddit_pipeline(config)
    again = reddit_pipeline(config.model_copy(update={"full_refresh": True}))

    with psycopg.connect(pg_dsn) as con:
        con.execute(f"set search_path to {settings.WAREHOUSE_SCHEMA}")  # the block's default
        counts = {
            table: con.execute(f"select count(*) from {table}").fetchone()[0]
            for table in ("posts", "comments", "subreddit_daily")
        }
        duplicates = con.execute(
            "select count(*) from (select id from posts group by id having count(*) > 1) d"
        ).fetchone()[0]
    assert counts == {"posts": 600, "comments": 3000, "subreddit_daily": 35}
    assert duplicates == 0
    assert first.load is not None and first.load.inserted_totals()["posts"] == 600
    assert again.load is not None and again.load.changed == 0


def test_a_cloud_engine_without_its_block_fails_with_a_clear_message(
    prefect_api: str, paths: dict[str, Path]
) -> None:
    with pytest.raises(ValueError, match="athena_block"):
        reddit_pipeline(
            PipelineConfig(model_engine="athena", lake="s3", s3_bucket_block="lake", **paths)
        )


def test_sample_through_an_s3_lake_on_moto_lands_the_same_rows(
    prefect_api: str, paths: dict[str, Path], moto_server: str
) -> None:
    import duckdb

    s3 = moto_lake_block(moto_server, "reddit-lake-e2e", "e2e-lake")

    summary = reddit_pipeline(PipelineConfig(lake="s3", s3_bucket_block="e2e-lake", **paths))

    con = duckdb.connect(str(paths["warehouse_path"]), read_only=True)
    counts = [con.execute(f"select count(*) from {t}").fetchone()[0] for t in ("posts", "comments")]
    con.close()
    assert counts == [600, 3000]
    assert summary.staged == 3615
    keys = s3.list_objects_v2(Bucket="reddit-lake-e2e", Prefix="lake/raw/reddit/posts/")
    assert keys["KeyCount"] > 0
