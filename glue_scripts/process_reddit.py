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

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

RAW_PREFIX = "raw/reddit"
PROCESSED_PREFIX = "processed/reddit"
TMP_PREFIX = "_glue_tmp/process"  # Spark's partitioned write, before each file is moved
FULLNAME_PREFIX = {"posts": "t3_", "comments": "t1_"}
RAW_SUFFIXES = (".ndjson.gz", ".ndjson")
# tasks/settings.py's bounds of an epoch (the job runs on Glue without the project, so it
# keeps a copy; tests/test_glue_script.py holds the two equal): a retrieval time outside them
# is dropped and the day of a created_utc outside them is null, as in sql/process/.
EARLIEST_EPOCH = 1117584000  # 2005-06-01T00:00:00Z
LATEST_EPOCH = 4102444800  # 2100-01-01T00:00:00Z

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

TRUE_WORDS = "'true', 't', '1', 'yes', 'y'"
FALSE_WORDS = "'false', 'f', '0', 'no', 'n'"
# Regexes inside Spark SQL literals: character classes instead of backslashes, which the SQL
# parser would unescape. DUCKDB_DOUBLE is what DuckDB's varchar -> double cast accepts: spaces
# around, a sign, digits with '_' separators, no hex and no Java 'd'/'f' suffixes.
DUCKDB_DOUBLE = (
    "^ *[+-]?([0-9]+(_[0-9]+)*[.]?([0-9]+(_[0-9]+)*)?|[.][0-9]+(_[0-9]+)*)([eE][+-]?[0-9]+)? *$"
)
DUCKDB_SPECIAL = "^(?i) *[+-]?(inf|infinity|nan) *$"
# How Java's Double.toString, and so Spark's JSON functions, render a JSON float.
JAVA_FLOAT = "^-?[0-9]+[.][0-9]+(E-?[0-9]+)?$"


def json_keys(kind: str) -> list[str]:
    """The top-level JSON fields a kind reads, in the order json_tuple extracts them."""
    keys: list[str] = []
    for column, type_ in COLUMNS[kind]:
        keys.extend(["retrieved_utc", "retrieved_on"] if type_ == "retrieved" else [column])
    return keys


def double_sql(text: str) -> str:
    """DuckDB's try_cast(varchar as double), in Spark SQL: the same accepted spellings."""
    special = f"lower(trim({text}))"
    return (
        f"case when {text} rlike '{DUCKDB_SPECIAL}' then case "
        f"when {special} like '%nan' then double('NaN') "
        f"when {special} like '-%' then double('-Infinity') else double('Infinity') end "
        f"when {text} rlike '{DUCKDB_DOUBLE}' "
        f"then try_cast(replace(trim({text}), '_', '') as double) end"
    )


def bigint_sql(text: str) -> str:
    """try_cast(try_cast(x as double) as bigint): DuckDB rounds half to even where Spark
    truncates, and refuses 2^63, which Spark's cast clamps to Long.MaxValue."""
    value = double_sql(text)
    return (
        f"case when {value} >= -9.223372036854775808E18 and {value} < 9.223372036854775808E18 "
        f"then cast(bround({value}, 0) as bigint) end"
    )


def boolean_sql(text: str) -> str:
    """DuckDB's try_cast(varchar as boolean): these words in any case, never trimmed."""
    return (
        f"case when lower({text}) in ({TRUE_WORDS}) then true "
        f"when lower({text}) in ({FALSE_WORDS}) then false end"
    )


def let(value: str, name: str, body: str) -> str:
    """Binds `value` to `name` once inside `body` (Spark SQL has no let; a one-element
    transform does it), so a long expression is not copied into each of its uses."""
    return f"transform(array({value}), {name} -> {body})[0]"


def yyjson_double_sql(number: str) -> str:
    """A finite double as yyjson (DuckDB's JSON library) writes it: shortest round-trip digits,
    fixed notation with '.0' for integral values when 1e-6 <= |x| < 1e21, else '1.5e-7'.

    Built from Java's Double.toString digits (round-trip exact; shortest except for rare
    values far from Reddit's epochs and scores, see glue_scripts/README.md)."""
    pattern = "'^([0-9]+)[.]([0-9]+)(E(-?[0-9]+))?$'"
    parts = (
        f"named_struct('w', regexp_extract(s, {pattern}, 1), "
        f"'f', regexp_extract(s, {pattern}, 2), "
        f"'e', coalesce(cast(nullif(regexp_extract(s, {pattern}, 4), '') as int), 0))"
    )
    unpadded = (
        "named_struct('w', length(p.w), 'e', p.e, 'all', concat(p.w, p.f), "
        "'unp', regexp_replace(concat(p.w, p.f), '^0+', ''))"
    )
    # the value is 0.{d} x 10^k
    digits = (
        "named_struct('d', regexp_replace(u.unp, '0+$', ''), "
        "'k', u.w + u.e - (length(u.all) - length(u.unp)))"
    )
    fixed = (
        "case when q.k <= 0 then concat('0.', repeat('0', -q.k), q.d) "
        "when q.k >= length(q.d) then concat(q.d, repeat('0', q.k - length(q.d)), '.0') "
        "else concat(substr(q.d, 1, q.k), '.', substr(q.d, q.k + 1)) end"
    )
    scientific = (
        "concat(substr(q.d, 1, 1), if(length(q.d) > 1, concat('.', substr(q.d, 2)), ''), "
        "'e', cast(q.k - 1 as string))"
    )
    formatted = f"if(q.k between -5 and 21, {fixed}, {scientific})"
    body = let(parts, "p", let(unpadded, "u", let(digits, "q", formatted)))
    return let(
        number, "n", f"concat(if(n < 0, '-', ''), {let('cast(abs(n) as string)', 's', body)})"
    )


def text_columns(kind: str) -> list[str]:
    """The columns json_extract_string fills as text."""
    return [column for column, type_ in COLUMNS[kind] if type_ in ("string", "fullname")]


def texts_sql(kind: str, line: str = "value") -> str:
    """json_extract_string of every text field, as one array: Spark's text, except a JSON
    float, which DuckDB re-renders the yyjson way. Only a field whose text looks like a Java
    float parses the line again, to tell a JSON number from a JSON string such as "1.5". The
    formatter appears once, over the array, so the plan stays small (a copy per column
    made each query plan twice as slow to compile here)."""
    columns = text_columns(kind)
    texts = ", ".join(f"`f_{c}`" for c in columns)
    numbers = ", ".join(
        f"case when `f_{c}` rlike '{JAVA_FLOAT}' and cast(`f_{c}` as double) <> 0 "
        f"then from_json({line}, 'struct<`{c}`: double>').`{c}` end"
        for c in columns
    )
    formatted = f"coalesce({yyjson_double_sql('x')}, t)"
    return f"zip_with(array({texts}), array({numbers}), (t, x) -> if(x is null, t, {formatted}))"


def column_sql(kind: str, texts: str = "`__texts`") -> list[str]:
    """The select list of sql/process/{kind}.sql in Spark SQL, over json_tuple's f_{key} and
    the array texts_sql made."""
    position = {c: i for i, c in enumerate(text_columns(kind))}
    exprs = []
    for column, type_ in COLUMNS[kind]:
        field = f"`f_{column}`"
        if type_ == "string":
            sql = f"{texts}[{position[column]}]"
        elif type_ == "fullname":
            prefix = FULLNAME_PREFIX[kind]
            sql = (
                f"coalesce({texts}[{position[column]}], "
                f"concat('{prefix}', {texts}[{position['id']}]))"
            )
        elif type_ == "bigint":
            sql = bigint_sql(field)
        elif type_ == "double":
            sql = double_sql(field)
        elif type_ == "boolean":
            sql = boolean_sql(field)
        else:  # retrieved: newer dumps say retrieved_utc, older ones retrieved_on, API none
            sql = (
                f"coalesce({bounded_sql(double_sql('`f_retrieved_utc`'))}, "
                f"{bounded_sql(double_sql('`f_retrieved_on`'))}, {batch_retrieved_sql()})"
            )
        exprs.append(f"{sql} as `{column}`")
    return exprs


def batch_retrieved_sql() -> str:
    """tasks.lake.keys.batch_retrieved_utc: API batches are named api-<epoch>-..., the time Reddit
    was read, which its JSON lacks; null for dump batches."""
    epoch = "regexp_extract(`batch_id`, '^api-([0-9]{9,11})-', 1)"
    return f"cast(nullif({epoch}, '') as double)"


def bounded_sql(number: str) -> str:
    """`number` when it is an epoch within the bounds, else null (NaN and inf are outside)."""
    return let(number, "e", f"if(e >= {EARLIEST_EPOCH} and e < {LATEST_EPOCH}, e, null)")


def dt_sql() -> str:
    """The UTC day of created_utc, independent of the session time zone; null outside the
    bounds (staging quarantines such lines, so the raw layer holds none)."""
    day = "cast(date_from_unix_date(cast(floor(c / 86400) as int)) as string)"
    created = bounded_sql(double_sql("`f_created_utc`"))
    return f"{let(created, 'c', day)} as dt"


def transform(lines: DataFrame, kind: str, keep: Sequence[str] = ()) -> DataFrame:
    """Raw JSON lines (columns `value`, one object a line, and `batch_id`) -> the processed
    columns plus `dt`, carrying the `keep` columns through. One JSON parse per line extracts
    every field."""
    keys = json_keys(kind)
    carried = list(dict.fromkeys([*keep, "value", "batch_id"]))
    fields = lines.where(F.length(F.trim("value")) > 0).select(
        *carried, F.json_tuple("value", *keys).alias(*[f"f_{key}" for key in keys])
    )
    fields = fields.selectExpr("*", f"{texts_sql(kind)} as `__texts`")
    kept = [f"`{c}`" for c in keep]
    return fields.selectExpr(*kept, *column_sql(kind), dt_sql())


def with_batch(lines: DataFrame) -> DataFrame:
    """Adds `batch_id` (the raw file name up to its first dot, as tasks.lake.keys.batch_of) and the
    line's position, so each output file keeps its lines in raw order."""
    file = F.input_file_name()
    return lines.select(
        "value",
        F.regexp_extract(file, r"([^/.]+)[^/]*$", 1).alias("batch_id"),
        file.alias("_file"),
        F.monotonically_increasing_id().alias("_row"),
    )


def processed(spark: SparkSession, raw_uris: Sequence[str], kind: str) -> DataFrame:
    """The processed rows of these raw files, with batch_id, dt and their order columns."""
    lines = with_batch(spark.read.text(list(raw_uris)))
    return transform(lines, kind, keep=("batch_id", "_file", "_row"))


# ------------------------------------------------------------------- storage (local or S3)


class Storage:
    """The few file operations the job needs, on a local folder or under s3://bucket/prefix.
    Spark reads and writes through URIs; listing and moving go through boto3 or the OS."""

    def __init__(self, root: str, sse: str = "AES256", kms_key_id: str = "") -> None:
        parsed = urlparse(root)
        self.is_s3 = parsed.scheme in ("s3", "s3a")
        if self.is_s3:
            import boto3  # on Glue; only needed for S3 roots

            self.scheme, self.bucket = parsed.scheme, parsed.netloc
            self.prefix = parsed.path.strip("/")
            self.client = boto3.client("s3")
            self.extra: dict[str, str] = {}
            if sse == "aws:kms":
                self.extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id}
            elif sse and sse != "none":
                self.extra = {"ServerSideEncryption": sse}
        else:
            self.base = Path(parsed.path if parsed.scheme == "file" else root).resolve()

    def _s3_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        if self.is_s3:
            return f"{self.scheme}://{self.bucket}/{self._s3_key(key)}"
        return str(self.base / key)  # a plain path: Spark would not decode a file: URI

    def list_keys(self, prefix: str) -> list[str]:
        if self.is_s3:
            full = self._s3_key(prefix)
            keys = []
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            )
            for page in pages:
                keys.extend(item["Key"] for item in page.get("Contents", []))
            start = len(self.prefix) + 1 if self.prefix else 0
            return sorted(k[start:] for k in keys if not k.endswith("/"))
        base = self.base / prefix
        if base.is_file():
            return [prefix]
        files = base.rglob("*") if base.is_dir() else []
        return sorted(p.relative_to(self.base).as_posix() for p in files if p.is_file())

    def read_text(self, key: str) -> str:
        if self.is_s3:
            body = self.client.get_object(Bucket=self.bucket, Key=self._s3_key(key))["Body"]
            return body.read().decode()
        return (self.base / key).read_text()

    def write_text(self, key: str, text: str) -> None:
        if self.is_s3:
            self.client.put_object(
                Bucket=self.bucket, Key=self._s3_key(key), Body=text.encode(), **self.extra
            )
            return
        target = self.base / key
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".tmp-{target.name}")
        tmp.write_text(text)
        os.replace(tmp, target)

    def move(self, source: str, target: str) -> None:
        """S3 has no rename: a managed copy (multipart above 5 GB) then a delete."""
        if self.is_s3:
            src = {"Bucket": self.bucket, "Key": self._s3_key(source)}
            self.client.copy(src, self.bucket, self._s3_key(target), ExtraArgs=self.extra)
            self.client.delete_object(**src)
            return
        path = self.base / target
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.base / source, path)

    def delete_prefix(self, prefix: str) -> None:
        if self.is_s3:
            keys = self.list_keys(prefix)
            for start in range(0, len(keys), 1000):
                objects = [{"Key": self._s3_key(k)} for k in keys[start : start + 1000]]
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects})
            return
        shutil.rmtree(self.base / prefix, ignore_errors=True)


# ------------------------------------------------------------------------------- the job


def processed_key(kind: str, dt: str, batch_id: str) -> str:
    """The same key as tasks.lake.keys.processed_key."""
    return f"{PROCESSED_PREFIX}/{kind}/dt={dt}/{batch_id}.parquet"


def select_raw_keys(lake: Storage, args: dict[str, str]) -> list[str]:
    """The raw keys this run reads: listed, or from a list file, or under a prefix."""
    if args.get("raw_keys"):
        keys = [k.strip() for k in args["raw_keys"].split(",") if k.strip()]
    elif args.get("raw_list_key"):
        keys = [k.strip() for k in lake.read_text(args["raw_list_key"]).splitlines() if k.strip()]
    elif args.get("raw_prefix"):
        keys = [k for k in lake.list_keys(args["raw_prefix"]) if k.endswith(RAW_SUFFIXES)]
        wanted = {b.strip() for b in args.get("batch_ids", "").split(",") if b.strip()}
        if wanted:
            keys = [k for k in keys if k.rsplit("/", 1)[-1].split(".", 1)[0] in wanted]
    else:
        raise ValueError("give --raw_keys, --raw_list_key or --raw_prefix")
    unreadable = [k for k in keys if not k.endswith(RAW_SUFFIXES)]
    if unreadable:
        # Spark reads gzip text natively; zstd needs Hadoop's native codec, absent on Glue.
        raise ValueError(f"the Glue engine reads gzip raw batches only, not {unreadable[0]!r}")
    return keys


def run(spark: SparkSession, args: dict[str, str]) -> dict[str, object]:
    """Process the selected raw batches; returns the manifest (also written if asked)."""
    kind = args["kind"]
    if kind not in COLUMNS:
        raise ValueError(f"--kind must be one of {sorted(COLUMNS)}, not {kind!r}")
    sse, kms = args.get("sse", "AES256"), args.get("kms_key_id", "")
    lake = Storage(args["lake_root"], sse, kms)
    out = Storage(args.get("output_root") or args["lake_root"], sse, kms)
    raw_keys = select_raw_keys(lake, args)
    manifest: dict[str, object] = {"kind": kind, "rows": 0, "processed_keys": [], "dts": []}
    if raw_keys:
        manifest.update(write_processed(spark, lake, out, kind, raw_keys, args))
    if args.get("manifest_key"):
        out.write_text(args["manifest_key"], json.dumps(manifest, indent=1))
    return manifest


def write_processed(
    spark: SparkSession,
    lake: Storage,
    out: Storage,
    kind: str,
    raw_keys: list[str],
    args: dict[str, str],
) -> dict[str, object]:
    """One Spark write for every batch: repartitioning on (batch_id, dt) puts each pair in one
    task, so partitionBy writes exactly one file per pair under a temporary prefix; each file is
    then moved to its final key. Partition columns are not stored in the files, as in DuckDB's
    partitioned COPY, so the file schemas match."""
    run_id = args.get("JOB_RUN_ID") or uuid.uuid4().hex
    tmp_prefix = f"{TMP_PREFIX}/{kind}/{run_id}"
    rows = processed(spark, [lake.uri(k) for k in raw_keys], kind)
    (
        rows.repartition("batch_id", "dt")
        .sortWithinPartitions("batch_id", "dt", "_file", "_row")
        .drop("_file", "_row")
        .write.mode("overwrite")
        .option("compression", "snappy")
        .partitionBy("batch_id", "dt")
        .parquet(out.uri(tmp_prefix))
    )
    written = [k for k in out.list_keys(tmp_prefix) if k.endswith(".parquet")]
    by_pair: dict[tuple[str, str], list[str]] = {}
    for key in written:
        batch_dir, dt_dir = key.split("/")[-3:-1]
        pair = (unquote(batch_dir.removeprefix("batch_id=")), unquote(dt_dir.removeprefix("dt=")))
        by_pair.setdefault(pair, []).append(key)
    keys: list[str] = []
    for (batch_id, dt), parts in sorted(by_pair.items()):
        for index, part in enumerate(sorted(parts)):
            name = batch_id if len(parts) == 1 else f"{batch_id}-{index}"
            target = processed_key(kind, dt, name)
            out.move(part, target)
            keys.append(target)
    count = spark.read.parquet(*[out.uri(k) for k in keys]).count() if keys else 0
    out.delete_prefix(tmp_prefix)
    return {"rows": count, "processed_keys": keys, "dts": sorted({dt for _, dt in by_pair})}


# ---------------------------------------------------------------------- arguments and main

REQUIRED = ["JOB_NAME", "kind", "lake_root"]
OPTIONAL = [
    "raw_keys",
    "raw_list_key",
    "raw_prefix",
    "batch_ids",
    "output_root",
    "manifest_key",
    "sse",
    "kms_key_id",
    "JOB_RUN_ID",
]


def _resolve_locally(argv: Sequence[str], names: Sequence[str]) -> dict[str, str]:
    """getResolvedOptions' behaviour without awsglue: `--name value` or `--name=value`, every
    name required, unknown arguments ignored (Glue adds its own)."""
    parser = argparse.ArgumentParser(prog="process_reddit.py")
    for name in names:
        parser.add_argument(f"--{name}", required=True)
    known, _ = parser.parse_known_args(list(argv[1:]))
    return vars(known)


def resolve_args(argv: Sequence[str]) -> dict[str, str]:
    """Glue's getResolvedOptions requires every name it is given, so optional names are asked
    for only when present."""
    try:
        from awsglue.utils import getResolvedOptions  # type: ignore[import-not-found]
    except ImportError:
        getResolvedOptions = _resolve_locally
    present = [n for n in OPTIONAL if any(a.split("=")[0] == f"--{n}" for a in argv)]
    return dict(getResolvedOptions(list(argv), REQUIRED + present))


def spark_session() -> SparkSession:
    """Glue's session on Glue, a local one elsewhere (master from SPARK_MASTER, default
    local[*])."""
    try:
        from awsglue.context import GlueContext  # type: ignore[import-not-found]
        from pyspark.context import SparkContext

        return GlueContext(SparkContext.getOrCreate()).spark_session
    except ImportError:
        return (
            SparkSession.builder.master(os.environ.get("SPARK_MASTER", "local[*]"))
            .appName("process_reddit")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate()
        )


def main(argv: Sequence[str]) -> dict[str, object]:
    args = resolve_args(argv)
    spark = spark_session()
    manifest = run(spark, args)
    print(json.dumps({k: manifest[k] for k in ("kind", "rows", "dts")}))
    return manifest


if __name__ == "__main__":
    main(sys.argv)
