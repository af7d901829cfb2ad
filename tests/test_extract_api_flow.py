"""The API source inside the whole flow: the real asyncpraw against the fake Reddit."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import psycopg
import pytest
from fake_reddit import USER_AGENT, FakeReddit, dead_url, silent_host
from helpers import path_args, run_cli

from flows.main import reddit_pipeline
from tasks.config import PipelineConfig
from tasks.extract.reddit_api import RedditUnreachableError, RedditWaitError
from tasks.state.pool import close_pools
from tasks.state.store import StateLockedError, _lock_key, open_duckdb_state

pytestmark = pytest.mark.e2e


@pytest.fixture
def reddit() -> Iterator[FakeReddit]:
    with FakeReddit(limit=200, window=2.0) as server:
        yield server


@pytest.fixture
def reddit_env(reddit: FakeReddit, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "REDDIT_CLIENT_ID": reddit.client_id,
        "REDDIT_CLIENT_SECRET": reddit.client_secret,
        "REDDIT_USER_AGENT": USER_AGENT,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _count(warehouse: Path, sql: str) -> int:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


def test_api_run_loads_what_the_server_holds_then_only_what_is_new(
    prefect_api: str, paths: dict[str, Path], reddit: FakeReddit, reddit_env: dict[str, str]
) -> None:
    start = time.time() - 2 * 86400  # two days old: inside the refresh age
    posts = reddit.add_posts("python", 120, start, step=60)
    reddit.add_comments("python", posts[0], 150, start + 30, step=30)
    reddit.add_posts("dataengineering", 40, start, step=60)
    reddit.unavailable["gone"] = "banned"
    config = PipelineConfig(
        source="auto",
        subreddits=["python", "dataengineering", "gone"],
        reddit_base_url=reddit.url,
        **paths,
    )

    first = reddit_pipeline(config)

    assert first.source == "api"
    warehouse = paths["warehouse_path"]
    assert _count(warehouse, "select count(*) from posts where subreddit = 'python'") == 120
    assert _count(warehouse, "select count(*) from posts where subreddit = 'dataengineering'") == 40
    assert _count(warehouse, "select count(*) from comments") == 150
    assert any("r/gone" in m and "banned" in m for m in first.messages)
    assert not first.listing_gaps
    # The posts it has just read are not re-read by the refresh: there was nothing before.
    assert not [s for s in first.stages if "-refresh-" in s.source_file]

    # New items, and a post whose score changed since: the refresh re-reads it.
    reddit.add_posts("python", 5, time.time() - 600, step=10)
    posts[3]["score"] = 9999
    second = reddit_pipeline(config)

    assert second.load is not None
    assert second.load.inserted_totals()["posts"] == 5
    assert _count(warehouse, "select count(*) from posts") == 165
    assert _count(warehouse, f"select score from posts where id = '{posts[3]['id']}'") == 9999
    listing = [s for s in second.stages if s.kind == "posts" and "-refresh-" not in s.source_file]
    staged_new = sum(s.staged["python"] for s in listing)
    assert staged_new < 120, "the second run must not re-read the whole listing"
    # The refresh re-reads the first run's posts, not the ones this run has just read.
    [refresh] = [s for s in second.stages if "-refresh-" in s.source_file]
    assert refresh.lines == 160
    # Extraction and refresh share the client id's one limiter: never past the window.
    assert reddit.stats.rate_limited == 0


def test_cli_api_source_with_credentials_in_the_environment(
    prefect_api: str, paths: dict[str, Path], reddit: FakeReddit, reddit_env: dict[str, str]
) -> None:
    reddit.add_posts("python", 30, time.time() - 3600, step=60)
    result = run_cli(
        ["--source", "api", "--subreddit", "python", "--reddit-url", reddit.url, *path_args(paths)],
        prefect_api,
        env=reddit_env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Reddit API" in result.stderr + result.stdout
    assert _count(paths["warehouse_path"], "select count(*) from posts") == 30


def test_bad_credentials_fail_fast_naming_the_variable_without_the_secret(
    prefect_api: str, paths: dict[str, Path], reddit: FakeReddit, reddit_env: dict[str, str]
) -> None:
    reddit.add_posts("python", 3, time.time() - 3600)
    env = {**reddit_env, "REDDIT_CLIENT_SECRET": "wrong-secret-value"}
    started = time.monotonic()
    result = run_cli(
        ["--source", "api", "--subreddit", "python", "--reddit-url", reddit.url, *path_args(paths)],
        prefect_api,
        env=env,
    )
    assert result.returncode == 1
    assert "REDDIT_CLIENT_SECRET" in result.stderr
    assert "wrong-secret-value" not in result.stderr + result.stdout
    # The task is not retried: one token request, and no 30 s retry delay.
    assert reddit.stats.token_requests == 1
    assert reddit.stats.api_requests == 0
    assert time.monotonic() - started < 30


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_listing_cut_by_the_cap_before_the_watermark_is_reported_with_the_window(
    prefect_api: str, paths: dict[str, Path], reddit: FakeReddit, reddit_env: dict[str, str]
) -> None:
    now = time.time()
    old = reddit.add_posts("python", 20, now - 7200, step=60)
    config = PipelineConfig(
        source="api",
        subreddits=["python"],
        reddit_base_url=reddit.url,
        refresh_max_age=timedelta(0),
        **paths,
    )
    first = reddit_pipeline(config)
    assert not first.listing_gaps  # no watermark yet: nothing to fall short of

    # More new posts than Reddit's listing shows: the 100 oldest of them are out of reach.
    new = reddit.add_posts("python", 1100, now - 3000, step=1)
    second = reddit_pipeline(config)

    [gap] = second.listing_gaps
    assert gap == {
        "kind": "posts",
        "subreddit": "python",
        "reason": "listing cap",
        "items_read": 1000,
        "may_miss_from": _iso(old[-1]["created_utc"]),
        "may_miss_until": _iso(new[100]["created_utc"]),
    }
    [message] = [m for m in second.messages if "may be missed" in m]
    assert message.startswith("r/python posts:") and "--source dump" in message
    assert "| r/python posts | 1000 |" in second.timings_markdown()
    assert second.counts()["listing_gaps"] == [gap]
    assert _count(paths["warehouse_path"], "select count(*) from posts") == 20 + 1000


def test_comment_trees_of_chosen_posts_land_in_the_warehouse_once(
    prefect_api: str, paths: dict[str, Path], reddit: FakeReddit, reddit_env: dict[str, str]
) -> None:
    start = time.time() - 86400
    [post, other] = reddit.add_posts("python", 2, start)
    # More comments than the /comments listing shows (~1000): the 200 oldest come only from
    # the tree, which renders 20 and hides the rest behind `more` stubs.
    comments = reddit.add_comments("python", post, 1200, start + 10, step=5)
    reddit.add_comments("python", other, 30, start + 7000, step=5)  # newest: in the listing
    config = PipelineConfig(
        source="api",
        subreddits=["python"],
        comment_tree_posts=[post["name"]],
        reddit_base_url=reddit.url,
        **paths,
    )

    summary = reddit_pipeline(config)

    [tree] = [s for s in summary.stages if "-tree-" in s.source_file]
    assert tree.lines == 1200 and not tree.newest
    assert "/api/morechildren" in reddit.stats.paths
    assert reddit.stats.morechildren_overlaps == 0
    warehouse = paths["warehouse_path"]
    assert _count(warehouse, "select count(*) from comments") == 1230
    assert _count(warehouse, "select count(distinct id) from comments") == 1230
    wanted = ",".join(f"'{c['id']}'" for c in comments)
    assert _count(warehouse, f"select count(*) from comments where id in ({wanted})") == 1200


@pytest.fixture
def pg_state(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The flow's state store in this test's own PostgreSQL database, found by the variable."""
    monkeypatch.setenv("REDDIT_PIPELINE_STATE_DSN", pg_dsn)
    yield pg_dsn
    close_pools()  # before the database is dropped


def test_api_run_keeps_its_state_in_postgres_and_a_busy_subreddit_stops_clearly(
    prefect_api: str,
    paths: dict[str, Path],
    reddit: FakeReddit,
    reddit_env: dict[str, str],
    pg_state: str,
) -> None:
    posts = reddit.add_posts("python", 50, time.time() - 3600, step=10)
    config = PipelineConfig(
        source="api",
        subreddits=["python"],
        reddit_base_url=reddit.url,
        refresh_max_age=timedelta(0),
        overlap=timedelta(0),
        state_lock_wait=timedelta(seconds=1),
        **paths,
    )

    first = reddit_pipeline(config)

    assert first.status == "completed"
    assert not paths["state_path"].exists(), "the DuckDB state file must not be used"
    with psycopg.connect(pg_state) as con:
        marks = con.execute("select source, subreddit, kind, fullname from watermarks").fetchall()
    assert marks == [("api", "python", "posts", posts[-1]["name"])]

    # The second run starts from the PostgreSQL watermark: only the new posts are read.
    reddit.add_posts("python", 7, time.time() - 60, step=1)
    second = reddit_pipeline(config)
    assert sum(s.staged["python"] for s in second.stages if s.kind == "posts") == 7
    assert second.load is not None and second.load.inserted_totals()["posts"] == 7

    # Another run holds r/python: this one waits the configured second, then stops.
    with psycopg.connect(pg_state, autocommit=True) as other_run:
        other_run.execute("select pg_advisory_lock(%s)", (_lock_key("api", "python"),))
        started = time.monotonic()
        with pytest.raises(StateLockedError, match=r"r/python .*waited 1s.*--state-lock-wait"):
            reddit_pipeline(config)
        assert time.monotonic() - started < 30
    with psycopg.connect(pg_state) as con:
        statuses = con.execute("select status from pipeline_runs order by started_at").fetchall()
    assert statuses == [("completed",), ("completed",), ("failed",)]
    assert _count(paths["warehouse_path"], "select count(*) from posts") == 57


def _api_config(reddit: FakeReddit, paths: dict[str, Path], **fields: object) -> PipelineConfig:
    values: dict[str, object] = {
        "source": "api",
        "subreddits": ["python"],
        "reddit_base_url": reddit.url,
        "refresh_max_age": timedelta(0),
        **paths,
    }
    values.update(fields)
    return PipelineConfig(**values)


def _marks(paths: dict[str, Path]) -> dict[tuple[str, str], tuple[float, str]]:
    state = open_duckdb_state(paths["state_path"])
    try:
        return state.read_watermarks("api", f"duckdb:{paths['warehouse_path'].resolve()}")
    finally:
        state.close()


def test_a_vanished_paging_anchor_on_a_first_run_and_a_full_refresh_loses_no_post(
    prefect_api: str, paths: dict[str, Path], reddit: FakeReddit, reddit_env: dict[str, str]
) -> None:
    reddit.add_posts("python", 400, time.time() - 7200, step=10)
    reddit.delete_anchors = 1  # the last post of page 1 is deleted before page 2 is read
    first = reddit_pipeline(_api_config(reddit, paths))
    assert _count(paths["warehouse_path"], "select count(*) from posts") == 400
    assert not first.listing_gaps
    assert any("vanished" in m and "nothing lost" in m for m in first.messages)

    reddit.add_posts("python", 50, time.time() - 600, step=1)
    reddit.delete_anchors = 2
    again = reddit_pipeline(_api_config(reddit, paths, full_refresh=True))
    assert _count(paths["warehouse_path"], "select count(*) from posts") == 450
    assert not again.listing_gaps
    assert sum("vanished" in m for m in again.messages) == 2


def test_an_incremental_run_over_pages_with_moved_items_loads_every_new_post(
    prefect_api: str, paths: dict[str, Path], reddit: FakeReddit, reddit_env: dict[str, str]
) -> None:
    reddit.add_posts("python", 300, time.time() - 86400, step=10)
    config = _api_config(reddit, paths, overlap=timedelta(0))
    reddit_pipeline(config)
    reddit.add_posts("python", 250, time.time() - 3600, step=10)
    reddit.swaps = [(10, 300), (60, 420), (150, 500)]
    second = reddit_pipeline(config)
    assert second.load is not None and second.load.inserted_totals()["posts"] == 250
    assert _count(paths["warehouse_path"], "select count(*) from posts") == 550


def test_a_listing_that_ended_early_keeps_its_watermark_until_a_run_reads_the_gap(
    prefect_api: str, paths: dict[str, Path], reddit: FakeReddit, reddit_env: dict[str, str]
) -> None:
    old = reddit.add_posts("python", 50, time.time() - 86400, step=10)
    config = _api_config(reddit, paths, overlap=timedelta(0))
    reddit_pipeline(config)
    assert _marks(paths)["python", "posts"] == (old[-1]["created_utc"], old[-1]["name"])

    new = reddit.add_posts("python", 400, time.time() - 7200, step=10)
    reddit.delete_pages = 1  # the newest page is deleted once read: no anchor resumes
    short = reddit_pipeline(config)
    [gap] = short.listing_gaps
    assert gap["reason"] == "ended early" and gap["items_read"] == 100
    assert any("watermark stays" in m for m in short.messages)
    assert _marks(paths)["python", "posts"] == (old[-1]["created_utc"], old[-1]["name"])

    healed = reddit_pipeline(config)
    assert not healed.listing_gaps
    assert _count(paths["warehouse_path"], "select count(*) from posts") == 50 + 400
    # The 100 newest were deleted once read (by run 2): the newest left is the mark.
    assert _marks(paths)["python", "posts"] == (new[-101]["created_utc"], new[-101]["name"])


def test_malformed_api_items_are_quarantined_and_counted_while_the_rest_load(
    prefect_api: str, paths: dict[str, Path], reddit: FakeReddit, reddit_env: dict[str, str]
) -> None:
    reddit.add_posts("python", 150, time.time() - 7200, step=10)
    bad = [
        reddit.splice("python", "posts", 20, "missing_created"),
        reddit.splice("python", "posts", 120, "null_created"),
        reddit.splice("python", "posts", 130, "text_created"),
        reddit.splice("python", "posts", 140, "more"),
    ]
    summary = reddit_pipeline(_api_config(reddit, paths))
    assert summary.status == "completed"
    assert _count(paths["warehouse_path"], "select count(*) from posts") == 150
    assert summary.quarantined == 4
    assert summary.counts()["quarantine_reasons"] == {
        "missing created_utc": 1,
        "null created_utc": 1,
        "non-numeric created_utc": 1,
        "a 'more' stub, not an item": 1,
    }
    [key] = [
        k
        for k in (paths["lake_dir"] / "quarantine/reddit/posts").iterdir()
        if "-rejected-" in k.name
    ]
    records = [json.loads(line) for line in key.read_text().splitlines()]
    assert [r["fullname"] for r in records] == [b["data"]["name"] for b in bad]
    assert {r["subreddit"] for r in records} == {"python"}
    assert {r["kind"] for r in records} == {"posts"}
    assert [json.loads(r["raw"]) for r in records] == bad
    assert all({"file", "line", "reason"} <= r.keys() for r in records)


def test_unavailable_subreddits_are_warned_once_each_and_a_run_reading_none_fails(
    prefect_api: str,
    paths: dict[str, Path],
    reddit: FakeReddit,
    reddit_env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    reddit.add_posts("python", 20, time.time() - 7200, step=10)
    reddit.unavailable["hidden"] = "private"
    reddit.add_subreddit("hidden")
    config = _api_config(reddit, paths, subreddits=["python", "hidden", "nosuchsub"])
    with caplog.at_level(logging.WARNING):
        summary = reddit_pipeline(config)
    problems = [m for m in summary.messages if "r/hidden" in m or "r/nosuchsub" in m]
    assert problems == [
        "r/hidden (posts and comments): subreddit is private (403)",
        "r/nosuchsub (posts and comments): subreddit not found (Reddit redirects to its "
        "search) (302)",
    ]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert all(sum(p == w for w in warned) == 1 for p in problems)

    nothing = _api_config(reddit, paths, subreddits=["hidden", "nosuchsub"])
    started = time.monotonic()
    with pytest.raises(ValueError, match=r"no subreddit could be read: r/hidden .*private"):
        reddit_pipeline(nothing)
    assert time.monotonic() - started < 30, "not retried: the names will not appear in 30 s"


def test_a_persistent_401_fails_the_cli_in_seconds_with_one_line_and_two_tokens_at_most(
    prefect_api: str, paths: dict[str, Path], reddit: FakeReddit, reddit_env: dict[str, str]
) -> None:
    reddit.add_posts("python", 3, time.time() - 3600)
    reddit.inject("401", path="/r/python", times=10_000)
    started = time.monotonic()
    result = run_cli(
        ["--source", "api", "--subreddit", "python", "--reddit-url", reddit.url, *path_args(paths)],
        prefect_api,
        env=reddit_env,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert time.monotonic() - started < 60, result.stderr[-5000:]
    assert reddit.stats.token_requests <= 2
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error: the run failed")]
    assert "RedditAuthError" in line and "REDDIT_CLIENT_SECRET" in line and "401" in line


def test_a_retry_after_of_an_hour_fails_the_run_naming_it_and_is_not_retried(
    prefect_api: str, paths: dict[str, Path], reddit: FakeReddit, reddit_env: dict[str, str]
) -> None:
    reddit.add_posts("python", 3, time.time() - 3600)
    reddit.inject("429", path="/r/python/new", times=100, retry_after=3600)
    started = time.monotonic()
    with pytest.raises(RedditWaitError, match=r"Retry-After: 3600.*reddit_max_wait"):
        reddit_pipeline(_api_config(reddit, paths, reddit_max_wait=timedelta(seconds=5)))
    assert time.monotonic() - started < 30
    assert reddit.stats.rate_limited == 1


@pytest.mark.parametrize("where", ["nothing listening", "never answers"])
def test_a_dead_reddit_url_fails_the_run_within_the_bound_naming_it(
    prefect_api: str,
    paths: dict[str, Path],
    reddit: FakeReddit,
    reddit_env: dict[str, str],
    where: str,
) -> None:
    with silent_host() as silent:
        url = dead_url() if where == "nothing listening" else silent
        config = _api_config(
            reddit, paths, reddit_base_url=url, reddit_unreachable_after=timedelta(seconds=2)
        )
        started = time.monotonic()
        with pytest.raises(RedditUnreachableError, match=f"nothing answers at {url}"):
            reddit_pipeline(config)
        assert time.monotonic() - started < 20


def test_a_short_retry_after_is_waited_and_logged_in_the_run(
    prefect_api: str,
    paths: dict[str, Path],
    reddit: FakeReddit,
    reddit_env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    reddit.add_posts("python", 30, time.time() - 3600)
    reddit.inject("429", path="/r/python/new", retry_after=3.5)
    with caplog.at_level(logging.WARNING):
        summary = reddit_pipeline(_api_config(reddit, paths))
    assert summary.status == "completed"
    assert _count(paths["warehouse_path"], "select count(*) from posts") == 30
    [line] = [r for r in caplog.records if r.getMessage().startswith("Waiting 4 s: ")]
    assert "429" in line.getMessage() and "Retry-After: 3.5" in line.getMessage()
    assert line.name == "prefect.task_runs", "in the extract task's own log"
