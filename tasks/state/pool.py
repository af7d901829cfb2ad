"""Connection pools (psycopg_pool) for the state store, which the tasks of a process share.

Every run opens the state store (start, locks, commit, finish, the slowdown check), and the
backfill's subflows, the backup and the pipeline on one worker each open it again; each new
connection costs a TLS handshake and an authentication round trip. One pool per DSN per
process shares them. Pools are keyed by the DSN, so the TLS settings in it (sslmode) apply to
every pooled connection. The warehouse is not pooled: a run loads once, on one connection
(PostgresWarehouse.connect), so a pool would save one handshake a run and hold a connection
open between runs.

The advisory locks are not taken on pooled connections: each store holds them on a dedicated
session (tasks.state.store.LockSession) that ends with the store. The pool's reset still unlocks all
advisory locks, so none taken on a pooled connection by hand outlives its borrower.

A pool retries a failing connection in the background until its timeout (30 s, then a bare
PoolTimeout with the cause only in warnings): one direct connection first says at once why the
DSN cannot be used (malformed, no such database, refused).
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tasks.state.store import (
    CONNECT_TIMEOUT,
    LockSession,
    PostgresConnection,
    StateStore,
    connect_postgres,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

_pools: dict[str, ConnectionPool] = {}
_lock = threading.Lock()


def _reset(connection: psycopg.Connection[Any]) -> None:
    connection.execute("select pg_advisory_unlock_all()")
    connection.commit()


def shared_pool(dsn: str, max_size: int = 4) -> ConnectionPool:
    """The process's pool for this DSN, opened on first use and closed at exit. min_size 1
    keeps one warm connection; max_size bounds what one worker takes from the server."""
    from psycopg_pool import ConnectionPool

    with _lock:
        pool = _pools.get(dsn)
        if pool is None or pool.closed:
            connect_postgres(dsn).close()  # StateUnavailableError now, not PoolTimeout in 30 s
            pool = ConnectionPool(
                dsn,
                min_size=1,
                max_size=max_size,
                kwargs={"connect_timeout": CONNECT_TIMEOUT},
                reset=_reset,
                check=ConnectionPool.check_connection,
                name=f"reddit-pipeline-{len(_pools)}",
                open=False,
            )
            pool.open(wait=True, timeout=30)
            _pools[dsn] = pool
    return pool


def close_pools() -> None:
    """Close every pool (at exit; tests call it to leave no connection behind)."""
    with _lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()


atexit.register(close_pools)


def open_pooled_state(dsn: str, max_size: int = 4) -> StateStore:
    """A drop-in for tasks.state.store.open_postgres_state: the same store, schema ensured, on a
    pooled connection that store.close() returns to the pool (its locks on a session of their
    own, see LockSession)."""
    pool = shared_pool(dsn, max_size)
    connection = PostgresConnection(pool.getconn, pool.putconn)
    store = StateStore(connection, placeholder="%s", lock_session=lambda: LockSession(dsn))
    try:
        store.ensure_schema()
    except BaseException:
        store.close()
        raise
    return store


@contextmanager
def pooled_state(dsn: str, max_size: int = 4) -> Iterator[StateStore]:
    """open_pooled_state as a context manager: the connection goes back on exit."""
    store = open_pooled_state(dsn, max_size)
    try:
        yield store
    finally:
        store.close()
