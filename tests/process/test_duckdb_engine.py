"""Processing while staging (the DuckDB engine's run path) and reprocessing the raw layer
(rebuilds) must write the same processed files with the same rows: real zstandard, real DuckDB."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks import settings
from tasks.core import duck
from tasks.extract.stage import Window, stage_dump, stage_records
from tasks.lake.keys import api_batch_id
from tasks.lake.local import LocalLake
from tasks.process.duckdb_engine import ProcessResult, process_batches

T0 = 1709251200  # 2024-03-01T00:00:00Z


def processed_rows(lake: LocalLake, kind: str) -> list[tuple]:
    """Every processed row of a kind, with the file it came from, in a stable order."""
    con = duck.connect()
    keys = [k for k in lake.list_keys(f"{settings.PROCESSED_PREFIX}/{kind}/") if "parquet" in k]
    if not keys:
        return []
    files = duck.path_list([str(lake.local_path(k)) for k in keys])
    rows = con.execute(
        f"select filename[{len(str(lake.root)) + 2}:], * exclude (filename) "
        f"from read_parquet({files}, filename = true, hive_partitioning = true) "
        "order by all"
    ).fetchall()
    con.close()
    return rows


@pytest.mark.parametrize("window", [Window(), Window(subreddits=("Python", "AskReddit"))])
def test_processing_while_staging_writes_what_reprocessing_the_raw_layer_writes(
    tmp_path: Path, window: Window
) -> None:
    fused, apart = LocalLake(tmp_path / "fused"), LocalLake(tmp_path / "apart")
    results: dict[str, ProcessResult] = {}
    raw_keys: dict[str, list[str]] = {}
    for dump in sorted(settings.SAMPLE_DIR.glob("*.zst")):
        # Small chunks: many batches, days split across them.
        staged = stage_dump(dump, fused, window, chunk_bytes=64 * 1024, process=True)
        results[staged.kind] = ProcessResult.combine(staged.kind, [staged.processed])
        raw_keys[staged.kind] = stage_dump(dump, apart, window, chunk_bytes=64 * 1024).raw_keys

    for kind in settings.KINDS:
        reprocessed = process_batches(apart, kind, raw_keys[kind])
        assert results[kind].rows == reprocessed.rows > 0
        assert sorted(results[kind].processed_keys) == sorted(reprocessed.processed_keys)
        assert results[kind].dts == reprocessed.dts
        assert processed_rows(fused, kind) == processed_rows(apart, kind)
    # Quarantined lines never reach processed/: the sample's malformed lines are not there.
    assert sum(r.rows for r in results.values()) == sum(
        len(processed_rows(fused, kind)) for kind in settings.KINDS
    )


def test_api_batches_take_their_retrieval_time_from_the_batch_id_both_ways(
    tmp_path: Path,
) -> None:
    lines = [
        json.dumps({"id": f"p{i}", "subreddit": "python", "created_utc": T0 + i}).encode()
        for i in range(5)
    ]
    batch = api_batch_id("posts", "python", T0 + 3600)
    fused, apart = LocalLake(tmp_path / "fused"), LocalLake(tmp_path / "apart")
    staged = stage_records(lines, "posts", batch, batch, fused, Window(), process=True)
    raw = stage_records(lines, "posts", batch, batch, apart, Window()).raw_keys
    process_batches(apart, "posts", raw)

    assert staged.processed.rows == 5
    rows = processed_rows(fused, "posts")
    assert rows == processed_rows(apart, "posts")
    con = duck.connect()
    [retrieved] = con.execute(
        "select distinct retrieved_utc from read_parquet(?)",
        [str(fused.local_path(staged.processed.processed_keys[0]))],
    ).fetchone()
    assert retrieved == T0 + 3600
