"""The state store, the same tests over a DuckDB file and over this machine's PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tasks.state import (
    UNBOUND_DESTINATION,
    RunRecord,
    StateLockedError,
    StateStore,
    marks_not_held,
    newer_mark,
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
    store._execute(
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
