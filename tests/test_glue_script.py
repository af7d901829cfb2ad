"""The Glue job script on pyspark 3.5 in local mode (Glue 5's Spark) against the DuckDB engine:
same keys, same columns and types, same values, row for row, on the bundled sample and on the
dumps' field drift."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow.parquet as pq
import pytest

from tasks import settings
from tasks.core import duck
from tasks.extract.stage import Window, stage_dump
from tasks.lake.local import LocalLake
from tasks.process.duckdb_engine import process_batches, process_sql

SCRIPT = settings.PROJECT_DIR / "glue_scripts" / "process_reddit.py"
SPARK_ENV = {"SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("process_reddit", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


job = load_script()


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """One local SparkSession for the module (starting one takes ~10 s)."""
    os.environ.update(SPARK_ENV)
    from pyspark.sql import SparkSession

    # A SparkContext replaces the SIGINT handler (to cancel its jobs) and never puts it back:
    # later tests that interrupt themselves need Python's own.
    sigint = signal.getsignal(signal.SIGINT)
    session = (
        SparkSession.builder.master("local[1]")
        .appName("test_glue_script")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    yield session
    session.stop()
    signal.signal(signal.SIGINT, sigint)


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    """The sample dumps staged into a local lake, then processed there by the DuckDB engine."""
    root = tmp_path_factory.mktemp("lake")
    lake = LocalLake(root)
    raw_keys = {}
    for kind, dump in [("posts", "RS_2024-03.zst"), ("comments", "RC_2024-03.zst")]:
        result = stage_dump(settings.SAMPLE_DIR / dump, lake, Window())
        raw_keys[kind] = result.raw_keys
        process_batches(lake, kind, result.raw_keys)
    return root, raw_keys


def assert_same_files(expected_root: Path, actual_root: Path, kind: str) -> None:
    prefix = f"{settings.PROCESSED_PREFIX}/{kind}"
    expected_keys = LocalLake(expected_root).list_keys(prefix)
    assert expected_keys, "the DuckDB engine wrote nothing"
    assert LocalLake(actual_root).list_keys(prefix) == expected_keys
    for key in expected_keys:
        expected = pq.read_table(expected_root / key)
        actual = pq.read_table(actual_root / key)
        assert actual.schema.remove_metadata() == expected.schema.remove_metadata(), key
        # Row order within a file is not a contract: DuckDB's partitioned COPY runs in threads.
        assert sorted_rows(actual) == sorted_rows(expected), key


def sorted_rows(table: Any) -> list[tuple[Any, ...]]:
    rows = [tuple(row.values()) for row in table.to_pylist()]
    return sorted(rows, key=lambda row: [(v is None, str(v)) for v in row])


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ["posts", "comments"])
def test_glue_script_writes_what_duckdb_writes(
    spark: Any, staged: tuple[Path, dict[str, list[str]]], tmp_path: Path, kind: str
) -> None:
    root, raw_keys = staged
    out = tmp_path / "glue-out"
    manifest = job.run(
        spark,
        {
            "JOB_NAME": "test",
            "kind": kind,
            "lake_root": str(root),
            "raw_keys": ",".join(raw_keys[kind]),
            "output_root": str(out),
            "manifest_key": "manifest.json",
        },
    )
    assert_same_files(root, out, kind)
    written = json.loads((out / "manifest.json").read_text())
    assert written["processed_keys"] == LocalLake(out).list_keys(settings.PROCESSED_PREFIX)
    assert written["rows"] == sum(
        pq.read_metadata(out / k).num_rows for k in written["processed_keys"]
    )
    assert manifest["dts"] == sorted({k.split("dt=")[1][:10] for k in written["processed_keys"]})
    assert not (out / "_glue_tmp" / "process" / kind).exists() or not any(
        (out / "_glue_tmp" / "process" / kind).rglob("*.parquet")
    )


@pytest.mark.e2e
def test_glue_script_as_a_command_parses_glue_arguments(
    staged: tuple[Path, dict[str, list[str]]], tmp_path: Path
) -> None:
    root, _ = staged
    out = tmp_path / "glue-out"
    command = [
        sys.executable,
        str(SCRIPT),
        "--JOB_NAME",
        "process-reddit",
        "--kind",
        "comments",
        f"--lake_root={root}",
        "--raw_prefix",
        "raw/reddit/comments",
        "--output_root",
        str(out),
        "--job-bookmark-option",  # Glue adds arguments of its own; they are ignored
        "job-bookmark-disable",
    ]
    env = {**os.environ, **SPARK_ENV, "SPARK_MASTER": "local[1]"}
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert summary["kind"] == "comments" and summary["rows"] > 0
    assert_same_files(root, out, "comments")


# Field drift and edge values: numbers as strings, floats in text fields (DuckDB re-renders them
# the yyjson way), half-way rounding, overflow, booleans spelled many ways, unicode, escapes.
DRIFT_LINES = [
    '{"id":"a1","subreddit":"Py","created_utc":1709251200,"edited":1709312345.0,"score":2.5,'
    '"num_comments":"3.5","over_18":true,"is_self":"yes","spoiler":" true","retrieved_on":17093}',
    '{"id":"a2","name":"t3_a2","created_utc":"1709251200.5","edited":false,"score":null,'
    '"num_comments":-2.5,"upvote_ratio":"0.5","retrieved_utc":"1709300000","retrieved_on":5}',
    '{"id":"a3","created_utc":1.7092512e9,"edited":1.5e9,"score":1e30,"num_comments":"NaN",'
    '"upvote_ratio":"inf","title":"1.5","selftext":3.25,"url":1e-7,"domain":1e21,'
    '"permalink":0.000001234,"link_flair_text":-0.0,"distinguished":123456789012345678901,'
    '"removed_by_category":1e20}',
    '{"id":"a4","created_utc":1709251200,"edited":true,"score":"1_000","num_comments":" 12 ",'
    '"upvote_ratio":"0x10","over_18":"TRUE","is_self":"on","locked":1,"stickied":0,'
    '"title":"caf\\u00e9 \\ud83d\\ude00","selftext":"line\\nbreak \\"q\\""}',
    '{"id":"a5","created_utc":1709251200,"edited":1709312345.123456789,"score":9.3e18,'
    '"num_comments":9223372036854775807,"url":"1709312345.0","domain":0.1,'
    '"permalink":-1709312345.5,"link_flair_text":12345678.9}',
    '{"id":"a6","created_utc":1709251200,"edited":1709312345,"score":-0.5,"num_comments":1.5,'
    '"upvote_ratio":"1e","distinguished":1.2345e30,"removed_by_category":2.5e15}',
    '{"id":"a7","created_utc":-86400.5,"edited":0.0,"score":-9.3e18}',
    # Beyond tasks/settings.py's bounds: retrieval times dropped, no day for such a created_utc.
    '{"id":"a8","created_utc":"nan","retrieved_utc":1e20,"retrieved_on":1709300000}',
    '{"id":"a9","created_utc":1e20,"edited":1e20,"retrieved_utc":"inf","retrieved_on":"-inf"}',
    '{"id":"a10","created_utc":"Infinity","retrieved_utc":4102444800,"retrieved_on":1117583999}',
    '{"id":"a11","created_utc":4102444799.5,"retrieved_utc":1117584000,"score":"1e20"}',
]


def test_the_scripts_bounds_are_the_settings_bounds() -> None:
    assert (job.EARLIEST_EPOCH, job.LATEST_EPOCH) == (
        settings.EARLIEST_EPOCH,
        settings.LATEST_EPOCH,
    )


def duckdb_rows(lines: list[str], batch_id: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    con = duck.connect()
    retrieved = "1709000000" if batch_id.startswith("api-") else "null"
    con.execute(
        f"create table raw_lines as select null::bigint as line_no, unnest(?) as raw, "
        f"cast({retrieved} as double) as batch_retrieved_utc",
        [lines],
    )
    rows = con.execute(f"select * exclude (line_no) from ({process_sql('posts')})").fetchall()
    return [d[0] for d in con.description], rows


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


@pytest.mark.e2e
@pytest.mark.parametrize("batch_id", ["RS_2024-03-abc-0000", "api-1709000000-posts-new"])
def test_transform_follows_duckdb_on_field_drift(spark: Any, batch_id: str) -> None:
    columns, expected = duckdb_rows(DRIFT_LINES, batch_id)
    frame = spark.createDataFrame(
        [(line, batch_id) for line in DRIFT_LINES], "value string, batch_id string"
    )
    result = job.transform(frame, "posts")
    assert result.columns == columns
    actual = [tuple(row) for row in result.collect()]
    differences = [
        (row[0], column, want, got)
        for row, other in zip(expected, actual, strict=True)
        for column, want, got in zip(columns, row, other, strict=True)
        if not same(want, got)
    ]
    assert differences == []


def test_arguments_like_glue_with_optional_ones_only_when_given() -> None:
    args = job.resolve_args(
        [
            "script.py",
            "--JOB_NAME",
            "j",
            "--kind",
            "posts",
            "--lake_root",
            "s3://b/p",
            "--raw_prefix=raw/reddit/posts",
            "--TempDir",
            "s3://tmp",
        ]
    )
    assert args == {
        "JOB_NAME": "j",
        "kind": "posts",
        "lake_root": "s3://b/p",
        "raw_prefix": "raw/reddit/posts",
    }
    with pytest.raises(SystemExit):
        job.resolve_args(["script.py", "--JOB_NAME", "j", "--kind", "posts"])


def test_raw_selection_by_prefix_and_batch(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)
    for key in [
        "raw/reddit/posts/subreddit=a/dt=2024-03-01/b1.ndjson.gz",
        "raw/reddit/posts/subreddit=a/dt=2024-03-02/b2.ndjson.gz",
        "raw/reddit/posts/subreddit=b/dt=2024-03-01/b1.ndjson.gz",
    ]:
        lake.put_bytes(key, b"")
    storage = job.Storage(str(tmp_path))
    chosen = job.select_raw_keys(storage, {"raw_prefix": "raw/reddit/posts", "batch_ids": "b1"})
    assert chosen == [
        "raw/reddit/posts/subreddit=a/dt=2024-03-01/b1.ndjson.gz",
        "raw/reddit/posts/subreddit=b/dt=2024-03-01/b1.ndjson.gz",
    ]
    with pytest.raises(ValueError, match="gzip"):
        job.select_raw_keys(storage, {"raw_keys": "raw/reddit/posts/x/b3.ndjson.zst"})
