"""`status`: last runs, lag per subreddit and last failures, from a state store."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from flows.status import lags, render
from tasks.state.store import RunRecord, open_duckdb_state, open_postgres_state


def test_status_prints_lags_runs_and_failures(tmp_path: Path) -> None:
    store = open_duckdb_state(tmp_path / "state.duckdb")
    now = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
    store.advance_watermarks(
        "api",
        "duckdb:/w.duckdb",
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

    assert [(s, k, round(h, 1), d) for _, s, k, h, d in lags(store, now)] == [
        ("python", "posts", 2.0, "duckdb:/w.duckdb"),
        ("rust", "comments", 30.0, "duckdb:/w.duckdb"),
    ]
    console = Console(record=True, width=200)
    render(store, console, now=now)
    text = console.export_text()
    store.close()

    assert "run-ok" in text and "completed" in text and "42" in text
    assert "30.0" in text and "2.0" in text and "duckdb:/w.duckdb" in text
    assert "run-bad: RedditUnavailableError: 503" in text


def test_the_status_command_reads_a_postgresql_state_store(pg_dsn: str, tmp_path: Path) -> None:
    from helpers import PROJECT_DIR

    store = open_postgres_state(pg_dsn)
    try:
        hours_ago = datetime.now(UTC).timestamp() - 5 * 3600
        store.advance_watermarks(
            "api", "duckdb:/w.duckdb", {("python", "posts"): (hours_ago, "t3_a")}, "run-ok"
        )
        store.start_run(RunRecord("run-ok", "api"))
        counts = {"staged": 7, "loaded_new": {"posts": 5}, "loaded_updated": {"posts": 2}}
        store.finish_run("run-ok", "completed", counts, 10, {})
        store.start_run(RunRecord("run-bad", "api"))
        store.finish_run("run-bad", "failed", {}, 0, {}, error="RedditAuthError: 401")
    finally:
        store.close()
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("REDDIT_PIPELINE_STATE_DSN", None)
    command = [sys.executable, str(PROJECT_DIR / "flows" / "main.py"), "status"]

    shown = subprocess.run(
        [*command, "--state-dsn", pg_dsn], env=env, capture_output=True, text=True, timeout=120
    )
    missing = subprocess.run(
        [*command, "--state", str(tmp_path / "none.duckdb")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "run-ok" in shown.stdout and "completed" in shown.stdout
    assert re.search(r"python\s*│\s*posts\s*│\s*5\.0", shown.stdout), shown.stdout
    assert re.search(r"run-ok.*│\s*7\s*│.*│\s*5\s*│\s*2\s*│", shown.stdout), shown.stdout
    assert "run-bad: RedditAuthError: 401" in shown.stdout
    assert missing.returncode == 2
    assert "no state store" in missing.stderr and not (tmp_path / "none.duckdb").exists()


def test_status_leaves_the_duckdb_state_files_byte_identical_and_needs_no_write_access(
    tmp_path: Path,
) -> None:
    """The state of a run that was killed: the file and its write-ahead log, which a write
    open would fold into the file (rewriting it) and delete."""
    from helpers import PROJECT_DIR

    state = tmp_path / "state" / "state.duckdb"
    killed_run = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from tasks.state import RunRecord, open_duckdb_state\n"
        "store = open_duckdb_state(Path(sys.argv[1]))\n"
        "store.start_run(RunRecord('run-ok', 'dump'))\n"
        "store.finish_run('run-ok', 'completed', {'staged': 3}, 10, {})\n"
        "store.start_run(RunRecord('run-killed', 'dump'))\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", killed_run, str(state)], cwd=PROJECT_DIR, check=True)
    before = {p.name: p.read_bytes() for p in state.parent.iterdir()}
    assert sorted(before) == ["state.duckdb", "state.duckdb.wal"]
    for path in state.parent.iterdir():
        path.chmod(0o444)
    state.parent.chmod(0o555)
    try:
        shown = subprocess.run(
            [
                sys.executable,
                str(PROJECT_DIR / "flows" / "main.py"),
                "status",
                "--state",
                str(state),
            ],
            env={**os.environ, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        state.parent.chmod(0o755)

    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "run-ok" in shown.stdout and "run-killed" in shown.stdout
    assert {p.name: p.read_bytes() for p in state.parent.iterdir()} == before
