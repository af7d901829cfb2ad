"""The SQL models on real DuckDB, from raw JSON lines through process, staging and marts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tasks import settings
from tasks.core import duck
from tasks.extract.stage import Window, stage_dump
from tasks.lake.local import LocalLake
from tasks.model import duckdb_engine as model
from tasks.model.duckdb_engine import build_models, run_models
from tasks.process.duckdb_engine import process_sql

T0 = 1_709_251_200  # 2024-03-01T00:00:00Z


def _models(
    posts: list[dict[str, Any]], comments: list[dict[str, Any]]
) -> duckdb.DuckDBPyConnection:
    con = duck.connect()
    for kind, records in (("posts", posts), ("comments", comments)):
        lines = [json.dumps(r) for r in records] or ["{}"]
        con.execute(
            "create or replace table raw_lines as "
            "select null::bigint as line_no, unnest(?::varchar[]) as raw, "
            "null::double as batch_retrieved_utc",
            [lines],
        )
        where = "" if records else " where false"
        model = process_sql(kind)
        con.execute(
            f"create table processed_{kind} as select * exclude (dt, line_no) from ({model}){where}"
        )
    build_models(con)
    return con


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, Any]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return dict(zip(names, cursor.fetchone(), strict=True))


def test_created_utc_as_number_or_string_gives_the_same_utc_timestamp() -> None:
    con = _models(
        [
            {"id": "a", "subreddit": "Python", "created_utc": T0 + 3600},
            {"id": "b", "subreddit": "python", "created_utc": str(T0 + 3600)},
        ],
        [],
    )
    rows = con.execute(
        "select id, subreddit, created_at, created_date from posts order by id"
    ).fetchall()
    assert [r[2].isoformat() for r in rows] == ["2024-03-01T01:00:00", "2024-03-01T01:00:00"]
    assert {r[1] for r in rows} == {"python"}


@pytest.mark.parametrize(
    ("edited", "is_edited", "edited_at"),
    [(False, False, None), (T0 + 60.0, True, "2024-03-01T00:01:00"), (True, True, None)],
)
def test_edited_false_true_or_an_epoch(edited: Any, is_edited: bool, edited_at: str | None) -> None:
    con = _models([{"id": "a", "subreddit": "x", "created_utc": T0, "edited": edited}], [])
    row = _one(con, "select is_edited, edited_at from posts")
    assert row["is_edited"] is is_edited
    assert (row["edited_at"].isoformat() if row["edited_at"] else None) == edited_at


def test_deleted_and_removed_markers_become_flags() -> None:
    con = _models(
        [],
        [
            {
                "id": "d",
                "subreddit": "x",
                "created_utc": T0,
                "author": "[deleted]",
                "body": "[deleted]",
                "link_id": "t3_p",
                "parent_id": "t3_p",
            },
            {
                "id": "r",
                "subreddit": "x",
                "created_utc": T0,
                "author": "[deleted]",
                "body": "[removed]",
                "link_id": "t3_p",
                "parent_id": "t3_p",
            },
            {
                "id": "k",
                "subreddit": "x",
                "created_utc": T0,
                "author": "bob",
                "body": "hi",
                "link_id": "t3_p",
                "parent_id": "t3_p",
            },
        ],
    )
    flags = dict(
        (r[0], (r[1], r[2]))
        for r in con.execute("select id, is_deleted, is_removed from comments").fetchall()
    )
    assert flags == {"d": (True, False), "r": (False, True), "k": (False, False)}


def test_bare_link_and_parent_ids_are_normalised_to_fullnames() -> None:
    con = _models(
        [],
        [
            {"id": "c1", "subreddit": "x", "created_utc": T0, "link_id": "abc", "parent_id": "abc"},
            {
                "id": "c2",
                "subreddit": "x",
                "created_utc": T0,
                "link_id": "t3_abc",
                "parent_id": "t1_c1",
            },
            {"id": "c3", "subreddit": "x", "created_utc": T0, "link_id": "abc", "parent_id": "c1"},
        ],
    )
    rows = con.execute(
        "select id, post_fullname, post_id, parent_fullname, is_top_level from comments order by id"
    ).fetchall()
    assert rows == [
        ("c1", "t3_abc", "abc", "t3_abc", True),
        ("c2", "t3_abc", "abc", "t1_c1", False),
        ("c3", "t3_abc", "abc", "t1_c1", False),
    ]


def test_the_latest_retrieval_wins_whatever_the_file_order() -> None:
    con = _models(
        [
            {
                "id": "a",
                "subreddit": "x",
                "created_utc": T0,
                "score": 50,
                "retrieved_utc": T0 + 900,
            },
            {"id": "a", "subreddit": "x", "created_utc": T0, "score": 10, "retrieved_on": T0 + 60},
        ],
        [],
    )
    assert _one(con, "select count(*) as n, max(score) as score from posts") == {
        "n": 1,
        "score": 50,
    }


def test_subreddit_daily_counts_authors_once_and_ignores_deleted_accounts() -> None:
    con = _models(
        [
            {"id": "p1", "subreddit": "x", "created_utc": T0, "author": "ann", "score": 1},
            {
                "id": "p2",
                "subreddit": "x",
                "created_utc": T0 + 10,
                "author": "[deleted]",
                "score": 4,
            },
            {"id": "p3", "subreddit": "x", "created_utc": T0 + 20, "author": "bob", "score": None},
        ],
        [
            {
                "id": "c1",
                "subreddit": "X",
                "created_utc": T0,
                "author": "ann",
                "score": 3,
                "link_id": "t3_p1",
                "parent_id": "t3_p1",
            },
        ],
    )
    row = _one(con, "select * from subreddit_daily")
    assert (row["posts"], row["comments"], row["distinct_authors"]) == (3, 1, 2)
    assert row["mean_post_score"] == pytest.approx(2.5)
    assert row["median_post_score"] == pytest.approx(2.5)
    assert row["mean_comment_score"] == pytest.approx(3)


def _curated_rows(lake: LocalLake, keys: dict[str, list[str]]) -> dict[str, list[tuple]]:
    con = duck.connect()
    rows = {
        model: con.execute(
            f"select * from read_parquet({duck.path_list([str(lake.local_path(k)) for k in ks])}) "
            "order by all"
        ).fetchall()
        for model, ks in keys.items()
        if ks
    }
    con.close()
    return rows


def test_days_modeled_in_several_passes_give_the_same_marts_as_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = LocalLake(tmp_path / "lake")
    dts: set[str] = set()
    for dump in sorted(settings.SAMPLE_DIR.glob("*.zst")):
        dts |= stage_dump(dump, lake, Window(), process=True).processed.dts
    one = run_models(lake, sorted(dts))
    one_rows = _curated_rows(lake, one.curated_keys)

    passes = []
    define = model._define_processed
    monkeypatch.setattr(settings, "MODEL_ROWS_PER_PASS", 400)  # the sample: ~520 rows a day
    monkeypatch.setattr(model, "_define_processed", lambda *a: passes.append(a) or define(*a))
    several = run_models(lake, sorted(dts))

    assert len(passes) == len(dts) > 1  # every day larger than a pass: one pass per day
    assert several.rows == one.rows
    assert {m: sorted(k) for m, k in several.curated_keys.items()} == {
        m: sorted(k) for m, k in one.curated_keys.items()
    }
    assert _curated_rows(lake, several.curated_keys) == one_rows
