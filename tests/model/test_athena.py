"""The Athena engine against a moto server: real boto3 calls, moto's documented state manager
and canned results (moto never runs SQL), and every generated statement parsed back by sqlglot
in the athena dialect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import moto_athena_fixtures
import pytest
import sqlglot
from botocore.stub import Stubber
from moto_athena_fixtures import fail_execution, hold_queries, queue_results
from sqlglot import exp

from blocks.warehouse import AthenaEngine
from tasks.lake.local import LocalLake
from tasks.model.athena import (
    AthenaQueryError,
    AthenaRunner,
    curated_table_ddl,
    database_ddl,
    ensure_tables,
    mart_insert_sql,
    processed_table_ddl,
    run_models_athena,
)
from tasks.model.duckdb_engine import MART_MODELS

OUTPUT = "s3://athena-results/reddit/"
# The server and client fixtures, shared by name (tests/aws_fixtures.py is another module's).
moto_endpoint = moto_athena_fixtures.moto_endpoint
athena_client = moto_athena_fixtures.athena_client


def _runner(client: Any, **kwargs: Any) -> AthenaRunner:
    return AthenaRunner(client, "primary", "reddit", OUTPUT, **kwargs)


def _state(client: Any, execution_id: str) -> str:
    return client.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]["Status"][
        "State"
    ]


def test_polls_with_growing_delays_until_succeeded(athena_client: Any, moto_endpoint: str) -> None:
    hold_queries(moto_endpoint, describes=2)  # each state lasts two describes
    sleeps: list[float] = []
    runner = _runner(athena_client, sleep=sleeps.append, first_delay=0.1, max_delay=0.3)

    execution = runner.run("SELECT 1")

    assert execution["Status"]["State"] == "SUCCEEDED"
    assert execution["QueryExecutionContext"] == {"Database": "reddit"}
    assert sleeps == [0.1, 0.2, 0.3]  # doubling, capped at max_delay


def test_a_failed_query_raises_with_its_state_and_query(athena_client: Any) -> None:
    runner = _runner(athena_client, sleep=lambda _: None)
    execution_id = runner.start("SELECT * FROM missing_table")
    fail_execution(execution_id)

    with pytest.raises(AthenaQueryError, match=r"FAILED: .*SELECT \* FROM missing_table"):
        runner.wait(execution_id)


def test_the_error_carries_athenas_state_change_reason() -> None:
    import boto3

    client = boto3.client(
        "athena", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    reason = "TABLE_NOT_FOUND: line 1:15: Table 'awsdatacatalog.reddit.nope' does not exist"
    with Stubber(client) as stub:
        stub.add_response(
            "get_query_execution",
            {
                "QueryExecution": {
                    "Query": "SELECT 1 FROM nope",
                    "Status": {"State": "FAILED", "StateChangeReason": reason},
                }
            },
            {"QueryExecutionId": "q1"},
        )
        with pytest.raises(AthenaQueryError, match="TABLE_NOT_FOUND"):
            _runner(client).wait("q1")


def test_a_query_past_its_timeout_is_stopped(athena_client: Any, moto_endpoint: str) -> None:
    hold_queries(moto_endpoint, describes=10_000)
    runner = _runner(athena_client, timeout=0.3, first_delay=0.05)
    execution_id = runner.start("SELECT 1")

    with pytest.raises(TimeoutError, match="stopped it"):
        runner.wait(execution_id)
    assert _state(athena_client, execution_id) == "CANCELLED"


def test_an_interrupted_wait_stops_the_query(athena_client: Any, moto_endpoint: str) -> None:
    hold_queries(moto_endpoint, describes=10_000)

    def interrupt(_: float) -> None:
        raise KeyboardInterrupt

    runner = _runner(athena_client, sleep=interrupt)
    execution_id = runner.start("SELECT 1")
    with pytest.raises(KeyboardInterrupt):
        runner.wait(execution_id)
    assert _state(athena_client, execution_id) == "CANCELLED"


def test_a_cancelled_query_raises(athena_client: Any) -> None:
    runner = _runner(athena_client)
    execution_id = runner.start("SELECT 1")
    athena_client.stop_query_execution(QueryExecutionId=execution_id)
    with pytest.raises(AthenaQueryError, match="CANCELLED"):
        runner.wait(execution_id)


def test_generated_ddl_and_inserts_parse_as_athena() -> None:
    for kind in ("posts", "comments"):
        tree = sqlglot.parse_one(processed_table_ddl(kind, "s3://lake"), read="athena")
        assert isinstance(tree, exp.Create)
        assert "projection.dt.type" in tree.sql("athena")
    for model in MART_MODELS:
        assert isinstance(
            sqlglot.parse_one(curated_table_ddl(model, "s3://lake"), read="athena"), exp.Create
        )
        insert = sqlglot.parse_one(
            mart_insert_sql(model, ["2024-03-01", "2024-03-02"]), read="athena"
        )
        assert isinstance(insert, exp.Insert)
        text = insert.sql("athena").upper()
        assert "EXCEPT (" not in text and "PERCENTILE_CONT" not in text
        assert "DT IN ('2024-03-01', '2024-03-02')" in text


def test_run_models_rebuilds_the_days_and_lists_curated_keys(
    athena_client: Any, moto_endpoint: str, tmp_path: Path
) -> None:
    lake = LocalLake(tmp_path / "lake")
    stale = "curated/reddit/posts/dt=2024-03-01/20240301_old_file"
    lake.put_bytes(stale, b"old")
    # the database, 2 processed + 3 curated DDL, 3 INSERTs, then the count (header row first).
    queue_results(
        moto_endpoint,
        [[]] * 9
        + [[["_col0", "_col1"], ["posts", "3"], ["comments", "5"], ["subreddit_daily", "1"]]],
    )
    runner = _runner(athena_client, sleep=lambda _: None)

    result = run_models_athena(runner, lake, "s3://lake", ["2024-03-01"])

    assert result.rows == {"posts": 3, "comments": 5, "subreddit_daily": 1}
    assert lake.list_keys("curated/") == []  # the stale file was deleted before the INSERT
    assert result.curated_keys == {m: [] for m in MART_MODELS}  # moto writes nothing
    assert len(runner.executed) == 10
    executed = athena_client.list_query_executions(WorkGroup="primary")["QueryExecutionIds"]
    assert len(executed) == 10
    for statement in runner.executed:
        sqlglot.parse_one(statement, read="athena")
    inserts = [s for s in runner.executed if s.startswith("INSERT INTO")]
    assert [s.split()[2] for s in inserts] == [f"curated_{m}" for m in MART_MODELS]


def test_the_glue_database_is_created_first_outside_any_database_context(
    athena_client: Any, tmp_path: Path
) -> None:
    """A fresh account has no `reddit` database: the first statement creates it, and must not
    name it as its context (Athena would fail the query with SCHEMA_NOT_FOUND)."""
    runner = _runner(athena_client, sleep=lambda _: None)
    ensure_tables(runner, "s3://lake")

    assert runner.executed[0] == "CREATE DATABASE IF NOT EXISTS `reddit`"
    assert all(s.startswith("CREATE EXTERNAL TABLE") for s in runner.executed[1:])
    assert isinstance(sqlglot.parse_one(runner.executed[0], read="athena"), exp.Create)
    ids = athena_client.list_query_executions(WorkGroup="primary")["QueryExecutionIds"]
    contexts = {
        athena_client.get_query_execution(QueryExecutionId=i)["QueryExecution"]["Query"]: (
            athena_client.get_query_execution(QueryExecutionId=i)["QueryExecution"].get(
                "QueryExecutionContext"
            )
        )
        for i in ids
    }
    assert not contexts[runner.executed[0]]
    assert all(contexts[s] == {"Database": "reddit"} for s in runner.executed[1:])


def test_a_database_name_that_is_not_an_identifier_is_refused() -> None:
    with pytest.raises(ValueError, match="lower-case identifier"):
        database_ddl("reddit`; DROP DATABASE x; --")
    with pytest.raises(ValueError, match="lower-case SQL identifier"):
        AthenaEngine(output_location=OUTPUT, database="Reddit-Prod")


def test_the_tables_point_at_the_runs_lake_whatever_the_block_says() -> None:
    derived = AthenaEngine(output_location=OUTPUT)
    assert derived.tables_uri("s3://acme-lake/prod/") == "s3://acme-lake/prod"
    same = AthenaEngine(output_location=OUTPUT, lake_uri="s3://acme-lake/prod/")
    assert same.tables_uri("s3://acme-lake/prod") == "s3://acme-lake/prod"
    other = AthenaEngine(output_location=OUTPUT, lake_uri="s3://old-lake/prod")
    with pytest.raises(ValueError, match="not the run's lake s3://acme-lake/prod: clear lake_uri"):
        other.tables_uri("s3://acme-lake/prod")


def test_the_athena_client_uses_the_blocks_region_else_the_credentials() -> None:
    from prefect_aws import AwsCredentials
    from pydantic import SecretStr

    credentials = AwsCredentials(
        aws_access_key_id="x", aws_secret_access_key=SecretStr("x"), region_name="us-east-1"
    )
    assert AthenaEngine(output_location=OUTPUT).athena_client(credentials).meta.region_name == (
        "us-east-1"
    )
    client = AthenaEngine(output_location=OUTPUT, region="eu-west-1").athena_client(credentials)
    assert client.meta.region_name == "eu-west-1"
    assert client.meta.service_model.service_name == "athena"
