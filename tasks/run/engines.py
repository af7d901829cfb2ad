"""Which lake, process engine, model engine, warehouse, check engine and state store a run
uses, from its config.

The flow calls the same steps whatever they are; only this module knows that the local
defaults are a folder, DuckDB files and DuckDB over the lake, and that production may be S3,
Glue, Athena, Redshift and PostgreSQL. It reads blocks and credentials, which is why no stage
imports it: a stage is handed what it works on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tasks import settings
from tasks.config import PipelineConfig
from tasks.core import RunScope
from tasks.lake import Lake, LocalLake
from tasks.load import LoadResult, held_in_duckdb, load_task
from tasks.model import ModelResult, model_task
from tasks.process import ProcessResult, process_task, restore_missing_processed
from tasks.quality import (
    DEFAULT_PG_CHECK_SCHEMA,
    CheckEngine,
    CheckSource,
    CheckSourceError,
    athena_source,
    athena_view_sql,
    lake_source,
    postgres_copy_source,
    redshift_source,
)
from tasks.run.context import run_logger
from tasks.state import StateStore, open_duckdb_state, open_pooled_state

ProcessStep = Callable[[str, list[str]], ProcessResult]
ModelStep = Callable[[RunScope], ModelResult]
LoadStep = Callable[[dict[str, list[str]], str, RunScope], LoadResult]
# Which of the given fullnames a warehouse table (posts, comments) holds.
HeldStep = Callable[[str, Sequence[str]], set[str]]


@dataclass(frozen=True)
class Warehouse:
    """The load step, and what identifies the warehouse it loads: `destination` (kind and
    location, never a secret) keys the watermarks in the state store, since a watermark says
    what one warehouse holds; `held` asks the warehouse which items it has."""

    load: LoadStep
    description: str
    destination: str
    held: HeldStep


@dataclass
class Engines:
    lake: Lake
    process: ProcessStep
    model: ModelStep
    load: LoadStep
    description: dict[str, str]
    # The DuckDB engine processes each chunk while staging it (its JSON is parsed there
    # anyway); then `process` is only for reprocessing the raw layer.
    process_while_staging: bool = False
    # Where the data contracts run (None: DuckDB over the lake).
    check: CheckEngine | None = None
    # The warehouse's identity and its item lookup (see Warehouse); the default names no
    # warehouse and holds nothing, so a run with it starts from no watermark.
    destination: str = ""
    held: HeldStep = field(default=lambda table, fullnames: set())


def aws_credentials(config: PipelineConfig) -> Any:
    """A prefect-aws AwsCredentials: the named block, or the default chain (environment,
    instance or task role) when none is named."""
    from prefect_aws import AwsCredentials

    if config.aws_credentials_block:
        return AwsCredentials.load(config.aws_credentials_block)
    return AwsCredentials()


def build_lake(config: PipelineConfig) -> tuple[Lake, str | None]:
    """The lake and, for S3, its s3:// URI (cloud engines address files by URI)."""
    if config.lake == "local":
        return LocalLake(config.lake_dir), None
    from tasks.lake import S3Lake, S3LakeSettings

    if not config.s3_bucket_block:
        raise ValueError("lake 's3' needs s3_bucket_block, the name of a prefect-aws S3Bucket")
    from prefect_aws.s3 import S3Bucket

    lake_settings = S3LakeSettings(sse=config.s3_encryption, kms_key_id=config.s3_kms_key_id)
    lake = S3Lake.from_block(S3Bucket.load(config.s3_bucket_block), lake_settings)
    return lake, lake.root_uri


def build_engines(config: PipelineConfig) -> Engines:
    lake, lake_uri = build_lake(config)
    description = {"lake": lake.describe(""), "process": config.process_engine}

    def process_duckdb(kind: str, keys: list[str]) -> ProcessResult:
        return process_task(lake, kind, keys)

    process: ProcessStep = process_duckdb
    if config.process_engine == "glue":
        process = _glue_process(config, lake, lake_uri)

    def model_duckdb(scope: RunScope) -> ModelResult:
        return model_task(lake, scope)

    model: ModelStep = model_duckdb
    description["model"] = config.model_engine
    if config.model_engine == "athena":
        model = _athena_model(config, lake, lake_uri)
    model = _complete_days_first(lake, process, model)

    warehouse = build_warehouse(config, lake, lake_uri)
    description["warehouse"] = warehouse.description
    check = build_check_engine(config, lake)
    description["check"] = check.description
    return Engines(
        lake,
        process,
        model,
        warehouse.load,
        description,
        config.process_engine == "duckdb",
        check,
        warehouse.destination,
        warehouse.held,
    )


def _complete_days_first(lake: Lake, process: ProcessStep, model: ModelStep) -> ModelStep:
    """The model step, after the touched days' expired processed files are made again from
    raw (tasks.process.complete_days): a day's marts are never built from part of its data."""

    def model_complete(scope: RunScope) -> ModelResult:
        restored = restore_missing_processed(lake, list(scope.days), process)
        if restored:
            run_logger().warning(
                "Reprocessed raw files whose processed files had expired: %s",
                ", ".join(f"{kind} {n}" for kind, n in restored.items()),
            )
        return model(scope)

    return model_complete


def _glue_process(config: PipelineConfig, lake: Lake, lake_uri: str | None) -> ProcessStep:
    from tasks.process import process_glue_task

    if lake_uri is None:
        raise ValueError("process_engine 'glue' needs the S3 lake (lake: s3)")
    if not config.glue_job_name:
        raise ValueError("process_engine 'glue' needs glue_job_name")
    credentials = aws_credentials(config)
    s3_lake, job_name = lake, config.glue_job_name

    def process(kind: str, keys: list[str]) -> ProcessResult:
        return process_glue_task(credentials, s3_lake, job_name, kind, keys)

    return process


def _athena_model(config: PipelineConfig, lake: Lake, lake_uri: str | None) -> ModelStep:
    from blocks.warehouse import AthenaEngine
    from tasks.model import model_athena_task

    if lake_uri is None:
        raise ValueError("model_engine 'athena' needs the S3 lake (lake: s3)")
    if not config.athena_block:
        raise ValueError("model_engine 'athena' needs athena_block, an AthenaEngine block")
    engine = AthenaEngine.load(config.athena_block)
    tables_uri = engine.tables_uri(lake_uri)
    client = engine.athena_client(aws_credentials(config))

    def model(scope: RunScope) -> ModelResult:
        return model_athena_task(engine, lake, tables_uri, list(scope.days), client)

    return model


def destination_of(kind: str, host: str, port: int, database: str, schema: str) -> str:
    """A server warehouse's identity: where it is, never who logs in or with what."""
    return f"{kind}:{host}:{port}/{database}/{schema}"


def build_warehouse(config: PipelineConfig, lake: Lake, lake_uri: str | None) -> Warehouse:
    if config.warehouse == "duckdb":
        path = config.warehouse_path

        def load_duckdb(keys: dict[str, list[str]], run_id: str, scope: RunScope) -> LoadResult:
            return load_task(path, lake, keys, scope)

        def held_duckdb(table: str, fullnames: Sequence[str]) -> set[str]:
            return held_in_duckdb(path, table, fullnames)

        # Resolved: `warehouse.duckdb` from two folders is two warehouses.
        return Warehouse(load_duckdb, str(path), f"duckdb:{path.resolve()}", held_duckdb)
    if config.warehouse == "postgres":
        from blocks.warehouse import PostgresWarehouse
        from tasks.load import held_in_postgres, load_postgres_task

        block = postgres_block(config, PostgresWarehouse)

        def load_postgres(keys: dict[str, list[str]], run_id: str, scope: RunScope) -> LoadResult:
            return load_postgres_task(block, lake, keys, scope)

        def held_postgres(table: str, fullnames: Sequence[str]) -> set[str]:
            return held_in_postgres(block, table, fullnames)

        where = destination_of("postgres", block.host, block.port, block.database, block.db_schema)
        return Warehouse(load_postgres, block.describe(), where, held_postgres)
    from blocks.warehouse import RedshiftWarehouse
    from tasks.load import held_in_redshift, load_redshift_task

    if lake_uri is None:
        raise ValueError("warehouse 'redshift' loads with COPY from S3: it needs lake 's3'")
    if not config.warehouse_block:
        raise ValueError("warehouse 'redshift' needs warehouse_block, a RedshiftWarehouse block")
    redshift = RedshiftWarehouse.load(config.warehouse_block)
    s3_uri = lake_uri

    def load_redshift(keys: dict[str, list[str]], run_id: str, scope: RunScope) -> LoadResult:
        return load_redshift_task(redshift, lake, s3_uri, keys, run_id, scope)

    def held_redshift(table: str, fullnames: Sequence[str]) -> set[str]:
        return held_in_redshift(redshift, table, fullnames)

    where = destination_of(
        "redshift", redshift.host, redshift.port, redshift.database, redshift.db_schema
    )
    return Warehouse(load_redshift, redshift.describe(), where, held_redshift)


def postgres_block(config: PipelineConfig, block_type: Any) -> Any:
    """The named PostgresWarehouse block, or one built from a DSN (local use and tests)."""
    if config.warehouse_block:
        return block_type.load(config.warehouse_block)
    dsn = config.warehouse_dsn.get_secret_value() if config.warehouse_dsn else None
    dsn = dsn or os.environ.get("REDDIT_PIPELINE_WAREHOUSE_DSN")
    if not dsn:
        raise ValueError(
            "warehouse 'postgres' needs warehouse_block (a PostgresWarehouse block) or "
            "warehouse_dsn (REDDIT_PIPELINE_WAREHOUSE_DSN)"
        )
    return block_type.from_dsn(
        dsn, os.environ.get(settings.WAREHOUSE_SCHEMA_ENV, settings.WAREHOUSE_SCHEMA)
    )


# -- where the data contracts run -----------------------------------------------------------


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

    block = postgres_block(config, PostgresWarehouse)
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
    from tasks.model import AthenaRunner

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


def stop_glue_runs_hook(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect on_cancellation / on_crashed hook of the pipeline flow: stop the Glue runs this
    flow run started. run_glue_job's `finally` stops its run when the flow is cancelled in the
    usual way, but not when the process is killed (SIGKILL after the grace period, a lost
    worker or container); Prefect's runner then calls this hook from outside the flow's
    process, with the flow run read back from the API, whose parameters are plain JSON."""
    from tasks.process import glue_client, stop_runs_of_flow_run

    raw = (flow_run.parameters or {}).get("config")
    config = raw if isinstance(raw, PipelineConfig) else PipelineConfig.model_validate(raw or {})
    if config.process_engine != "glue" or not config.glue_job_name:
        return
    glue = glue_client(aws_credentials(config))
    stopped = stop_runs_of_flow_run(glue, config.glue_job_name, str(flow_run.id))
    logging.getLogger(__name__).warning(
        "flow run %s is %s: stopped %d Glue run(s) of job %s",
        flow_run.id,
        getattr(state, "name", state),
        len(stopped),
        config.glue_job_name,
    )


def open_state(config: PipelineConfig) -> StateStore:
    """PostgreSQL when a DSN is configured (production), else the local DuckDB file."""
    dsn = config.state_dsn.get_secret_value() if config.state_dsn else None
    dsn = dsn or os.environ.get("REDDIT_PIPELINE_STATE_DSN")
    if dsn:
        return open_pooled_state(dsn)
    return open_duckdb_state(config.state_path)
