"""Where the data contracts run: Soda data sources for DuckDB, PostgreSQL, Redshift and Athena,
and the check engine a run uses (`check_engine` in the config).

- duckdb ('auto' with the DuckDB model engine): an in-memory DuckDB over the run's processed
  and curated Parquet.
- athena ('auto' with the Athena model engine): views over the run's scope (days and
  subreddits) of the Glue tables the Athena model step keeps.
- postgres (chosen): the DuckDB relations copied into `check_schema` on the warehouse's
  PostgreSQL, checked there.
- redshift (chosen): tables named like the datasets in `check_schema`, kept there by you.

Secrets never pass through a string of ours that could be logged: Soda's data source is parsed
by Soda from a YAML text that names each secret as `${var.NAME}`, and the secret values go in
as Soda variables, revealed from their SecretStr only in that call.
"""

from __future__ import annotations

import os

# Soda Core sends telemetry on import unless told not to (see tasks/check.py).
os.environ.setdefault("SODA_CORE_TELEMETRY_ENABLED", "false")

import json
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
from pydantic import SecretStr

from tasks import duck
from tasks.config import PipelineConfig
from tasks.lake import Lake, readable_path
from tasks.model import MART_MODELS, register_processed
from tasks.scope import RunScope

DATASETS = ("processed_posts", "processed_comments", "posts", "comments", "subreddit_daily")
# Athena: which Glue table (made by tasks/athena.py) holds each dataset.
ATHENA_TABLES = {
    "processed_posts": "processed_posts",
    "processed_comments": "processed_comments",
    "posts": "curated_posts",
    "comments": "curated_comments",
    "subreddit_daily": "curated_subreddit_daily",
}
DEFAULT_PG_CHECK_SCHEMA = "reddit_check"
COPY_BATCH_ROWS = 50_000


class CheckSourceError(ValueError):
    """A check engine's settings are incomplete or Soda rejects its data source."""


@dataclass(frozen=True)
class CheckSource:
    """Where the contracts run: a Soda data source and the dataset prefix on it (DuckDB
    `main`; PostgreSQL and Redshift `<database>/<schema>`; Athena `<catalog>/<database>`)."""

    impl: Any
    engine: str
    namespace: str
    name: str = "reddit"


OpenSource = Callable[[RunScope, dict[str, list[str]]], AbstractContextManager[CheckSource]]


@dataclass(frozen=True)
class CheckEngine:
    """The check engine of a run: `open(scope, curated_keys)` gives the source for the rows of
    the run's scope (tasks.scope) and nothing else."""

    name: str
    description: str
    open: OpenSource


# -- Soda data sources ------------------------------------------------------------------------


def _load_soda() -> None:
    """Import soda_core before a data source plugin: importing the plugin first makes Soda
    load its plugin entry points from a half-imported module (a circular-import warning)."""
    import soda_core.contracts.contract_verification  # noqa: F401


def data_source_yaml(kind: str, connection: Mapping[str, Any], name: str = "reddit") -> str:
    """A Soda data source file; None values are left out. Secrets belong in it as
    `${var.NAME}` (or `${env.NAME}` for `soda contract verify` by hand), never as values."""
    lines = [f"name: {name}", f"type: {kind}", "connection:"]
    for key, value in connection.items():
        if value is not None:
            lines.append(f"  {key}: {_yaml_scalar(value)}")
    return "\n".join(lines) + "\n"


def _yaml_scalar(value: Any) -> str:
    """Numbers and booleans bare, `${...}` references bare, any other text as a JSON string
    (a valid YAML scalar whatever characters it holds)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) or str(value).startswith("${"):
        return str(value)
    return json.dumps(str(value))


def soda_data_source(yaml_text: str, secrets: Mapping[str, SecretStr | None] | None = None) -> Any:
    """Soda's own parsing and validation of a data source file, with the secrets given as
    variables. A rejected setting gives a one-line error without any input value."""
    _load_soda()
    from pydantic import ValidationError
    from soda_core.common.data_source_impl import DataSourceImpl
    from soda_core.common.yaml import DataSourceYamlSource

    values = {k: v.get_secret_value() for k, v in (secrets or {}).items() if v is not None}
    try:
        impl = DataSourceImpl.from_yaml_source(DataSourceYamlSource.from_str(yaml_text), values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)
        )
        raise CheckSourceError(f"Soda rejected the data source settings: {problems}") from None
    if impl is None:
        raise CheckSourceError("Soda read an empty data source file")
    return impl


def duckdb_source(con: duckdb.DuckDBPyConnection, name: str = "reddit") -> CheckSource:
    """The contracts over tables (or views) in an open DuckDB connection, e.g. the one
    tasks.model.build_models filled."""
    _load_soda()
    from soda_duckdb.common.data_sources.duckdb_data_source import DuckDBDataSourceImpl

    return CheckSource(DuckDBDataSourceImpl.from_existing_cursor(con, name), "duckdb", "main", name)


def postgres_source(target: str | Any, schema: str = "public", name: str = "reddit") -> CheckSource:
    """The contracts over tables in a PostgreSQL schema; `target` is a libpq DSN or URL, or a
    blocks.warehouse.PostgresWarehouse."""
    from blocks.warehouse import PostgresWarehouse

    block = PostgresWarehouse.from_dsn(target) if isinstance(target, str) else target
    connection = {
        "host": block.host,
        "port": block.port,
        "database": block.database,
        "user": block.user,
        # Soda's model insists on a password; an empty one suits trust/peer auth.
        "password": "${var.POSTGRES_PASSWORD}",
        "sslmode": block.sslmode,
    }
    impl = soda_data_source(
        data_source_yaml("postgres", connection, name),
        {"POSTGRES_PASSWORD": block.password or SecretStr(os.environ.get("PGPASSWORD", ""))},
    )
    return CheckSource(impl, "postgres", f"{block.database}/{schema}", name)


def redshift_source(
    block: Any, schema: str, name: str = "reddit", redshift_client: Any = None
) -> CheckSource:
    """The contracts over tables in a Redshift schema, from a blocks.warehouse.RedshiftWarehouse.
    With IAM auth the block's user gets temporary database credentials from
    `redshift:GetClusterCredentials` (`redshift_client`: a boto3 Redshift client), as
    redshift_connector does for the load."""
    password: SecretStr | None = block.password
    user = block.user
    if block.iam:
        if redshift_client is None or not block.cluster_identifier:
            raise CheckSourceError(
                f"{block.describe()}: IAM auth needs cluster_identifier and AWS credentials"
            )
        issued = redshift_client.get_cluster_credentials(
            DbUser=block.user,
            DbName=block.database,
            ClusterIdentifier=block.cluster_identifier,
            AutoCreate=False,
        )
        user, password = issued["DbUser"], SecretStr(issued["DbPassword"])
    if password is None:
        raise CheckSourceError(f"{block.describe()}: set a password or iam=True")
    connection = {
        "host": block.host,
        "port": block.port,
        "database": block.database,
        "user": user,
        "password": "${var.REDSHIFT_PASSWORD}",
    }
    impl = soda_data_source(
        data_source_yaml("redshift", connection, name), {"REDSHIFT_PASSWORD": password}
    )
    return CheckSource(impl, "redshift", f"{block.database}/{schema}", name)


def athena_source(
    engine: Any, database: str, credentials: Any = None, name: str = "reddit"
) -> CheckSource:
    """The contracts over tables or views in an Athena (Glue) database, from a
    blocks.warehouse.AthenaEngine and a prefect-aws AwsCredentials (None, or one without
    keys: the default AWS chain, e.g. the task's role)."""
    key_id = getattr(credentials, "aws_access_key_id", None)
    secret = getattr(credentials, "aws_secret_access_key", None)
    token = getattr(credentials, "aws_session_token", None)
    connection = {
        "region_name": engine.region,
        "staging_dir": engine.output_location,
        "work_group": engine.workgroup,
        "catalog": "awsdatacatalog",
        "profile_name": getattr(credentials, "profile_name", None),
        "access_key_id": key_id,
        "secret_access_key": "${var.AWS_SECRET_ACCESS_KEY}" if secret else None,
        "session_token": "${var.AWS_SESSION_TOKEN}" if token else None,
    }
    impl = soda_data_source(
        data_source_yaml("athena", connection, name),
        {
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_SESSION_TOKEN": SecretStr(token) if isinstance(token, str) else token,
        },
    )
    return CheckSource(impl, "athena", f"awsdatacatalog/{database}", name)


# -- the run's data on each engine -----------------------------------------------------------


@contextmanager
def lake_connection(
    lake: Lake, scope: RunScope, curated_keys: Mapping[str, Sequence[str]]
) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB holding the run's five relations, each restricted to the run's
    scope: processed Parquet of its days (the files the model read) and the curated Parquet
    the model wrote, both only for its subreddits (the files hold every subreddit of a day).
    Works whichever engine produced the files, since it reads only the lake."""
    con = duck.connect()
    try:
        register_processed(con, lake, list(scope.days), scope=scope)
        with tempfile.TemporaryDirectory(prefix="reddit-check-") as tmp:
            for model in MART_MODELS:
                keys = curated_keys.get(model) or []
                if not keys:
                    # The model wrote no file for an empty mart: check an empty table of
                    # the mart's schema, so `row_count` fails when the extract found data.
                    con.execute(f"create or replace table {model} ({_empty_columns(model)})")
                    continue
                paths = [str(readable_path(lake, key, Path(tmp))) for key in keys]
                con.execute(
                    f"create or replace table {model} as select * exclude (dt) from "
                    f"read_parquet({duck.path_list(paths)}, hive_partitioning = true) "
                    f"where {scope.subreddit_sql()}"
                )
        yield con
    finally:
        con.close()


@contextmanager
def lake_source(
    lake: Lake, scope: RunScope, curated_keys: Mapping[str, Sequence[str]]
) -> Iterator[CheckSource]:
    """The contracts on DuckDB over the run's scope of the lake (see lake_connection)."""
    with lake_connection(lake, scope, curated_keys) as con:
        yield duckdb_source(con)


def _empty_columns(model: str) -> str:
    """The mart's columns with their DuckDB types, as the models build them."""
    from tasks.dialects import model_schemas

    return ", ".join(f'"{name}" {kind}' for name, kind in model_schemas()[model].items())


# DuckDB types -> PostgreSQL column types for the copied relations (others are spelled alike).
PG_TYPES = {"VARCHAR": "text", "DOUBLE": "double precision", "FLOAT": "real"}


def copy_to_postgres(con: duckdb.DuckDBPyConnection, pg: Any, schema: str) -> None:
    """Replace `schema` with the five relations of a DuckDB connection, streamed through
    COPY in batches (memory does not grow with the run). One transaction: a failed copy
    leaves the previous run's tables."""
    with pg.transaction(), pg.cursor() as cur:
        cur.execute(f"drop schema if exists {schema} cascade")
        cur.execute(f"create schema {schema}")
        for table in DATASETS:
            described = con.execute(f"describe {table}").fetchall()
            columns = [(str(row[0]), str(row[1])) for row in described]
            ddl = ", ".join(f'"{n}" {PG_TYPES.get(t, t.lower())}' for n, t in columns)
            cur.execute(f"create table {schema}.{table} ({ddl})")
            names = ", ".join(f'"{n}"' for n, _ in columns)
            reader = con.sql(f"select * from {table}").to_arrow_reader(COPY_BATCH_ROWS)
            with cur.copy(f"copy {schema}.{table} ({names}) from stdin (format csv)") as copy:
                for batch in reader:
                    buffer = pa.BufferOutputStream()
                    options = pacsv.WriteOptions(include_header=False)
                    pacsv.write_csv(pa.Table.from_batches([batch]), buffer, options)
                    copy.write(buffer.getvalue().to_pybytes())


@contextmanager
def postgres_copy_source(
    lake: Lake,
    scope: RunScope,
    curated_keys: Mapping[str, Sequence[str]],
    block: Any,
    schema: str,
) -> Iterator[CheckSource]:
    """The run's relations, as lake_connection builds them (the scope's rows only), copied
    into `schema` on the warehouse PostgreSQL, where Soda's PostgreSQL data source checks them."""
    with lake_connection(lake, scope, curated_keys) as con, block.connect() as pg:
        copy_to_postgres(con, pg, schema)
    source = postgres_source(block, schema)
    try:
        yield source
    finally:
        source.impl.close_connection()


def athena_view_sql(database: str, check_database: str, scope: RunScope) -> list[str]:
    """The statements that point `check_database`'s five views at the run's scope of the
    Athena model's tables: its days, and its subreddits (the tables hold every subreddit of a
    day). The views drop `dt`, as the DuckDB relations do."""
    from tasks.dialects import model_schemas

    schemas = model_schemas()
    days = ", ".join(f"'{dt}'" for dt in scope.days) or "NULL"
    statements = [f"CREATE DATABASE IF NOT EXISTS `{check_database}`"]
    for dataset, table in ATHENA_TABLES.items():
        columns = ", ".join(f'"{name}"' for name in schemas[dataset])
        statements.append(
            f'CREATE OR REPLACE VIEW "{check_database}"."{dataset}" AS SELECT {columns} '
            f'FROM "{database}"."{table}" WHERE dt IN ({days}) AND {scope.subreddit_sql()}'
        )
    return statements


# -- choosing the engine ----------------------------------------------------------------------


def resolve_check_engine(config: PipelineConfig) -> str:
    """'auto': Athena when the models ran there, else DuckDB over the lake."""
    if config.check_engine != "auto":
        return config.check_engine
    return "athena" if config.model_engine == "athena" else "duckdb"


def build_check_engine(config: PipelineConfig, lake: Lake) -> CheckEngine:
    """The run's check engine; a missing setting fails here, before anything is extracted."""
    name = resolve_check_engine(config)
    if name == "duckdb":

        def open_lake(scope: RunScope, keys: dict[str, list[str]]) -> Any:
            return lake_source(lake, scope, keys)

        return CheckEngine(name, "DuckDB over the lake's Parquet", open_lake)
    if name == "postgres":
        return _postgres_engine(config, lake)
    if name == "redshift":
        return _redshift_engine(config)
    return _athena_engine(config)


def _postgres_engine(config: PipelineConfig, lake: Lake) -> CheckEngine:
    from blocks.warehouse import PostgresWarehouse
    from tasks.engines import _postgres_block

    block = _postgres_block(config, PostgresWarehouse)
    schema = config.check_schema or DEFAULT_PG_CHECK_SCHEMA
    if schema == block.db_schema:
        raise CheckSourceError(
            f"check_schema {schema!r} is the warehouse's own schema: the check step replaces "
            "its tables on every run; name another schema"
        )

    def open_postgres(scope: RunScope, keys: dict[str, list[str]]) -> Any:
        return postgres_copy_source(lake, scope, keys, block, schema)

    return CheckEngine("postgres", f"{block.describe()} schema {schema}", open_postgres)


def _redshift_engine(config: PipelineConfig) -> CheckEngine:
    from blocks.warehouse import RedshiftWarehouse

    if not config.warehouse_block or not config.check_schema:
        raise CheckSourceError(
            "check_engine 'redshift' needs warehouse_block (a RedshiftWarehouse block) and "
            "check_schema, the schema holding tables named like the datasets"
        )
    block = RedshiftWarehouse.load(config.warehouse_block)
    schema = config.check_schema
    client = None
    if block.iam:
        from tasks.engines import aws_credentials

        client = aws_credentials(config).get_client("redshift")

    @contextmanager
    def open_redshift(scope: RunScope, keys: dict[str, list[str]]) -> Iterator[CheckSource]:
        source = redshift_source(block, schema, redshift_client=client)
        try:
            yield source
        finally:
            source.impl.close_connection()

    return CheckEngine("redshift", f"{block.describe()} schema {schema}", open_redshift)


def _athena_engine(config: PipelineConfig) -> CheckEngine:
    from blocks.warehouse import AthenaEngine
    from tasks.athena import AthenaRunner
    from tasks.engines import aws_credentials

    if not config.athena_block:
        raise CheckSourceError("check_engine 'athena' needs athena_block, an AthenaEngine block")
    engine = AthenaEngine.load(config.athena_block)
    credentials = aws_credentials(config)
    check_database = config.check_schema or f"{engine.database}_check"
    runner = AthenaRunner.for_engine(engine, engine.athena_client(credentials))

    @contextmanager
    def open_athena(scope: RunScope, keys: dict[str, list[str]]) -> Iterator[CheckSource]:
        for statement in athena_view_sql(engine.database, check_database, scope):
            runner.run(statement)
        source = athena_source(engine, check_database, credentials)
        try:
            yield source
        finally:
            source.impl.close_connection()

    return CheckEngine("athena", f"Athena views in {check_database}", open_athena)
