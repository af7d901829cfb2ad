"""Pipeline state: watermarks per (source, subreddit, kind) and one row per run.

One class over any DB-API connection: a DuckDB file locally, PostgreSQL (psycopg 3) in
production. The SQL is written once, in the subset both speak; only the placeholder differs.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from tasks import duck, faults

SCHEMA = [
    """
    create table if not exists pipeline_runs (
        run_id varchar primary key,
        flow_run_id varchar,
        source varchar not null,
        status varchar not null,
        started_at timestamp not null,
        finished_at timestamp,
        window_start timestamp,
        window_end timestamp,
        parameters text,
        counts text,
        bytes_read bigint,
        durations text,
        error text
    )
    """,
    """
    create table if not exists watermarks (
        source varchar not null,
        subreddit varchar not null,
        kind varchar not null,
        created_utc double precision not null,
        fullname varchar not null,
        run_id varchar,
        updated_at timestamp not null,
        primary key (source, subreddit, kind)
    )
    """,
]

Watermarks = dict[tuple[str, str], tuple[float, str]]


def newer_mark(a: tuple[float, str] | None, b: tuple[float, str]) -> tuple[float, str]:
    """The later of two (created_utc, id) marks. Reddit ids (bare or fullnames) are base36 and
    grow with time: a longer id is newer, and of equal length text order is id order, so
    't3_100' comes after 't3_zz' although it sorts before it as text."""
    if a is None:
        return b

    def order(mark: tuple[float, str]) -> tuple[float, int, str]:
        bare = mark[1].rpartition("_")[2]
        return (mark[0], len(bare), bare)

    return a if order(a) >= order(b) else b


class StateLockedError(RuntimeError):
    """Another run holds the state of these subreddits."""


class Connection(Protocol):
    def execute(self, query: str, params: Any = ...) -> Any: ...
    def commit(self) -> None: ...
    def close(self) -> None: ...


@dataclass
class RunRecord:
    run_id: str
    source: str
    flow_run_id: str | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    parameters: dict[str, Any] | None = None


def _utc_naive(value: datetime | None) -> datetime | None:
    """Timestamps are stored as UTC without a zone, the one form both databases agree on."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


class StateStore:
    def __init__(self, connection: Connection, placeholder: str = "%s") -> None:
        self.con = connection
        self.placeholder = placeholder

    def _sql(self, query: str) -> str:
        return query.replace("%s", self.placeholder)

    def _execute(self, query: str, params: tuple[Any, ...] = ()) -> Any:
        return self.con.execute(self._sql(query), params)

    def ensure_schema(self) -> None:
        for statement in SCHEMA:
            self.con.execute(statement)
        self.con.commit()

    def start_run(self, run: RunRecord) -> None:
        self._execute(
            "insert into pipeline_runs (run_id, flow_run_id, source, status, started_at, "
            "window_start, window_end, parameters) values (%s, %s, %s, %s, %s, %s, %s, %s) "
            "on conflict (run_id) do update set status = excluded.status, "
            "started_at = excluded.started_at",
            (
                run.run_id,
                run.flow_run_id,
                run.source,
                "running",
                _utc_naive(datetime.now(UTC)),
                _utc_naive(run.window_start),
                _utc_naive(run.window_end),
                json.dumps(run.parameters or {}, default=str, sort_keys=True),
            ),
        )
        self.con.commit()

    def finish_run(
        self,
        run_id: str,
        status: str,
        counts: dict[str, Any],
        bytes_read: int,
        durations: dict[str, float],
        error: str | None = None,
    ) -> None:
        # The run may have stopped inside a transaction (an interrupt during the commit) that
        # PostgreSQL now refuses to extend and that holds half a commit: undo it first.
        raw: Any = getattr(self.con, "raw", None)
        if raw is not None and self.placeholder == "?":
            raw.execute("rollback")
            raw.execute("begin transaction")
        elif raw is not None:
            raw.rollback()
        self._execute(
            "update pipeline_runs set status = %s, finished_at = %s, counts = %s, "
            "bytes_read = %s, durations = %s, error = %s where run_id = %s",
            (
                status,
                _utc_naive(datetime.now(UTC)),
                json.dumps(counts, default=str, sort_keys=True),
                bytes_read,
                json.dumps({k: round(v, 3) for k, v in durations.items()}),
                error,
                run_id,
            ),
        )
        self.con.commit()

    def read_watermarks(self, source: str) -> Watermarks:
        rows = self._execute(
            "select subreddit, kind, created_utc, fullname from watermarks where source = %s",
            (source,),
        ).fetchall()
        return {(sub, kind): (float(created), fullname) for sub, kind, created, fullname in rows}

    def advance_watermarks(self, source: str, candidates: Watermarks, run_id: str) -> None:
        """Move each watermark forward to its candidate, never back, in one transaction."""
        now = _utc_naive(datetime.now(UTC))
        for (subreddit, kind), (created, fullname) in sorted(candidates.items()):
            self._execute(
                "insert into watermarks (source, subreddit, kind, created_utc, fullname, run_id, "
                "updated_at) values (%s, %s, %s, %s, %s, %s, %s) "
                "on conflict (source, subreddit, kind) do update set "
                "created_utc = excluded.created_utc, fullname = excluded.fullname, "
                "run_id = excluded.run_id, updated_at = excluded.updated_at "
                "where excluded.created_utc > watermarks.created_utc "
                "or (excluded.created_utc = watermarks.created_utc "
                # base36 ids: a longer one is newer; of equal length, text order is id order
                "and (length(excluded.fullname) > length(watermarks.fullname) "
                "or (length(excluded.fullname) = length(watermarks.fullname) "
                "and excluded.fullname > watermarks.fullname)))",
                (source, subreddit, kind, created, fullname, run_id, now),
            )
            faults.crash_point("commit:watermark")
        self.con.commit()

    def recent_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        cursor = self._execute(
            "select run_id, flow_run_id, source, status, started_at, finished_at, counts, error "
            "from pipeline_runs order by started_at desc limit %s",
            (limit,),
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    @contextmanager
    def subreddit_locks(
        self, source: str, subreddits: list[str], timeout: float = 60.0
    ) -> Iterator[None]:
        """Hold one lock per (source, subreddit) for the run, so two runs over the same
        subreddit never interleave their watermark updates. A run over every subreddit (no
        filter, or ALL_SUBREDDITS: a dump without a filter, a rebuild) holds the source's
        ALL_SUBREDDITS key alone; a run over named subreddits holds that key shared, so it
        waits for such a run but runs beside other runs over other subreddits. A second run
        waits up to `timeout` seconds, then stops with a message naming the subreddit."""
        named = sorted({s for s in subreddits if s != ALL_SUBREDDITS})
        every = not named or ALL_SUBREDDITS in subreddits
        plan = [(ALL_SUBREDDITS, not every)]  # the same first key for every run: no deadlock
        plan += [] if every else [(name, False) for name in named]
        acquired: list[tuple[int, bool]] = []
        try:
            for subreddit, shared in plan:
                key = _lock_key(source, subreddit)
                self._acquire(key, shared, source, subreddit, timeout)
                acquired.append((key, shared))
            yield
        finally:
            for key, shared in reversed(acquired):
                self._release(key, shared)

    def _acquire(self, key: int, shared: bool, source: str, subreddit: str, timeout: float) -> None:
        if self.placeholder != "%s":
            return  # DuckDB: the state file itself admits one writing process at a time.
        function = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
        deadline = time.monotonic() + timeout
        while True:
            row = self._execute(f"select {function}(%s)", (key,)).fetchone()
            self.con.commit()
            if row and row[0]:
                return
            if time.monotonic() >= deadline:
                if shared:
                    what = (
                        f"another run is updating every subreddit (source {source}: a run "
                        "without a subreddit filter, or a rebuild)"
                    )
                elif subreddit == ALL_SUBREDDITS:
                    what = f"other runs are updating some subreddits (source {source})"
                else:
                    what = f"another run is updating r/{subreddit} (source {source})"
                raise StateLockedError(
                    f"{what}; waited {timeout:g}s. Let it finish (or wait longer: "
                    "--state-lock-wait, state_lock_wait), or check `pipeline_runs` for a stuck run."
                )
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))

    def _release(self, key: int, shared: bool) -> None:
        if self.placeholder == "%s":
            function = "pg_advisory_unlock_shared" if shared else "pg_advisory_unlock"
            self._execute(f"select {function}(%s)", (key,))
            self.con.commit()

    def close(self) -> None:
        self.con.close()


ALL_SUBREDDITS = "*"


def _lock_key(source: str, subreddit: str) -> int:
    """A stable signed 64-bit key for pg_advisory_lock."""
    digest = hashlib.sha256(f"reddit_pipeline:{source}:{subreddit}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class _DuckDBConnection:
    """DuckDB's connection runs in autocommit unless a transaction is begun; this gives it the
    commit-after-statements behaviour psycopg has, so StateStore treats both alike."""

    def __init__(self, path: Path) -> None:
        self.raw = duck.connect(path)
        self.raw.execute("begin transaction")

    def execute(self, query: str, params: Any = ()) -> Any:
        return self.raw.execute(query, params)

    def commit(self) -> None:
        self.raw.execute("commit")
        self.raw.execute("begin transaction")

    def close(self) -> None:
        try:
            self.raw.execute("rollback")
        finally:
            self.raw.close()


def open_duckdb_state(path: Path) -> StateStore:
    import duckdb

    try:
        connection = _DuckDBConnection(path)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise StateLockedError(
                f"the state file {path} is in use by another run; wait for it to finish "
                "(a local DuckDB state file admits one run at a time)"
            ) from exc
        raise
    store = StateStore(connection, placeholder="?")
    store.ensure_schema()
    return store


class _PostgresConnection:
    """psycopg 3 over the same interface; statements run in a transaction until commit."""

    def __init__(self, dsn: str) -> None:
        import psycopg

        self.raw = psycopg.connect(dsn, connect_timeout=10)

    def execute(self, query: str, params: Any = ()) -> Any:
        return self.raw.execute(query, params)

    def commit(self) -> None:
        self.raw.commit()

    def close(self) -> None:
        self.raw.close()


def open_postgres_state(dsn: str) -> StateStore:
    """The production store: the same tables, created on first use."""
    store = StateStore(_PostgresConnection(dsn), placeholder="%s")
    store.ensure_schema()
    return store
