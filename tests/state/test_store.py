"""The state store, the same tests over a DuckDB file and over this machine's PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import psycopg
import pytest

from tasks.extract.reddit_api.things import newer_mark
from tasks.state.store import (
    UNBOUND_DESTINATION,
    RunRecord,
    StateLockedError,
    StateStore,
    marks_not_held,
    open_duckdb_state,
    open_postgres_state,
)

WH = "duckdb:/data/warehouse.duckdb"


@pytest.fixture(params=["duckdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "duckdb":
        state = open_duckdb_state(tmp_path / "state.duckdb")
    else:
        state = open_postgres_state(request.getfixturevalue("pg_dsn"))
    yield state
    state.close()


def test_watermarks_only_move_forward(store: StateStore) -> None:
    store.advance_watermarks("dump", WH, {("python", "posts"): (200.0, "t3_b")}, "run-1")
    store.advance_watermarks(
        "dump",
        WH,
        {("python", "posts"): (100.0, "t3_a"), ("rust", "posts"): (50.0, "t3_r")},
        "run-2",
    )
    store.advance_watermarks("dump", WH, {("python", "posts"): (200.0, "t3_c")}, "run-3")

    assert store.read_watermarks("dump", WH) == {
        ("python", "posts"): (200.0, "t3_c"),
        ("rust", "posts"): (50.0, "t3_r"),
    }
    assert store.read_watermarks("api", WH) == {}


def test_a_tie_on_created_utc_is_broken_by_id_order_not_text_order(store: StateStore) -> None:
    """Reddit ids are base36: t3_100 comes after t3_zz although it sorts before it as text."""
    store.advance_watermarks("api", WH, {("python", "posts"): (300.0, "t3_zz")}, "run-1")
    store.advance_watermarks("api", WH, {("python", "posts"): (300.0, "t3_100")}, "run-2")
    assert store.read_watermarks("api", WH) == {("python", "posts"): (300.0, "t3_100")}
    store.advance_watermarks("api", WH, {("python", "posts"): (300.0, "t3_zz")}, "run-3")
    assert store.read_watermarks("api", WH) == {("python", "posts"): (300.0, "t3_100")}


def test_watermarks_are_bound_to_the_warehouse_they_were_committed_to(store: StateStore) -> None:
    other = "postgres:db.internal:5432/reddit/reddit"
    store.advance_watermarks("dump", WH, {("python", "posts"): (200.0, "t3_b")}, "run-1")
    store.advance_watermarks("dump", other, {("python", "posts"): (100.0, "t3_a")}, "run-2")

    assert store.read_watermarks("dump", WH) == {("python", "posts"): (200.0, "t3_b")}
    assert store.read_watermarks("dump", other) == {("python", "posts"): (100.0, "t3_a")}
    assert store.read_watermarks("dump", "duckdb:/data/new.duckdb") == {}
    with pytest.raises(ValueError, match="name the warehouse"):
        store.advance_watermarks("dump", "", {("python", "posts"): (300.0, "t3_c")}, "run-3")


def _old_watermarks_table(store: StateStore) -> None:
    """The table as stores made before destinations had it, with one watermark."""
    store.con.execute("drop table watermarks")
    store.con.execute(
        "create table watermarks (source varchar not null, subreddit varchar not null, "
        "kind varchar not null, created_utc double precision not null, fullname varchar not "
        "null, run_id varchar, updated_at timestamp not null, primary key (source, subreddit, "
        "kind))"
    )
    store.execute(
        "insert into watermarks values ('dump', 'python', 'posts', 200.0, 't3_b', 'r0', %s)",
        (datetime(2024, 3, 1),),
    )
    store.con.commit()


def test_an_old_watermarks_table_is_migrated_and_applies_to_no_warehouse(
    store: StateStore,
) -> None:
    _old_watermarks_table(store)
    store.ensure_schema()  # what opening the store does
    store.ensure_schema()  # and again: already migrated

    assert store.read_watermarks("dump", WH) == {}
    assert store.read_watermarks("dump", UNBOUND_DESTINATION) == {
        ("python", "posts"): (200.0, "t3_b")
    }
    store.advance_watermarks("dump", WH, {("python", "posts"): (100.0, "t3_a")}, "run-1")
    assert store.read_watermarks("dump", WH) == {("python", "posts"): (100.0, "t3_a")}


def test_marks_whose_item_the_warehouse_lacks_are_named() -> None:
    marks = {
        ("python", "posts"): (1.0, "t3_a"),
        ("python", "comments"): (1.0, "t1_b"),
        ("rust", "posts"): (1.0, "t3_c"),
    }
    asked: list[tuple[str, list[str]]] = []

    def held(kind: str, fullnames: list[str]) -> set[str]:
        asked.append((kind, list(fullnames)))
        return {"t3_a"} if kind == "posts" else set()

    assert marks_not_held(marks, held) == {("python", "comments"), ("rust", "posts")}
    assert sorted(asked) == [("comments", ["t1_b"]), ("posts", ["t3_a", "t3_c"])]


def test_newer_mark_orders_ids_as_base36_numbers() -> None:
    assert newer_mark(None, (1.0, "t3_zz")) == (1.0, "t3_zz")
    assert newer_mark((1.0, "t3_zz"), (1.0, "t3_100")) == (1.0, "t3_100")
    assert newer_mark((1.0, "100"), (1.0, "zz")) == (1.0, "100")
    assert newer_mark((2.0, "a"), (1.0, "zzzz")) == (2.0, "a")


def test_a_run_is_recorded_with_its_counts_durations_and_error(store: StateStore) -> None:
    store.start_run(
        RunRecord("run-1", "dump", "flow-1", datetime(2024, 3, 1, tzinfo=UTC), None, {"a": 1})
    )
    store.finish_run("run-1", "failed", {"staged": 3}, 1234, {"stage": 0.5}, error="boom")

    [run] = store.recent_runs()
    assert run["run_id"] == "run-1"
    assert run["flow_run_id"] == "flow-1"
    assert run["status"] == "failed"
    assert run["error"] == "boom"
    assert '"staged": 3' in run["counts"]


def test_schema_creation_is_idempotent(store: StateStore) -> None:
    store.ensure_schema()
    store.ensure_schema()
    assert store.recent_runs() == []


def test_second_run_on_the_same_subreddit_waits_then_fails_clearly(pg_dsn: str) -> None:
    first, second = open_postgres_state(pg_dsn), open_postgres_state(pg_dsn)
    try:
        with first.subreddit_locks("api", ["python"]):
            started = time.monotonic()
            with (
                pytest.raises(StateLockedError, match="r/python"),
                second.subreddit_locks("api", ["rust", "python"], timeout=0.5),
            ):
                pass
            assert time.monotonic() - started >= 0.5
            # Other subreddits are free.
            with second.subreddit_locks("api", ["rust"], timeout=0.5):
                pass
    finally:
        first.close()
        second.close()


def test_a_run_over_every_subreddit_excludes_named_runs_and_named_runs_share(
    pg_dsn: str,
) -> None:
    """A run without a subreddit filter (or a rebuild) updates every subreddit's watermarks:
    it must not overlap a run over r/python, while runs over other named subreddits coexist."""
    first, second = open_postgres_state(pg_dsn), open_postgres_state(pg_dsn)
    try:
        with first.subreddit_locks("dump", ["python"]):
            with second.subreddit_locks("dump", ["rust"], timeout=0.5):
                pass  # named runs over other subreddits share the source
            with (
                pytest.raises(StateLockedError, match="other runs are updating some subreddits"),
                second.subreddit_locks("dump", [], timeout=0.5),
            ):
                pass
            with second.subreddit_locks("api", [], timeout=0.5):
                pass  # another source's watermarks are another matter
        with (
            first.subreddit_locks("dump", []),
            pytest.raises(
                StateLockedError,
                match=r"every subreddit \(source dump: a run without a subreddit filter",
            ),
            second.subreddit_locks("dump", ["rust"], timeout=0.5),
        ):
            pass
        # Every lock was released: both kinds can be taken again.
        with second.subreddit_locks("dump", [], timeout=0.5):
            pass
        with second.subreddit_locks("dump", ["python", "rust"], timeout=0.5):
            pass
    finally:
        first.close()
        second.close()


def test_a_rebuild_waits_for_a_run_over_a_subreddit_then_stops_clearly(pg_dsn: str) -> None:
    from flows.rebuild import RebuildConfig, _watermark_locks
    from tasks.config import PipelineConfig

    config = RebuildConfig(pipeline=PipelineConfig(state_lock_wait=0.5))
    run, rebuilding = open_postgres_state(pg_dsn), open_postgres_state(pg_dsn)
    try:
        with (
            run.subreddit_locks("api", ["python"]),
            pytest.raises(
                StateLockedError, match=r"other runs are updating some subreddits \(source api\)"
            ),
            _watermark_locks(rebuilding, config),
        ):
            pass
        with (
            _watermark_locks(rebuilding, config),
            pytest.raises(StateLockedError, match="every subreddit"),
            run.subreddit_locks("sample", ["python"], timeout=0.5),
        ):
            pass
    finally:
        run.close()
        rebuilding.close()


def test_second_run_gets_the_lock_once_the_first_releases_it(pg_dsn: str) -> None:
    first, second = open_postgres_state(pg_dsn), open_postgres_state(pg_dsn)
    holding = threading.Event()
    seen_while_holding: list[bool] = []

    def hold() -> None:
        with first.subreddit_locks("api", ["python"]):
            holding.set()
            time.sleep(0.5)
            holding.clear()

    try:
        thread = threading.Thread(target=hold)
        thread.start()
        assert holding.wait(5)
        with second.subreddit_locks("api", ["python"], timeout=10):
            seen_while_holding.append(holding.is_set())
        thread.join()
    finally:
        first.close()
        second.close()
    assert seen_while_holding == [False]


def test_a_second_process_on_a_local_state_file_gets_a_clear_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "state.duckdb"
    holder = open_duckdb_state(path)
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                f"from tasks.state import open_duckdb_state; open_duckdb_state({str(path)!r})",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        holder.close()
    assert result.returncode != 0
    assert "in use by another run" in result.stderr


# -- a strict state database: idle_in_transaction_session_timeout, killed runs, bad DSNs ------


def _strict(dsn: str, timeout: str = "idle_in_transaction_session_timeout") -> str:
    """The test database with a timeout production servers often set: the server closes a
    session that stays idle in a transaction (or idle at all) for a second (new sessions)."""
    with psycopg.connect(dsn, autocommit=True) as admin:
        name = admin.execute("select current_database()").fetchone()
        assert name is not None
        admin.execute(f'alter database "{name[0]}" set {timeout} = 1000')
    return dsn


def _idle_in_transaction(dsn: str) -> list[tuple[int, str]]:
    with psycopg.connect(dsn, autocommit=True) as admin:
        return admin.execute(
            "select pid, query from pg_stat_activity where datname = current_database() "
            "and state like 'idle in transaction%%'"
        ).fetchall()


@pytest.mark.parametrize("timeout", ["idle_in_transaction_session_timeout", "idle_session_timeout"])
def test_a_run_keeps_its_locks_past_the_idle_in_transaction_timeout(
    pg_dsn: str, timeout: str
) -> None:
    """Run A reads its watermarks and holds r/python for 3 s on a server that closes sessions
    idle in a transaction (or idle) after 1 s: a second run is refused the whole time, and A
    commits (on a new connection if its idle one was closed)."""
    from tasks.state.pool import close_pools, open_pooled_state

    dsn = _strict(pg_dsn, timeout)
    first, second = open_pooled_state(dsn), open_postgres_state(dsn)
    refusals = 0
    try:
        first.start_run(RunRecord("run-a", "api"))
        with first.subreddit_locks("api", ["python"]):
            first.read_watermarks("api", WH)
            until = time.monotonic() + 3
            while time.monotonic() < until:
                with (
                    pytest.raises(StateLockedError, match="r/python"),
                    second.subreddit_locks("api", ["python"], timeout=0.1),
                ):
                    pass
                refusals += 1
                time.sleep(0.3)
            first.advance_watermarks("api", WH, {("python", "posts"): (5.0, "t3_a")}, "run-a")
        first.finish_run("run-a", "completed", {}, 0, {})
        assert first.read_watermarks("api", WH) == {("python", "posts"): (5.0, "t3_a")}
        assert [r["status"] for r in second.recent_runs()] == ["completed"]
    finally:
        first.close()
        second.close()
        close_pools()
    assert refusals >= 5


def test_no_state_connection_is_left_idle_in_a_transaction(pg_dsn: str, tmp_path: Path) -> None:
    """Every reader of the store (the flow's calls, status, monitoring, checks, backup) ends
    the transaction it opened, as pg_stat_activity sees it after each call."""
    from flows.status import lags
    from tasks.ops.monitoring import slowdown_figures
    from tasks.quality.contracts import CheckReport, CheckRow, record_check_results
    from tasks.state.backup import read_snapshot
    from tasks.state.pool import close_pools, open_pooled_state

    store = open_pooled_state(pg_dsn)
    calls = {
        "mark_crashed_runs": store.mark_crashed_runs,
        "start_run": lambda: store.start_run(RunRecord("run-1", "api")),
        "read_watermarks": lambda: store.read_watermarks("api", WH),
        "advance_watermarks": lambda: store.advance_watermarks(
            "api", WH, {("python", "posts"): (1.0, "t3_a")}, "run-1"
        ),
        "recent_runs": store.recent_runs,
        "lags": lambda: lags(store),
        "record_check_results": lambda: record_check_results(
            store, "run-1", CheckReport([CheckRow("posts", "rows", "pass", "error", 1.0, "")])
        ),
        "finish_run": lambda: store.finish_run("run-1", "completed", {}, 0, {}),
        "slowdown_figures": lambda: slowdown_figures(store, "run-1"),
        "read_snapshot": lambda: read_snapshot(store),
    }
    left_open = {}
    try:
        with store.subreddit_locks("api", ["python"]):
            left_open["subreddit_locks"] = _idle_in_transaction(pg_dsn)
            for name, call in calls.items():
                call()
                left_open[name] = _idle_in_transaction(pg_dsn)
    finally:
        store.close()
        close_pools()
    assert {name: found for name, found in left_open.items() if found} == {}


_STORE_PROCESS = """
import os, signal, sys
from tasks.state.store import RunRecord, open_duckdb_state, open_postgres_state
where, run_id, fate = sys.argv[1:]
store = open_postgres_state(where) if where.startswith("postgresql") else open_duckdb_state(where)
store.start_run(RunRecord(run_id, "api"))
if fate == "killed":
    os.kill(os.getpid(), signal.SIGKILL)
print("running", flush=True)
sys.stdin.read()
store.finish_run(run_id, "completed", {}, 0, {})
store.close()
"""


def _store_process(where: str, run_id: str, fate: str) -> subprocess.Popen[str]:
    """A process that starts a run on the store and is then killed, or runs until its stdin
    closes."""
    process = subprocess.Popen(
        [sys.executable, "-c", _STORE_PROCESS, where, run_id, fate],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    if fate == "killed":
        assert process.wait(60) == -9
    else:
        assert process.stdout is not None and process.stdout.readline() == "running\n"
    return process


def test_a_killed_run_is_marked_crashed_and_a_live_one_is_not_on_postgresql(pg_dsn: str) -> None:
    live = _store_process(pg_dsn, "run-live", "waits")
    try:
        _store_process(pg_dsn, "run-killed", "killed")
        store = open_postgres_state(pg_dsn)
        try:
            assert store.mark_crashed_runs() == ["run-killed"]
            assert store.mark_crashed_runs() == []
            runs = {r["run_id"]: r for r in store.recent_runs()}
        finally:
            store.close()
    finally:
        assert live.stdin is not None
        live.stdin.close()
        assert live.wait(60) == 0
    assert runs["run-live"]["status"] == "running"
    assert runs["run-killed"]["status"] == "crashed"
    assert "ended without recording an outcome" in runs["run-killed"]["error"]


def test_a_killed_run_on_a_local_state_file_is_marked_crashed(tmp_path: Path) -> None:
    path = tmp_path / "state.duckdb"
    _store_process(str(path), "run-killed", "killed")
    store = open_duckdb_state(path)
    try:
        store.start_run(RunRecord("run-here", "api"))  # this process's own run is alive
        assert store.mark_crashed_runs() == ["run-killed"]
        statuses = {r["run_id"]: r["status"] for r in store.recent_runs()}
    finally:
        store.close()
    assert statuses == {"run-killed": "crashed", "run-here": "running"}


@pytest.mark.parametrize("state", ["duckdb", "postgres"])
def test_the_next_pipeline_run_marks_a_killed_one_crashed(
    prefect_api: str, paths: dict[str, Path], state: str, request: pytest.FixtureRequest
) -> None:
    """On PostgreSQL under idle_in_transaction_session_timeout too: the runs' state sessions
    outlive the seconds between their state calls."""
    from helpers import path_args, run_cli

    env = (
        {"REDDIT_PIPELINE_STATE_DSN": _strict(request.getfixturevalue("pg_dsn"))}
        if state != "duckdb"
        else {}
    )
    killed = run_cli(
        path_args(paths), prefect_api, env={**env, "REDDIT_PIPELINE_CRASH_AT": "after:stage"}
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    rerun = run_cli(path_args(paths), prefect_api, env=env)
    assert rerun.returncode == 0, rerun.stderr[-2000:]

    dsn = env.get("REDDIT_PIPELINE_STATE_DSN")
    store = open_postgres_state(dsn) if dsn else open_duckdb_state(paths["state_path"])
    try:
        runs = store.recent_runs()
    finally:
        store.close()
    assert [r["status"] for r in runs] == ["completed", "crashed"]
    assert "marked crashed" in rerun.stderr + rerun.stdout


def test_finish_run_records_the_run_after_a_failed_statement_in_its_transaction(
    store: StateStore,
) -> None:
    """As after a Ctrl-C in the middle of the commit: the transaction is aborted, and the
    outcome must still be written."""
    store.start_run(RunRecord("run-1", "api"))
    store.execute("update pipeline_runs set error = 'half-done' where run_id = %s", ("run-1",))
    with pytest.raises((duckdb.Error, psycopg.Error)):
        store.execute("select cast('x' as integer)").fetchall()
    store.finish_run("run-1", "failed", {}, 0, {}, error="KeyboardInterrupt")
    [run] = store.recent_runs()
    assert (run["status"], run["error"]) == ("failed", "KeyboardInterrupt")


def test_finish_run_records_the_run_after_a_ctrl_c_in_the_middle_of_a_statement(
    pg_dsn: str,
) -> None:
    import os
    import signal

    # Python's own Ctrl-C: a SparkContext of an earlier test (test_glue_script) leaves its
    # SIGINT handler installed, which would cancel Spark jobs instead of raising here.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    store = open_postgres_state(pg_dsn)
    try:
        store.start_run(RunRecord("run-1", "api"))
        store.execute("update pipeline_runs set error = 'half-done' where run_id = %s", ("run-1",))
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
        with pytest.raises(KeyboardInterrupt):
            store.execute("select pg_sleep(10)")
        store.finish_run("run-1", "failed", {}, 0, {}, error="KeyboardInterrupt")
        [run] = store.recent_runs()
    finally:
        store.close()
        signal.signal(signal.SIGINT, previous)
    assert (run["status"], run["error"]) == ("failed", "KeyboardInterrupt")


def test_finish_run_records_the_run_after_the_server_closed_its_connection(pg_dsn: str) -> None:
    from tasks.state.pool import close_pools, open_pooled_state

    store = open_pooled_state(pg_dsn)
    try:
        store.start_run(RunRecord("run-1", "api"))
        store.execute("update pipeline_runs set error = 'half-done' where run_id = %s", ("run-1",))
        [(pid,)] = store.execute("select pg_backend_pid()").fetchall()
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute("select pg_terminate_backend(%s)", (pid,))
        with pytest.raises(psycopg.OperationalError):
            store.execute("update pipeline_runs set error = 'more' where run_id = %s", ("run-1",))
        store.finish_run("run-1", "failed", {}, 0, {}, error="OperationalError")
        [run] = store.recent_runs()
    finally:
        store.close()
        close_pools()
    assert (run["status"], run["error"]) == ("failed", "OperationalError")


def test_a_lock_wait_that_times_out_names_the_run_holding_it(pg_dsn: str) -> None:
    first, second = open_postgres_state(pg_dsn), open_postgres_state(pg_dsn)
    try:
        first.start_run(RunRecord("20240301T000000Z-holder", "api"))
        with (
            first.subreddit_locks("api", ["python"]),
            pytest.raises(
                StateLockedError,
                match=r"r/python.*held by reddit_pipeline run 20240301T000000Z-holder \(pid \d+\)",
            ),
            second.subreddit_locks("api", ["python"], timeout=0.2),
        ):
            pass
    finally:
        first.close()
        second.close()


def test_nothing_commits_under_locks_whose_session_was_lost(pg_dsn: str) -> None:
    store = open_postgres_state(pg_dsn)
    try:
        with store.subreddit_locks("api", ["python"]):
            with psycopg.connect(pg_dsn, autocommit=True) as admin:
                admin.execute(
                    "select pg_terminate_backend(pid) from pg_locks where locktype = 'advisory'"
                )
            with pytest.raises(StateLockedError, match="lost its state locks"):
                store.advance_watermarks("api", WH, {("python", "posts"): (5.0, "t3_a")}, "run-a")
        assert store.read_watermarks("api", WH) == {}
    finally:
        store.close()


@pytest.mark.parametrize(
    ("dsn", "reason"),
    [
        ("postgresql://postgres:s3cret pw@127.0.0.1:5432/postgres", "malformed"),
        ("host=127.0.0.1 password=s3cret dbname", "malformed"),
        (
            "postgresql://postgres:s3cret@127.0.0.1:5432/no_such_state_db",
            'database "no_such_state_db" does not exist',
        ),
    ],
)
@pytest.mark.parametrize("opener", ["pooled", "direct"])
def test_a_bad_state_dsn_fails_at_once_with_one_line_and_no_password(
    dsn: str, reason: str, opener: str
) -> None:
    from tasks.state.pool import close_pools, open_pooled_state

    started = time.monotonic()
    try:
        with pytest.raises(psycopg.Error) as raised:  # StateUnavailableError is one
            (open_pooled_state if opener == "pooled" else open_postgres_state)(dsn)
    finally:
        close_pools()
    message = str(raised.value)
    assert time.monotonic() - started < 5
    assert reason in message
    assert "s3cret" not in message and "\n" not in message
    if "does not exist" in reason:
        assert "127.0.0.1:5432/no_such_state_db as postgres" in message
