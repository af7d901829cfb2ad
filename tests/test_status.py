"""`status`: last runs, lag per subreddit and last failures, from a state store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from flows.status import lags, render
from tasks.state import RunRecord, open_duckdb_state


def test_status_prints_lags_runs_and_failures(tmp_path: Path) -> None:
    store = open_duckdb_state(tmp_path / "state.duckdb")
    now = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
    store.advance_watermarks(
        "api",
        {
            ("python", "posts"): (now.timestamp() - 2 * 3600, "t3_a"),
            ("rust", "comments"): (now.timestamp() - 30 * 3600, "t1_b"),
        },
        "r1",
    )
    store.start_run(RunRecord("run-ok", "api"))
    store.finish_run("run-ok", "completed", {"staged": 42, "quarantined": 1}, 10, {})
    store.start_run(RunRecord("run-bad", "api"))
    store.finish_run("run-bad", "failed", {}, 0, {}, error="RedditUnavailableError: 503")

    assert [(s, k, round(h, 1)) for _, s, k, h in lags(store, now)] == [
        ("python", "posts", 2.0),
        ("rust", "comments", 30.0),
    ]
    console = Console(record=True, width=200)
    render(store, console, now=now)
    text = console.export_text()
    store.close()

    assert "run-ok" in text and "completed" in text and "42" in text
    assert "30.0" in text and "2.0" in text
    assert "run-bad: RedditUnavailableError: 503" in text
