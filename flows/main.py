"""reddit_pipeline: extract -> stage -> process -> model -> load -> commit.

`python flows/main.py` runs it locally on the bundled sample with no server to start, no
cloud account and no Reddit credentials (Prefect starts a temporary API of its own).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

if __name__ == "__main__":  # a script: import this checkout's packages, not an installed copy
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flows  # noqa: F401  (first: its environment defaults must precede prefect's import)

# isort: split
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks import settings
from tasks.config import EMPTY_OVERRIDES, ConfigOverrides, PipelineConfig
from tasks.core import RunScope, crash_point, interruption_of, reraise_as_interrupt
from tasks.extract import (
    Window,
    check_dump,
    damaged_input_error,
    dump_kind,
    extract_api_task,
    newer_mark,
    stage_dump_task,
)
from tasks.process import ProcessResult
from tasks.quality import (
    CheckReport,
    answered_posts_in_warehouse,
    check_task,
    enforce,
    publish_check_results,
    record_check_results,
)
from tasks.run import (
    Engines,
    ResolvedSource,
    RunSummary,
    build_engines,
    flow_run_id,
    open_state,
    resolve_source,
    stop_glue_runs_hook,
)
from tasks.state import RunRecord, StateStore, Watermarks, marks_not_held


@flow(
    name="reddit-pipeline",
    log_prints=True,
    # A cancelled or crashed run must not leave a Glue job writing to the lake.
    on_cancellation=[stop_glue_runs_hook],
    on_crashed=[stop_glue_runs_hook],
)
def reddit_pipeline(
    config: PipelineConfig | None = None, overrides: ConfigOverrides = EMPTY_OVERRIDES
) -> RunSummary:
    """Extract Reddit items, stage them raw, process, model, load into the warehouse, and
    advance the watermarks only once the load has committed.

    Args:
        config: What to read (source, subreddits, window) and where to write it (lake,
            warehouse, state); every field is described below. Empty: the bundled sample.
            A run given `config` replaces the deployment's whole config.
        overrides: Config fields to change for this run only, e.g. {"subreddits":
            ["rust"]}; every other field keeps the deployment's config (its credentials
            block, rate limit, refresh).
    """
    config = (config or PipelineConfig()).with_overrides(overrides)
    log = get_run_logger()
    source = resolve_source(config)
    log.info("Source: %s", source.reason)
    engines = build_engines(config)
    log.info("Engines: %s", ", ".join(f"{k} {v}" for k, v in engines.description.items()))
    state = open_state(config)
    for dead in state.mark_crashed_runs():
        log.warning("Run %s ended without recording an outcome: marked crashed", dead)
    summary = RunSummary(
        run_id=f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}",
        source=source.name,
        inputs=[p.name for p in config.input_files()] if source.name != "api" else [],
    )
    state.start_run(
        RunRecord(
            summary.run_id,
            source.name,
            flow_run_id(),
            config.since,
            config.until,
            config.redacted_dump(),
        )
    )
    try:
        with state.subreddit_locks(
            source.name, config.subreddits, config.state_lock_wait.total_seconds()
        ):
            _run_stages(config, source, engines, state, summary)
    except BaseException as exc:
        interrupted = interruption_of(exc)
        summary.status = "cancelled" if interrupted else "failed"
        state.finish_run(
            summary.run_id,
            summary.status,
            summary.counts(),
            summary.raw_bytes,
            summary.durations,
            error=interrupted or f"{type(exc).__name__}: {exc}",
        )
        state.close()
        reraise_as_interrupt(exc, interrupted)
        raise
    summary.status = "completed"
    state.finish_run(
        summary.run_id, "completed", summary.counts(), summary.raw_bytes, summary.durations
    )
    _report_slowdown(state, summary, config)
    state.close()
    _publish(summary)
    return summary


def _run_stages(
    config: PipelineConfig,
    source: ResolvedSource,
    engines: Engines,
    state: StateStore,
    summary: RunSummary,
) -> None:
    """The data path, top to bottom: extract+stage, process, model, load, commit."""
    log = get_run_logger()
    lake = engines.lake
    watermarks = {} if rereads_window(config) else held_watermarks(state, source.name, engines)
    fused = engines.process_while_staging
    with _timed(summary, "extract+stage+process" if fused else "extract+stage"):
        if source.name == "api" and source.auth is not None:
            extracted = extract_api_task(config, source.auth, lake, watermarks, fused)
            summary.stages.extend(extracted.stages)
            for problem in extracted.problems:
                log.warning(problem)
                summary.messages.append(problem)
            for note in extracted.notes:
                log.info(note)
                summary.messages.append(note)
            for gap in extracted.gaps:
                log.warning(gap.message())
                summary.messages.append(gap.message())
                summary.listing_gaps.append(gap.row())
        else:
            for path in config.input_files():
                check_dump(path)
                window = _window(config, watermarks, dump_kind(path))
                summary.stages.append(
                    stage_dump_task(
                        path,
                        lake,
                        window,
                        config.raw_codec,
                        config.chunk_bytes,
                        source.name,
                        process=fused,
                    )
                )
    log.info(
        "Staged %d items (%d lines quarantined; values coerced to null: %s) into %s",
        summary.staged,
        summary.quarantined,
        summary.coerced_text() or "none",
        engines.description["lake"],
    )
    # A damaged dump fails the run here, after what was read is staged (the raw layer keeps
    # it) and before model, load and commit: nothing of it loads, no watermark moves.
    if damaged := damaged_input_error(summary.stages):
        if not config.keep_partial_input:
            raise damaged
        log.warning("Damaged input, loading what was read: %s", "; ".join(summary.damaged))
    crash_point("after:stage")

    if summary.staged:
        if fused:
            parts = [s.processed for s in summary.stages]
            processed = [ProcessResult.combine(kind, parts) for kind in settings.KINDS]
        else:
            with _timed(summary, "process"):
                processed = [
                    engines.process(
                        kind, [k for s in summary.stages if s.kind == kind for k in s.raw_keys]
                    )
                    for kind in settings.KINDS
                ]
        # The one scope the model, the checks and the load share (tasks.core.scope).
        scope = RunScope.of(set().union(*(p.dts for p in processed)), config.subreddits)
        log.info("Processed %d rows; scope %s", sum(p.rows for p in processed), scope.describe())
        crash_point("after:process")
        with _timed(summary, "model"):
            modeled = engines.model(scope)
        log.info("Modeled %s", ", ".join(f"{m} {n}" for m, n in modeled.rows.items()))
        crash_point("after:model")
        with _timed(summary, "check"):
            report = _quality_gate(config, engines, scope, modeled.curated_keys, state, summary)
        enforce(report)  # QualityGateFailed: no load, no watermark commit, the run fails
        with _timed(summary, "load"):
            summary.load = engines.load(modeled.curated_keys, summary.run_id, scope)
        log.info(
            "Loaded into %s: new %s, updated %s",
            engines.description["warehouse"],
            summary.load.inserted_totals(),
            summary.load.updated_totals(),
        )
        crash_point("after:load")
    if not summary.load or not summary.load.changed:
        summary.messages.append("Nothing new since the last run: the warehouse is unchanged.")
        log.info(summary.messages[-1])

    with _timed(summary, "commit"):
        _commit(state, source.name, engines, summary)


def _report_slowdown(state: StateStore, summary: RunSummary, config: PipelineConfig) -> None:
    """Warn, and emit an event the alerts listen to, when this run took k times the median of
    the recent ones of its kind; a finished run must not fail on its own monitoring."""
    log = get_run_logger()
    try:
        from tasks.ops import report_slowdown

        slow = report_slowdown(
            state, summary.run_id, config.slowdown_factor, config.slowdown_history
        )
    except Exception as exc:
        log.warning("slowdown check failed: %s", exc)
        return
    if slow:
        log.warning("Slow run: %s", slow)
        summary.messages.append(slow)


def _quality_gate(
    config: PipelineConfig,
    engines: Engines,
    scope: RunScope,
    curated_keys: dict[str, list[str]],
    state: StateStore,
    summary: RunSummary,
) -> CheckReport:
    """Run the contracts, publish and record the results; the caller enforces them."""
    kinds_found = sorted({s.kind for s in summary.stages if sum(s.staged.values())})
    report = check_task(
        engines.lake,
        scope,
        curated_keys,
        kinds_found,
        config.freshness_max_age.total_seconds() / 3600,
        engines.check,
        answered_posts_in_warehouse(engines.lake, scope, curated_keys, engines.held),
    )
    publish_check_results(report, summary.run_id)
    record_check_results(state, summary.run_id, report)
    summary.messages.append(
        f"Quality: {len(report.rows)} contract checks, {len(report.failures)} failed, "
        f"{len(report.warnings)} warnings (artifact reddit-pipeline-quality)"
    )
    get_run_logger().info(summary.messages[-1])
    return report


def rereads_window(config: PipelineConfig) -> bool:
    """Whether the run ignores the watermarks: asked for (full_refresh), or given a closed
    window (since and until, as an Airflow data interval or a backfill day is). Watermarks
    only move forward, so after a later window has run they would narrow an earlier one to
    nothing and its backfill would load no row. _commit never moves them back."""
    return config.full_refresh or (config.since is not None and config.until is not None)


def _window(config: PipelineConfig, watermarks: Watermarks, kind: str) -> Window:
    """The run's window for one kind, narrowed per subreddit by its watermark less the
    overlap, so late items just before the watermark are read again."""
    overlap = config.overlap.total_seconds()
    bounds = tuple(
        sorted(
            (subreddit, created - overlap)
            for (subreddit, wm_kind), (created, _) in watermarks.items()
            if wm_kind == kind
        )
    )
    return Window(tuple(config.subreddits), config.since, config.until, bounds)


def held_watermarks(state: StateStore, source: str, engines: Engines) -> Watermarks:
    """The watermarks of the run's warehouse whose items it still holds. One whose item is
    gone (the warehouse file deleted, a table emptied or restored from an older backup) would
    make the run skip everything before it, so it is dropped, loudly: that subreddit and kind
    are read from the start again, which the MERGE makes safe."""
    marks = state.read_watermarks(source, engines.destination)
    missing = marks_not_held(marks, engines.held)
    if missing:
        get_run_logger().warning(
            "Ignoring %d watermark(s) of source %s: %s does not hold their items (deleted or "
            "emptied?); reading them from the start: %s",
            len(missing),
            source,
            engines.description.get("warehouse", engines.destination),
            _listed(f"r/{sub} {kind} (at {marks[sub, kind][1]})" for sub, kind in sorted(missing)),
        )
    return {key: mark for key, mark in marks.items() if key not in missing}


def _commit(state: StateStore, source: str, engines: Engines, summary: RunSummary) -> None:
    """Advance the watermarks of the run's warehouse to the newest items the load committed
    there; a candidate the warehouse does not hold is never committed (it would make later
    runs skip what this one failed to load)."""
    candidates: Watermarks = {}
    for stage in summary.stages:
        prefix = settings.FULLNAME_PREFIX[stage.kind]
        for subreddit, (created, item_id) in stage.newest.items():
            candidate = (created, prefix + item_id)
            key = (subreddit, stage.kind)
            candidates[key] = newer_mark(candidates.get(key), candidate)
    missing = marks_not_held(candidates, engines.held)
    if missing:
        get_run_logger().warning(
            "Not committing %d watermark(s) whose items %s does not hold: %s",
            len(missing),
            engines.description.get("warehouse", engines.destination),
            _listed(f"r/{sub} {kind}" for sub, kind in sorted(missing)),
        )
    held = {key: mark for key, mark in candidates.items() if key not in missing}
    state.advance_watermarks(source, engines.destination, held, summary.run_id)


def _listed(names: Iterable[str], limit: int = 20) -> str:
    """A log line's list, bounded: an unfiltered run has a watermark per subreddit."""
    shown = list(names)
    more = f" and {len(shown) - limit} more" if len(shown) > limit else ""
    return ", ".join(shown[:limit]) + more


@contextmanager
def _timed(summary: RunSummary, stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        summary.durations[stage] = time.perf_counter() - start


def _publish(summary: RunSummary) -> None:
    create_table_artifact(
        table=summary.rows(),
        key="reddit-pipeline-summary",
        description=f"Counts of run {summary.run_id} per kind and subreddit",
    )
    create_markdown_artifact(
        markdown=summary.timings_markdown(),
        key="reddit-pipeline-stages",
        description=f"Time per stage of run {summary.run_id}",
    )


def main(argv: list[str] | None = None) -> int:
    """The command line: exit 0 for a completed run, 1 for a failed one (one line on stderr;
    the traceback with --debug, and in the Prefect UI through the API logs), 2 for bad
    arguments, 130 (143 for SIGTERM) for an interrupted one, recorded as cancelled."""
    from flows.cli import build_parser, parse_config, run_command

    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "rebuild":
        from flows.rebuild import main as rebuild_main

        return rebuild_main(argv[1:])
    if argv and argv[0] == "status":
        from flows.status import main as status_main

        return status_main(argv[1:])
    config = parse_config(argv)

    def show(summary: RunSummary) -> None:
        summary.print()
        print(
            f"warehouse: {config.warehouse_path}\nlake: {config.lake_dir}\n"
            f"state: {config.state_path}"
        )

    return run_command(
        lambda: reddit_pipeline(config),
        show,
        "run",
        ", and the next run takes it up again",
        debug=build_parser().parse_args(argv).debug,
    )


if __name__ == "__main__":
    sys.exit(main())
