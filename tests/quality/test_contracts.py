"""The data contracts, run by real Soda on real DuckDB (and PostgreSQL), over models the real
pipeline functions built from the bundled sample."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import psycopg
import pytest
from helpers import SAMPLE_NOW, SAMPLE_SUBREDDITS

from tasks import settings
from tasks.core import duck
from tasks.core.scope import RunScope
from tasks.lake.local import LocalLake
from tasks.load.duckdb_engine import load_duckdb
from tasks.model.duckdb_engine import build_models, register_processed, run_models
from tasks.quality.contracts import (
    CheckReport,
    QualityGateFailed,
    check_label,
    check_task,
    enforce,
    record_check_results,
    run_checks,
)
from tasks.quality.datasets import DATASETS, lake_source
from tasks.quality.sources import duckdb_source, postgres_source
from tasks.state.store import open_duckdb_state, open_postgres_state


@pytest.fixture
def models(sample_lake: tuple[LocalLake, list[str]]) -> Iterator[duckdb.DuckDBPyConnection]:
    """A fresh in-memory DuckDB with processed_* and the marts, as tasks.model builds them."""
    lake, dts = sample_lake
    con = duck.connect()
    register_processed(con, lake, dts, materialize=True)  # the tests alter these tables
    build_models(con)
    yield con
    con.close()


def _check(con: duckdb.DuckDBPyConnection, **kwargs: object) -> list[str]:
    """The error message the gate raises, as lines; empty when the gate passes."""
    options = {"subreddits": SAMPLE_SUBREDDITS, "now": SAMPLE_NOW, **kwargs}
    report = run_checks(duckdb_source(con), **options)  # type: ignore[arg-type]
    try:
        enforce(report)
    except QualityGateFailed as exc:
        return str(exc).splitlines()
    return []


def test_the_contracts_pass_on_the_sample(models: duckdb.DuckDBPyConnection) -> None:
    report = run_checks(duckdb_source(models), subreddits=SAMPLE_SUBREDDITS, now=SAMPLE_NOW)

    assert report.passed, report.failure_message()
    assert {row.dataset for row in report.rows} == set(DATASETS)
    assert not report.errors
    # Comments whose post was created before the sample's window: reported, not blocking.
    orphans = [r for r in report.warnings if r.check == "post_id is present in posts"]
    assert [(r.outcome, r.figure) for r in orphans] == [("warned", 88)]
    assert models.execute("select count(*) from posts").fetchone() == (600,)


@pytest.mark.parametrize(
    ("damage", "subreddits", "expected"),
    [
        (
            "insert into posts select * from posts order by id limit 2",
            SAMPLE_SUBREDDITS,
            "posts: id duplicate failed (figure 2)",
        ),
        (
            "update comments set id = null where id = (select min(id) from comments)",
            SAMPLE_SUBREDDITS,
            "comments: id missing failed (figure 1)",
        ),
        (
            "update posts set created_at = timestamp '2030-01-01' "
            "where id = (select min(id) from posts)",
            SAMPLE_SUBREDDITS,
            "posts: created_at is not in the future failed (figure 1)",
        ),
        (
            "update processed_posts set created_utc = 1900000000 "
            "where id = (select min(id) from processed_posts)",
            SAMPLE_SUBREDDITS,
            "processed_posts: created_utc is not in the future failed (figure 1)",
        ),
        (
            "select 1",
            [s for s in SAMPLE_SUBREDDITS if s != "rust"],
            "posts: subreddit is one the run asked for failed (figure 129)",
        ),
        (
            "create or replace table posts as "
            "select * replace (cast(score as varchar) as score) from posts",
            SAMPLE_SUBREDDITS,
            "posts: schema failed (figure 1): Data type mismatches: score: bigint -> varchar",
        ),
        (
            "create or replace table subreddit_daily as "
            "select * exclude (distinct_authors) from subreddit_daily",
            SAMPLE_SUBREDDITS,
            "subreddit_daily: schema failed (figure 1): Missing columns: distinct_authors",
        ),
        (
            "delete from comments",
            SAMPLE_SUBREDDITS,
            "comments: row_count failed (figure 0)",
        ),
    ],
    ids=[
        "duplicate-id",
        "missing-id",
        "future-created-at",
        "future-created-utc",
        "unknown-subreddit",
        "score-not-an-integer",
        "missing-column",
        "no-rows",
    ],
)
def test_each_error_check_fails_the_gate_and_names_the_failure(
    models: duckdb.DuckDBPyConnection, damage: str, subreddits: list[str], expected: str
) -> None:
    models.execute(damage)

    lines = _check(models, subreddits=subreddits)

    assert lines, "the gate passed on bad data"
    assert lines[0].startswith("quality gate failed")
    assert any(line == f"- {expected}" for line in lines), "\n".join(lines)


def test_warnings_never_stop_the_load(models: duckdb.DuckDBPyConnection) -> None:
    """Stale data (freshness) and comments of posts outside the window are warnings."""
    report = run_checks(
        duckdb_source(models), subreddits=SAMPLE_SUBREDDITS, now=datetime(2025, 1, 1, tzinfo=UTC)
    )

    assert report.passed
    warned = {(r.dataset, r.check) for r in report.warnings}
    assert ("posts", "newest created_at is recent") in warned
    assert ("processed_comments", "hours since the newest created_utc") in warned


def test_without_a_subreddit_filter_any_subreddit_passes(
    models: duckdb.DuckDBPyConnection,
) -> None:
    assert _check(models, subreddits=[]) == []


def test_an_empty_kind_passes_when_the_extract_found_none_of_it(
    models: duckdb.DuckDBPyConnection,
) -> None:
    models.execute("delete from comments")
    models.execute("delete from processed_comments")

    assert _check(models, kinds_found=["posts"]) == []
    assert "- comments: row_count failed (figure 0)" in _check(models)


def test_a_broken_contract_fails_the_gate_loudly(
    models: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    contract = (settings.PROJECT_DIR / "contracts" / "posts.yml").read_text()
    (tmp_path / "posts.yml").write_text(contract.replace("- duplicate:", "- duplicated:"))

    lines = _check(models, datasets=["posts"], contracts_dir=tmp_path)

    assert any("contract error: posts:" in line and "duplicated" in line for line in lines)


def _copy_to_postgres(con: duckdb.DuckDBPyConnection, dsn: str) -> None:
    types = {"VARCHAR": "text", "DOUBLE": "double precision"}
    with psycopg.connect(dsn) as pg:
        for table in DATASETS:
            described = con.execute(f"describe {table}").fetchall()
            columns = ", ".join(f"{name} {types.get(kind, kind)}" for name, kind, *_ in described)
            pg.execute(f"create table {table} ({columns})")
            with pg.cursor().copy(f"copy {table} from stdin") as copy:
                for row in con.execute(f"select * from {table}").fetchall():
                    copy.write_row(row)


def test_the_contracts_run_on_postgresql_too(
    models: duckdb.DuckDBPyConnection, pg_dsn: str
) -> None:
    _copy_to_postgres(models, pg_dsn)
    source = postgres_source(pg_dsn)

    report = run_checks(source, subreddits=SAMPLE_SUBREDDITS, now=SAMPLE_NOW)
    assert report.passed, report.failure_message()
    assert len(report.rows) == len(run_checks(duckdb_source(models), now=SAMPLE_NOW).rows)

    with psycopg.connect(pg_dsn) as pg:
        pg.execute("insert into posts select * from posts limit 1")
    source.impl.close_connection()
    lines = str(QualityGateFailed(run_checks(source, now=SAMPLE_NOW))).splitlines()
    assert "- posts: id duplicate failed (figure 1)" in lines
    source.impl.close_connection()


def test_check_results_are_kept_in_the_state_store_on_duckdb_and_postgres(
    models: duckdb.DuckDBPyConnection, tmp_path: Path, pg_dsn: str
) -> None:
    report = run_checks(duckdb_source(models), subreddits=SAMPLE_SUBREDDITS, now=SAMPLE_NOW)
    for store in (open_duckdb_state(tmp_path / "state.duckdb"), open_postgres_state(pg_dsn)):
        record_check_results(store, "run-1", report)
        record_check_results(store, "run-1", report)  # a retried stage overwrites its rows
        rows = store.execute(
            "select dataset, check_name, outcome, severity, figure from check_results "
            "where run_id = %s and outcome <> %s order by dataset",
            ("run-1", "passed"),
        ).fetchall()
        total = store.execute("select count(*) from check_results").fetchone()
        store.close()
        assert total == (len(report.rows),)
        assert rows == [
            ("comments", "post_id is present in posts", "warned", "warning", 88.0),
            (
                "processed_comments",
                "link_id is present in processed_posts",
                "warned",
                "warning",
                88.0,
            ),
        ]


def test_a_failed_gate_between_model_and_load_leaves_the_warehouse_unchanged(
    sample_lake: tuple[LocalLake, list[str]], tmp_path: Path
) -> None:
    lake, dts = sample_lake
    modeled = run_models(lake, dts)
    warehouse = tmp_path / "warehouse.duckdb"

    scope = RunScope.of(dts, SAMPLE_SUBREDDITS)

    def check_then_load(keys: dict[str, list[str]]) -> None:
        report = check_task.fn(lake, scope, keys, list(settings.KINDS))
        enforce(report)
        load_duckdb(warehouse, lake, keys, scope)

    # One curated file read twice: its ids repeat in the checked `posts`.
    first = modeled.curated_keys["posts"][0]
    twice = {**modeled.curated_keys, "posts": [*modeled.curated_keys["posts"], first]}
    with pytest.raises(QualityGateFailed, match="posts: id duplicate failed"):
        check_then_load(twice)
    assert not warehouse.exists()

    with lake_source(lake, scope, modeled.curated_keys) as source:
        assert run_checks(source, now=SAMPLE_NOW).passed
    check_then_load(modeled.curated_keys)
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("select count(*) from posts").fetchone() == (600,)
    con.close()


def test_two_checks_of_one_type_on_a_column_are_both_reported_and_kept(
    models: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """A user adds a second `missing` check on `author` (a tolerance in percent); each keeps
    its own row, so the failed one is never recorded as passed."""
    contract = (settings.PROJECT_DIR / "contracts" / "posts.yml").read_text()
    author = "  - name: author\n    data_type: varchar\n"
    assert author in contract
    (tmp_path / "posts.yml").write_text(
        contract.replace(
            author,
            author + "    checks:\n"
            "      - missing:\n"
            "      - missing:\n"
            "          qualifier: under_1_percent\n"
            "          threshold:\n"
            "            metric: percent\n"
            "            must_be_less_than: 1\n",
        )
    )
    models.execute("update posts set author = null where id = (select min(id) from posts)")

    report = run_checks(
        duckdb_source(models),
        subreddits=SAMPLE_SUBREDDITS,
        now=SAMPLE_NOW,
        datasets=["posts"],
        contracts_dir=tmp_path,
    )
    store = open_duckdb_state(tmp_path / "state.duckdb")
    record_check_results(store, "run-1", report)
    stored = store.execute(
        "select check_name, outcome, figure from check_results "
        "where dataset = %s and check_name like %s order by check_name",
        ("posts", "author missing%"),
    ).fetchall()
    store.close()

    assert [(r.check, r.outcome) for r in report.rows if r.check.startswith("author")] == [
        ("author missing", "failed"),
        ("author missing (under_1_percent)", "passed"),
    ]
    assert stored == [
        ("author missing", "failed", 1.0),
        ("author missing (under_1_percent)", "passed", pytest.approx(100 / 600)),
    ]
    assert "- posts: author missing failed (figure 1)" in report.failure_message().splitlines()


def test_several_contract_errors_of_one_dataset_are_all_kept(tmp_path: Path) -> None:
    report = CheckReport(errors=["posts: first problem", "posts: second problem"])
    store = open_duckdb_state(tmp_path / "state.duckdb")
    record_check_results(store, "run-1", report)
    stored = store.execute(
        "select check_name, detail from check_results order by check_name"
    ).fetchall()
    store.close()

    assert stored == [
        ("contract error 1", "posts: first problem"),
        ("contract error 2", "posts: second problem"),
    ]


@pytest.mark.parametrize(
    ("check_type", "column", "name", "qualifier", "label"),
    [
        ("missing", "id", "No missing values", None, "id missing"),
        ("missing", "author", "No missing values", "strict", "author missing (strict)"),
        ("missing", "author", "authors are known", "strict", "authors are known"),
        ("row_count", None, "Row count meets expected threshold", None, "row_count"),
        (
            "failed_rows",
            None,
            "No rows violating the condition",
            "has_title",
            "failed_rows (has_title)",
        ),
    ],
)
def test_a_check_is_labelled_by_its_name_else_its_type_column_and_qualifier(
    check_type: str, column: str | None, name: str, qualifier: str | None, label: str
) -> None:
    assert check_label(check_type, column, name, qualifier) == label


def test_an_empty_mart_fails_the_gate_when_the_extract_found_its_kind(
    sample_lake: tuple[LocalLake, list[str]],
) -> None:
    """The model writes no file for an empty mart; the check still runs its contract, on an
    empty table of the mart's schema."""
    lake, dts = sample_lake
    modeled = run_models(lake, dts)
    keys = {**modeled.curated_keys, "comments": []}
    del keys["subreddit_daily"]

    scope = RunScope.of(dts, SAMPLE_SUBREDDITS)
    report = check_task.fn(lake, scope, keys, list(settings.KINDS))

    assert {row.dataset for row in report.rows} == set(DATASETS)
    lines = report.failure_message().splitlines()
    assert "- comments: row_count failed (figure 0)" in lines
    assert "- subreddit_daily: row_count failed (figure 0)" in lines
    schema = next(r for r in report.rows if r.dataset == "comments" and r.check == "schema")
    assert schema.outcome == "passed"  # the empty table has the mart's columns and types
    with pytest.raises(QualityGateFailed, match="comments: row_count failed"):
        enforce(report)
    # A run that found no comments at all has nothing to complain about in `comments`.
    quiet = check_task.fn(lake, scope, keys, ["posts"])
    assert not [r for r in quiet.failures if r.dataset == "comments"]


def test_importing_the_check_module_turns_soda_telemetry_off_before_soda_loads() -> None:
    """conftest sets the variable for the suite, which would hide a regression: a fresh
    interpreter without it imports tasks.quality.contracts, then soda."""
    script = (
        "import os, sys\n"
        "import tasks.quality.contracts\n"
        "print(os.environ.get('SODA_CORE_TELEMETRY_ENABLED'))\n"
        "print(any(m == 'soda_core' or m.startswith('soda_core.') for m in sys.modules))\n"
        "from soda_core.common.env_config_helper import EnvConfigHelper\n"
        "print(bool(EnvConfigHelper().soda_core_telemetry_enabled))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "SODA_CORE_TELEMETRY_ENABLED"}

    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=settings.PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["false", "False", "False"]


def test_the_checks_see_only_the_rows_of_the_run_scope(
    sample_lake: tuple[LocalLake, list[str]],
) -> None:
    """The sample's days hold five subreddits; a run over r/python checks r/python's rows
    (it used to fail 'subreddit is one the run asked for' on the others)."""
    from tasks.quality.datasets import lake_connection

    lake, dts = sample_lake
    modeled = run_models(lake, dts)
    scope = RunScope.of(dts, ["Python"])
    with lake_connection(lake, scope, modeled.curated_keys) as con:
        for dataset in DATASETS:
            found = con.execute(f"select distinct lower(subreddit) from {dataset}").fetchall()
            assert found == [("python",)], dataset

    report = check_task.fn(lake, scope, modeled.curated_keys, list(settings.KINDS))
    assert report.passed, report.failure_message()
