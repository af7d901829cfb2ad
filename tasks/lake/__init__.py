"""The lake: the one interface of local folders and S3 buckets, the one module of key and
batch-id rules (keys), the raw layer's codecs, and the bucket's versioning and lifecycle setup
(`python -m tasks.lake.setup`).

Imports tasks.settings and tasks.core.
"""

from typing import TYPE_CHECKING

from tasks.core import lazy_names
from tasks.lake.base import Lake, readable_path
from tasks.lake.keys import (
    RECORD_SUBREDDIT_PATTERN,
    api_batch_id,
    batch_id_for,
    batch_of,
    batch_retrieved_utc,
    curated_key,
    processed_key,
    raw_key,
    raw_place,
    source_of_batch,
)
from tasks.lake.local import LocalLake
from tasks.lake.raw import RawBodies, compress

if TYPE_CHECKING:
    from tasks.lake.s3 import S3Lake, S3LakeSettings

__all__ = [
    "RECORD_SUBREDDIT_PATTERN",
    "Lake",
    "LocalLake",
    "RawBodies",
    "S3Lake",
    "S3LakeSettings",
    "api_batch_id",
    "batch_id_for",
    "batch_of",
    "batch_retrieved_utc",
    "compress",
    "curated_key",
    "processed_key",
    "raw_key",
    "raw_place",
    "readable_path",
    "source_of_batch",
]

# The cloud engines load on first use (tasks.core.lazy).
__getattr__ = lazy_names(__name__, {"S3Lake": "s3", "S3LakeSettings": "s3"})
