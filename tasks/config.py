"""The run's configuration: one pydantic model, shared by the CLI, the flow and deployments."""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    SerializerFunctionWrapHandler,
    create_model,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.fields import FieldInfo

from tasks import settings

SourceName = Literal["auto", "sample", "dump", "api"]
RawCodec = Literal["gzip", "zstd"]
LakeKind = Literal["local", "s3"]
ProcessEngine = Literal["duckdb", "glue"]
ModelEngine = Literal["duckdb", "athena"]
WarehouseKind = Literal["duckdb", "postgres", "redshift"]
CheckEngineName = Literal["auto", "duckdb", "athena", "postgres", "redshift"]

# Folders (separated by os.pathsep; relative ones are under the project folder) that a run's
# lake_dir, warehouse_path, state_path and dump_paths must lie in. prefect.yaml sets it in the
# production deployments' job variables: without it a run's parameters could point the
# DuckDB files and the lake at any path the worker may write.
ALLOWED_ROOTS_ENV = "REDDIT_PIPELINE_ALLOWED_ROOTS"
PATH_FIELDS = ("lake_dir", "warehouse_path", "state_path", "dump_paths")

# settings.SUBREDDIT_PATTERN in the JSON schema, so the Prefect server rejects a bad name before a
# run starts; it admits the "r/" prefix and spaces the validator strips.
SUBREDDIT_INPUT_PATTERN = r"^\s*/?(r/)?[A-Za-z0-9][A-Za-z0-9_]{1,20}\s*$"
# A post id as Reddit shows it (base36), bare or as a t3_ fullname.
POST_ID_PATTERN = r"^(t3_)?[0-9a-z]{1,13}$"
POST_ID_INPUT_PATTERN = r"^\s*(t3_)?[0-9A-Za-z]{1,13}\s*$"
# Pydantic keeps a timedelta's ge/gt/le out of the JSON schema (it has no way to write them for
# a duration string), so the Prefect server would take "-P1D" for `overlap`. These patterns
# carry the sign rule into the schema: no '-' anywhere is >= 0, and at least one non-zero
# digit besides is > 0, in every form pydantic parses ("P1D", "PT20M", "01:00:00"). The
# upper bounds are checked by pydantic when the run starts.
NOT_NEGATIVE = {"pattern": r"^[^-]*$"}
POSITIVE = {"pattern": r"^[^-]*[1-9][^-]*$"}


def mask_url_credentials(url: str) -> str:
    """The URL with the password of its user part (or a bare token user) replaced by ***:
    http://user:***@proxy. The host stays readable, since it says where a run read from."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    masked = f"{user}:***" if colon else "***"
    return urlunsplit(parts._replace(netloc=f"{masked}@{hostport}"))


# A URL that may carry credentials (http://user:pass@proxy): a secret in memory, shown as
# '**********', and dumped to JSON (Prefect's flow-run parameters, pipeline_runs.parameters)
# with its password masked.
SecretUrl = Annotated[
    SecretStr,
    PlainSerializer(
        lambda url: mask_url_credentials(url.get_secret_value()), return_type=str, when_used="json"
    ),
]


class PipelineConfig(BaseModel):
    """What to read, which window, and where every layer lives."""

    model_config = ConfigDict(extra="forbid")

    source: SourceName = Field(
        "auto",
        description="Where records come from: 'api' reads Reddit (credentials needed); 'dump' "
        "reads dump_paths; 'sample' the bundled sample dump in data/sample. 'auto' takes the "
        "API when Reddit credentials are configured and the sample otherwise.",
    )
    reddit_credentials_block: str | None = Field(
        None,
        description="Name of a RedditCredentials block; without it the API source reads the "
        "REDDIT_CLIENT_ID, REDDIT_CLIENT_SECRET and REDDIT_USER_AGENT environment variables.",
    )
    reddit_base_url: SecretUrl | None = Field(
        None,
        description="Another Reddit endpoint (a proxy or a test server). Default: Reddit. "
        "A password in it is kept secret (stored and shown as user:***).",
    )
    refresh_max_age: timedelta = Field(
        timedelta(days=3),
        ge=timedelta(0),
        le=timedelta(days=30),
        json_schema_extra=NOT_NEGATIVE,
        description="API source: re-read posts younger than this through /api/info (scores, "
        "comment counts and removals keep changing). Zero turns the refresh off; at most 30 days.",
    )
    dump_paths: list[Path] = Field(
        default_factory=list,
        description="Dump files (RS_YYYY-MM.zst, RC_YYYY-MM.zst, <sub>_submissions.zst, "
        "<sub>_comments.zst) when source is 'dump'.",
    )
    subreddits: list[str] = Field(
        default_factory=list,
        description="Subreddits to keep (case-insensitive). Empty keeps every subreddit.",
        json_schema_extra={"items": {"type": "string", "pattern": SUBREDDIT_INPUT_PATTERN}},
    )
    reddit_rate_limit: str | None = Field(
        None,
        description="Name of a Prefect global concurrency limit that every worker using the "
        "same Reddit OAuth client shares (e.g. 'reddit-api', made by the bootstrap). Each "
        "request takes a slot; a limit that does not exist is an error.",
    )
    reddit_rate_limit_wait: timedelta = Field(
        timedelta(minutes=5),
        gt=timedelta(0),
        le=timedelta(hours=1),
        json_schema_extra=POSITIVE,
        description="Longest wait for one slot of reddit_rate_limit before the run fails "
        "(other workers hold the slots); at most 1 hour.",
    )
    reddit_max_wait: timedelta = Field(
        timedelta(minutes=5),
        gt=timedelta(0),
        description="Longest single wait Reddit may impose (Retry-After, a used-up rate-limit "
        "window) before the run fails naming the server's demand; longer waits are logged.",
    )
    reddit_total_wait: timedelta = Field(
        timedelta(minutes=30),
        gt=timedelta(0),
        description="Longest time all of a run's waits for Reddit may take together.",
    )
    reddit_unreachable_after: timedelta = Field(
        timedelta(seconds=60),
        gt=timedelta(0),
        description="A Reddit URL that has not answered once in this long fails the run, "
        "naming the URL (a wrong --reddit-url, or no network).",
    )
    comment_tree_posts: list[str] = Field(
        default_factory=list,
        description="API source: posts (id or t3_ fullname) whose whole comment trees are read "
        "through /comments/{id} and /api/morechildren and staged like other comments.",
        json_schema_extra={"items": {"type": "string", "pattern": POST_ID_INPUT_PATTERN}},
    )
    since: datetime | None = Field(None, description="Keep items created at or after (UTC).")
    until: datetime | None = Field(None, description="Keep items created before (UTC).")
    full_refresh: bool = Field(False, description="Ignore watermarks and re-read the whole window.")
    keep_partial_input: bool = Field(
        False,
        description="Load what was read of a damaged dump (truncated or corrupt) instead of "
        "failing the run; the damage is still reported.",
    )
    overlap: timedelta = Field(
        timedelta(hours=1),
        ge=timedelta(0),
        le=timedelta(days=7),
        json_schema_extra=NOT_NEGATIVE,
        description="Re-read this much before each watermark, for items that arrive late "
        "(0 to 7 days).",
    )
    freshness_max_age: timedelta = Field(
        timedelta(hours=48),
        gt=timedelta(0),
        le=timedelta(days=365),
        json_schema_extra=POSITIVE,
        description="Quality warning when the newest item is older than this.",
    )
    lake_dir: Path = Field(settings.DEFAULT_LAKE_DIR, description="Local lake folder.")
    warehouse_path: Path = Field(
        settings.DEFAULT_WAREHOUSE_PATH, description="DuckDB warehouse file."
    )
    state_path: Path = Field(settings.DEFAULT_STATE_PATH, description="DuckDB state store file.")
    state_dsn: SecretStr | None = Field(
        None,
        description="PostgreSQL DSN of the state store (production); overrides state_path. "
        "Also read from REDDIT_PIPELINE_STATE_DSN.",
    )
    state_lock_wait: timedelta = Field(
        timedelta(seconds=60),
        ge=timedelta(0),
        le=timedelta(hours=1),
        json_schema_extra=NOT_NEGATIVE,
        description="PostgreSQL state: how long a run waits for another run over the same "
        "subreddits to release their locks before it stops (0 to 1 hour).",
    )
    lake: LakeKind = Field("local", description="Where the lake lives: a local folder or S3.")
    s3_bucket_block: str | None = Field(
        None, description="Name of a prefect-aws S3Bucket block, for lake 's3'."
    )
    s3_encryption: Literal["AES256", "aws:kms", "none"] = Field(
        "AES256", description="Server-side encryption of every lake object: SSE-S3 or SSE-KMS."
    )
    s3_kms_key_id: str | None = Field(None, description="KMS key id or ARN for 'aws:kms'.")
    aws_credentials_block: str | None = Field(
        None,
        description="Name of a prefect-aws AwsCredentials block for Glue and Athena; default: "
        "the standard AWS chain (environment, instance or task role).",
    )
    process_engine: ProcessEngine = Field(
        "duckdb", description="Raw -> processed: DuckDB here, or an AWS Glue job (lake 's3')."
    )
    glue_job_name: str | None = Field(None, description="The Glue job, for process_engine 'glue'.")
    model_engine: ModelEngine = Field(
        "duckdb", description="The SQL models: DuckDB here, or Athena (an AthenaEngine block)."
    )
    athena_block: str | None = Field(None, description="Name of an AthenaEngine block.")
    warehouse: WarehouseKind = Field(
        "duckdb", description="Where curated tables are loaded: DuckDB file, PostgreSQL, Redshift."
    )
    warehouse_block: str | None = Field(
        None, description="Name of a PostgresWarehouse or RedshiftWarehouse block."
    )
    warehouse_dsn: SecretStr | None = Field(
        None,
        description="PostgreSQL DSN of the warehouse when no block is named. Also read from "
        "REDDIT_PIPELINE_WAREHOUSE_DSN.",
    )
    check_engine: CheckEngineName = Field(
        "auto",
        description="Where the data contracts run. 'auto': Athena when model_engine is "
        "Athena, else DuckDB over the lake's Parquet. 'postgres': the run's processed and "
        "curated data copied into check_schema on the warehouse PostgreSQL (warehouse_block "
        "or warehouse_dsn). 'redshift': tables named like the datasets in check_schema of "
        "the RedshiftWarehouse block, which you keep filled.",
    )
    check_schema: str | None = Field(
        None,
        description="check_engine 'postgres': the schema the check replaces every run "
        "(default reddit_check); 'redshift': the schema holding the datasets (required); "
        "'athena': the Glue database for the run's views (default <database>_check).",
    )
    raw_codec: RawCodec = Field(
        "gzip",
        description="Codec of raw NDJSON batches. gzip is read by every engine; zstd is faster "
        "and read by DuckDB, Spark, Athena and Redshift too.",
    )
    chunk_bytes: int = Field(
        settings.CHUNK_BYTES,
        # DuckDB holds a chunk and its parse in memory: 1 GiB already needs a 4 GiB worker.
        ge=2**20,
        le=2**30,
        description="Decompressed bytes processed at a time (1 MiB to 1 GiB); bounds memory.",
    )
    slowdown_factor: float = Field(
        3.0,
        gt=1,
        le=100,
        description="Slowdown alert when a run takes more than this many times the median of "
        "the recent completed runs with the same parameters (source, subreddits, refresh, "
        "window or dumps, engines).",
    )
    slowdown_history: int = Field(
        10,
        ge=3,
        le=1000,
        description="How many recent runs of the same kind the slowdown median is taken over.",
    )

    @field_validator("subreddits")
    @classmethod
    def _check_subreddits(cls, names: list[str]) -> list[str]:
        cleaned = []
        for name in names:
            bare = name.strip().removeprefix("/").removeprefix("r/")
            if not re.match(settings.SUBREDDIT_PATTERN, bare):
                raise ValueError(
                    f"{name!r} is not a valid subreddit name (2-21 letters, digits or "
                    "underscores, e.g. 'python' or 'r/dataengineering')"
                )
            cleaned.append(bare.lower())
        return sorted(set(cleaned))

    @field_validator("dump_paths")
    @classmethod
    def _dedupe_dump_paths(cls, paths: list[Path]) -> list[Path]:
        # The same file given twice (in any spelling) would be staged twice, its counts doubled.
        first: dict[Path, Path] = {}
        for path in paths:
            first.setdefault(path.resolve(), path)
        return list(first.values())

    @field_validator("comment_tree_posts")
    @classmethod
    def _check_post_ids(cls, ids: list[str]) -> list[str]:
        cleaned = []
        for post_id in ids:
            bare = post_id.strip().lower()
            if not re.match(POST_ID_PATTERN, bare):
                raise ValueError(
                    f"{post_id!r} is not a post id: use the id from the post's URL "
                    "(/comments/<id>/...) or its fullname, e.g. '1abc2d' or 't3_1abc2d'"
                )
            cleaned.append(bare.removeprefix("t3_"))
        return list(dict.fromkeys(cleaned))

    @field_validator("check_schema")
    @classmethod
    def _check_schema_identifier(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[a-z_][a-z0-9_]{0,62}$", value):
            raise ValueError(
                f"check_schema must be a lower-case SQL identifier (e.g. reddit_check), "
                f"got {value!r}"
            )
        return value

    @field_validator("since", "until")
    @classmethod
    def _as_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @model_validator(mode="after")
    def _check_window_and_files(self) -> PipelineConfig:
        if self.since and self.until and self.since >= self.until:
            raise ValueError(f"since ({self.since}) must be before until ({self.until})")
        if self.source == "auto" and self.dump_paths:
            self.source = "dump"  # dump files given: nothing else to choose
        if self.source == "dump" and not self.dump_paths:
            raise ValueError("source 'dump' needs at least one dump path")
        if self.process_engine == "glue" and self.raw_codec != "gzip":
            raise ValueError("the Glue engine reads gzip raw batches only: use raw_codec 'gzip'")
        if self.process_engine != "duckdb" and self.lake != "s3":
            raise ValueError(
                f"process_engine '{self.process_engine}' needs lake 's3' (the Glue job reads and "
                "writes the S3 lake): set lake 's3' and s3_bucket_block"
            )
        if self.model_engine == "athena" and self.lake != "s3":
            raise ValueError(
                "model_engine 'athena' needs lake 's3' (Athena reads processed/ and writes "
                "curated/ in S3; a local lake would load nothing): set lake 's3' and "
                "s3_bucket_block"
            )
        if self.model_engine == "athena" and not self.athena_block:
            raise ValueError("model_engine 'athena' needs athena_block, an AthenaEngine block")
        if self.check_engine == "athena" and self.model_engine != "athena":
            raise ValueError(
                "check_engine 'athena' checks the Athena model's tables: it needs "
                "model_engine 'athena' (or use check_engine 'auto')"
            )
        if self.source == "api" and not self.subreddits:
            raise ValueError("source 'api' needs at least one subreddit")
        if self.comment_tree_posts and self.source in ("sample", "dump"):
            raise ValueError("comment_tree_posts needs the API source (--source api)")
        return self

    @model_validator(mode="after")
    def _check_paths_in_allowed_roots(self) -> PipelineConfig:
        # Only paths a caller set: the defaults are the project's own .local folder.
        for name in sorted(self.model_fields_set & set(PATH_FIELDS)):
            value = getattr(self, name)
            for path in value if isinstance(value, list) else [value]:
                check_allowed_path(name, path)
        return self

    def with_overrides(self, overrides: ConfigOverrides | None) -> PipelineConfig:
        """This config with the fields `overrides` names replaced, validated again as a whole
        (a field's rules and the checks across fields see the merged values)."""
        if overrides is None or not overrides.model_fields_set:
            return self
        merged = {**self.model_dump(exclude_unset=True), **overrides.model_dump(exclude_unset=True)}
        return PipelineConfig.model_validate(merged)

    def redacted_dump(self) -> dict[str, Any]:
        """The settings as JSON with every secret masked (DSNs as '**********', a URL's
        password as ***): what pipeline_runs.parameters keeps and Prefect shows."""
        return self.model_dump(mode="json")

    def input_files(self) -> list[Path]:
        """The dump files this run reads (none for the API)."""
        if self.source in ("sample", "auto"):
            return sorted(settings.SAMPLE_DIR.glob("*.zst"))
        if self.source == "dump":
            return list(self.dump_paths)
        return []


def allowed_roots(env: Mapping[str, str] = os.environ) -> list[Path] | None:
    """The folders of ALLOWED_ROOTS_ENV, resolved; None when it is unset (no restriction: a
    developer's own machine)."""
    value = env.get(ALLOWED_ROOTS_ENV, "").strip()
    if not value:
        return None
    return [
        (settings.PROJECT_DIR / part.strip()).resolve()
        for part in value.split(os.pathsep)
        if part.strip()
    ]


def check_allowed_path(name: str, path: Path, env: Mapping[str, str] = os.environ) -> None:
    """Refuse a path (a parameter called `name`) outside the roots of ALLOWED_ROOTS_ENV,
    links and '..' resolved first; with no roots set, every path is allowed."""
    roots = allowed_roots(env)
    if roots is None or any(path.resolve().is_relative_to(root) for root in roots):
        return
    raise ValueError(
        f"{name} {str(path)!r} is outside the folders this worker allows "
        f"({', '.join(map(str, roots))}, from {ALLOWED_ROOTS_ENV}): use a path under one of "
        f"them, or add its folder to {ALLOWED_ROOTS_ENV} in the deployment's job variables"
    )


def _overrides_schema(schema: dict[str, Any]) -> None:
    # propertyNames instead of additionalProperties: the server's message for an unknown
    # name then lists the valid ones ("'x' is not one of ['source', ...]").
    schema.pop("additionalProperties", None)
    schema["propertyNames"] = {"enum": list(PipelineConfig.model_fields)}


class _PartialConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_overrides_schema)

    @model_validator(mode="before")
    @classmethod
    def _check_names(cls, data: Any) -> Any:
        # pydantic's own "Extra inputs are not permitted" would not say which names exist.
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(PipelineConfig.model_fields))
            if unknown:
                raise ValueError(
                    f"overrides names no config field ({', '.join(unknown)}); the fields are: "
                    f"{', '.join(PipelineConfig.model_fields)}"
                )
        return data

    @model_serializer(mode="wrap")
    def _only_named(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # An override is the fields it names: its default in the UI's form and in the flow's
        # schema is {} rather than every field set to null.
        return {k: v for k, v in handler(self).items() if k in self.model_fields_set}


def _optional(field: FieldInfo) -> tuple[Any, FieldInfo]:
    """The field as an optional one defaulting to None, keeping its constraints, description
    and schema extras, so the server checks an override as it checks the config."""
    partial = copy.copy(field)
    partial.default = None
    partial.default_factory = None
    return (field.annotation | None, partial)


# A partial PipelineConfig: the fields a run changes on top of its deployment's `config`.
# Prefect merges a run's parameters over the deployment's by top-level name only (the server's
# create_flow_run_from_deployment does `deployment.parameters.update(run parameters)`), so a
# run given `config` loses the deployment's whole config, its credentials block, rate limit
# and refresh settings with it; a run given `overrides` keeps them.
ConfigOverrides = create_model(
    "ConfigOverrides",
    __base__=_PartialConfig,
    __doc__="Config fields to change for one run; the others keep the deployment's values.",
    **{name: _optional(field) for name, field in PipelineConfig.model_fields.items()},
)
# The flow's default for `overrides`: a model rather than None keeps the parameter's schema a
# plain reference (no anyOf with null), so the server's message names the field at fault.
EMPTY_OVERRIDES = ConfigOverrides()
