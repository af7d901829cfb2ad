"""Process: raw batches -> typed Parquet under processed/, one file per (day, batch).

The DuckDB engine lives here; the Glue engine (glue_scripts/) produces the same schema and
the same keys, so the model step never knows which one ran. With the DuckDB engine a run
processes while it stages (tasks/extract/stage.py runs the same model over each chunk, whose JSON it
has parsed anyway); process_batches reprocesses the raw layer (rebuilds, and tests that prove
both ways give the same rows).
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import settings
from tasks.core import duck
from tasks.lake import Lake, batch_of, batch_retrieved_utc, processed_key, readable_path


@dataclass
class ProcessResult:
    kind: str
    rows: int = 0
    processed_keys: list[str] = field(default_factory=list)
    dts: set[str] = field(default_factory=set)

    @classmethod
    def combine(cls, kind: str, parts: list[ProcessResult]) -> ProcessResult:
        """One kind's result from the parts that staging processed, input by input."""
        result = cls(kind=kind)
        for part in parts:
            if part.kind == kind:
                result.rows += part.rows
                result.processed_keys.extend(part.processed_keys)
                result.dts |= part.dts
        return result


def process_sql(kind: str, coerced: bool = False) -> str:
    """The kind's process model: the processed columns, then line_no. With `coerced`, also
    the list of fields each line had of the wrong type (staging counts them); without it
    DuckDB never computes that list."""
    model = duck.read_sql(f"process/{kind}.sql")
    return model if coerced else f"select * exclude (coerced) from ({model})"


def empty_processed_sql(kind: str) -> str:
    """The processed schema with no rows: the process model over no lines."""
    return (
        "with raw_lines as (select cast(null as bigint) as line_no, cast(null as varchar) as raw, "
        "cast(null as double) as batch_retrieved_utc where false) "
        f"select * exclude (line_no) from ({process_sql(kind)})"
    )


def publish_partitions(
    lake: Lake, kind: str, out: Path, batch_id: str, result: ProcessResult
) -> None:
    """Put the dt=... folders DuckDB's partitioned COPY wrote under `out` into the lake, one
    file per (day, batch): a rerun of the batch overwrites exactly what it wrote before."""
    for dt_dir in sorted(out.glob("dt=*")):
        dt = dt_dir.name.removeprefix("dt=")
        parts = sorted(dt_dir.glob("*.parquet"))
        for index, part in enumerate(parts):
            name = batch_id if len(parts) == 1 else f"{batch_id}-{index}"
            key = processed_key(kind, dt, name)
            lake.put_file(key, part)
            result.processed_keys.append(key)
        result.dts.add(dt)


def copy_partitioned_sql(query: str, out: Path) -> str:
    """COPY a query with a `dt` column to Parquet under `out`, one folder per day (the
    column itself is not written: readers take it from the folder name)."""
    return (
        f"copy ({query}) to {duck.quote_literal(str(out))} (format parquet, partition_by (dt), "
        f"filename_pattern 'part_{{i}}', compression {settings.PARQUET_CODEC})"
    )


def process_batches(lake: Lake, kind: str, raw_keys: list[str]) -> ProcessResult:
    """Turn the raw batches of one kind into processed Parquet, batch by batch, so memory is
    bounded by a batch and a rerun rewrites exactly the files it wrote before."""
    result = ProcessResult(kind=kind)
    by_batch: dict[str, list[str]] = defaultdict(list)
    for key in raw_keys:
        by_batch[batch_of(key)].append(key)
    con = duck.connect(bounded=True)
    try:
        with tempfile.TemporaryDirectory(prefix="reddit-process-") as tmp:
            for batch_id, keys in sorted(by_batch.items()):
                paths = [str(readable_path(lake, key, Path(tmp))) for key in keys]
                retrieved = batch_retrieved_utc(batch_id)
                con.execute(
                    "create or replace temp view raw_lines as select "
                    "cast(null as bigint) as line_no, json::varchar as raw, "
                    f"cast({retrieved or 'null'} as double) as batch_retrieved_utc "
                    f"from read_ndjson_objects({duck.path_list(paths)})"
                )
                out = Path(tmp) / batch_id
                # COPY returns the number of rows it wrote: no second read of the raw files.
                query = f"select * exclude (line_no) from ({process_sql(kind)})"
                written = con.execute(copy_partitioned_sql(query, out)).fetchone()
                publish_partitions(lake, kind, out, batch_id, result)
                result.rows += written[0] if written else 0
    finally:
        con.close()
    return result


@task(name="process", cache_policy=NO_CACHE)
def process_task(lake: Lake, kind: str, raw_keys: list[str]) -> ProcessResult:
    return process_batches(lake, kind, raw_keys)
