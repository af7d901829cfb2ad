"""Recovery: the raw lake alone recreates processed data, the warehouse and the watermarks,
wherever the pipeline's config puts them (a folder or S3; DuckDB or PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from aws_fixtures import moto_lake_block
from helpers import (
    PROJECT_DIR,
    dump_post,
    path_args,
    run_cli,
    warehouse_checksums,
    watermarks,
    write_dump,
)
from pydantic import SecretStr

pytestmark = pytest.mark.e2e

DAY = 86400
MAY_1 = 1_714_521_600  # 2024-05-01 00:00 UTC


def test_rebuild_after_losing_warehouse_state_and_processed_layers_equals_before(
    prefect_api: str, paths: dict[str, Path]
) -> None:
    assert run_cli(path_args(paths), prefect_api).returncode == 0
    tables = warehouse_checksums(paths["warehouse_path"])
    marks = watermarks(paths["state_path"])

    paths["warehouse_path"].unlink()
    paths["state_path"].unlink()
    for layer in ("processed", "curated"):
        shutil.rmtree(paths["lake_dir"] / layer)

    result = run_cli(["rebuild", *path_args(paths)], prefect_api)

    assert result.returncode == 0, result.stderr[-3000:]
    assert warehouse_checksums(paths["warehouse_path"]) == tables
    assert watermarks(paths["state_path"]) == marks
    assert {m[0] for m in marks} == {"sample"}


def test_rebuild_limited_to_a_subreddit_and_days_leaves_the_others_out(
    prefect_api: str, paths: dict[str, Path], tmp_path: Path
) -> None:
    import duckdb

    # One dump per subreddit: two raw batches, so a filtered rebuild has something to exclude.
    # alpha has 2024-05-01..03, beta 2024-05-04..06: a day holding both would be made whole
    # by the model step (tasks.process.complete_days), whichever subreddit the rebuild asked for.
    dumps = [
        write_dump(
            tmp_path / "dumps" / f"{sub}_submissions.zst",
            [dump_post(sub, i, MAY_1 + offset * DAY + i * 6 * 3600, 10 * DAY) for i in range(12)],
        )
        for sub, offset in (("alpha", 0), ("beta", 3))
    ]
    dump_args = [arg for d in dumps for arg in ("--dump-path", str(d))]
    first = run_cli([*dump_args, *path_args(paths)], prefect_api)
    assert first.returncode == 0, first.stderr[-3000:]
    paths["warehouse_path"].unlink()
    paths["state_path"].unlink()
    for layer in ("processed", "curated"):
        shutil.rmtree(paths["lake_dir"] / layer)

    # beta's 2024-05-04 is inside the window: only the subreddit filter keeps it out.
    window = ["--since", "2024-05-02", "--until", "2024-05-05"]
    result = run_cli(["rebuild", "--subreddit", "alpha", *window, *path_args(paths)], prefect_api)

    assert result.returncode == 0, result.stderr[-3000:]
    con = duckdb.connect(str(paths["warehouse_path"]), read_only=True)
    rows = con.execute(
        "select subreddit, strftime(created_date, '%Y-%m-%d'), count(*) from posts "
        "group by all order by all"
    ).fetchall()
    con.close()
    assert rows == [("alpha", "2024-05-02", 4), ("alpha", "2024-05-03", 4)]
    processed = paths["lake_dir"] / "processed" / "reddit" / "posts"
    assert sorted(p.parent.name for p in processed.rglob("*.parquet")) == [
        "dt=2024-05-02",
        "dt=2024-05-03",
    ]
    # The watermark of the rebuilt subreddit only: beta's was never recomputed.
    assert [(m[1], m[2], m[3]) for m in watermarks(paths["state_path"])] == [
        ("alpha", "posts", float(MAY_1 + 11 * 6 * 3600))
    ]


def _pg_tables(dsn: str) -> dict[str, tuple[int, str]]:
    """Row count and content checksum of each warehouse table, through the block (its schema)."""
    from blocks.warehouse import PostgresWarehouse

    result = {}
    with PostgresWarehouse.from_dsn(dsn).connect() as con:
        for table in ("posts", "comments", "subreddit_daily"):
            rows = con.execute(f"select * from {table} order by 1, 2").fetchall()
            result[table] = (len(rows), hashlib.sha256(repr(rows).encode()).hexdigest())
    return result


def test_rebuild_from_an_s3_lake_into_postgresql_equals_the_tables_before(
    prefect_api: str, paths: dict[str, Path], pg_dsn: str, moto_server: str
) -> None:
    import duckdb
    import psycopg

    from blocks.warehouse import PostgresWarehouse
    from flows.main import reddit_pipeline
    from flows.rebuild import RebuildConfig, reddit_rebuild
    from tasks.config import PipelineConfig

    s3 = moto_lake_block(moto_server, "reddit-lake-rebuild", "rebuild-lake")
    config = PipelineConfig(
        lake="s3",
        s3_bucket_block="rebuild-lake",
        warehouse="postgres",
        warehouse_dsn=SecretStr(pg_dsn),
        **paths,
    )
    reddit_pipeline(config)
    before = _pg_tables(pg_dsn)
    marks = watermarks(paths["state_path"])

    # Lose the warehouse, the state store and everything in the lake but raw/.
    with psycopg.connect(pg_dsn, autocommit=True) as con:
        con.execute(f"drop schema {PostgresWarehouse.from_dsn(pg_dsn).db_schema} cascade")
    paths["state_path"].unlink()
    for layer in ("processed", "curated"):
        listed = s3.list_objects_v2(Bucket="reddit-lake-rebuild", Prefix=f"lake/{layer}/")
        for item in listed.get("Contents", []):
            s3.delete_object(Bucket="reddit-lake-rebuild", Key=item["Key"])
    assert s3.list_objects_v2(Bucket="reddit-lake-rebuild", Prefix="lake/curated/")["KeyCount"] == 0

    result = reddit_rebuild(RebuildConfig(pipeline=config))

    assert before["posts"][0] == 600 and before["comments"][0] == 3000
    assert _pg_tables(pg_dsn) == before
    assert watermarks(paths["state_path"]) == marks
    assert result.load is not None and result.load.inserted_totals()["posts"] == 600
    # The rebuild is in the (new) state store's run history, as `status` shows it.
    con = duckdb.connect(str(paths["state_path"]), read_only=True)
    runs = con.execute("select source, status, counts from pipeline_runs").fetchall()
    con.close()
    assert [(source, status) for source, status, _ in runs] == [("rebuild", "completed")]
    assert json.loads(runs[0][2])["loaded_new"]["posts"] == 600


def test_the_rebuild_command_takes_the_pipelines_locations_and_says_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.rebuild import parse_rebuild_config

    locations = ["--lake", "s3", "--s3-bucket-block", "lake", "--warehouse-kind", "postgres"]
    config = parse_rebuild_config(
        [*locations, "--warehouse-block", "wh", "--subreddit", "r/Python", "--since", "2024-05-01"]
    )
    assert (config.pipeline.lake, config.pipeline.s3_bucket_block) == ("s3", "lake")
    assert (config.pipeline.warehouse, config.pipeline.warehouse_block) == ("postgres", "wh")
    assert config.subreddits == ["python"]
    with pytest.raises(SystemExit):
        parse_rebuild_config(["--process-engine", "glue"])  # Glue needs the S3 lake
    assert "needs lake 's3'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_rebuild_config(["--lake-dir", str(tmp_path / "none")])
    assert "no lake at" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_rebuild_config(["--since", "2024-05-03", "--until", "2024-05-01"])
    assert "must be before until" in capsys.readouterr().err


def test_the_rebuild_deployment_has_no_schedule_and_valid_parameters() -> None:
    from flows.rebuild import RebuildConfig

    deployments = yaml.safe_load((PROJECT_DIR / "prefect.yaml").read_text())["deployments"]
    (rebuild,) = [d for d in deployments if d["name"] == "rebuild"]
    assert rebuild["entrypoint"] == "flows/rebuild.py:reddit_rebuild"
    assert not rebuild.get("schedules")
    config = RebuildConfig(**rebuild["parameters"]["config"])
    assert (config.pipeline.lake, config.pipeline.s3_bucket_block) == ("s3", "reddit-lake")
    assert config.subreddits == [] and config.since is None


def test_a_rebuild_that_breaks_a_contract_loads_nothing_and_moves_no_watermark(
    prefect_api: str, paths: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    import duckdb

    from flows.main import reddit_pipeline
    from flows.rebuild import RebuildConfig, reddit_rebuild
    from tasks.config import PipelineConfig
    from tasks.quality.contracts import QualityGateFailed

    now = int(time.time())
    good = [dump_post("python", i, now - 7200 + i, 10 * DAY) for i in range(5)]
    config = PipelineConfig(
        source="dump",
        dump_paths=[write_dump(tmp_path / "a" / "python_submissions.zst", good)],
        **paths,
    )
    reddit_pipeline(config)
    tables, marks = warehouse_checksums(paths["warehouse_path"]), watermarks(paths["state_path"])
    # A post an hour in the future reaches raw (staged as a version with a looser bound than
    # the contract's did); the run's gate stops it, and it stays in raw, where a rebuild finds it.
    from tasks import settings

    monkeypatch.setitem(settings.SQL_BOUNDS, "MAX_FUTURE_SECONDS", 86400)
    bad = write_dump(
        tmp_path / "b" / "python_submissions.zst",
        [*good, dump_post("python", 99, now + 3600, 10 * DAY)],
    )
    with pytest.raises(QualityGateFailed):
        reddit_pipeline(config.model_copy(update={"dump_paths": [bad]}))

    with pytest.raises(QualityGateFailed, match="future"):
        reddit_rebuild(RebuildConfig(pipeline=config))

    assert warehouse_checksums(paths["warehouse_path"]) == tables
    assert watermarks(paths["state_path"]) == marks
    con = duckdb.connect(str(paths["state_path"]), read_only=True)
    status, error = con.execute(
        "select status, error from pipeline_runs where source = 'rebuild'"
    ).fetchone()
    con.close()
    assert status == "failed" and error.startswith("QualityGateFailed")


def test_a_rebuild_that_cannot_start_exits_1_with_one_line(
    prefect_api: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.rebuild import main

    assert main(["--lake", "s3"]) == 1

    error = capsys.readouterr().err.strip().splitlines()
    assert error == [
        "error: the rebuild failed: ValueError: lake 's3' needs s3_bucket_block, the name of a "
        "prefect-aws S3Bucket"
    ]


def test_a_rebuild_of_one_subreddit_loads_and_marks_only_it_though_its_batches_hold_others(
    prefect_api: str, paths: dict[str, Path], tmp_path: Path
) -> None:
    """One dump, so one raw batch holds alpha and beta on the same days: the rebuild
    reprocesses and models those days whole, but its scope is alpha's rows."""
    import duckdb

    from flows.rebuild import RebuildConfig, reddit_rebuild
    from tasks.config import PipelineConfig

    posts = [
        dump_post(sub, i, MAY_1 + i * 6 * 3600, 10 * DAY)
        for i in range(8)
        for sub in ("alpha", "beta")
    ]
    dump = write_dump(tmp_path / "dumps" / "mixed_submissions.zst", posts)
    assert run_cli(["--dump-path", str(dump), *path_args(paths)], prefect_api).returncode == 0
    paths["warehouse_path"].unlink()
    paths["state_path"].unlink()

    result = reddit_rebuild(RebuildConfig(subreddits=["alpha"], pipeline=PipelineConfig(**paths)))

    assert result.days == ["2024-05-01", "2024-05-02"]
    con = duckdb.connect(str(paths["warehouse_path"]), read_only=True)
    loaded = con.execute("select subreddit, count(*) from posts group by all").fetchall()
    daily = con.execute("select distinct subreddit from subreddit_daily").fetchall()
    con.close()
    assert loaded == [("alpha", 8)] and daily == [("alpha",)]
    con = duckdb.connect(str(paths["state_path"]), read_only=True)
    marks = con.execute("select destination, subreddit, kind from watermarks").fetchall()
    con.close()
    assert marks == [(f"duckdb:{paths['warehouse_path'].resolve()}", "alpha", "posts")]


def test_an_interrupted_rebuild_exits_130_is_recorded_cancelled_and_runs_again(
    prefect_api: str, paths: dict[str, Path]
) -> None:
    """Ctrl-C during a rebuild, as during a run: one line, exit 130, the rebuild recorded as
    cancelled (not failed), no watermark moved, and the next rebuild equals the lost state."""
    import duckdb

    from tasks.core.faults import INTERRUPT_ENV_VAR

    assert run_cli(path_args(paths), prefect_api).returncode == 0
    tables = warehouse_checksums(paths["warehouse_path"])
    marks = watermarks(paths["state_path"])
    paths["warehouse_path"].unlink()
    paths["state_path"].unlink()

    interrupted = run_cli(
        ["rebuild", *path_args(paths)], prefect_api, env={INTERRUPT_ENV_VAR: "rebuild:load"}
    )
    assert interrupted.returncode == 130, interrupted.stderr[-3000:]
    assert interrupted.stderr.splitlines() == [
        "error: the rebuild was interrupted by SIGINT: it is recorded as cancelled; run it "
        "again to finish it"
    ]
    con = duckdb.connect(str(paths["state_path"]), read_only=True)
    try:
        runs = con.execute("select source, status, error from pipeline_runs").fetchall()
        assert con.execute("select count(*) from watermarks").fetchone() == (0,)
    finally:
        con.close()
    assert runs == [("rebuild", "cancelled", "interrupted by SIGINT")]

    again = run_cli(["rebuild", *path_args(paths)], prefect_api)
    assert again.returncode == 0, again.stderr[-3000:]
    assert warehouse_checksums(paths["warehouse_path"]) == tables
    assert watermarks(paths["state_path"]) == marks
