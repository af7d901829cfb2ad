"""The model step on Athena (Trino engine v3): the same sql/ models, transpiled, run over Glue
catalog tables on the lake, writing curated Parquet under the same keys the DuckDB engine uses
(curated/reddit/{model}/dt={day}/...), so the check and load steps never know which engine ran.

- processed_{kind}: external Parquet tables over processed/reddit/{kind}/, partitioned by dt
  with partition projection, so new days need no MSCK or ALTER TABLE.
- the Glue database itself is made first (CREATE DATABASE IF NOT EXISTS), so a fresh account
  needs no manual step.
- curated_{model}: external Parquet tables over curated/reddit/{model}/, partitioned by dt.
  INSERT INTO writes under {location}/dt={day}/ and registers the partition itself. A rerun of
  a day deletes that day's curated objects first, so rebuilding never duplicates.
- each mart is one INSERT whose staging models are CTEs over the run's days only.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlglot import exp

from tasks import settings
from tasks.lake import Lake
from tasks.model.dialects import column_type, model_schemas, model_sql, to_dialect_ast
from tasks.model.duckdb_engine import MART_DAY_COLUMN, MART_MODELS, ModelResult

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
# Athena allows 100 partitions written per INSERT; a longer backfill goes in slices.
MAX_DAYS_PER_INSERT = 100
# Which relations each mart reads, and the tables that hold them on Athena.
MART_INPUTS = {
    "posts": {"stg_posts": None, "processed_posts": "processed_posts"},
    "comments": {"stg_comments": None, "processed_comments": "processed_comments"},
    "subreddit_daily": {"posts": "curated_posts", "comments": "curated_comments"},
}


class AthenaQueryError(RuntimeError):
    """A query ended FAILED or CANCELLED; the message carries Athena's reason."""


@dataclass
class AthenaRunner:
    """Runs one statement at a time and waits for it: polls get_query_execution with
    exponential backoff, stops the query on timeout or interruption (a Ctrl-C or a cancelled
    flow run must not leave a query scanning, and billing, on its own)."""

    client: Any  # boto3 Athena client
    workgroup: str
    database: str
    output_location: str
    timeout: float = 1800.0
    first_delay: float = 0.25
    max_delay: float = 10.0
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def for_engine(cls, engine: Any, client: Any) -> AthenaRunner:
        """The runner an AthenaEngine block describes; `client` from engine.athena_client."""
        return cls(
            client=client,
            workgroup=engine.workgroup,
            database=engine.database,
            output_location=engine.output_location,
            timeout=engine.poll_timeout_seconds,
        )

    executed: list[str] = field(default_factory=list)

    def start(self, sql: str, in_database: bool = True) -> str:
        """`in_database=False` for the statement that creates the database: a context naming a
        database that does not exist yet fails the query (SCHEMA_NOT_FOUND)."""
        context = {"QueryExecutionContext": {"Database": self.database}} if in_database else {}
        response = self.client.start_query_execution(
            QueryString=sql,
            WorkGroup=self.workgroup,
            ResultConfiguration={"OutputLocation": self.output_location},
            **context,
        )
        self.executed.append(sql)
        return str(response["QueryExecutionId"])

    def wait(self, execution_id: str) -> dict[str, Any]:
        """The final QueryExecution; raises AthenaQueryError unless it SUCCEEDED."""
        deadline = time.monotonic() + self.timeout
        delay = self.first_delay
        try:
            while True:
                execution = self.client.get_query_execution(QueryExecutionId=execution_id)[
                    "QueryExecution"
                ]
                state = execution["Status"]["State"]
                if state in TERMINAL:
                    break
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"Athena query {execution_id} still {state} after {self.timeout:.0f}s; "
                        "stopped it"
                    )
                self.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, self.max_delay)
        except BaseException:
            self._stop(execution_id)
            raise
        if state != "SUCCEEDED":
            reason = execution["Status"].get("StateChangeReason") or "Athena gave no reason"
            query = " ".join(execution.get("Query", "").split())[:200]
            raise AthenaQueryError(f"Athena query {execution_id} {state}: {reason} [{query}]")
        return execution

    def run(self, sql: str, in_database: bool = True) -> dict[str, Any]:
        return self.wait(self.start(sql, in_database))

    def fetch(self, sql: str) -> list[list[str | None]]:
        """Rows of a small SELECT, without Athena's header row."""
        execution_id = self.start(sql)
        self.wait(execution_id)
        result = self.client.get_query_results(QueryExecutionId=execution_id)
        rows = [[d.get("VarCharValue") for d in r["Data"]] for r in result["ResultSet"]["Rows"]]
        return rows[1:]

    def _stop(self, execution_id: str) -> None:
        # Best effort: the error that made us stop is the one to raise.
        with contextlib.suppress(Exception):
            self.client.stop_query_execution(QueryExecutionId=execution_id)


def database_ddl(database: str) -> str:
    """The Glue database the tables live in, made on a fresh account's first run."""
    if not database or not set(database) <= set("abcdefghijklmnopqrstuvwxyz0123456789_"):
        raise ValueError(f"Athena database must be a lower-case identifier, got {database!r}")
    return f"CREATE DATABASE IF NOT EXISTS `{database}`"


def _columns_ddl(relation: str) -> str:
    return ", ".join(
        f"`{name}` {column_type(kind, 'athena')}"
        for name, kind in model_schemas()[relation].items()
    )


def processed_table_ddl(kind: str, lake_uri: str) -> str:
    """External table over processed/ with dt projected from the key: no partition upkeep."""
    location = f"{lake_uri}/{settings.PROCESSED_PREFIX}/{kind}/"
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS processed_{kind} "
        f"({_columns_ddl(f'processed_{kind}')}) PARTITIONED BY (`dt` STRING) "
        f"STORED AS PARQUET LOCATION '{location}' TBLPROPERTIES ("
        "'projection.enabled'='true', 'projection.dt.type'='date', "
        "'projection.dt.format'='yyyy-MM-dd', 'projection.dt.range'='2005-06-01,NOW', "
        "'projection.dt.interval'='1', 'projection.dt.interval.unit'='DAYS', "
        f"'storage.location.template'='{location}dt=${{dt}}/')"
    )


def curated_table_ddl(model: str, lake_uri: str) -> str:
    """External table over curated/; INSERT INTO adds its dt partitions."""
    location = f"{lake_uri}/{settings.CURATED_PREFIX}/{model}/"
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS curated_{model} ({_columns_ddl(model)}) "
        f"PARTITIONED BY (`dt` STRING) STORED AS PARQUET LOCATION '{location}' "
        "TBLPROPERTIES ('parquet.compression'='SNAPPY')"
    )


def _days_filter(dts: Sequence[str]) -> str:
    return "dt IN (" + ", ".join(f"'{dt}'" for dt in dts) + ")"


def mart_insert_sql(model: str, dts: Sequence[str]) -> str:
    """One INSERT that rebuilds `model` for the given days, from the sql/ models: staging
    models become CTEs, and each table read is narrowed to the days (and loses its dt column,
    as the DuckDB engine's processed tables do)."""
    schemas = model_schemas()
    tree = to_dialect_ast(model_sql(model), "athena")
    ctes = []
    for relation, table in MART_INPUTS[model].items():
        if table is None:
            ctes.append(
                exp.CTE(
                    this=to_dialect_ast(model_sql(relation), "athena"),
                    alias=exp.TableAlias(this=exp.to_identifier(relation)),
                )
            )
    replacements = {
        relation: f"SELECT {', '.join(schemas[relation])} FROM {table} WHERE {_days_filter(dts)}"
        for relation, table in MART_INPUTS[model].items()
        if table is not None
    }
    mart = _with_ctes(tree, ctes).transform(lambda node: _narrow(node, replacements))
    day = MART_DAY_COLUMN[model]
    select = (
        exp.select(*[exp.column(c, table="m") for c in schemas[model]])
        .select(f"date_format(m.{day}, '%Y-%m-%d') AS dt", dialect="athena")
        .from_(exp.Subquery(this=mart, alias=exp.TableAlias(this=exp.to_identifier("m"))))
    )
    return f"INSERT INTO curated_{model} " + select.sql("athena")


def _with_ctes(tree: exp.Expression, ctes: list[exp.CTE]) -> exp.Expression:
    """Prepend CTEs (staging models) so the mart's own CTEs can read them."""
    if not ctes:
        return tree
    existing = tree.args.get("with_") or tree.args.get("with")
    if existing is None:
        return tree.with_(ctes[0].alias, ctes[0].this)  # pragma: no cover - models use CTEs
    existing.set("expressions", [*ctes, *existing.expressions])
    return tree


def _narrow(node: exp.Expression, replacements: dict[str, str]) -> exp.Expression:
    if isinstance(node, exp.Table) and not node.db and node.name in replacements:
        alias = node.alias or node.name
        subquery = exp.maybe_parse(replacements[node.name], dialect="athena")
        return exp.Subquery(this=subquery, alias=exp.TableAlias(this=exp.to_identifier(alias)))
    return node


def ensure_tables(runner: AthenaRunner, lake_uri: str) -> None:
    runner.run(database_ddl(runner.database), in_database=False)
    for kind in settings.KINDS:
        runner.run(processed_table_ddl(kind, lake_uri))
    for model in MART_MODELS:
        runner.run(curated_table_ddl(model, lake_uri))


def run_models_athena(
    runner: AthenaRunner, lake: Lake, lake_uri: str, dts: list[str]
) -> ModelResult:
    """Rebuild the marts of the given days on Athena; curated keys as run_models gives them."""
    result = ModelResult(dts=sorted(dts))
    if not dts:
        return result
    ensure_tables(runner, lake_uri)
    for start in range(0, len(result.dts), MAX_DAYS_PER_INSERT):
        days = result.dts[start : start + MAX_DAYS_PER_INSERT]
        for model in MART_MODELS:  # posts and comments before subreddit_daily, which reads them
            for dt in days:
                lake.delete_prefix(f"{settings.CURATED_PREFIX}/{model}/dt={dt}/")
            runner.run(mart_insert_sql(model, days))
    counts = " UNION ALL ".join(
        f"SELECT '{m}', count(*) FROM curated_{m} WHERE {_days_filter(result.dts)}"
        for m in MART_MODELS
    )
    result.rows = {str(name): int(n or 0) for name, n in runner.fetch(counts)}
    for model in MART_MODELS:
        result.curated_keys[model] = [
            key
            for dt in result.dts
            for key in lake.list_keys(f"{settings.CURATED_PREFIX}/{model}/dt={dt}/")
        ]
    return result


@task(name="model-athena", cache_policy=NO_CACHE)
def model_athena_task(
    engine: Any, lake: Lake, lake_uri: str, dts: list[str], client: Any
) -> ModelResult:
    """Not retried as a whole: a failed INSERT may have written part of a day, and the rerun of
    the task deletes and rebuilds those days anyway. `engine` is a blocks.warehouse.AthenaEngine;
    `lake_uri` the S3 lake's root (the tables point at it, `lake` deletes and lists there);
    `client` a boto3 Athena client (AthenaEngine.athena_client)."""
    runner = AthenaRunner.for_engine(engine, client)
    return run_models_athena(runner, lake, lake_uri, dts)
