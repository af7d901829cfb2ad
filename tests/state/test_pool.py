"""The state store's connection pool on this machine's PostgreSQL: stores opened one after
another reuse the same connections, and a lock left on a returned connection does not outlive it."""

from __future__ import annotations

import time

import psycopg

from tasks.state.pool import close_pools, open_pooled_state, pooled_state, shared_pool
from tasks.state.store import RunRecord


def test_stores_opened_one_after_another_reuse_the_pools_connections(pg_dsn: str) -> None:
    try:
        for i in range(10):
            with pooled_state(pg_dsn) as store:
                store.start_run(RunRecord(f"run-{i}", "api"))
                assert len(store.recent_runs()) == i + 1

        # A returned connection is reset by the pool's worker thread, so a request right after
        # a return may find none free and grow the pool (on a loaded machine more than once):
        # ten stores share at most the pool's max_size connections, never one each.
        pool = shared_pool(pg_dsn)
        stats = pool.get_stats()
        assert stats["requests_num"] == 10
        assert stats["connections_num"] <= pool.max_size < 10
        with psycopg.connect(pg_dsn) as admin:
            others = admin.execute(
                "select count(*) from pg_stat_activity "
                "where datname = current_database() and pid <> pg_backend_pid()"
            ).fetchone()
        assert others is not None and others[0] == stats["pool_size"] <= pool.max_size
    finally:
        close_pools()


def test_a_lock_left_on_a_returned_connection_is_released(pg_dsn: str) -> None:
    try:
        store = open_pooled_state(pg_dsn)
        store.execute("select pg_advisory_lock(42)")
        store.con.commit()
        store.close()  # back to the pool still locked, as after a crash between lock and unlock
        pool = shared_pool(pg_dsn)
        deadline = time.monotonic() + 10
        while pool.get_stats()["pool_available"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)  # the pool's worker thread resets it before it is available
        assert pool.get_stats()["pool_available"] == 1

        with psycopg.connect(pg_dsn) as other:
            assert other.execute("select pg_try_advisory_lock(42)").fetchone() == (True,)
    finally:
        close_pools()
