"""Where the data contracts run: Soda data sources for DuckDB, PostgreSQL, Redshift and Athena.

Which engine a run uses (`check_engine` in the config) is chosen in tasks.run.engines:

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

import json
import os
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import duckdb
from pydantic import SecretStr

from tasks.core import RunScope


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
    the run's scope (tasks.core.scope) and nothing else."""

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
    tasks.model.duckdb_engine.build_models filled."""
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
