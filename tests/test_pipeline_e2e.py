"""The whole flow on real DuckDB through a real Prefect API: figures, idempotency, restarts,
incremental runs."""

from __future__ import annotations

import io
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb
import pytest
import zstandard
from helpers import (
    dump_post,
    latest_by_id,
    path_args,
    run_cli,
    warehouse_checksums,
    watermarks,
    write_dump,
)

from flows.main import reddit_pipeline
from tasks import settings
from tasks.config import PipelineConfig

pytestmark = pytest.mark.e2e


def _sample_records(name: str) -> list[dict[str, Any]]:
    """The sample's usable records, read independently of the pipeline: plain json.loads."""
    reader = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(
        (settings.SAMPLE_DIR / name).open("rb")
    )
    records = []
    for line in io.TextIOWrapper(reader, encoding="utf-8"):
        try:
            record = json.loads(line)
            created = float(record["created_utc"])
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(record, dict) and record.get("id"):
            record["_created"] = created
            records.append(record)
    return records


def _expected_daily() -> dict[tuple[str, str], dict[str, Any]]:
    from datetime import UTC, datetime

    days: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"posts": 0, "comments": 0, "authors": set(), "post_scores": []}
    )
    for name, kind in (("RS_2024-03.zst", "posts"), ("RC_2024-03.zst", "comments")):
        for record in latest_by_id(_sample_records(name)).values():
            day = datetime.fromtimestamp(record["_created"], UTC).strftime("%Y-%m-%d")
            entry = days[(record["subreddit"].lower(), day)]
            entry[kind] += 1
            if record.get("author") not in (None, "[deleted]"):
                entry["authors"].add(record["author"])
            if kind == "posts" and record.get("score") is not None:
                entry["post_scores"].append(record["score"])
    return days


def _config(paths: dict[str, Path], **extra: Any) -> PipelineConfig:
    return PipelineConfig(**paths, **extra)


def test_sample_run_figures_equal_those_computed_from_the_sample_files(
    prefect_api: str, paths: dict[str, Path]
) -> None:
    summary = reddit_pipeline(_config(paths))

    expected = _expected_daily()
    con = duckdb.connect(str(paths["warehouse_path"]), read_only=True)
    rows = con.execute(
        "select subreddit, strftime(day, '%Y-%m-%d'), posts, comments, distinct_authors, "
        "mean_post_score, median_post_score from subreddit_daily"
    ).fetchall()
    counts = {
        t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in ("posts", "comments")
    }
    con.close()

    assert counts["posts"] == len(latest_by_id(_sample_records("RS_2024-03.zst")))
    assert counts["comments"] == len(latest_by_id(_sample_records("RC_2024-03.zst")))
    assert {(r[0], r[1]) for r in rows} == set(expected)
    for subreddit, day, posts, comments, authors, mean_score, median_score in rows:
        want = expected[(subreddit, day)]
        assert (posts, comments, authors) == (want["posts"], want["comments"], len(want["authors"]))
        if want["post_scores"]:
            assert mean_score == pytest.approx(statistics.mean(want["post_scores"]))
            assert median_score == pytest.approx(statistics.median(want["post_scores"]))
    assert summary.quarantined == 10
    assert summary.status == "completed"


def test_recrawled_post_keeps_the_latest_retrieved_version(
    prefect_api: str, paths: dict[str, Path]
) -> None:
    reddit_pipeline(_config(paths))
    records = _sample_records("RS_2024-03.zst")
    seen: dict[str, int] = defaultdict(int)
    for record in records:
        seen[record["id"]] += 1
    recrawled = [i for i, n in seen.items() if n > 1]
    assert recrawled, "the sample should hold re-crawled posts"
    latest = latest_by_id(records)
    con = duckdb.connect(str(paths["warehouse_path"]), read_only=True)
    for post_id in recrawled:
        score = con.execute("select score from posts where id = ?", [post_id]).fetchone()[0]
        assert score == latest[post_id].get("score")
    con.close()


def test_rerun_of_the_same_window_leaves_every_table_identical(
    prefect_api: str, paths: dict[str, Path]
) -> None:
    reddit_pipeline(_config(paths))
    first = warehouse_checksums(paths["warehouse_path"])
    raw_files = sorted(p for p in paths["lake_dir"].rglob("*") if p.is_file())

    again = reddit_pipeline(_config(paths, full_refresh=True))

    assert warehouse_checksums(paths["warehouse_path"]) == first
    assert sorted(p for p in paths["lake_dir"].rglob("*") if p.is_file()) == raw_files
    assert again.load is not None and again.load.changed == 0


@pytest.mark.parametrize(
    "crash_at",
    ["stage:chunk", "after:stage", "after:process", "after:model", "load:comments", "after:load"],
)
def test_rerun_after_kill_equals_a_clean_run(
    prefect_api: str, paths: dict[str, Path], tmp_path: Path, crash_at: str
) -> None:
    clean = {k: tmp_path / "clean" / v.name for k, v in paths.items()}
    assert run_cli(path_args(clean), prefect_api).returncode == 0

    killed = run_cli(path_args(paths), prefect_api, env={"REDDIT_PIPELINE_CRASH_AT": crash_at})
    assert killed.returncode == -9, killed.stderr[-2000:]
    rerun = run_cli(path_args(paths), prefect_api)
    assert rerun.returncode == 0, rerun.stderr[-2000:]

    assert warehouse_checksums(paths["warehouse_path"]) == warehouse_checksums(
        clean["warehouse_path"]
    )
    assert watermarks(paths["state_path"]) == watermarks(clean["state_path"])


def test_an_earlier_window_run_after_a_later_one_loads_its_rows_and_keeps_the_watermarks(
    prefect_api: str, paths: dict[str, Path]
) -> None:
    """An Airflow backfill: the DAG has run 03-03 and now runs 03-02. The explicit window is
    re-read whatever the watermarks say, and the watermarks stay where 03-03 left them."""
    from datetime import UTC, datetime

    def day(n: int) -> datetime:
        return datetime(2024, 3, n, tzinfo=UTC)

    later = reddit_pipeline(_config(paths, since=day(3), until=day(4)))
    after_later = watermarks(paths["state_path"])
    earlier = reddit_pipeline(_config(paths, since=day(2), until=day(3)))

    assert later.status == earlier.status == "completed"
    assert earlier.staged > 0
    assert watermarks(paths["state_path"]) == after_later
    expected = {k: v for k, v in _expected_daily().items() if k[1] in ("2024-03-02", "2024-03-03")}
    assert {k[1] for k in expected} == {"2024-03-02", "2024-03-03"}
    con = duckdb.connect(str(paths["warehouse_path"]), read_only=True)
    rows = con.execute(
        "select subreddit, strftime(day, '%Y-%m-%d'), posts, comments from subreddit_daily"
    ).fetchall()
    con.close()
    assert {(r[0], r[1]): (r[2], r[3]) for r in rows} == {
        k: (v["posts"], v["comments"]) for k, v in expected.items()
    }


def test_second_run_with_new_data_adds_only_the_new_rows(
    prefect_api: str, paths: dict[str, Path], tmp_path: Path
) -> None:
    start = 1_714_521_600  # 2024-05-01
    first = write_dump(
        tmp_path / "d1" / "python_submissions.zst",
        [dump_post("python", i, start + i * 3600) for i in range(10)],
    )
    second = write_dump(
        tmp_path / "d2" / "python_submissions.zst",
        [dump_post("python", i, start + i * 3600) for i in range(15)],
    )

    run1 = reddit_pipeline(_config(paths, source="dump", dump_paths=[first]))
    run2 = reddit_pipeline(_config(paths, source="dump", dump_paths=[second]))
    run3 = reddit_pipeline(_config(paths, source="dump", dump_paths=[second]))

    assert run1.load is not None and run1.load.inserted_totals()["posts"] == 10
    assert run2.load is not None and run2.load.inserted_totals()["posts"] == 5
    # Only the new items and the hour of overlap up to the watermark (two posts) are re-read.
    assert run2.staged == 5 + 2
    assert run3.staged == 2
    assert run3.load is not None and run3.load.changed == 0
    assert any("Nothing new" in m for m in run3.messages)
    con = duckdb.connect(str(paths["warehouse_path"]), read_only=True)
    assert con.execute("select count(*) from posts").fetchone()[0] == 15
    con.close()


def test_malformed_lines_are_quarantined_and_the_run_goes_on(
    prefect_api: str, paths: dict[str, Path], tmp_path: Path
) -> None:
    dump = write_dump(
        tmp_path / "RS_2024-05.zst",
        [
            dump_post("python", 1, 1_714_521_600),
            "{not json",
            {"subreddit": "python"},
            dump_post("python", 2, 1_714_525_200),
        ],
    )
    summary = reddit_pipeline(_config(paths, source="dump", dump_paths=[dump]))

    assert summary.staged == 2
    assert summary.quarantined == 2
    quarantine = sorted((paths["lake_dir"] / "quarantine").rglob("*.ndjson"))
    entries = [json.loads(line) for q in quarantine for line in q.read_text().splitlines()]
    assert [(e["file"], e["line"], e["reason"]) for e in entries] == [
        ("RS_2024-05.zst", 2, "not valid JSON"),
        ("RS_2024-05.zst", 3, "missing id"),
    ]
