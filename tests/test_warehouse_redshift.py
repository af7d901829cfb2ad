"""Redshift cannot be reached here: its COPY statement and manifest are checked as text, the
truncation on real Parquet, and its stage, prune and MERGE statements run on PostgreSQL, where
the two dialects agree."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import sqlglot

from tasks.lake import LocalLake
from tasks.warehouse_postgres import (
    apply_merge,
    column_defs,
    copy_into_stage,
    ensure_table,
    stage_ddl,
)
from tasks.warehouse_redshift import (
    LOAD_PREFIX,
    MAX_VARCHAR_BYTES,
    REDSHIFT_TEXT,
    copy_sql,
    prepare_files,
    truncate_utf8,
)

ROLE = "arn:aws:iam::123456789012:role/redshift-copy"


def test_copy_reads_parquet_through_a_manifest_without_maxerror() -> None:
    sql = copy_sql("posts", "s3://lake/load/redshift/r1/posts.manifest", ROLE)
    assert sql == (
        "copy stage_posts from 's3://lake/load/redshift/r1/posts.manifest' "
        f"iam_role '{ROLE}' format as parquet manifest"
    )
    assert "maxerror" not in sql and "truncatecolumns" not in sql
    sqlglot.parse_one(sql, read="redshift")


def test_truncation_cuts_at_a_character_boundary() -> None:
    text = "é" * 40_000  # 80,000 bytes
    cut = truncate_utf8(text)
    assert len(cut.encode()) == MAX_VARCHAR_BYTES - 1  # 65,535 would split an 'é'
    assert cut == "é" * 32_767


def _curated(lake: LocalLake, key: str, rows: list[dict]) -> str:
    path = lake.local_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("subreddit", pa.string()),
            ("body", pa.string()),
            ("score", pa.int64()),
            ("retrieved_at", pa.timestamp("us")),
        ]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return key


def test_long_text_is_truncated_counted_and_loaded_never_dropped(
    pg_dsn: str, tmp_path: Path
) -> None:
    lake = LocalLake(tmp_path / "lake")
    retrieved = datetime(2024, 3, 2)
    rows = [
        {
            "id": "a",
            "subreddit": "python",
            "body": "x" * 70_000,
            "score": 1,
            "retrieved_at": retrieved,
        },
        {"id": "b", "subreddit": "python", "body": "short", "score": 2, "retrieved_at": retrieved},
        {"id": "c", "subreddit": "rust", "body": None, "score": 3, "retrieved_at": retrieved},
    ]
    key = _curated(lake, "curated/reddit/comments/dt=2024-03-01/part-0.parquet", rows)
    work = tmp_path / "work"
    work.mkdir()

    url, schema, counts = prepare_files(lake, "s3://lake", "comments", [key], "r1", work)

    assert counts == {"body": 1}
    assert url == f"s3://lake/{LOAD_PREFIX}/r1/comments.manifest"
    entries = json.loads(lake.get_bytes(f"{LOAD_PREFIX}/r1/comments.manifest"))["entries"]
    part = f"{LOAD_PREFIX}/r1/comments/part-00000.parquet"
    assert entries == [
        {
            "url": f"s3://lake/{part}",
            "mandatory": True,
            "meta": {"content_length": lake.local_path(part).stat().st_size},
        }
    ]
    # The Redshift stage and merge on PostgreSQL; psycopg's COPY stands in for Redshift's.
    columns = column_defs(schema, REDSHIFT_TEXT)
    assert dict(columns)["body"] == "varchar(65535)"
    names = [n for n, _ in columns]
    with psycopg.connect(pg_dsn) as connection, connection.cursor() as cur:
        for _ in range(2):
            for statement in stage_ddl("comments", columns):
                cur.execute(statement)
            copy_into_stage(cur, "comments", names, [lake.local_path(part)])
            ensure_table(cur, "comments", columns)
            changes = apply_merge(cur, "comments", names)
        assert changes == {"python": (0, 0), "rust": (0, 0)}  # the second load changed nothing
        loaded = cur.execute("select id, octet_length(body) from comments order by id").fetchall()
    assert loaded == [("a", MAX_VARCHAR_BYTES), ("b", 5), ("c", None)]


def test_first_load_counts_per_subreddit(pg_dsn: str, tmp_path: Path) -> None:
    lake = LocalLake(tmp_path / "lake")
    rows = [{"id": "a", "subreddit": "python", "body": "b", "score": 1, "retrieved_at": None}]
    key = _curated(lake, "curated/reddit/comments/dt=2024-03-01/part-0.parquet", rows)
    work = tmp_path / "work"
    work.mkdir()
    _, schema, counts = prepare_files(lake, "s3://lake", "comments", [key], "r2", work)
    assert counts == {}
    columns = column_defs(schema, REDSHIFT_TEXT)
    part = lake.local_path(f"{LOAD_PREFIX}/r2/comments/part-00000.parquet")
    with psycopg.connect(pg_dsn) as connection, connection.cursor() as cur:
        for statement in stage_ddl("comments", columns):
            cur.execute(statement)
        copy_into_stage(cur, "comments", [n for n, _ in columns], [part])
        ensure_table(cur, "comments", columns)
        assert apply_merge(cur, "comments", [n for n, _ in columns]) == {"python": (1, 0)}
    assert Counter(counts) == Counter()
