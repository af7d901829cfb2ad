"""The check engines: the real contracts on this machine's PostgreSQL through Soda's
PostgreSQL data source, and the Redshift and Athena data sources built and validated by Soda's
own parsing (neither service can be reached from here: no query runs on them)."""

from __future__ import annotations

import boto3
import psycopg
import pyarrow.parquet as pq
import pytest
import sqlglot
from aws_fixtures import CREDENTIALS, REGION
from helpers import SAMPLE_SUBREDDITS
from pydantic import SecretStr, ValidationError

from blocks.warehouse import AthenaEngine, RedshiftWarehouse
from flows.cli import parse_config
from tasks import settings
from tasks.config import PipelineConfig
from tasks.core.scope import RunScope
from tasks.lake.local import LocalLake
from tasks.model.duckdb_engine import run_models
from tasks.quality.contracts import QualityGateFailed, check_task, enforce, run_checks
from tasks.quality.datasets import athena_view_sql
from tasks.quality.sources import (
    CheckSourceError,
    athena_source,
    data_source_yaml,
    redshift_source,
    soda_data_source,
)
from tasks.run.engines import build_check_engine, resolve_check_engine

PASSWORD = "pw-Never-Logged-123"


def _redshift_block(**overrides: object) -> RedshiftWarehouse:
    values: dict[str, object] = {
        "host": "example.abc123.us-east-1.redshift.amazonaws.com",
        "database": "dev",
        "user": "loader",
        "password": SecretStr(PASSWORD),
        "copy_iam_role": "arn:aws:iam::123456789012:role/copy",
        **overrides,
    }
    return RedshiftWarehouse(**values)  # type: ignore[arg-type]


def test_the_postgres_check_engine_runs_the_contracts_on_postgresql_and_catches_a_failure(
    sample_lake: tuple[LocalLake, list[str]],
    pg_dsn: str,
) -> None:
    lake, dts = sample_lake
    modeled = run_models(lake, dts)
    config = PipelineConfig(
        check_engine="postgres", warehouse="postgres", warehouse_dsn=pg_dsn, lake_dir=lake.root
    )
    engine = build_check_engine(config, lake)
    assert engine.name == "postgres"

    scope = RunScope.of(dts, SAMPLE_SUBREDDITS)
    report = check_task.fn(lake, scope, modeled.curated_keys, list(settings.KINDS), engine=engine)
    assert report.passed, report.failure_message()
    assert {r.dataset for r in report.rows} == {
        "processed_posts",
        "processed_comments",
        "posts",
        "comments",
        "subreddit_daily",
    }
    with psycopg.connect(pg_dsn) as pg:
        assert pg.execute("select count(*) from reddit_check.posts").fetchone() == (600,)
        assert pg.execute("select current_schemas(false)").fetchone() == (["public"],)

    # One curated file read twice: each of its ids appears twice in the checked `posts`.
    first = modeled.curated_keys["posts"][0]
    twice = {**modeled.curated_keys, "posts": [*modeled.curated_keys["posts"], first]}
    repeated = pq.read_metadata(lake.local_path(first)).num_rows
    report = check_task.fn(lake, scope, twice, list(settings.KINDS), engine=engine)
    with pytest.raises(QualityGateFailed) as failure:
        enforce(report)
    assert f"- posts: id duplicate failed (figure {repeated})" in str(failure.value).splitlines()
    with psycopg.connect(pg_dsn) as pg:  # the schema was replaced, not appended to
        assert pg.execute("select count(*) from reddit_check.posts").fetchone() == (600 + repeated,)


def test_the_postgres_check_engine_refuses_the_warehouse_schema(tmp_path: object) -> None:
    config = PipelineConfig(
        check_engine="postgres",
        check_schema=settings.WAREHOUSE_SCHEMA,
        warehouse="postgres",
        warehouse_dsn="postgresql://postgres@127.0.0.1:5432/postgres",
    )
    with pytest.raises(CheckSourceError, match="warehouse's own schema"):
        build_check_engine(config, LocalLake(config.lake_dir))


def test_soda_builds_the_redshift_source_without_revealing_the_password() -> None:
    source = redshift_source(_redshift_block(), "reddit_check")

    model = source.impl.data_source_model
    assert type(source.impl).__name__ == "RedshiftDataSourceImpl"
    assert type(model.connection_properties).__name__ == "RedshiftUserPassConnection"
    assert model.connection_properties.password.get_secret_value() == PASSWORD
    assert PASSWORD not in repr(model) and PASSWORD not in str(model.model_dump())
    assert source.namespace == "dev/reddit_check"
    assert (
        source.impl.sql_dialect.qualify_dataset_name(["dev", "reddit_check"], "posts")
        == '"dev"."reddit_check"."posts"'
    )


def test_an_unreachable_redshift_fails_the_gate_without_the_password() -> None:
    """Nothing listens on port 1: Soda reports a contract error, which blocks the load."""
    source = redshift_source(_redshift_block(host="127.0.0.1", port=1), "reddit_check")

    report = run_checks(source, datasets=["posts"])

    assert not report.passed and "Could not connect" in report.errors[0]
    assert PASSWORD not in report.failure_message()


def test_redshift_iam_auth_gets_temporary_credentials(moto_server: str) -> None:
    client = boto3.client("redshift", endpoint_url=moto_server, region_name=REGION, **CREDENTIALS)
    client.create_cluster(
        ClusterIdentifier="reddit",
        NodeType="ra3.xlplus",
        MasterUsername="admin",
        MasterUserPassword="Adm1nPassw0rd",
    )
    block = _redshift_block(password=None, iam=True, cluster_identifier="reddit", region=REGION)

    source = redshift_source(block, "reddit_check", redshift_client=client)

    connection = source.impl.data_source_model.connection_properties
    assert connection.user == "IAM:loader"
    assert len(connection.password.get_secret_value()) >= 16
    with pytest.raises(CheckSourceError, match="set a password or iam=True"):
        redshift_source(_redshift_block(password=None), "reddit_check")


def test_soda_rejects_bad_settings_in_one_line_without_the_secret() -> None:
    text = data_source_yaml(
        "redshift",
        {"host": "h", "port": 70000, "database": "dev", "user": "u", "password": "${var.PW}"},
    )
    with pytest.raises(CheckSourceError) as failure:
        soda_data_source(text, {"PW": SecretStr(PASSWORD)})

    message = str(failure.value)
    assert "port" in message and "\n" not in message
    assert PASSWORD not in message


def test_soda_builds_the_athena_source_from_the_block_and_aws_credentials() -> None:
    from prefect_aws import AwsCredentials

    engine = AthenaEngine(
        region="eu-west-1",
        workgroup="reddit",
        database="reddit",
        output_location="s3://bucket/athena-results",
        lake_uri="s3://bucket",
    )
    keys = AwsCredentials(aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key=PASSWORD)

    source = athena_source(engine, "reddit_check", keys)

    connection = source.impl.data_source_model.connection_properties
    assert type(source.impl).__name__ == "AthenaDataSourceImpl"
    assert (connection.region_name, connection.work_group, connection.staging_dir) == (
        "eu-west-1",
        "reddit",
        "s3://bucket/athena-results",
    )
    assert connection.access_key_id == "AKIAEXAMPLE"
    assert connection.secret_access_key.get_secret_value() == PASSWORD
    assert PASSWORD not in repr(source.impl.data_source_model)
    assert source.namespace == "awsdatacatalog/reddit_check"
    assert (
        source.impl.sql_dialect.qualify_dataset_name(["awsdatacatalog", "reddit_check"], "posts")
        == '"awsdatacatalog"."reddit_check"."posts"'
    )
    # No keys: the default AWS chain (the task's role); Soda's model leaves both empty.
    chain = athena_source(engine, "reddit_check", None).impl.data_source_model
    assert chain.connection_properties.access_key_id is None
    # A key id without its secret is a mistake Soda's own validation catches.
    with pytest.raises(CheckSourceError, match="provided together"):
        athena_source(engine, "reddit_check", AwsCredentials(aws_access_key_id="AKIAEXAMPLE"))


def test_the_athena_views_narrow_the_model_tables_to_the_run_scope() -> None:
    scope = RunScope.of(["2024-03-02", "2024-03-01"], ["Rust", "python"])
    statements = athena_view_sql("reddit", "reddit_check", scope)

    assert statements[0] == "CREATE DATABASE IF NOT EXISTS `reddit_check`"
    views = {}
    for statement in statements[1:]:
        tree = sqlglot.parse_one(statement, read="athena")
        select = tree.expression
        views[tree.this.name] = (
            select.args["from_"].this.sql("athena") if "from_" in select.args else None,
            select.args["where"].sql("athena"),
        )
    assert views["posts"] == (
        '"reddit"."curated_posts"',
        "WHERE dt IN ('2024-03-01', '2024-03-02') AND LOWER(subreddit) IN ('python', 'rust')",
    )
    assert views["processed_comments"][0] == '"reddit"."processed_comments"'
    assert set(views) == {
        "processed_posts",
        "processed_comments",
        "posts",
        "comments",
        "subreddit_daily",
    }


@pytest.mark.parametrize(
    ("settings_", "engine"),
    [
        ({}, "duckdb"),
        (
            {
                "model_engine": "athena",
                "lake": "s3",
                "s3_bucket_block": "lake",
                "athena_block": "athena",
            },
            "athena",
        ),
        (
            {
                "model_engine": "athena",
                "check_engine": "duckdb",
                "lake": "s3",
                "s3_bucket_block": "lake",
                "athena_block": "athena",
            },
            "duckdb",
        ),
        ({"check_engine": "postgres"}, "postgres"),
        ({"check_engine": "redshift", "check_schema": "reddit_check"}, "redshift"),
    ],
)
def test_auto_checks_on_athena_when_the_models_ran_there_else_on_duckdb(
    settings_: dict[str, str], engine: str
) -> None:
    assert resolve_check_engine(PipelineConfig(**settings_)) == engine


def test_check_engine_settings_are_validated() -> None:
    with pytest.raises(ValidationError, match="needs model_engine 'athena'"):
        PipelineConfig(check_engine="athena")
    with pytest.raises(ValidationError, match="lower-case SQL identifier"):
        PipelineConfig(check_schema="Robert'); drop")
    with pytest.raises(CheckSourceError, match="needs warehouse_block"):
        build_check_engine(PipelineConfig(check_engine="redshift"), LocalLake(settings.LOCAL_DIR))
    config = parse_config(["--check-engine", "postgres", "--check-schema", "quality"])
    assert (config.check_engine, config.check_schema) == ("postgres", "quality")
