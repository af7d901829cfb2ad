"""The run's configuration: one pydantic model, shared by the CLI, the flow and deployments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks import settings

SourceName = Literal["sample", "dump"]
RawCodec = Literal["gzip", "zstd"]

# Reddit's rule for subreddit names: 3 to 21 letters, digits or underscores
# (a few historic names are 2 characters long, e.g. r/de, r/tr).
SUBREDDIT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_]{1,20}$"


class PipelineConfig(BaseModel):
    """What to read, which window, and where every layer lives."""

    model_config = ConfigDict(extra="forbid")

    source: SourceName = Field(
        "sample",
        description="Where records come from: 'sample' is the bundled sample dump in data/sample; "
        "'dump' reads the files given in dump_paths.",
    )
    dump_paths: list[Path] = Field(
        default_factory=list,
        description="Dump files (RS_YYYY-MM.zst, RC_YYYY-MM.zst, <sub>_submissions.zst, "
        "<sub>_comments.zst) when source is 'dump'.",
    )
    subreddits: list[str] = Field(
        default_factory=list,
        description="Subreddits to keep (case-insensitive). Empty keeps every subreddit.",
    )
    since: datetime | None = Field(None, description="Keep items created at or after (UTC).")
    until: datetime | None = Field(None, description="Keep items created before (UTC).")
    full_refresh: bool = Field(False, description="Ignore watermarks and re-read the whole window.")
    overlap: timedelta = Field(
        timedelta(hours=1),
        description="Re-read this much before each watermark, for items that arrive late.",
    )
    lake_dir: Path = Field(settings.DEFAULT_LAKE_DIR, description="Local lake folder.")
    warehouse_path: Path = Field(
        settings.DEFAULT_WAREHOUSE_PATH, description="DuckDB warehouse file."
    )
    state_path: Path = Field(settings.DEFAULT_STATE_PATH, description="DuckDB state store file.")
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

    @field_validator("subreddits")
    @classmethod
    def _check_subreddits(cls, names: list[str]) -> list[str]:
        import re

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
        if self.source == "dump" and not self.dump_paths:
            raise ValueError("source 'dump' needs at least one dump path")
        return self

    def input_files(self) -> list[Path]:
        """The dump files this run reads: the bundled sample unless dumps were given."""
        if self.source == "sample":
            return sorted(settings.SAMPLE_DIR.glob("*.zst"))
        return list(self.dump_paths)
