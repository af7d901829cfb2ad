"""Redshift cannot be reached here: its COPY statement and manifest are checked as text, the
truncation on real Parquet, and its stage, prune and MERGE statements run on PostgreSQL, where
the two dialects agree."""

from __future__ import annotations

import json
import logging
import re
import tempfile
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from aws_fixtures import CREDENTIALS, REGION

from tasks.core.scope import RunScope
from tasks.lake.local import LocalLake
from tasks.lake.s3 import S3Lake
from tasks.load.postgres import apply_merge, column_defs, copy_into_stage, ensure_table, stage_ddl
from tasks.load.redshift import (
    LOAD_PREFIX,
    MAX_VARCHAR_BYTES,
    REDSHIFT_TEXT,
    copy_sql,
    load_redshift,
    load_redshift_task,
    prepare_files,
    truncate_utf8,
)
from tasks.run.summary import RunSummary
from tasks.state.store import RunRecord, open_postgres_state

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


# ---------------------------------------------------------- the driver, on a DB-API stand-in

COPY_STATEMENT = re.compile(
    r"^copy stage_(\w+) from '([^']+)' iam_role '([^']+)' format as parquet manifest$"
)


class RedshiftOnPostgres:
    """The DB-API edge of load_redshift (what redshift_connector.connect returns), standing in
    for Redshift, which cannot be reached from here: it records every statement, commit and
    rollback, and runs the statements on PostgreSQL (psycopg, one transaction) where the
    dialects agree. Redshift's COPY ... FORMAT AS PARQUET MANIFEST, which PostgreSQL lacks,
    reads the manifest and its files from the lake, as Redshift would with the COPY role, and
    feeds them to psycopg's COPY FROM STDIN. `fail_on` makes the statement containing it fail,
    as Redshift would (after running it: the error comes from the server)."""

    def __init__(self, dsn: str, lake: Any, lake_uri: str, fail_on: str | None = None) -> None:
        self.pg = psycopg.connect(dsn)
        self.lake, self.lake_uri, self.fail_on = lake, lake_uri, fail_on
        self.statements: list[str] = []
        self.commits = self.rollbacks = 0
        self.copied: dict[str, list[str]] = {}  # table -> lake keys COPY read

    def cursor(self) -> _RecordingCursor:
        return _RecordingCursor(self)

    def commit(self) -> None:
        self.commits += 1
        self.pg.commit()

    def rollback(self) -> None:
        self.rollbacks += 1
        self.pg.rollback()

    def close(self) -> None:
        self.pg.close()

    def _key(self, url: str) -> str:
        assert url.startswith(self.lake_uri + "/"), f"COPY from outside the lake: {url}"
        return url[len(self.lake_uri) + 1 :]

    def copy(self, cur: psycopg.Cursor[Any], table: str, manifest_url: str) -> None:
        entries = json.loads(self.lake.get_bytes(self._key(manifest_url)))["entries"]
        keys = [self._key(e["url"]) for e in entries]
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for i, (key, entry) in enumerate(zip(keys, entries, strict=True)):
                path = Path(tmp) / f"{i}.parquet"
                path.write_bytes(self.lake.get_bytes(key))
                assert path.stat().st_size == entry["meta"]["content_length"]
                paths.append(path)
            names = pq.read_schema(paths[0]).names  # COPY from Parquet is positional
            copy_into_stage(cur, table, [n for n in names if n != "dt"], paths)
        self.copied[table] = keys


class _RecordingCursor:
    def __init__(self, connection: RedshiftOnPostgres) -> None:
        self.connection = connection
        self.pg = connection.pg.cursor()

    def execute(self, sql: str, params: Any = None) -> None:
        self.connection.statements.append(sql)
        copy = COPY_STATEMENT.match(sql)
        if copy:
            assert copy.group(3) == ROLE
            self.connection.copy(self.pg, copy.group(1), copy.group(2))
        else:
            self.pg.execute(sql, params)
        if self.connection.fail_on and self.connection.fail_on in sql:
            raise psycopg.errors.InternalError(f"simulated server error on: {sql[:40]}")

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.pg.fetchall()

    def close(self) -> None:
        self.pg.close()


STATEMENT_KINDS = [  # (pattern, kind) for the statements the driver sends
    (r"drop table if exists (\w+)", "drop {}"),
    (r"create temp table (\w+) ", "create {}"),
    (r"copy (\w+) from ", "copy {}"),
    (r"create table if not exists (\w+) ", "create {}"),
    (r"select column_name from information_schema", "columns"),
    (r"select s\.subreddit, ", "counts"),
    (r"delete from (\w+) using ", "prune {}"),
    (r"merge into (\w+) using ", "merge {}"),
]


def _statement_kinds(statements: list[str]) -> list[str]:
    kinds = []
    for sql in statements:
        for pattern, kind in STATEMENT_KINDS:
            match = re.match(pattern, sql)
            if match:
                kinds.append(kind.format(*match.groups()))
                break
        else:
            raise AssertionError(f"unexpected statement: {sql[:60]}")
    return kinds


def _two_tables(lake: Any, body: str) -> dict[str, list[str]]:
    retrieved = datetime(2024, 3, 2)
    comments = [
        {"id": "c1", "subreddit": "python", "body": body, "score": 1, "retrieved_at": retrieved},
        {"id": "c2", "subreddit": "rust", "body": "short", "score": 2, "retrieved_at": retrieved},
    ]
    posts = [
        {"id": "p1", "subreddit": "python", "body": "t", "score": 5, "retrieved_at": retrieved}
    ]
    return {
        "comments": [
            _curated(lake, "curated/reddit/comments/dt=2024-03-01/part-0.parquet", comments)
        ],
        "posts": [_curated(lake, "curated/reddit/posts/dt=2024-03-01/part-0.parquet", posts)],
    }


def test_the_driver_copies_and_merges_each_table_in_order_and_commits_once(
    pg_dsn: str, tmp_path: Path
) -> None:
    lake = LocalLake(tmp_path / "lake")
    keys = _two_tables(lake, "é" * 40_000)  # 80,000 bytes
    connection = RedshiftOnPostgres(pg_dsn, lake, "s3://lake")
    try:
        result = load_redshift(connection, lake, "s3://lake", keys, ROLE, "r1")
    finally:
        connection.close()

    per_table = [
        "drop stage_{t}",
        "create stage_{t}",
        "copy stage_{t}",
        "create {t}",
        "columns",
        "counts",
        "prune stage_{t}",
        "merge {t}",
    ]
    assert _statement_kinds(connection.statements) == [
        kind.format(t=t) for t in ("comments", "posts") for kind in per_table
    ]
    assert (connection.commits, connection.rollbacks) == (1, 0)
    assert connection.copied == {
        t: [f"{LOAD_PREFIX}/r1/{t}/part-00000.parquet"] for t in ("comments", "posts")
    }
    assert result.changes == {
        "comments": {"python": (1, 0), "rust": (1, 0)},
        "posts": {"python": (1, 0)},
    }
    assert result.truncated == {"comments": {"body": 1}, "posts": {}}
    assert lake.list_keys(LOAD_PREFIX) == []  # the rewritten files are gone
    with psycopg.connect(pg_dsn) as pg:
        loaded = pg.execute("select id, octet_length(body) from comments order by id").fetchall()
    assert loaded == [("c1", MAX_VARCHAR_BYTES - 1), ("c2", 5)]  # cut at a character boundary


def test_truncation_counts_reach_the_run_summary_and_the_runs_table(
    pg_dsn: str, tmp_path: Path
) -> None:
    lake = LocalLake(tmp_path / "lake")
    keys = _two_tables(lake, "x" * 70_000)
    connection = RedshiftOnPostgres(pg_dsn, lake, "s3://lake")
    try:
        result = load_redshift(connection, lake, "s3://lake", keys, ROLE, "r2")
    finally:
        connection.close()
    summary = RunSummary(run_id="run-trunc", source="sample", inputs=[], load=result)

    assert summary.counts()["truncated"] == {"comments": {"body": 1}}
    assert "| comments.body | 1 |" in summary.timings_markdown()
    state = open_postgres_state(pg_dsn)
    try:
        state.start_run(RunRecord("run-trunc", "sample"))
        state.finish_run("run-trunc", "completed", summary.counts(), 0, {})
        (run,) = state.recent_runs()
    finally:
        state.close()
    counts = run["counts"] if isinstance(run["counts"], dict) else json.loads(run["counts"])
    assert counts["truncated"] == {"comments": {"body": 1}}


def test_the_load_task_warns_once_per_truncated_column(
    prefect_api: str, pg_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from prefect import flow

    lake = LocalLake(tmp_path / "lake")
    keys = _two_tables(lake, "x" * 70_000)

    class Warehouse:  # the RedshiftWarehouse block's two members the task uses
        copy_iam_role = ROLE

        def connect(self) -> RedshiftOnPostgres:
            return RedshiftOnPostgres(pg_dsn, lake, "s3://lake")

    @flow
    def load() -> Any:
        return load_redshift_task(Warehouse(), lake, "s3://lake", keys, "r3")

    with caplog.at_level(logging.WARNING):
        result = load()
    assert result.truncated == {"comments": {"body": 1}, "posts": {}}
    warnings = [r.getMessage() for r in caplog.records if "cut to 65535 bytes" in r.getMessage()]
    assert warnings == [
        "Redshift load: 1 value(s) of comments.body cut to 65535 bytes (VARCHAR limit); "
        "the rows are loaded"
    ]


def test_a_failed_statement_rolls_back_the_whole_load_and_removes_its_files_from_s3(
    pg_dsn: str, moto_server: str, tmp_path: Path
) -> None:
    s3_lake = _moto_lake(moto_server)
    local = LocalLake(tmp_path / "lake")
    keys = _two_tables(local, "short")
    for key in keys["comments"] + keys["posts"]:
        s3_lake.put_bytes(key, local.get_bytes(key))
    connection = RedshiftOnPostgres(pg_dsn, s3_lake, s3_lake.root_uri, fail_on="merge into posts")
    try:
        with pytest.raises(psycopg.errors.InternalError, match="merge into posts"):
            load_redshift(connection, s3_lake, s3_lake.root_uri, keys, ROLE, "r4")
    finally:
        connection.close()

    assert (connection.commits, connection.rollbacks) == (0, 1)
    assert connection.copied.keys() == {"comments", "posts"}  # the files were there for COPY
    assert s3_lake.list_keys(LOAD_PREFIX) == []  # and are gone after the failure
    assert sorted(s3_lake.list_keys("curated")) == sorted(keys["comments"] + keys["posts"])
    with psycopg.connect(pg_dsn) as pg:  # comments was merged, then rolled back with the rest
        assert pg.execute("select to_regclass('comments')").fetchone() == (None,)


def test_a_failure_while_preparing_the_files_removes_those_already_written(
    moto_server: str, tmp_path: Path
) -> None:
    s3_lake = _moto_lake(moto_server)
    local = LocalLake(tmp_path / "lake")
    keys = _two_tables(local, "short")
    s3_lake.put_bytes(keys["comments"][0], local.get_bytes(keys["comments"][0]))  # posts missing

    class NeverUsed:
        def cursor(self) -> None:
            raise AssertionError("no statement may run when the files could not be prepared")

    with pytest.raises(FileNotFoundError):
        load_redshift(NeverUsed(), s3_lake, s3_lake.root_uri, keys, ROLE, "r5")
    assert s3_lake.list_keys(LOAD_PREFIX) == []


def test_the_rewrite_is_snappy_with_microsecond_timestamps(tmp_path: Path) -> None:
    """What Athena or Spark may hand over (zstd, nanoseconds) becomes what COPY documents."""
    lake = LocalLake(tmp_path / "lake")
    key = "curated/reddit/posts/dt=2024-03-01/athena.parquet"
    path = lake.local_path(key)
    path.parent.mkdir(parents=True)
    table = pa.table(
        {"id": ["a"], "created_at": pa.array([1_709_251_200_123_456_789], pa.timestamp("ns"))}
    )
    pq.write_table(table, path, compression="zstd", coerce_timestamps=None)
    work = tmp_path / "work"
    work.mkdir()

    prepare_files(lake, "s3://lake", "posts", [key], "r6", work)

    part = lake.local_path(f"{LOAD_PREFIX}/r6/posts/part-00000.parquet")
    metadata = pq.ParquetFile(part).metadata
    assert {metadata.row_group(0).column(i).compression for i in range(2)} == {"SNAPPY"}
    written = pq.read_table(part)
    assert written.schema.field("created_at").type == pa.timestamp("us")
    assert written.column("created_at")[0].as_py() == datetime(2024, 3, 1, 0, 0, 0, 123456)


def _moto_lake(endpoint: str) -> S3Lake:
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name=REGION, **CREDENTIALS).create_bucket(
        Bucket=bucket
    )
    return S3Lake.from_params(
        bucket, "prod", endpoint_url=endpoint, region_name=REGION, credentials=CREDENTIALS
    )


def test_the_files_rewritten_for_copy_hold_only_the_scope_s_subreddits(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path / "lake")
    retrieved = datetime(2024, 3, 2)
    rows = [
        {"id": "a", "subreddit": "python", "body": "x", "retrieved_at": retrieved},
        {"id": "c", "subreddit": "rust", "body": "y", "retrieved_at": retrieved},
    ]
    key = _curated(lake, "curated/reddit/comments/dt=2024-03-01/part-0.parquet", rows)
    work = tmp_path / "work"
    work.mkdir()

    scope = RunScope.of(["2024-03-01"], ["rust"])
    prepare_files(lake, "s3://lake", "comments", [key], "r7", work, scope)

    part = lake.local_path(f"{LOAD_PREFIX}/r7/comments/part-00000.parquet")
    assert pq.read_table(part).column("id").to_pylist() == ["c"]
