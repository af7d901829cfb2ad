"""The PostgreSQL warehouse end to end on this machine's PostgreSQL: the bundled sample through
the real stage, process and DuckDB models, then loaded into PostgreSQL and compared with the
DuckDB warehouse loaded from the same curated files."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import build_sample_curated

from blocks.warehouse import PostgresWarehouse
from tasks.core.scope import RunScope
from tasks.lake.local import LocalLake
from tasks.load.duckdb_engine import load_duckdb
from tasks.load.merge import TABLE_KEYS
from tasks.load.postgres import held_in_postgres, load_postgres, merge_statements


@pytest.fixture
def curated(tmp_path: Path) -> tuple[LocalLake, dict[str, list[str]]]:
    lake = LocalLake(tmp_path / "lake")
    return lake, build_sample_curated(lake)


def _block(dsn: str, schema: str = "warehouse") -> PostgresWarehouse:
    """The block from the test DSN, password included (CI's DSN carries one)."""
    return PostgresWarehouse.from_dsn(dsn, schema=schema)


def _normalize(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 9)
    return value


def _rows(cursor: Any, table: str) -> list[tuple[Any, ...]]:
    keys = ", ".join(TABLE_KEYS[table])
    columns = ", ".join(c for c in _columns(table))
    rows = cursor.execute(f"select {columns} from {table} order by {keys}").fetchall()
    return [tuple(_normalize(v) for v in row) for row in rows]


_COLUMNS: dict[str, list[str]] = {}


def _columns(table: str) -> list[str]:
    return _COLUMNS[table]


def test_sample_loads_into_postgres_like_duckdb_and_a_rerun_changes_nothing(
    pg_dsn: str, curated: tuple[LocalLake, dict[str, list[str]]], tmp_path: Path
) -> None:
    lake, keys = curated
    block = _block(pg_dsn)
    with block.connect() as connection:
        first = load_postgres(connection, lake, keys)
    with block.connect() as connection:
        second = load_postgres(connection, lake, keys)
    duck_result = load_duckdb(tmp_path / "w.duckdb", lake, keys)

    assert first.inserted_totals() == {"posts": 600, "comments": 3000, "subreddit_daily": 35}
    assert first.changes == duck_result.changes
    assert second.changed == 0
    duck = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    with block.connect() as connection:
        for table in TABLE_KEYS:
            _COLUMNS[table] = [r[0] for r in duck.execute(f"describe {table}").fetchall()]
            assert _rows(connection, table) == _rows(duck, table), table
        schema = connection.execute(
            "select table_schema from information_schema.tables where table_name = 'posts'"
        ).fetchone()
        assert schema == ("warehouse",)
        key = connection.execute(
            "select count(*) from information_schema.table_constraints "
            "where constraint_type = 'PRIMARY KEY' and table_schema = 'warehouse'"
        ).fetchone()
        assert key == (3,)


def _write(
    lake: LocalLake, key: str, rows: list[dict[str, Any]], schema: pa.Schema | None = None
) -> str:
    path = lake.local_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return key


def _post(post_id: str, score: int | None, retrieved: datetime | None, text: str = "x") -> dict:
    return {
        "id": post_id,
        "subreddit": "python",
        "title": text,
        "score": score,
        "retrieved_at": retrieved,
    }


def test_a_newer_version_replaces_an_older_one_never_the_reverse(
    pg_dsn: str, tmp_path: Path
) -> None:
    lake = LocalLake(tmp_path / "lake")
    key = "curated/reddit/posts/dt=2024-03-01/part-0.parquet"
    block = _block(pg_dsn, schema="public")
    loads = [
        ([_post("a", 1, datetime(2024, 3, 2)), _post("b", 2, None, "")], {"python": (2, 0)}),
        ([_post("a", 9, datetime(2024, 3, 5)), _post("b", 3, None)], {"python": (0, 1)}),
        ([_post("a", 5, datetime(2024, 3, 3)), _post("b", 4, datetime(2024, 3, 1))], None),
    ]
    for rows, expected in loads:
        _write(lake, key, rows)
        with block.connect() as connection:
            changes = load_postgres(connection, lake, {"posts": [key]}).changes["posts"]
        assert changes == (expected or {"python": (0, 1)})
    with psycopg.connect(pg_dsn) as connection:
        rows = connection.execute("select id, score, title from posts order by id").fetchall()
    # b's null retrieval was replaced by a known one; a's stale version (03-03) was refused;
    # the empty string stayed an empty string and did not become null.
    assert rows == [("a", 9, "x"), ("b", 4, "x")]


def test_only_the_scope_s_subreddits_are_merged_into_postgres_and_held_ids_are_found(
    pg_dsn: str, tmp_path: Path
) -> None:
    lake = LocalLake(tmp_path / "lake")
    key = "curated/reddit/posts/dt=2024-03-01/part-0.parquet"
    rust = {**_post("r", 1, datetime(2024, 3, 2)), "subreddit": "rust", "fullname": "t3_r"}
    python = {**_post("p", 1, datetime(2024, 3, 2)), "fullname": "t3_p"}
    _write(lake, key, [rust, python])
    block = _block(pg_dsn)
    assert held_in_postgres(block, "posts", ["t3_r"]) == set()  # no table yet

    with block.connect() as connection:
        scope = RunScope.of(["2024-03-01"], ["rust"])
        changes = load_postgres(connection, lake, {"posts": [key]}, scope).changes

    assert changes == {"posts": {"rust": (1, 0)}}
    assert held_in_postgres(block, "posts", ["t3_r", "t3_p"]) == {"t3_r"}


def test_a_failed_load_leaves_the_warehouse_as_it_was(pg_dsn: str, tmp_path: Path) -> None:
    lake = LocalLake(tmp_path / "lake")
    block = _block(pg_dsn, schema="public")
    good = _write(
        lake,
        "curated/reddit/posts/dt=2024-03-01/part-0.parquet",
        [_post("a", 1, datetime(2024, 3, 2))],
    )
    with block.connect() as connection:
        load_postgres(connection, lake, {"posts": [good]})
    newer = _write(
        lake,
        "curated/reddit/posts/dt=2024-03-02/part-0.parquet",
        [_post("b", 1, datetime(2024, 3, 3))],
    )
    missing = "curated/reddit/comments/dt=2024-03-02/part-0.parquet"
    with block.connect() as connection, pytest.raises(OSError):
        load_postgres(connection, lake, {"posts": [newer], "comments": [missing]})
    with psycopg.connect(pg_dsn) as connection:
        assert connection.execute("select id from posts").fetchall() == [("a",)]


def test_subreddit_daily_replaces_a_row_that_differs_even_from_null(
    pg_dsn: str, tmp_path: Path
) -> None:
    lake = LocalLake(tmp_path / "lake")
    key = "curated/reddit/subreddit_daily/dt=2024-03-01/part-0.parquet"
    block = _block(pg_dsn, schema="public")
    day = datetime(2024, 3, 1).date()
    schema = pa.schema(
        [
            ("subreddit", pa.string()),
            ("day", pa.date32()),
            ("posts", pa.int64()),
            ("m", pa.float64()),
        ]
    )
    results = []
    for median in (None, 2.5, 2.5):
        row = {"subreddit": "python", "day": day, "posts": 3, "m": median}
        _write(lake, key, [row], schema)
        with block.connect() as connection:
            results.append(load_postgres(connection, lake, {"subreddit_daily": [key]}).changes)
    assert [r["subreddit_daily"]["python"] for r in results] == [(1, 0), (0, 1), (0, 0)]


def test_the_merge_statements_run_on_duckdb_too(tmp_path: Path) -> None:
    """The shared statements (tasks/load/merge.py) are the DuckDB driver's too: DuckDB runs them."""
    con = duckdb.connect()
    con.execute(
        "create table posts (id varchar primary key, subreddit varchar, score int, "
        "retrieved_at timestamp)"
    )
    con.execute("insert into posts values ('a', 'python', 1, '2024-03-02')")
    con.execute(
        "create temp table stage_posts as select * from (values "
        "('a', 'python', 9, timestamp '2024-03-05'), ('b', 'python', 2, null)) "
        "v(id, subreddit, score, retrieved_at)"
    )
    statements = merge_statements("posts", ["id", "subreddit", "score", "retrieved_at"])
    assert con.execute(statements.counts).fetchall() == [("python", 1, 1)]
    con.execute(statements.prune)
    con.execute(statements.merge)
    assert con.execute("select id, score from posts order by id").fetchall() == [
        ("a", 9),
        ("b", 2),
    ]


def test_a_failed_connection_names_the_target_but_never_the_password() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once the socket closes
    block = PostgresWarehouse(
        host="127.0.0.1",
        port=port,
        database="w",
        user="loader",
        password="s3cret-pw",
        sslmode="disable",
        connect_timeout=2,
    )
    assert "s3cret-pw" not in repr(block) and "s3cret-pw" not in str(block.model_dump())
    with pytest.raises(ConnectionError) as caught:
        block.connect()
    assert f"127.0.0.1:{port}/w" in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is not None


def test_a_failed_redshift_connection_names_its_cause_but_never_the_password() -> None:
    import socket

    from blocks.warehouse import RedshiftWarehouse

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    block = RedshiftWarehouse(
        host="127.0.0.1",
        port=port,
        database="dev",
        user="loader",
        password="s3cret-pw",
        copy_iam_role="arn:aws:iam::1:role/r",
        connect_timeout=5,
    )
    with pytest.raises(ConnectionError) as caught:
        block.connect()
    message = str(caught.value)
    assert message.startswith(f"cannot connect to redshift://loader@127.0.0.1:{port}/dev: ")
    assert "Connection refused" in message  # the cause, not only the exception's class
    assert "s3cret-pw" not in message
    assert caught.value.__cause__ is None


def test_redshift_block_needs_a_password_or_iam_and_keeps_it_secret() -> None:
    from blocks.warehouse import RedshiftWarehouse

    block = RedshiftWarehouse(
        host="c.example.redshift.amazonaws.com",
        database="dev",
        user="loader",
        password="s3cret-pw",
        copy_iam_role="arn:aws:iam::1:role/r",
    )
    assert "s3cret-pw" not in repr(block)
    assert block.connect_kwargs()["password"] == "s3cret-pw"
    assert block.connect_kwargs()["ssl"] is True
    iam = block.model_copy(update={"password": None, "iam": True})
    with pytest.raises(ValueError, match="cluster_identifier"):
        iam.connect_kwargs()
