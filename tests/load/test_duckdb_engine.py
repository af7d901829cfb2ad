"""Loading curated files into a DuckDB warehouse: MERGE on the key, newer versions only."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.core.scope import RunScope
from tasks.lake.local import LocalLake
from tasks.load.duckdb_engine import held_in_duckdb, load_duckdb


def _curated(lake: LocalLake, key: str, rows: list[dict]) -> str:
    path = lake.local_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return key


def _post(post_id: str, score: int, retrieved: str) -> dict:
    return {"id": post_id, "subreddit": "python", "score": score, "retrieved_at": retrieved}


def test_loading_the_same_files_twice_changes_nothing(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path / "lake")
    key = _curated(
        lake,
        "curated/reddit/posts/dt=2024-03-01/part-0.parquet",
        [_post("a", 1, "2024-03-02"), _post("b", 2, "2024-03-02")],
    )
    warehouse = tmp_path / "w.duckdb"

    first = load_duckdb(warehouse, lake, {"posts": [key]})
    second = load_duckdb(warehouse, lake, {"posts": [key]})

    assert first.inserted_totals() == {"posts": 2}
    assert second.changed == 0
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("select id, score from posts order by id").fetchall() == [("a", 1), ("b", 2)]


def test_a_newer_version_replaces_an_older_one_never_the_reverse(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path / "lake")
    warehouse = tmp_path / "w.duckdb"
    old = _curated(
        lake, "curated/reddit/posts/dt=2024-03-01/part-0.parquet", [_post("a", 1, "2024-03-02")]
    )
    load_duckdb(warehouse, lake, {"posts": [old]})
    new = _curated(
        lake, "curated/reddit/posts/dt=2024-03-01/part-0.parquet", [_post("a", 9, "2024-03-05")]
    )
    assert load_duckdb(warehouse, lake, {"posts": [new]}).updated_totals() == {"posts": 1}
    stale = _curated(
        lake, "curated/reddit/posts/dt=2024-03-01/part-0.parquet", [_post("a", 5, "2024-03-03")]
    )
    assert load_duckdb(warehouse, lake, {"posts": [stale]}).changed == 0

    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("select score from posts").fetchall() == [(9,)]


def test_a_failed_load_leaves_the_warehouse_as_it_was(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path / "lake")
    warehouse = tmp_path / "w.duckdb"
    good = _curated(
        lake, "curated/reddit/posts/dt=2024-03-01/part-0.parquet", [_post("a", 1, "2024-03-02")]
    )
    load_duckdb(warehouse, lake, {"posts": [good]})
    newer = _curated(
        lake, "curated/reddit/posts/dt=2024-03-02/part-0.parquet", [_post("b", 1, "2024-03-03")]
    )
    missing = "curated/reddit/comments/dt=2024-03-02/part-0.parquet"

    try:
        load_duckdb(warehouse, lake, {"posts": [newer], "comments": [missing]})
    except duckdb.Error:
        pass
    else:
        raise AssertionError("a missing curated file must fail the load")

    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("select id from posts").fetchall() == [("a",)]


def test_rows_repeating_a_key_are_refused_and_the_warehouse_is_unchanged(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path / "lake")
    warehouse = tmp_path / "w.duckdb"
    twice = [_post("a", 1, "2024-03-02"), _post("a", 2, "2024-03-03")]
    # On a table's first load ...
    first = _curated(lake, "curated/reddit/posts/dt=2024-03-01/part-0.parquet", twice)
    with pytest.raises(ValueError, match=r"load of posts refused: its rows repeat a key \(id\)"):
        load_duckdb(warehouse, lake, {"posts": [first]})
    con = duckdb.connect(str(warehouse), read_only=True)
    tables = con.execute("select table_name from duckdb_tables()").fetchall()
    assert ("posts",) not in tables
    con.close()

    # ... and on a MERGE into a table that has rows.
    good = _curated(
        lake, "curated/reddit/posts/dt=2024-03-02/part-0.parquet", [_post("b", 1, "2024-03-03")]
    )
    load_duckdb(warehouse, lake, {"posts": [good]})
    with pytest.raises(ValueError, match=r"\('a',\) x2"):
        load_duckdb(warehouse, lake, {"posts": [first]})
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("select id, score from posts").fetchall() == [("b", 1)]


def test_only_the_scope_s_subreddits_are_merged_and_held_ids_are_found(tmp_path: Path) -> None:
    """A curated file holds every subreddit of its day; a run over r/rust loads r/rust only."""
    lake = LocalLake(tmp_path / "lake")
    rust = {**_post("r", 1, "2024-03-02"), "subreddit": "rust", "fullname": "t3_r"}
    python = {**_post("p", 1, "2024-03-02"), "fullname": "t3_p"}
    key = _curated(lake, "curated/reddit/posts/dt=2024-03-01/part-0.parquet", [rust, python])
    warehouse = tmp_path / "w.duckdb"
    assert held_in_duckdb(warehouse, "posts", ["t3_r"]) == set()  # no file yet, none made
    assert not warehouse.exists()

    loaded = load_duckdb(warehouse, lake, {"posts": [key]}, RunScope.of(["2024-03-01"], ["Rust"]))

    assert loaded.changes == {"posts": {"rust": (1, 0)}}
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("select id from posts").fetchall() == [("r",)]
    con.close()
    assert held_in_duckdb(warehouse, "posts", ["t3_r", "t3_p"]) == {"t3_r"}
    assert held_in_duckdb(warehouse, "comments", ["t1_x"]) == set()  # no such table
