"""Where everything lives in the lake, and what a batch's name says: the one module of key and
batch-id rules, so the stages that write a key and the ones that read it back (processing,
the model, the checks, the rebuild, the Glue job's caller) cannot drift apart.

    raw/{kind}/subreddit={sub}/dt={day}/{batch}.ndjson.{gz|zst}
    processed/{kind}/dt={day}/{batch}[-{part}].parquet
    curated/{model}/dt={day}/part-0.parquet

A batch id starts with its source ('dump', 'sample', 'api'), so a rebuild from the lake alone
can tell which watermarks a batch belongs to; API batch ids also carry the time Reddit was
read, which Reddit's JSON lacks.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from tasks import settings

CODEC_SUFFIX = {"gzip": "ndjson.gz", "zstd": "ndjson.zst"}
API_BATCH_PREFIX = "api"

# The subreddit names a record may carry, and so the only ones a raw key holds: Reddit's rule
# for community names (settings.SUBREDDIT_PATTERN, the one the API source checks), a user
# profile's "u_<username>" (usernames are 3-20 letters, digits, '_' or '-', so such names run
# to 22 characters), and "reddit.com", the 2005-2011 default community whose name predates
# the rule and fills the early dumps. Each is safe as a folder name on S3 and every local
# disk (no '/', no '..', no glob character, at most 22 characters). Staging quarantines any
# other name (sql/process/classify_lines.sql's valid_subreddit, made from this pattern).
RECORD_SUBREDDIT_PATTERN = (
    rf"^(?:{settings.SUBREDDIT_PATTERN.strip('^$')}|u_[A-Za-z0-9_-]{{3,20}}|reddit\.com)$"
)
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Batch ids are made from a dump's file name: only these characters are kept (see
# safe_name), so an id is a safe file name and never a DuckDB glob.
_BATCH_ID = re.compile(r"^[A-Za-z0-9_-]+$")
# The subreddit and day folders of a raw key.
_RAW_PLACE = re.compile(r"/subreddit=(?P<sub>[^/]+)/dt=(?P<dt>\d{4}-\d{2}-\d{2})/")


class UnsafeKeyError(ValueError):
    """A raw key part that is not safe on S3 and local disks (staging should have refused it)."""


def safe_name(text: str) -> str:
    """`text` with every character but letters, digits, '_' and '-' replaced by '_': a dump's
    own name ('my dump [1]_comments') may hold glob characters, spaces or dots, and a batch id
    ends at its first dot (batch_of)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def raw_key(kind: str, subreddit: str, dt: str, batch_id: str, codec: str) -> str:
    """Where a (subreddit, day) of a batch lives. Every part is checked, whatever the data:
    a record's subreddit becomes a folder, so '../..' would climb out of the lake, 'a/b' nest
    a folder that rebuilds skip, '*' and '?' turn into DuckDB globs."""
    if kind not in settings.KINDS:
        raise UnsafeKeyError(f"unknown kind {kind!r}")
    if not re.fullmatch(RECORD_SUBREDDIT_PATTERN, subreddit):
        raise UnsafeKeyError(f"subreddit {subreddit!r} is not a valid name for a lake key")
    if not _DAY.fullmatch(dt):
        raise UnsafeKeyError(f"day {dt!r} is not YYYY-MM-DD")
    if not _BATCH_ID.fullmatch(batch_id):
        raise UnsafeKeyError(f"batch id {batch_id!r} holds characters unsafe in a lake key")
    return (
        f"{settings.RAW_PREFIX}/{kind}/subreddit={subreddit}/dt={dt}/"
        f"{batch_id}.{CODEC_SUFFIX[codec]}"
    )


def raw_place(key: str) -> tuple[str, str] | None:
    """(subreddit, day) of a raw key, None for a key outside the raw layout."""
    match = _RAW_PLACE.search(key)
    return (match["sub"], match["dt"]) if match else None


def processed_key(kind: str, dt: str, batch_id: str) -> str:
    return f"{settings.PROCESSED_PREFIX}/{kind}/dt={dt}/{batch_id}.parquet"


def curated_key(model: str, dt: str) -> str:
    return f"{settings.CURATED_PREFIX}/{model}/dt={dt}/part-0.parquet"


def batch_of(key: str) -> str:
    """raw/.../{batch_id}.ndjson.gz (or processed/.../{batch_id}.parquet) -> batch_id"""
    return key.rsplit("/", 1)[1].split(".", 1)[0]


def source_of_batch(batch_id: str) -> str:
    """'dump', 'sample' or 'api': batch ids start with their source."""
    return batch_id.split("-", 1)[0]


def batch_id_for(path: Path, window_digest: str, chunk_index: int, source: str = "dump") -> str:
    """The same input and window always give the same batch id, so reruns overwrite."""
    stem = safe_name(path.name.removesuffix(".zst"))
    identity = f"{path.name}|{path.stat().st_size}|{window_digest}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
    return f"{source}-{stem}-{digest}-{chunk_index:04d}"


def api_batch_id(kind: str, subreddit: str, retrieved_utc: int, part: str = "new") -> str:
    """API batches carry their retrieval time in the name: Reddit's JSON has none, and the
    marts keep the version retrieved last (see batch_retrieved_utc)."""
    return f"{API_BATCH_PREFIX}-{retrieved_utc}-{part}-{kind}-{subreddit}"


def batch_retrieved_utc(batch_id: str) -> int | None:
    """API batches are named api-<epoch>-...: the time Reddit was read, which its JSON lacks.
    Dump records carry retrieved_on or retrieved_utc themselves."""
    match = re.match(rf"^{API_BATCH_PREFIX}-(\d{{9,11}})-", batch_id)
    return int(match.group(1)) if match else None
