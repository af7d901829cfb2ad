"""The run's configuration: one pydantic model, shared by the CLI, the flow and deployments."""

from __future__ import annotations

import re
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
    field_validator,
    model_validator,
)

from tasks import settings

SourceName = Literal["auto", "sample", "dump", "api"]
RawCodec = Literal["gzip", "zstd"]
LakeKind = Literal["local", "s3"]
ProcessEngine = Literal["duckdb", "glue"]
ModelEngine = Literal["duckdb", "athena"]
WarehouseKind = Literal["duckdb", "postgres", "redshift"]
CheckEngineName = Literal["auto", "duckdb", "athena", "postgres", "redshift"]

# Reddit's rule for subreddit names: 3 to 21 letters, digits or underscores
# (a few historic names are 2 characters long, e.g. r/de, r/tr).
SUBREDDIT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_]{1,20}$"
# The same rule in the JSON schema, so the Prefect server rejects a bad name before a run
# starts; it admits the "r/" prefix and spaces the validator strips.
SUBREDDIT_INPUT_PATTERN = r"^\s*/?(r/)?[A-Za-z0-9][A-Za-z0-9_]{1,20}\s*$"
# A post id as Reddit shows it (base36), bare or as a t3_ fullname.
POST_ID_PATTERN = r"^(t3_)?[0-9a-z]{1,13}$"
POST_ID_INPUT_PATTERN = r"^\s*(t3_)?[0-9A-Za-z]{1,13}\s*$"


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
        description="API source: re-read posts younger than this through /api/info (scores, "
        "comment counts and removals keep changing). Zero turns the refresh off.",
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
        description="Longest wait for one slot of reddit_rate_limit before the run fails "
        "(other workers hold the slots).",
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
    overlap: timedelta = Field(
        timedelta(hours=1),
        description="Re-read this much before each watermark, for items that arrive late.",
    )
    freshness_max_age: timedelta = Field(
        timedelta(hours=48),
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
        description="PostgreSQL state: how long a run waits for another run over the same "
        "subreddits to release their locks before it stops.",
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
        ge=1024,
        description="Decompressed bytes processed at a time; bounds memory.",
    )
    slowdown_factor: float = Field(
        3.0,
        gt=1,
        description="Slowdown alert when a run takes more than this many times the median of "
        "the recent completed runs with the same parameters (source, subreddits, refresh, "
        "window or dumps, engines).",
    )
    slowdown_history: int = Field(
        10,
        ge=3,
        description="How many recent runs of the same kind the slowdown median is taken over.",
    )

    @field_validator("subreddits")
    @classmethod
    def _check_subreddits(cls, names: list[str]) -> list[str]:
        cleaned = []
        for name in names:
            bare = name.strip().removeprefix("/").removeprefix("r/")
            if not re.match(SUBREDDIT_PATTERN, bare):
                raise ValueError(
                    f"{name!r} is not a valid subreddit name (2-21 letters, digits or "
                    "underscores, e.g. 'python' or 'r/dataengineering')"
                )
            cleaned.append(bare.lower())
        return sorted(set(cleaned))

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
