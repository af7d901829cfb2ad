"""AWS Glue 5 job (Spark 3.5, Python 3.11): raw Reddit NDJSON batches -> processed Parquet.

The Glue engine of the process stage. It writes exactly what the DuckDB engine writes
(sql/process/posts.sql, comments.sql): the same columns in the same order with the same types
and values, under the same keys, processed/reddit/{kind}/dt={day}/{batch_id}.parquet, one file
per (day, batch). The models downstream never know which engine ran.

Run on Glue with job arguments, or locally with pyspark:

    python glue_scripts/process_reddit.py --JOB_NAME local --kind posts \
        --lake_root .local/lake --raw_prefix raw/reddit/posts

Arguments (Glue passes them as `--name value`; getResolvedOptions, or a local stand-in when
`awsglue` is absent, reads them):
  --kind            posts | comments (required)
  --lake_root       s3://bucket/prefix or a local folder: where raw keys are read from (required)
  --raw_keys        comma-separated raw keys, relative to the lake root
  --raw_list_key    a lake key of a text file with one raw key a line (no argument size limit)
  --raw_prefix      every raw batch under this key prefix ...
  --batch_ids       ... optionally only these comma-separated batch ids
  --output_root     where processed/ is written; defaults to --lake_root
  --manifest_key    if set, a JSON summary {kind, rows, processed_keys, dts} is written here
  --sse             AES256 (default), aws:kms or none: encryption of the objects this job moves
  --kms_key_id      the KMS key for aws:kms

Matching DuckDB value for value needs care in three places, each with the fact behind it:
  * DuckDB's json_extract_string re-renders a JSON float with yyjson's shortest round-trip
    format (1.5e9 -> '1500000000.0', 1e21 -> '1e21'); Spark's JSON functions render it with
    Java's Double.toString ('1.5E9'). A text column that holds a JSON float (edited does) is
    re-rendered here the yyjson way.
  * DuckDB casts a double to bigint rounding half to even (2.5 -> 2, 3.5 -> 4); Spark's cast
    truncates. Numbers are rounded with bround (half even) first.
  * DuckDB reads booleans from 'true/t/1/yes/y' and 'false/f/0/no/n' in any case, untrimmed;
    Spark also trims. The sets are spelled out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

RAW_PREFIX = "raw/reddit"
PROCESSED_PREFIX = "processed/reddit"
FULLNAME_PREFIX = {"posts": "t3_", "comments": "t1_"}
RAW_SUFFIXES = (".ndjson.gz", ".ndjson")

# The processed schema, in column order: (column, type). Types: string, bigint, double,
# boolean; 'fullname' is `name` or prefix || id; retrieved_utc reads both of its spellings.
COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "posts": (
        ("id", "string"),
        ("name", "fullname"),
        ("subreddit", "string"),
        ("subreddit_id", "string"),
        ("author", "string"),
        ("author_fullname", "string"),
        ("title", "string"),
        ("selftext", "string"),
        ("url", "string"),
        ("domain", "string"),
        ("permalink", "string"),
        ("link_flair_text", "string"),
        ("score", "bigint"),
        ("num_comments", "bigint"),
        ("upvote_ratio", "double"),
        ("over_18", "boolean"),
        ("is_self", "boolean"),
        ("spoiler", "boolean"),
        ("stickied", "boolean"),
        ("locked", "boolean"),
        ("distinguished", "string"),
        ("removed_by_category", "string"),
        ("created_utc", "double"),
        ("edited", "string"),
        ("retrieved_utc", "retrieved"),
    ),
    "comments": (
        ("id", "string"),
        ("name", "fullname"),
        ("subreddit", "string"),
        ("subreddit_id", "string"),
        ("author", "string"),
        ("author_fullname", "string"),
        ("body", "string"),
        ("link_id", "string"),
        ("parent_id", "string"),
        ("permalink", "string"),
        ("score", "bigint"),
        ("controversiality", "bigint"),
        ("distinguished", "string"),
        ("stickied", "boolean"),
        ("is_submitter", "boolean"),
        ("created_utc", "double"),
        ("edited", "string"),
        ("retrieved_utc", "retrieved"),
    ),
}

