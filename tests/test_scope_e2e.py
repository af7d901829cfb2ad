"""A run's scope and a watermark's destination, through the whole flow: runs over different
subreddits share one lake, warehouse and state store; a new or emptied warehouse gets
everything; an incremental API run does not warn about posts the warehouse holds."""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from fake_reddit import USER_AGENT, FakeReddit
from helpers import latest_sample

from flows.backfill import reddit_backfill
from flows.main import reddit_pipeline
from tasks.config import PipelineConfig

pytestmark = pytest.mark.e2e

SAMPLE_POSTS = 600


def _expected(subreddits: set[str]) -> dict[str, Any]:
    """What a warehouse loaded by runs over `subreddits` must hold: the union of their
    scopes, i.e. every sample item of those subreddits, in its latest version."""
    posts = {
        i: r["score"]
        for i, r in latest_sample("RS_2024-03.zst").items()
        if r["subreddit"].lower() in subreddits
    }
    comments = {
        i
        for i, r in latest_sample("RC_2024-03.zst").items()
        if r["subreddit"].lower() in subreddits
    }
    daily: Counter[tuple[str, str, str]] = Counter()
    for kind, name in (("posts", "RS_2024-03.zst"), ("comments", "RC_2024-03.zst")):
        for record in latest_sample(name).values():
            if record["subreddit"].lower() in subreddits:
                day = datetime.fromtimestamp(float(record["created_utc"]), UTC)
                daily[(record["subreddit"].lower(), f"{day:%Y-%m-%d}", kind)] += 1
    return {"posts": posts, "comments": comments, "daily": dict(daily)}


def _held(warehouse: Path) -> dict[str, Any]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        posts = dict(con.execute("select id, score from posts").fetchall())
        comments = {row[0] for row in con.execute("select id from comments").fetchall()}
        daily = {}
        for sub, day, n_posts, n_comments in con.execute(
            "select subreddit, strftime(day, '%Y-%m-%d'), posts, comments from subreddit_daily"
        ).fetchall():
            daily.update({(sub, day, "posts"): n_posts, (sub, day, "comments"): n_comments})
        duplicates = con.execute(
            "select count(*) - count(distinct id) from posts union all "
            "select count(*) - count(distinct id) from comments"
        ).fetchall()
    finally:
        con.close()
    assert duplicates == [(0,), (0,)]
    return {"posts": posts, "comments": comments, "daily": {k: v for k, v in daily.items() if v}}


def _count(path: Path, sql: str) -> int:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


@pytest.mark.parametrize("order", [("python", "rust"), ("rust", "python")])
def test_runs_over_different_subreddits_share_a_lake_and_the_warehouse_holds_their_union(
    prefect_api: str, paths: dict[str, Path], order: tuple[str, str]
) -> None:
    first, second = order
    for subreddit in (first, second, first, second):
        summary = reddit_pipeline(PipelineConfig(subreddits=[subreddit], **paths))
        assert summary.status == "completed"
        assert any(m.startswith("Quality:") and ", 0 failed," in m for m in summary.messages)

    assert _held(paths["warehouse_path"]) == _expected({first, second})
    # Each run's watermarks stay its own subreddit's, bound to this warehouse.
    marks = _count(paths["state_path"], "select count(distinct subreddit) from watermarks")
    assert marks == 2


def test_per_subreddit_backfills_share_a_lake_and_the_warehouse_holds_their_union(
    prefect_api: str, paths: dict[str, Path]
) -> None:
    window = {"since": datetime(2024, 3, 1, tzinfo=UTC), "until": datetime(2024, 3, 8, tzinfo=UTC)}
    for subreddit in ("rust", "python", "rust"):
        config = PipelineConfig(subreddits=[subreddit], **window, **paths)
        parts = reddit_backfill(config, part_days=4)
        assert [p["status"] for p in parts] == ["completed", "completed"]

    assert _held(paths["warehouse_path"]) == _expected({"python", "rust"})


@pytest.mark.parametrize("state", ["duckdb", "postgres"])
def test_a_new_warehouse_then_a_deleted_one_gets_every_post_not_what_came_after_a_watermark(
    prefect_api: str,
    paths: dict[str, Path],
    tmp_path: Path,
    state: str,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    extra: dict[str, Any] = {}
    if state == "postgres":
        extra["state_dsn"] = request.getfixturevalue("pg_dsn")
    reddit_pipeline(PipelineConfig(**paths, **extra))
    assert _count(paths["warehouse_path"], "select count(*) from posts") == SAMPLE_POSTS

    new = tmp_path / "new.duckdb"
    other = {**paths, "warehouse_path": new}
    reddit_pipeline(PipelineConfig(**other, **extra))
    assert _count(new, "select count(*) from posts") == SAMPLE_POSTS

    new.unlink()
    with caplog.at_level(logging.WARNING):
        summary = reddit_pipeline(PipelineConfig(**other, **extra))
    assert summary.status == "completed"
    assert _count(new, "select count(*) from posts") == SAMPLE_POSTS
    assert _count(new, "select count(*) from comments") == len(latest_sample("RC_2024-03.zst"))
    ignored = [
        r.getMessage() for r in caplog.records if "Ignoring 10 watermark(s)" in r.getMessage()
    ]
    assert len(ignored) == 1 and "does not hold their items" in ignored[0], caplog.text
    assert "r/python posts" in ignored[0]


def test_an_incremental_api_run_does_not_warn_of_posts_the_warehouse_holds(
    prefect_api: str, paths: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeReddit(limit=200, window=2.0) as reddit:
        monkeypatch.setenv("REDDIT_CLIENT_ID", reddit.client_id)
        monkeypatch.setenv("REDDIT_CLIENT_SECRET", reddit.client_secret)
        monkeypatch.setenv("REDDIT_USER_AGENT", USER_AGENT)
        config = PipelineConfig(
            source="api",
            subreddits=["python"],
            reddit_base_url=reddit.url,
            refresh_max_age=0,  # the posts stay on their old day, out of the second run's scope
            **paths,
        )
        # A post a day: the second run's overlap (an hour) re-reads only the newest.
        posts = reddit.add_posts("python", 5, time.time() - 4.5 * 86400, step=86400)
        reddit_pipeline(config)
        # Today's comments on the post of four days ago, which the first run loaded.
        reddit.add_comments("python", posts[0], 20, time.time() - 600, step=10)
        second = reddit_pipeline(config)

    assert second.status == "completed"
    assert _count(paths["warehouse_path"], "select count(*) from comments") == 20
    con = duckdb.connect(str(paths["state_path"]), read_only=True)
    try:
        outcomes = con.execute(
            "select check_name, outcome from check_results where run_id = ? "
            "and check_name in ('post_id is present in posts', "
            "'link_id is present in processed_posts')",
            [second.run_id],
        ).fetchall()
    finally:
        con.close()
    assert sorted(outcomes) == [
        ("link_id is present in processed_posts", "passed"),
        ("post_id is present in posts", "passed"),
    ]
