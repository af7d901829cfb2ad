"""Recovery from the lake: the raw layer alone is enough to recreate the processed layer, the
marts, the warehouse and the watermarks."""

from __future__ import annotations

import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from tasks import settings
from tasks.core import RunScope, crash_point, duck
from tasks.extract import newer_mark
from tasks.lake import Lake, batch_of, raw_place, readable_path, source_of_batch
from tasks.load import LoadResult
from tasks.quality import (
    answered_posts_in_warehouse,
    check_task,
    enforce,
    publish_check_results,
    record_check_results,
)
from tasks.run.engines import Engines
from tasks.state import StateStore, Watermarks, marks_not_held


@dataclass
class RebuildResult:
    batches: int = 0
    processed_rows: int = 0
    days: list[str] = field(default_factory=list)
    load: LoadResult | None = None
    watermarks: dict[str, Watermarks] = field(default_factory=dict)


def raw_keys_to_rebuild(
    lake: Lake,
    kind: str,
    subreddits: tuple[str, ...] = (),
    since_day: str | None = None,
    until_day: str | None = None,
) -> list[str]:
    """The raw keys behind each processed file that holds a matching partition. A processed
    file holds one batch's day, all subreddits together, so it is rebuilt whole or not at
    all: other subreddits of the same batch and day come back too."""
    keys = lake.list_keys(f"{settings.RAW_PREFIX}/{kind}/")
    wanted: set[tuple[str, str]] = set()
    located = []
    for key in keys:
        place = raw_place(key)
        if place is None:
            continue
        sub, dt = place
        located.append((key, batch_of(key), dt))
        if subreddits and sub not in subreddits:
            continue
        if (since_day and dt < since_day) or (until_day and dt >= until_day):
            continue
        wanted.add((batch_of(key), dt))
    return [key for key, batch, dt in located if (batch, dt) in wanted]


def watermarks_from_processed(lake: Lake, kind: str, keys: list[str]) -> dict[str, Watermarks]:
    """Per source, the newest (created_utc, fullname) of each subreddit, as runs commit them."""
    if not keys:
        return {}
    con = duck.connect()
    try:
        with tempfile.TemporaryDirectory(prefix="reddit-rebuild-") as tmp:
            paths = [str(readable_path(lake, key, Path(tmp))) for key in keys]
            rows = con.execute(
                f"""
                select
                    regexp_extract(filename, '([^/]+)\\.parquet$', 1) as batch,
                    lower(subreddit) as subreddit,
                    max(struct_pack(c := created_utc, l := length(name), n := name)) as newest
                from read_parquet({duck.path_list(paths)}, filename = true)
                group by all
                """
            ).fetchall()
    finally:
        con.close()
    result: dict[str, Watermarks] = defaultdict(dict)
    for batch, subreddit, newest in rows:
        source = source_of_batch(batch)
        candidate = (float(newest["c"]), str(newest["n"]))
        current = result[source].get((subreddit, kind))
        result[source][(subreddit, kind)] = newer_mark(current, candidate)
    return dict(result)


def rebuild_from_lake(
    engines: Engines,
    state: StateStore,
    subreddits: tuple[str, ...] = (),
    since_day: str | None = None,
    until_day: str | None = None,
    run_id: str = "rebuild",
    max_age_hours: float = 48.0,
) -> RebuildResult:
    """The pipeline's own process, model, check and load steps (whatever engines the config
    names: DuckDB or Glue, DuckDB or Athena, DuckDB, PostgreSQL or Redshift), fed from the raw
    lake instead of a source. A failed contract stops the load, as in a run.

    Its scope is a run's (tasks.core.scope): the days it reprocessed, for the subreddits asked for
    (none: every one). Whole batches are reprocessed, other subreddits' rows included, and the
    days are modeled whole; but only the scope's rows are checked and loaded, and only the
    scope's watermarks move, bound to the warehouse loaded."""
    lake = engines.lake
    result = RebuildResult()
    days: set[str] = set()
    kinds_found = []
    for kind in settings.KINDS:
        keys = raw_keys_to_rebuild(lake, kind, subreddits, since_day, until_day)
        result.batches += len({batch_of(k) for k in keys})
        processed = engines.process(kind, keys)
        result.processed_rows += processed.rows
        if processed.rows:
            kinds_found.append(kind)
        days |= processed.dts
        for source, marks in watermarks_from_processed(
            lake, kind, processed.processed_keys
        ).items():
            result.watermarks.setdefault(source, {}).update(marks)
    result.days = sorted(days)
    scope = RunScope.of(result.days, subreddits)
    result.watermarks = {
        source: {key: mark for key, mark in marks.items() if scope.covers(key[0])}
        for source, marks in result.watermarks.items()
    }
    modeled = engines.model(scope)
    report = check_task(
        lake,
        scope,
        modeled.curated_keys,
        kinds_found,
        max_age_hours,
        engines.check,
        answered_posts_in_warehouse(lake, scope, modeled.curated_keys, engines.held),
    )
    publish_check_results(report, run_id)
    record_check_results(state, run_id, report)
    enforce(report)  # QualityGateFailed: no load, no watermarks
    crash_point("rebuild:load")
    result.load = engines.load(modeled.curated_keys, run_id, scope)
    for source, marks in result.watermarks.items():
        missing = marks_not_held(marks, engines.held)  # none, unless the load lost rows
        held = {key: mark for key, mark in marks.items() if key not in missing}
        state.advance_watermarks(source, engines.destination, held, run_id)
    return result
