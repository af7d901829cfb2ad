"""Warehouse and query-engine blocks: where the cloud path loads and models, as Prefect blocks,
so a deployment names a block instead of carrying hosts and passwords inline.

Every secret is a SecretStr: it prints as '**********' in reprs, logs and validation errors,
and is revealed only at the moment a connection is opened. `describe()` gives a loggable
target without any secret.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, SecretStr, field_validator

from tasks.settings import WAREHOUSE_SCHEMA

if TYPE_CHECKING:
    import psycopg

IDENTIFIER_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


def _check_identifier(value: str) -> str:
    # The schema is spliced into `set search_path`: only a plain lower-case identifier.
    if not value or not set(value) <= IDENTIFIER_CHARS or value[0].isdigit():
        raise ValueError(f"expected a lower-case SQL identifier, got {value!r}")
    return value


class ServerWarehouse(Block):
    """What a PostgreSQL and a Redshift warehouse share: where the server is, who logs in, and
    the schema of the tables. Not a block type of its own: its subclasses are."""

    scheme: ClassVar[str] = "postgresql"  # of describe()'s URL

    host: str = Field(description="Server host name or address (Redshift: the endpoint).")
    port: int = Field(description="Server port.")
    database: str = Field(description="Database name.")
    user: str = Field(description="Role to connect as (with Redshift IAM auth: the db user).")
    password: SecretStr | None = Field(
        None, description="The role's password (None: trust auth, or IAM auth on Redshift)."
    )
    db_schema: str = Field(
        WAREHOUSE_SCHEMA,
        alias="schema",
        description="Schema holding the warehouse tables; the loader role's (sql/roles).",
    )
    connect_timeout: int = Field(10, description="Seconds to wait for a connection.")

    model_config: ClassVar[ConfigDict] = ConfigDict(populate_by_name=True)

    @field_validator("db_schema")
    @classmethod
    def _schema_identifier(cls, value: str) -> str:
        return _check_identifier(value)

    def describe(self) -> str:
        """Where the warehouse is, for logs: never the password."""
        return f"{self.scheme}://{self.user}@{self.host}:{self.port}/{self.database}"


class PostgresWarehouse(ServerWarehouse):
    """A PostgreSQL 15+ database that receives the curated tables (MERGE needs 15)."""

    _block_type_name = "Reddit Postgres Warehouse"
    _description = "PostgreSQL warehouse for the reddit_pipeline load step (psycopg 3)."

    port: int = Field(5432, description="Server port.")
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = Field(
        "prefer", description="libpq sslmode; use verify-full across networks."
    )

    @classmethod
    def from_dsn(cls, dsn: str, schema: str = WAREHOUSE_SCHEMA) -> PostgresWarehouse:
        """An unsaved block from a libpq DSN or URL (local runs and tests)."""
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(dsn)
        password = parts.get("password")
        return cls(
            host=str(parts.get("host", "127.0.0.1")),
            port=int(parts.get("port", 5432)),
            database=str(parts.get("dbname", "postgres")),
            user=str(parts.get("user", "postgres")),
            password=SecretStr(str(password)) if password else None,
            sslmode=str(parts.get("sslmode", "prefer")),
            schema=schema,
        )

    def connection_params(self) -> dict[str, Any]:
        """libpq's connection parameters. Holds the secret: never log it."""
        return {
            "host": self.host,
            "port": self.port,
            "dbname": self.database,
            "user": self.user,
            "password": self.password.get_secret_value() if self.password else None,
            "sslmode": self.sslmode,
            "connect_timeout": self.connect_timeout,
        }

    def connect(self) -> psycopg.Connection[Any]:
        """A psycopg 3 connection (not autocommit) with search_path on the block's schema,
        which is created on first use."""
        import psycopg  # the cloud path's dependency, imported when used

        try:
            connection = psycopg.connect(**self.connection_params())
        except psycopg.OperationalError as exc:
            # libpq's message names host and user, never the password; say which block failed.
            raise ConnectionError(f"cannot connect to {self.describe()}: {exc}") from None
        with connection.transaction():
            connection.execute(f"create schema if not exists {self.db_schema}")
            connection.execute(f"set search_path to {self.db_schema}")
        return connection


class RedshiftWarehouse(ServerWarehouse):
    """An Amazon Redshift cluster or Serverless workgroup that receives the curated tables."""

    _block_type_name = "Reddit Redshift Warehouse"
    _description = "Redshift warehouse for the reddit_pipeline load step (redshift-connector)."
    scheme: ClassVar[str] = "redshift"

    port: int = Field(5439, description="Cluster port.")
    iam: bool = Field(False, description="Authenticate with IAM temporary credentials.")
    cluster_identifier: str | None = Field(None, description="Cluster id, for IAM auth.")
    region: str | None = Field(None, description="AWS region, for IAM auth.")
    copy_iam_role: str = Field(
        description="ARN of the IAM role Redshift assumes to read the lake in COPY."
    )
    ssl: bool = Field(True, description="Encrypt the connection (leave on).")
    connect_timeout: int = Field(30, description="Seconds to wait for a connection.")

    def connect_kwargs(self) -> dict[str, Any]:
        """Arguments for redshift_connector.connect; holds the secret, never log it."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "user": self.user,
            "ssl": self.ssl,
            "timeout": self.connect_timeout,
        }
        if self.iam:
            if not (self.cluster_identifier and self.region):
                raise ValueError(f"{self.describe()}: IAM auth needs cluster_identifier and region")
            kwargs |= {
                "iam": True,
                "db_user": self.user,
                "cluster_identifier": self.cluster_identifier,
                "region": self.region,
            }
        elif self.password is None:
            raise ValueError(f"{self.describe()}: set a password or iam=True")
        else:
            kwargs["password"] = self.password.get_secret_value()
        return kwargs

    def connect(self) -> Any:
        """A redshift_connector connection (autocommit off) with search_path set."""
        import redshift_connector

        try:
            connection = redshift_connector.connect(**self.connect_kwargs())
        except redshift_connector.Error as exc:
            # The driver's message names the cause (refused, timed out, authentication failed)
            # and not the password; it is masked anyway should a driver version echo it.
            cause = f"{type(exc).__name__}: {exc}"
            if self.password is not None:
                cause = cause.replace(self.password.get_secret_value(), "**********")
            raise ConnectionError(f"cannot connect to {self.describe()}: {cause}") from None
        cursor = connection.cursor()
        cursor.execute(f"set search_path to {self.db_schema}")
        return connection


class AthenaEngine(Block):
    """Where the model step runs its SQL on AWS: an Athena workgroup over the Glue catalog."""

    _block_type_name = "Reddit Athena Engine"
    _description = "Athena (engine v3) settings for the reddit_pipeline model step."

    region: str | None = Field(
        None,
        description="AWS region of the workgroup, when it is not the AWS credentials' region.",
    )
    workgroup: str = Field("primary", description="Athena workgroup (engine version 3).")
    database: str = Field(
        "reddit",
        description="Glue database for processed/curated tables; created on the first run.",
    )
    output_location: str = Field(
        description="s3:// prefix for Athena's query results (not the lake's curated/)."
    )
    lake_uri: str | None = Field(
        None,
        description="s3://bucket[/prefix] the tables point at. Leave empty: the run's S3 lake "
        "root is used; if set, it must be that root.",
    )
    poll_timeout_seconds: float = Field(1800.0, description="Give up on a query after this.")

    @field_validator("output_location", "lake_uri")
    @classmethod
    def _s3_uri(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("s3://"):
            raise ValueError(f"expected an s3:// URI, got {value!r}")
        return value.rstrip("/")

    @field_validator("database")
    @classmethod
    def _database_identifier(cls, value: str) -> str:
        # Spliced into CREATE DATABASE and into Glue ARNs: a plain lower-case identifier.
        return _check_identifier(value)

    def tables_uri(self, lake_root: str) -> str:
        """The lake root the tables point at: the run's S3 lake. A block saved for another lake
        would make Athena write curated files where the load never looks, and load nothing."""
        root = lake_root.rstrip("/")
        if self.lake_uri is not None and self.lake_uri != root:
            raise ValueError(
                f"the AthenaEngine block's lake_uri {self.lake_uri} is not the run's lake {root}: "
                "clear lake_uri (the lake's root is used) or point s3_bucket_block at that lake"
            )
        return root

    def athena_client(self, credentials: Any) -> Any:
        """A boto3 Athena client from a prefect-aws AwsCredentials, in `region` when set."""
        if self.region is None:
            return credentials.get_client("athena")
        params = credentials.aws_client_parameters.get_params_override()
        params["region_name"] = self.region
        return credentials.get_boto3_session().client("athena", **params)
