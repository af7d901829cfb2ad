"""Pipeline state: watermarks per (destination, source, subreddit, kind) and one row per run.

One class over any DB-API connection: a DuckDB file locally, PostgreSQL (psycopg 3) in
production. The SQL is written once, in the subset both speak; only the placeholder differs.

On PostgreSQL no transaction stays open between calls: a server with
idle_in_transaction_session_timeout (common in production) closes such a session, and with it
every lock it held. A read that opens a transaction ends it (PostgresConnection), writes
commit, and the advisory locks live on a session of their own (LockSession) that is never in a
transaction and is pinged while it holds them.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from tasks.core import duck, faults

# A watermark says what one warehouse holds, so the warehouse (tasks.run.engines.Warehouse's
# destination: kind and location, no secret) is part of its key: a run into another warehouse
# starts from nothing there instead of loading only what came after another warehouse's mark.
WATERMARKS_DDL = """
    create table if not exists watermarks (
        destination varchar not null default '',
        source varchar not null,
        subreddit varchar not null,
        kind varchar not null,
        created_utc double precision not null,
        fullname varchar not null,
        run_id varchar,
        updated_at timestamp not null,
        primary key (destination, source, subreddit, kind)
    )
    """
# Rows of a store made before watermarks had a destination (migrated, or restored from an old
# backup): kept under this one, which no warehouse has, so they are applied to none (a run
# starts from nothing, which is safe: loads MERGE).
UNBOUND_DESTINATION = ""

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
    WATERMARKS_DDL,
    # The data contracts' verdicts, one row per run and check (tasks.quality keeps them here
    # for history; backups carry them with the runs they belong to).
    """
    create table if not exists check_results (
        run_id varchar not null,
        checked_at timestamp not null,
        dataset varchar not null,
        check_name varchar not null,
        outcome varchar not null,
        severity varchar not null,
        figure double precision,
        detail text,
        primary key (run_id, dataset, check_name)
    )
    """,
]

Watermarks = dict[tuple[str, str], tuple[float, str]]


def marks_not_held(
    marks: Watermarks, held: Callable[[str, Sequence[str]], set[str]]
) -> set[tuple[str, str]]:
    """The keys of the marks whose item (a fullname) the warehouse does not hold; `held(kind,
    fullnames)` asks it (tasks.run.engines.Warehouse.held). A watermark stands for "the warehouse
    has everything up to this item", so one whose item is absent is not true of it."""
    missing = set()
    for kind in sorted({k for _, k in marks}):
        names = sorted({mark[1] for (_, k), mark in marks.items() if k == kind})
        found = held(kind, names)
        missing |= {key for key, mark in marks.items() if key[1] == kind and mark[1] not in found}
    return missing


class StateLockedError(RuntimeError):
    """Another run holds the state of these subreddits, or this run lost its locks."""


class StateUnavailableError(psycopg.OperationalError):
    """The PostgreSQL state database cannot be reached, said at once with libpq's reason and
    without the password (a psycopg error, so callers that catch psycopg.Error catch it)."""


class Connection(Protocol):
    def execute(self, query: str, params: Any = ...) -> Any: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
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


# Runs started in this process and not yet finished: never taken for dead (a DuckDB state file
# is this process's alone while it is open, so any other `running` row in it is dead).
_LIVE_RUNS: set[str] = set()

CRASHED_ERROR = (
    "its process ended without recording an outcome (killed, out of memory, or its worker "
    "was lost); found by the next run"
)


class StateStore:
    def __init__(
        self,
        connection: Connection,
        placeholder: str = "%s",
        lock_session: Callable[[], LockSession] | None = None,
    ) -> None:
        """`lock_session` opens the PostgreSQL session that holds this store's advisory locks
        (None on DuckDB, whose file lock admits one process at a time)."""
        self.con = connection
        self.placeholder = placeholder
        self._open_session = lock_session
        self._session: LockSession | None = None
        self._held: list[tuple[int, bool]] = []
        self._run_id: str | None = None
        if isinstance(connection, PostgresConnection):
            connection.before_commit = self._check_locks

    def _locks(self) -> LockSession:
        assert self._open_session is not None
        if self._session is None:
            self._session = self._open_session()
        return self._session

    def _check_locks(self) -> None:
        """While a run holds subreddit locks, nothing commits once they are lost: another run
        over those subreddits may be running beside it."""
        if self._held and self._session is not None:
            self._session.check()

    def _sql(self, query: str) -> str:
        return query.replace("%s", self.placeholder)

    def execute(self, query: str, params: tuple[Any, ...] = ()) -> Any:
        """One statement in either database: `%s` placeholders become the driver's."""
        return self.con.execute(self._sql(query), params)

    def commit(self) -> None:
        self.con.commit()

    def watermark_rows(self) -> list[tuple[str, str, str, float, str]]:
        """(source, subreddit, kind, created_utc, destination) of every watermark."""
        return self.execute(
            "select source, subreddit, kind, created_utc, destination from watermarks "
            "order by source, subreddit, kind, destination"
        ).fetchall()

    def run_times(self, run_id: str) -> tuple[datetime, datetime | None, Any] | None:
        """(started_at, finished_at, parameters) of one run, None for an unknown run."""
        return self.execute(
            "select started_at, finished_at, parameters from pipeline_runs where run_id = %s",
            (run_id,),
        ).fetchone()

    def completed_runs_before(
        self, run_id: str, started: datetime, limit: int
    ) -> list[tuple[datetime, datetime, Any]]:
        """(started_at, finished_at, parameters) of the completed runs other than `run_id`
        that started before `started`, newest first."""
        return self.execute(
            "select started_at, finished_at, parameters from pipeline_runs "
            "where status = 'completed' and finished_at is not null and run_id <> %s "
            "and started_at < %s order by started_at desc limit %s",
            (run_id, started, limit),
        ).fetchall()

    def record_check_rows(
        self, run_id: str, checked_at: datetime, rows: Iterable[tuple[Any, ...]]
    ) -> None:
        """Keep a run's check rows, each (dataset, check_name, outcome, severity, figure,
        detail); a retried check stage overwrites its rows."""
        for row in rows:
            self.execute(
                "insert into check_results (run_id, checked_at, dataset, check_name, outcome, "
                "severity, figure, detail) values (%s, %s, %s, %s, %s, %s, %s, %s) "
                "on conflict (run_id, dataset, check_name) do update set "
                "checked_at = excluded.checked_at, outcome = excluded.outcome, "
                "severity = excluded.severity, figure = excluded.figure, detail = excluded.detail",
                (run_id, checked_at, *row),
            )
        self.con.commit()

    def ensure_schema(self) -> None:
        self._bind_watermarks_to_destination()
        for statement in SCHEMA:
            self.con.execute(statement)
        self.con.commit()

    def _watermarks_unbound(self) -> bool:
        """Whether the watermarks table exists without a destination column."""
        found = self.execute(
            "select count(*) from information_schema.columns where table_name = 'watermarks' "
            "and table_schema = current_schema() and column_name in ('source', 'destination')"
        ).fetchall()
        return bool(found) and found[0][0] == 1  # no table yet: 0; already bound: 2

    def _bind_watermarks_to_destination(self) -> None:
        """Migrate a watermarks table keyed without a destination: its rows move under
        UNBOUND_DESTINATION (nobody knows which warehouse they were committed to)."""
        if not self._watermarks_unbound():
            return
        if self.placeholder == "%s":
            # PostgreSQL: two runs starting at once must not both migrate (the second would
            # rename the table the first just made); the second sees it done once it has the lock.
            self.con.execute("lock table watermarks in access exclusive mode")
            if not self._watermarks_unbound():
                self.con.commit()
                return
        self.con.execute("alter table watermarks rename to watermarks_unbound")
        self.con.execute(WATERMARKS_DDL)
        self.execute(
            "insert into watermarks (destination, source, subreddit, kind, created_utc, "
            "fullname, run_id, updated_at) select %s, source, subreddit, kind, created_utc, "
            "fullname, run_id, updated_at from watermarks_unbound",
            (UNBOUND_DESTINATION,),
        )
        self.con.execute("drop table watermarks_unbound")
        self.con.commit()

    def start_run(self, run: RunRecord) -> None:
        """Record the run as running. On PostgreSQL the run first takes a session lock of its
        own, held until finish_run or its process ends, which is how mark_crashed_runs tells
        a live run from a dead one."""
        if self._open_session is not None:
            session = self._locks()
            if not session.try_lock(_run_key(run.run_id), shared=False):
                raise StateLockedError(f"run {run.run_id} is already running in another process")
            session.name(f"reddit_pipeline run {run.run_id}")
        self._run_id = run.run_id
        _LIVE_RUNS.add(run.run_id)
        self.execute(
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
        """Record how the run ended. It runs after any failure, a Ctrl-C in the middle of a
        commit included: whatever transaction that left open (or aborted) is rolled back
        first, on a new connection if the old one is gone, so the outcome is always written."""
        self.con.rollback()
        self.execute(
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
        _LIVE_RUNS.discard(run_id)
        if self._session is not None and self._run_id == run_id:
            self._session.unlock(_run_key(run_id), shared=False)
            self._session.name("reddit_pipeline")
            self._run_id = None

    def mark_crashed_runs(self) -> list[str]:
        """Mark `crashed` every `running` run whose process is gone, and return their ids: a
        killed run (SIGKILL, OOM, a lost worker) never reaches finish_run. On PostgreSQL a
        live run holds its run lock, so a running run whose lock is free is dead; a DuckDB
        state file is this process's alone while open, so a running run started elsewhere is."""
        rows = self.execute("select run_id from pipeline_runs where status = 'running'")
        crashed: list[str] = []
        for (run_id,) in rows.fetchall():
            if run_id in _LIVE_RUNS:
                continue
            key = _run_key(run_id)
            if self._open_session is not None and not self._locks().try_lock(key, shared=False):
                continue  # its process holds it: alive
            try:
                # `status = 'running'`: a run that finished since the select keeps its outcome.
                marked = self.execute(
                    "update pipeline_runs set status = 'crashed', error = %s "
                    "where run_id = %s and status = 'running' returning run_id",
                    (CRASHED_ERROR, run_id),
                ).fetchall()
                self.con.commit()
            finally:
                if self._open_session is not None:
                    self._locks().unlock(key, shared=False)
            crashed += [r[0] for r in marked]
        return crashed

    def read_watermarks(self, source: str, destination: str) -> Watermarks:
        """The watermarks of `source` committed to the warehouse `destination`."""
        rows = self.execute(
            "select subreddit, kind, created_utc, fullname from watermarks "
            "where destination = %s and source = %s",
            (destination, source),
        ).fetchall()
        return {(sub, kind): (float(created), fullname) for sub, kind, created, fullname in rows}

    def advance_watermarks(
        self, source: str, destination: str, candidates: Watermarks, run_id: str
    ) -> None:
        """Move each watermark of `destination` forward to its candidate, never back, in one
        transaction. Only for items the load committed to that warehouse."""
        if not destination:
            raise ValueError("a watermark must name the warehouse it was committed to")
        now = _utc_naive(datetime.now(UTC))
        for (subreddit, kind), (created, fullname) in sorted(candidates.items()):
            self.execute(
                "insert into watermarks (destination, source, subreddit, kind, created_utc, "
                "fullname, run_id, updated_at) values (%s, %s, %s, %s, %s, %s, %s, %s) "
                "on conflict (destination, source, subreddit, kind) do update set "
                "created_utc = excluded.created_utc, fullname = excluded.fullname, "
                "run_id = excluded.run_id, updated_at = excluded.updated_at "
                "where excluded.created_utc > watermarks.created_utc "
                "or (excluded.created_utc = watermarks.created_utc "
                # base36 ids: a longer one is newer; of equal length, text order is id order
                "and (length(excluded.fullname) > length(watermarks.fullname) "
                "or (length(excluded.fullname) = length(watermarks.fullname) "
                "and excluded.fullname > watermarks.fullname)))",
                (destination, source, subreddit, kind, created, fullname, run_id, now),
            )
            faults.crash_point("commit:watermark")
        self.con.commit()

    def recent_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        cursor = self.execute(
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
        if self._open_session is None:
            yield  # DuckDB: the state file itself admits one writing process at a time.
            return
        session = self._locks()
        acquired: list[tuple[int, bool]] = []
        try:
            for subreddit, shared in plan:
                key = _lock_key(source, subreddit)
                self._acquire(session, key, shared, source, subreddit, timeout)
                acquired.append((key, shared))
                self._held.append((key, shared))
            yield
        finally:
            for key, shared in reversed(acquired):
                self._held.remove((key, shared))
                session.unlock(key, shared)

    def _acquire(
        self,
        session: LockSession,
        key: int,
        shared: bool,
        source: str,
        subreddit: str,
        timeout: float,
    ) -> None:
        deadline = time.monotonic() + timeout
        while not session.try_lock(key, shared):
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
                    f"{what}, held by {session.holders(key)}; waited {timeout:g}s. Let it "
                    "finish (or wait longer: --state-lock-wait, state_lock_wait), or check "
                    "`pipeline_runs` for a stuck run."
                )
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))

    def close(self) -> None:
        if self._run_id is not None:
            _LIVE_RUNS.discard(self._run_id)  # closed unfinished: no longer alive here either
        try:
            self.con.close()
        finally:
            if self._session is not None:
                self._session.close()  # ends the session: the server frees what it held
                self._session = None


ALL_SUBREDDITS = "*"


def _lock_key(source: str, subreddit: str) -> int:
    """A stable signed 64-bit key for pg_advisory_lock."""
    digest = hashlib.sha256(f"reddit_pipeline:{source}:{subreddit}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _run_key(run_id: str) -> int:
    """The key of the lock a run holds for its lifetime (mark_crashed_runs)."""
    digest = hashlib.sha256(f"reddit_pipeline_run:{run_id}".encode()).digest()
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

    def rollback(self) -> None:
        self.raw.execute("rollback")
        self.raw.execute("begin transaction")

    def close(self) -> None:
        try:
            self.raw.execute("rollback")
        finally:
            self.raw.close()


class ReadOnlyDuckDBConnection:
    """The DuckDB state file opened read-only, for `status`: it must never create the file,
    add its schema or write a checkpoint into it (a write open rewrites the file on close),
    and must work on a file it may not write."""

    def __init__(self, path: Path) -> None:
        import duckdb

        self.raw = duckdb.connect(str(path), read_only=True)
        self.raw.execute("set TimeZone = 'UTC'")

    def execute(self, query: str, params: Any = ()) -> Any:
        return self.raw.execute(query, params)

    def commit(self) -> None:
        """Nothing to commit: every statement only reads."""

    def rollback(self) -> None:
        """Nothing to undo: every statement only reads."""

    def close(self) -> None:
        self.raw.close()


def open_duckdb_state(path: Path, read_only: bool = False) -> StateStore:
    """The local state store; `read_only` opens an existing file without writing to it.
    DuckDB admits one writing process and no reader beside it, so either open fails while a
    run holds the file."""
    import duckdb

    try:
        connection = ReadOnlyDuckDBConnection(path) if read_only else _DuckDBConnection(path)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise StateLockedError(
                f"the state file {path} is in use by another run; wait for it to finish "
                "(a local DuckDB state file admits one run at a time)"
            ) from exc
        raise
    store = StateStore(connection, placeholder="?")
    if not read_only:
        store.ensure_schema()
    return store


def _secrets(dsn: str) -> list[str]:
    """The password of a DSN, found without parsing it (libpq quotes parts of a malformed
    DSN in its error, the password included), percent-decoded too."""
    from urllib.parse import unquote

    found = re.findall(r"://[^/@:]*:([^@]*)@", dsn)
    found += [
        q or b for q, b in re.findall(r"password\s*=\s*(?:'((?:[^'\\]|\\.)*)'|([^\s&]+))", dsn)
    ]
    return [f for secret in found if secret for f in {secret, unquote(secret)}]


def _scrub(message: str, dsn: str) -> str:
    for secret in sorted(_secrets(dsn), key=len, reverse=True):
        message = message.replace(secret, "***")
    return " ".join(message.split())  # libpq's reason spans lines (one per host tried)


def describe_dsn(dsn: str) -> str:
    """host:port/dbname as user: where a DSN points, without its password."""
    params = conninfo_to_dict(dsn)
    where = f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}"
    user = f" as {params['user']}" if params.get("user") else ""
    return f"{where}/{params.get('dbname') or params.get('user') or '(default)'}{user}"


def check_dsn(dsn: str) -> str:
    """The DSN's description (describe_dsn), or StateUnavailableError at once if it is
    malformed: a pool would retry it in the background until its timeout."""
    try:
        return describe_dsn(dsn)
    except psycopg.Error as exc:
        raise StateUnavailableError(
            f"the state DSN (REDDIT_PIPELINE_STATE_DSN or state_dsn) is malformed: "
            f"{_scrub(str(exc), dsn)}"
        ) from None


def connect_postgres(dsn: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """One connection to the state database, or StateUnavailableError in one line: where the
    DSN points (no password) and libpq's reason (no such database, refused, bad password)."""
    where = check_dsn(dsn)
    try:
        return psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT, **kwargs)
    except psycopg.OperationalError as exc:
        raise StateUnavailableError(
            f"cannot connect to the state database {where}: {_scrub(str(exc), dsn)}"
        ) from None


CONNECT_TIMEOUT = 10
# How often a LockSession pings its server while it waits (catches a lost session, and keeps
# NAT and firewall state alive; the session's own idle timeouts are switched off).
LOCK_KEEPALIVE_SECONDS = 30.0


class PostgresConnection:
    """psycopg 3 under the Connection interface, never left in a transaction between calls:
    a statement that opens a transaction only to read (a select) ends it at once (psycopg's
    client-side cursor keeps the rows), and writes commit. A caller that needs several reads
    in one transaction opens it first (backup's `set transaction ...`). A connection found
    closed while no transaction was open (an idle_session_timeout, a server restart) is
    replaced, and rollback() replaces a broken one, so finish_run can always record.

    `connect` and `release` get and give back the psycopg connection (a pool's getconn and
    putconn, or psycopg.connect and close); `before_commit` runs before each commit (the
    store checks that its locks are still held)."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        release: Callable[[psycopg.Connection[Any]], None],
    ) -> None:
        self._connect, self._release = connect, release
        self.raw = connect()
        self.before_commit: Callable[[], None] | None = None

    def _replace(self) -> None:
        old, self.raw = self.raw, self._connect()
        self._release(old)

    def _gone(self) -> bool:
        return self.raw.closed or self.raw.broken

    def execute(self, query: str, params: Any = ()) -> Any:
        status = self.raw.info.transaction_status
        idle = status in (TransactionStatus.IDLE, TransactionStatus.UNKNOWN)
        if idle and self._gone():
            self._replace()
        try:
            cursor = self.raw.execute(query, params)
        except psycopg.OperationalError:
            if not (idle and self._gone()):
                raise
            self._replace()  # nothing was in flight: the statement is safe to send again
            cursor = self.raw.execute(query, params)
        if idle and query.lstrip()[:6].lower() == "select":
            self.raw.commit()
        return cursor

    def commit(self) -> None:
        if self.before_commit is not None:
            try:
                self.before_commit()
            except BaseException:
                self.rollback()
                raise
        self.raw.commit()

    def rollback(self) -> None:
        if not self._gone():
            try:
                self.raw.rollback()
                return
            except psycopg.Error:
                pass  # the connection died under the rollback: a new one has nothing to undo
        self._replace()

    def close(self) -> None:
        self._release(self.raw)


class LockSession:
    """A dedicated PostgreSQL session for the advisory locks of one store: session-level
    locks, in autocommit so the session is never idle in a transaction, with the server's
    idle timeouts switched off for it and TCP keepalives on, and a thread that pings it.
    If the session is lost anyway, its locks are gone: check() then fails, so the run commits
    nothing more under locks it no longer holds. Its application_name names the run, so a
    run that waits for a lock can say which run holds it."""

    def __init__(self, dsn: str, keepalive: float = LOCK_KEEPALIVE_SECONDS) -> None:
        self.raw = connect_postgres(
            dsn,
            autocommit=True,
            application_name="reddit_pipeline",
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
        )
        self.raw.execute("set idle_in_transaction_session_timeout = 0")
        if self.raw.info.server_version >= 140000:
            self.raw.execute("set idle_session_timeout = 0")
        self._mutex = threading.Lock()
        self.lost: str | None = None
        self._stop = threading.Event()
        self._pinger = threading.Thread(
            target=self._ping, args=(keepalive,), name="state-lock-keepalive", daemon=True
        )
        self._pinger.start()

    def _query(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._mutex:
            return self.raw.execute(query, params).fetchall()

    def _ping(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self._query("select 1")
            except psycopg.Error as exc:
                self.lost = " ".join(str(exc).split())
                return

    def check(self) -> None:
        try:
            self._query("select 1")
        except psycopg.Error as exc:
            self.lost = self.lost or " ".join(str(exc).split())
        if self.lost:
            raise StateLockedError(
                f"this run lost its state locks (their session ended: {self.lost}); another "
                "run over the same subreddits may have started, so nothing more is committed. "
                "Run it again."
            )

    def try_lock(self, key: int, shared: bool) -> bool:
        function = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
        return bool(self._query(f"select {function}(%s)", (key,))[0][0])

    def _quietly(self, query: str, params: tuple[Any, ...]) -> None:
        """Release and rename: a lost session already released everything, and failing here
        would hide the error the run is failing with (or fail a run already recorded)."""
        if self.lost:
            return
        try:
            self._query(query, params)
        except psycopg.Error as exc:
            self.lost = " ".join(str(exc).split())

    def unlock(self, key: int, shared: bool) -> None:
        function = "pg_advisory_unlock_shared" if shared else "pg_advisory_unlock"
        self._quietly(f"select {function}(%s)", (key,))

    def name(self, application_name: str) -> None:
        self._quietly("select set_config('application_name', %s, false)", (application_name,))

    def holders(self, key: int) -> str:
        """Who holds this lock: the runs' names (their sessions' application_name) and pids."""
        unsigned = key & 0xFFFFFFFFFFFFFFFF
        rows = self._query(
            "select a.application_name, l.pid from pg_locks l "
            "left join pg_stat_activity a on a.pid = l.pid "
            "where l.locktype = 'advisory' and l.granted and l.objsubid = 1 "
            "and l.database = (select oid from pg_database where datname = current_database()) "
            "and l.classid::bigint = %s and l.objid::bigint = %s and l.pid <> pg_backend_pid()",
            (unsigned >> 32, unsigned & 0xFFFFFFFF),
        )
        if not rows:
            return "a run that has just released it"
        return ", ".join(f"{name or 'a session'} (pid {pid})" for name, pid in rows)

    def close(self) -> None:
        self._stop.set()
        self._pinger.join()
        self.raw.close()


def open_postgres_state(dsn: str) -> StateStore:
    """The production store: the same tables, created on first use."""
    connection = PostgresConnection(lambda: connect_postgres(dsn), lambda raw: raw.close())
    store = StateStore(connection, placeholder="%s", lock_session=lambda: LockSession(dsn))
    store.ensure_schema()
    return store
