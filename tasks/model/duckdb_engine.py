"""Model: processed Parquet -> staging views -> marts, written as curated Parquet by day.

Marts are rebuilt for every day of the run's scope (tasks.core.scope), from all processed files of
those days, every subreddit included: a curated file is one per day, so it must hold the whole
day however many runs, over whichever subreddits, contributed to it.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import settings
from tasks.core import RunScope, duck
from tasks.lake import Lake, curated_key, readable_path
from tasks.process import copy_partitioned_sql, empty_processed_sql

STAGING_MODELS = ("stg_posts", "stg_comments")
MART_MODELS = ("posts", "comments", "subreddit_daily")
# Which column of each mart gives its day partition (Athena partitions by it).
MART_DAY_COLUMN = {"posts": "created_date", "comments": "created_date", "subreddit_daily": "day"}
# The order of rows in a curated file: none for posts and comments (a sort would carry every
# body through it, ~30% of the model's time, and the load does not care), the key for the
# small daily mart.
MART_ORDER = {"posts": "", "comments": "", "subreddit_daily": "order by subreddit, day"}


@dataclass
class ModelResult:
    dts: list[str]
    rows: dict[str, int] = field(default_factory=dict)
    curated_keys: dict[str, list[str]] = field(default_factory=dict)


def register_processed(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    dts: list[str],
    workdir: Path | None = None,
    materialize: bool = False,
    scope: RunScope | None = None,
) -> None:
    """processed_posts and processed_comments over the given days' Parquet files: views, not
    tables, so a query reads only the columns it needs and nothing is held in memory.
    `scope`: only its subreddits' rows (the checks' view of a run); None: every row.

    A remote lake's files are fetched into `workdir`, which must outlive the views; without
    one they are fetched into a temporary folder and read into tables before it goes."""
    remote = lake.local_path(settings.PROCESSED_PREFIX) is None
    if remote and workdir is None:
        with tempfile.TemporaryDirectory(prefix="reddit-model-") as tmp:
            register_processed(con, lake, dts, Path(tmp), materialize=True, scope=scope)
        return
    files = processed_files(lake, dts, workdir or Path("."))
    paths = {kind: [p for day in files[kind].values() for p in day] for kind in files}
    _define_processed(con, paths, "table" if materialize else "view", scope)


def processed_files(lake: Lake, dts: list[str], workdir: Path) -> dict[str, dict[str, list[str]]]:
    """kind -> day -> readable paths of the processed files (fetched into `workdir` when the
    lake is remote)."""
    return {
        kind: {
            dt: [
                str(readable_path(lake, key, workdir))
                for key in lake.list_keys(f"{settings.PROCESSED_PREFIX}/{kind}/dt={dt}/")
                if key.endswith(".parquet")
            ]
            for dt in dts
        }
        for kind in settings.KINDS
    }


def _define_processed(
    con: duckdb.DuckDBPyConnection,
    paths: dict[str, list[str]],
    relation: str = "view",
    scope: RunScope | None = None,
) -> None:
    """processed_posts and processed_comments over the given files (views, or tables), with
    only the scope's subreddits when one is given."""
    where = scope.subreddit_sql() if scope else "true"
    for kind in settings.KINDS:
        if paths.get(kind):
            source = (
                f"read_parquet({duck.path_list(paths[kind])}, hive_partitioning = true, "
                "union_by_name = true)"
            )
        else:
            source = f"({empty_processed_sql(kind)})"
        con.execute(
            f"create or replace {relation} processed_{kind} as "
            f"select * exclude (dt) from {source} where {where}"
        )


def build_models(con: duckdb.DuckDBPyConnection, materialize: bool = True) -> dict[str, int]:
    """Run sql/staging then sql/marts in order; marts are materialized as tables, or only
    defined as views when `materialize` is false (then no rows are counted here)."""
    for name in STAGING_MODELS:
        con.execute(f"create or replace view {name} as {duck.read_sql(f'staging/{name}.sql')}")
    rows = {}
    for name in MART_MODELS:
        relation = "table" if materialize else "view"
        con.execute(f"create or replace {relation} {name} as {duck.read_sql(f'marts/{name}.sql')}")
        if materialize:
            count = con.execute(f"select count(*) from {name}").fetchone()
            rows[name] = count[0] if count else 0
    return rows


def run_models(lake: Lake, dts: list[str]) -> ModelResult:
    """Rebuild the marts of the given days and write them to curated/ (one file per day).

    Every version of an item has the same created day, so a day's marts depend on that day's
    processed files alone: days are modeled in passes of up to settings.MODEL_ROWS_PER_PASS
    processed rows, which bounds memory whatever the run's size (one pass over 3M comments
    made DuckDB spill the dedupe window to disk and took 3x longer than three passes)."""
    result = ModelResult(dts=sorted(dts))
    if not dts:
        return result
    con = duck.connect(bounded=True)
    try:
        with tempfile.TemporaryDirectory(prefix="reddit-model-") as tmp:
            files = processed_files(lake, result.dts, Path(tmp) / "in")
            for index, days in enumerate(_passes(con, files, result.dts)):
                out = Path(tmp) / f"pass-{index}"
                out.mkdir()
                _define_processed(
                    con, {kind: [p for dt in days for p in files[kind][dt]] for kind in files}
                )
                for model, (parts, rows) in _model_pass(con, out).items():
                    result.rows[model] = result.rows.get(model, 0) + rows
                    result.curated_keys.setdefault(model, []).extend(
                        _publish_curated(lake, model, parts)
                    )
                shutil.rmtree(out)
    finally:
        con.close()
    return result


def _passes(
    con: duckdb.DuckDBPyConnection, files: dict[str, dict[str, list[str]]], dts: list[str]
) -> list[list[str]]:
    """Consecutive days grouped so that each group holds at most MODEL_ROWS_PER_PASS
    processed rows (a larger day is a group of its own); the counts come from the Parquet
    footers, not the data."""
    paths = [p for kind in files for dt in dts for p in files[kind][dt]]
    counts = dict(
        con.execute(
            f"select file_name, num_rows from parquet_file_metadata({duck.path_list(paths)})"
        ).fetchall()
        if paths
        else []
    )
    groups: list[list[str]] = []
    rows = 0
    for dt in dts:
        day_rows = sum(counts.get(p, 0) for kind in files for p in files[kind][dt])
        if not groups or rows + day_rows > settings.MODEL_ROWS_PER_PASS:
            groups.append([])
            rows = 0
        groups[-1].append(dt)
        rows += day_rows
    return groups


def _model_pass(
    con: duckdb.DuckDBPyConnection, out: Path
) -> dict[str, tuple[list[tuple[str, Path]], int]]:
    """Each mart of the processed rows now defined, as local files per day, and row counts."""
    # Marts as views: each is computed once and streamed into its curated files by COPY.
    build_models(con, materialize=False)
    written = {}
    for model in MART_MODELS:
        if model == "subreddit_daily":
            # Its inputs are the posts and comments marts just written: read them back
            # (a few narrow columns) rather than deduplicate every version again.
            for mart in ("posts", "comments"):
                if written[mart][0]:
                    files = duck.path_list([str(p) for _, p in written[mart][0]])
                    con.execute(
                        f"create or replace view {mart} as select * exclude (dt) "
                        f"from read_parquet({files}, hive_partitioning = true)"
                    )
        written[model] = _copy_curated(con, model, out)
    return written


def _copy_curated(
    con: duckdb.DuckDBPyConnection, model: str, out: Path
) -> tuple[list[tuple[str, Path]], int]:
    """The mart's local files, one per day, and how many rows they hold."""
    day = MART_DAY_COLUMN[model]
    query = f"select *, strftime({day}, '%Y-%m-%d') as dt from {model} {MART_ORDER[model]}"
    written = con.execute(copy_partitioned_sql(query, out / model)).fetchone()
    parts = []
    for dt_dir in sorted((out / model).glob("dt=*")):
        day_files = sorted(dt_dir.glob("*.parquet"))
        if len(day_files) != 1:
            raise RuntimeError(f"expected one curated file in {dt_dir}, found {len(day_files)}")
        parts.append((dt_dir.name.removeprefix("dt="), day_files[0]))
    return parts, written[0] if written else 0


def _publish_curated(lake: Lake, model: str, parts: list[tuple[str, Path]]) -> list[str]:
    keys = []
    for dt, path in parts:
        key = curated_key(model, dt)
        lake.put_file(key, path)
        keys.append(key)
    return keys


@task(name="model", cache_policy=NO_CACHE)
def model_task(lake: Lake, scope: RunScope) -> ModelResult:
    """The scope's days, rebuilt whole (every subreddit: see the module docstring)."""
    return run_models(lake, list(scope.days))
