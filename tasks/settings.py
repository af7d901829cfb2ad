"""Constants shared by every stage. Everything a user may change lives in config.py instead."""

from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
SQL_DIR = PROJECT_DIR / "sql"
SAMPLE_DIR = PROJECT_DIR / "data" / "sample"
LOCAL_DIR = PROJECT_DIR / ".local"

DEFAULT_LAKE_DIR = LOCAL_DIR / "lake"
DEFAULT_WAREHOUSE_PATH = LOCAL_DIR / "warehouse.duckdb"
DEFAULT_STATE_PATH = LOCAL_DIR / "state.duckdb"

# Dumps are compressed with windows up to 2 GiB; the zstd default limit (128 MiB) refuses them.
ZSTD_MAX_WINDOW_SIZE = 2**31
# Bytes of decompressed NDJSON handed to DuckDB at a time: memory stays bounded by this,
# not by the size of the dump.
CHUNK_BYTES = 64 * 1024 * 1024
READ_BYTES = 4 * 1024 * 1024
# Compressed bytes handed to the zstd decoder at a time: what a damaged dump is located to
# (the error names the piece's first byte), and what bounds each decoded piece (real dumps
# decode ~8-10x: ~2.5 MB).
DECODE_BYTES = 256 * 1024

# The bounds of a usable value, in this one place. Staging's line classification
# (sql/process/classify_lines.sql), the process models (sql/process/{kind}.sql) and the staging
# models (sql/staging/) read them as {{NAME}} (duck.read_sql fills them in from SQL_BOUNDS);
# the Glue job keeps a copy that tests/test_glue_script.py holds equal; the contracts'
# future-time checks get MAX_FUTURE_SECONDS through tasks.quality.contracts.
# Reddit opened in June 2005: no item, edit or retrieval is older.
EARLIEST_EPOCH = 1117584000  # 2005-06-01T00:00:00Z
# Past 2100 an epoch is a broken field, not a date. DuckDB's to_timestamp raises beyond
# ~9.2e12 s (and on NaN and inf): every to_timestamp is guarded by this range first.
LATEST_EPOCH = 4102444800  # 2100-01-01T00:00:00Z
# How far ahead of this machine's clock an item's created_utc may be (clock skew): staging
# quarantines what is further ahead, and the contracts fail what is further ahead of their
# own, later, now, so whatever staging keeps passes the gate.
MAX_FUTURE_SECONDS = 300
# The longest dump line staging hands to DuckDB's JSON parser. Reddit caps a selftext at
# 40,000 characters (~240 KB even with every character \u-escaped); real lines are ~1-100 KB.
# A longer line is quarantined unread, without ever being held whole in memory.
MAX_LINE_BYTES = 4 * 1024 * 1024
# How much of such a line the quarantine keeps (its size is in the reason).
QUARANTINE_HEAD_BYTES = 64 * 1024
SQL_BOUNDS = {
    "EARLIEST_EPOCH": EARLIEST_EPOCH,
    "LATEST_EPOCH": LATEST_EPOCH,
    "MAX_FUTURE_SECONDS": MAX_FUTURE_SECONDS,
}
# DuckDB's buffer pool in the steps that move whole dumps (stage, process, model); beyond it
# DuckDB spills to a temporary directory. With the interpreter (~150 MiB), the zstd window, a
# stage chunk and its Arrow copy, a step peaks at ~700-900 MiB whatever the size of the input.
DUCKDB_MEMORY_LIMIT = "512MB"
# Staging's, lower: the process holds the zstd window and two chunks (one read ahead) beside
# DuckDB, and a chunk's work fits this with room (1M comments: peak RSS ~830 MiB at 256MB,
# ~900 MiB at 512MB, no slower); more spills to disk rather than failing.
DUCKDB_STAGE_MEMORY_LIMIT = "256MB"
# The model step rebuilds days in passes of at most this many processed rows (a day is never
# split): the dedupe window of a pass stays in memory instead of spilling to disk.
MODEL_ROWS_PER_PASS = 1_000_000
# The load's, lower: the warehouse's primary-key index (an ART) lives outside DuckDB's limit
# and grows with the warehouse (~0.4 GiB at commit for 3M rows), so it gets the headroom.
DUCKDB_LOAD_MEMORY_LIMIT = "256MB"

# The codec of processed and curated Parquet (DuckDB, the Glue job and Athena alike): snappy
# writes ~30% faster than zstd, and every engine reads it (it is Spark's and Athena's default).
PARQUET_CODEC = "snappy"

RAW_PREFIX = "raw/reddit"
PROCESSED_PREFIX = "processed/reddit"
# Days of processed files kept beyond the refresh window when the lake's lifecycle expires
# processed/ (tasks.lake.setup refuses less): late items and a refresh that runs a few days
# late still find their days whole. Also the least retention there is at all, so a day this
# recent cannot have lost a processed file to it (tasks.process.complete_days skips such days).
PROCESSED_MARGIN_DAYS = 7
CURATED_PREFIX = "curated/reddit"
QUARANTINE_PREFIX = "quarantine/reddit"

# The warehouse schema of the marts, on PostgreSQL and Redshift: the blocks' default and the
# roles' (sql/roles), so a loader role and a block made with defaults agree. A deployment that
# uses another one sets it in both: the block's `schema` and REDDIT_PIPELINE_WAREHOUSE_SCHEMA
# (read by the bootstrap's roles step and by a warehouse built from a DSN).
WAREHOUSE_SCHEMA = "reddit"
WAREHOUSE_SCHEMA_ENV = "REDDIT_PIPELINE_WAREHOUSE_SCHEMA"
# The state store's own schema on PostgreSQL when the roles are applied.
STATE_SCHEMA = "reddit_state"

KINDS = ("posts", "comments")
FULLNAME_PREFIX = {"posts": "t3_", "comments": "t1_"}
# A field every record of the kind has and the other kind lacks (Reddit requires a post's
# title; every comment has its post's link_id): how staging tells a misnamed dump.
KIND_HALLMARK = {"posts": "title", "comments": "link_id"}

# Reddit's rule for subreddit names: 3 to 21 letters, digits or underscores
# (a few historic names are 2 characters long, e.g. r/de, r/tr).
SUBREDDIT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_]{1,20}$"
