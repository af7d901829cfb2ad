"""Bad input through the whole flow (real DuckDB, a real Prefect API): one bad value never stops
a run or a later rebuild, a damaged dump fails its run loudly (or, when asked, loads what was
read), and `status` lists the failure."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import duckdb
import pytest
import zstandard
from helpers import (
    PROJECT_DIR,
    dump_post,
    path_args,
    run_cli,
    warehouse_checksums,
    watermarks,
    write_dump,
)

from flows.main import main, reddit_pipeline
from tasks.config import PipelineConfig

pytestmark = pytest.mark.e2e

MAY_1 = 1_714_521_600  # 2024-05-01 00:00 UTC


def cli(args: list[str], api_url: str) -> subprocess.CompletedProcess[str]:
    """run_cli on this checkout's code: the script's folder, not the project, heads sys.path,
    and the environment's editable install may point at another checkout."""
    return run_cli(args, api_url, env={"PYTHONPATH": str(PROJECT_DIR)})


def runs(state: Path) -> list[tuple]:
    con = duckdb.connect(str(state), read_only=True)
    try:
        return con.execute(
            "select status, error, counts from pipeline_runs order by started_at"
        ).fetchall()
    finally:
        con.close()


def rows(warehouse: Path, table: str = "posts") -> int:
    if not warehouse.exists():
        return 0
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        present = {r[0] for r in con.execute("show tables").fetchall()}
        return con.execute(f"select count(*) from {table}").fetchone()[0] if table in present else 0
    finally:
        con.close()


def bad(n: int, **fields: object) -> dict[str, object]:
    return {**dump_post("python", n, MAY_1 + n), **fields}


def test_bad_values_and_names_are_quarantined_the_rest_loads_and_a_rebuild_from_raw_equals_it(
    prefect_api: str, paths: dict[str, Path], tmp_path: Path
) -> None:
    good = [dump_post("python", n, MAY_1 + n * 60) for n in range(1, 6)]
    good.append(dump_post("rust", 6, int(time.time()) + 60))  # within the clock skew allowance
    kept_with_nulls = [bad(7, edited=1e20), bad(8, retrieved_on=1e20), bad(9, score="lots")]
    quarantined = {
        "unusable created_utc": [bad(10, created_utc="nan"), bad(11, created_utc="inf")],
        "created_utc out of range": [bad(12, created_utc=1e20), bad(13, created_utc=2e13)],
        "created_utc in the future": [bad(14, created_utc=int(time.time()) + 20 * 3600)],
        "invalid subreddit name": [
            {**dump_post("python", 15 + i, MAY_1), "subreddit": name}
            for i, name in enumerate(["../..", "x" * 300, "a/b", "*", "?"])
        ],
    }
    nan_token = json.dumps(bad(20, created_utc=float("nan")))  # a bare NaN token
    records = [*good, *kept_with_nulls, *(r for rs in quarantined.values() for r in rs)]
    dump = write_dump(tmp_path / "RS_2024-05.zst", [*records, nan_token])

    summary = reddit_pipeline(PipelineConfig(**paths, dump_paths=[dump]))

    assert summary.status == "completed"
    assert summary.staged == len(good) + len(kept_with_nulls)
    reasons = dict(summary.counts()["quarantine_reasons"])
    expected = {reason: len(rs) for reason, rs in quarantined.items()}
    expected["unusable created_utc"] += 1  # the NaN token
    assert reasons == expected
    assert summary.coerced() == {"posts.edited": 1, "posts.retrieved_utc": 1, "posts.score": 1}
    assert rows(paths["warehouse_path"]) == len(good) + len(kept_with_nulls)
    # Nothing was written outside the lake's own folders.
    lake_folders = {p.name for p in (paths["lake_dir"] / "raw" / "reddit" / "posts").iterdir()}
    assert lake_folders == {"subreddit=python", "subreddit=rust"}
    tables, marks = warehouse_checksums(paths["warehouse_path"]), watermarks(paths["state_path"])

    paths["warehouse_path"].unlink()
    paths["state_path"].unlink()
    for layer in ("processed", "curated"):
        shutil.rmtree(paths["lake_dir"] / layer)
    assert main(["rebuild", *path_args(paths)]) == 0

    assert warehouse_checksums(paths["warehouse_path"]) == tables
    assert watermarks(paths["state_path"]) == marks


def _truncated(path: Path) -> Path:
    records = [dump_post("python", n, MAY_1 + n) for n in range(20_000)]
    write_dump(path, records)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])  # a download cut at 60%
    return path


def _garbage(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(range(256)) * 64)  # zstd magic, then noise
    return path


@pytest.mark.parametrize(
    ("damage", "where"),
    [(_truncated, "truncated: the file ends at byte"), (_garbage, "damaged zstd data")],
)
def test_a_damaged_dump_fails_the_run_names_file_and_offset_and_status_lists_it(
    prefect_api: str, paths: dict[str, Path], tmp_path: Path, damage: object, where: str
) -> None:
    good = write_dump(tmp_path / "RC_2024-05.zst", [])
    dump = damage(tmp_path / "RS_2024-05.zst")  # type: ignore[operator]

    result = cli(
        ["--dump-path", str(dump), "--dump-path", str(good), *path_args(paths)], prefect_api
    )

    assert result.returncode == 1, result.stdout[-2000:]
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "DamagedInputError" in line and f"RS_2024-05.zst: {where}" in line
    assert "byte " in line and "--keep-partial-input" in line
    assert "Nothing new" not in result.stdout + result.stderr
    [(status, error, counts)] = runs(paths["state_path"])
    assert status == "failed" and "RS_2024-05.zst" in error
    assert json.loads(counts)["errors"] and where in json.loads(counts)["errors"][0]
    assert rows(paths["warehouse_path"]) == 0
    assert watermarks(paths["state_path"]) == []

    shown = cli(["status", "--state", str(paths["state_path"])], prefect_api)

    assert shown.returncode == 0, shown.stderr
    assert "no failed runs" not in shown.stdout
    assert "last failures" in shown.stdout and "RS_2024-05.zst" in shown.stdout


def test_keep_partial_input_loads_what_was_read_and_the_summary_says_it_was_damaged(
    prefect_api: str, paths: dict[str, Path], tmp_path: Path
) -> None:
    dump = _truncated(tmp_path / "RS_2024-05.zst")

    result = cli(["--dump-path", str(dump), "--keep-partial-input", *path_args(paths)], prefect_api)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "damaged input" in result.stdout and "RS_2024-05.zst: truncated" in result.stdout
    loaded = rows(paths["warehouse_path"])
    assert 0 < loaded < 20_000
    [(status, _, counts)] = runs(paths["state_path"])
    assert status == "completed" and json.loads(counts)["errors"]


def test_the_same_dump_path_twice_is_read_once(
    prefect_api: str, paths: dict[str, Path], tmp_path: Path
) -> None:
    dump = write_dump(
        tmp_path / "RS_2024-05.zst", [dump_post("python", n, MAY_1 + n) for n in range(10)]
    )
    again = tmp_path / "." / "RS_2024-05.zst"

    summary = reddit_pipeline(PipelineConfig(**paths, dump_paths=[dump, again]))

    assert summary.inputs == ["RS_2024-05.zst"]
    assert summary.counts()["lines"] == 10 and summary.staged == 10
    assert summary.load is not None and summary.load.inserted_totals()["posts"] == 10


def test_a_comments_dump_named_rs_fails_the_run_with_a_clear_line(
    prefect_api: str, paths: dict[str, Path], tmp_path: Path
) -> None:
    comment = {"id": "c1", "subreddit": "python", "created_utc": MAY_1, "link_id": "t3_x"}
    dump = tmp_path / "RS_2024-05.zst"
    dump.write_bytes(zstandard.ZstdCompressor().compress((json.dumps(comment) + "\n").encode()))

    result = cli(["--dump-path", str(dump), *path_args(paths)], prefect_api)

    assert result.returncode == 1
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "RS_2024-05.zst: its name says posts" in line and "RC_YYYY-MM.zst" in line
    assert runs(paths["state_path"])[0][0] == "failed"
