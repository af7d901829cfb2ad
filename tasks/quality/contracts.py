"""Check: run the Soda data contracts in contracts/ on the run's processed and curated data,
between model and load, so that bad data never reaches the warehouse. The contracts see the
rows of the run's scope (tasks.core.scope: its days, its subreddits), which is also what the load
merges: rows other runs left in the same days are neither checked nor loaded by this one.

A failed error-level check raises QualityGateFailed before the load: the warehouse keeps its
last good state and the watermarks stay where they were. Warning-level checks (`level: warn`
in a contract's threshold) are reported and let the load go on. Soda itself never raises on a
failed check; this module reads its result object and decides.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import settings
from tasks.core import RunScope, duck
from tasks.lake import Lake, readable_path
from tasks.quality.datasets import DATASETS, lake_source
from tasks.quality.sources import CheckEngine, CheckSource
from tasks.state import StateStore

CONTRACTS_DIR = settings.PROJECT_DIR / "contracts"
# Which extracted kind feeds a dataset: its row count must be above zero only when the
# extract found items of that kind (a run given only a submissions dump has no comments).
DATASET_KIND = {
    "processed_posts": "posts",
    "processed_comments": "comments",
    "posts": "posts",
    "comments": "comments",
    "subreddit_daily": None,
}
QUALITY_FAILED_EVENT = "reddit_pipeline.quality.failed"
QUALITY_WARNED_EVENT = "reddit_pipeline.quality.warned"
ARTIFACT_KEY = "reddit-pipeline-quality"
# Contracts spell types the DuckDB way; Soda's schema check compares names (with a few
# synonyms per engine), so an engine that spells a type differently gets it translated here.
# PostgreSQL reports `text` and `double precision`, which Soda does not equate with
# `varchar` and `double`; Redshift `double precision` (Soda equates its `character varying`
# with `varchar`); Athena's names are DuckDB's (Soda equates `string` with `varchar`).
TYPE_ALIASES: dict[str, dict[str, str]] = {
    "duckdb": {},
    "postgres": {"varchar": "text", "double": "double precision"},
    "redshift": {"double": "double precision"},
    "athena": {},
}
SEVERITY = {"fail": "error", "warn": "warning"}
# The names Soda gives checks a contract did not name (soda_core's CheckImpl defaults).
SODA_DEFAULT_NAMES = {
    "schema": "Schema matches expected structure",
    "row_count": "Row count meets expected threshold",
    "freshness": "Data is fresh",
    "missing": "No missing values",
    "invalid": "No invalid values",
    "duplicate": "No duplicate values",
    "aggregate": "Metric function meets threshold",
    "metric": "Metric meets threshold",
    "failed_rows": "No rows violating the condition",
}


class QualityGateFailed(RuntimeError):
    """An error-level contract check failed; the load was not run."""

    def __init__(self, report: CheckReport) -> None:
        super().__init__(report.failure_message())
        self.report = report


@dataclass(frozen=True)
class CheckRow:
    dataset: str
    check: str
    outcome: str  # passed | failed | warned | not evaluated
    severity: str  # error | warning
    figure: float | int | None
    detail: str = ""

    @property
    def blocks_load(self) -> bool:
        """An error-level check that failed, or could not be evaluated at all: either way
        the data is not known to be good."""
        return self.severity == "error" and self.outcome in ("failed", "not evaluated")

    def describe(self) -> str:
        figure = "n/a" if self.figure is None else f"{self.figure:g}"
        text = f"{self.dataset}: {self.check} {self.outcome} (figure {figure})"
        return f"{text}: {self.detail}" if self.detail else text


@dataclass
class CheckReport:
    rows: list[CheckRow] = field(default_factory=list)
    # Contract-level problems (a YAML mistake, a missing table): no check result to read.
    errors: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[CheckRow]:
        return [r for r in self.rows if r.blocks_load]

    @property
    def warnings(self) -> list[CheckRow]:
        return [r for r in self.rows if r.outcome in ("failed", "warned") and not r.blocks_load]

    @property
    def passed(self) -> bool:
        return not self.failures and not self.errors

    def failed_datasets(self) -> dict[str, list[CheckRow]]:
        by_dataset: dict[str, list[CheckRow]] = {}
        for row in self.failures:
            by_dataset.setdefault(row.dataset, []).append(row)
        for error in self.errors:
            dataset = error.split(":", 1)[0]
            by_dataset.setdefault(dataset, [])
        return by_dataset

    def failure_message(self) -> str:
        lines = [
            f"quality gate failed: {len(self.failures)} error-level check(s) failed"
            + (f" and {len(self.errors)} contract error(s)" if self.errors else "")
            + "; the load was stopped, the warehouse keeps its last good state"
        ]
        lines += [f"- {row.describe()}" for row in self.failures]
        lines += [f"- contract error: {error}" for error in self.errors]
        return "\n".join(lines)

    def table(self) -> list[dict[str, Any]]:
        return [asdict(row) for row in self.rows]

    def error_rows(self) -> list[CheckRow]:
        """Contract errors as rows, numbered per dataset (`contract error 1`, ...) so that
        several errors of one contract are all kept."""
        counts: dict[str, int] = {}
        rows = []
        for error in self.errors:
            dataset = error.split(":", 1)[0]
            counts[dataset] = counts.get(dataset, 0) + 1
            rows.append(
                CheckRow(
                    dataset, f"contract error {counts[dataset]}", "error", "error", None, error
                )
            )
        return rows


def run_checks(
    source: CheckSource,
    *,
    subreddits: Sequence[str] = (),
    kinds_found: Iterable[str] | None = None,
    now: datetime | None = None,
    max_age_hours: float = 48.0,
    future_tolerance: timedelta = timedelta(seconds=settings.MAX_FUTURE_SECONDS),
    datasets: Sequence[str] = DATASETS,
    contracts_dir: Path = CONTRACTS_DIR,
    warehouse_posts: Sequence[str] = (),
) -> CheckReport:
    """Verify each dataset's contract and collect one row per check. Never raises on a failed
    check: `enforce` decides, so the caller can publish the results first.

    `subreddits` is the run's filter (empty: no filter, the check passes trivially);
    `kinds_found` the kinds the extract staged (None: all); `future_tolerance` allows for a
    little clock skew between Reddit and this machine; `warehouse_posts` the ids of posts the
    warehouse already holds that the run's comments answer (see posts_answered_outside)."""
    from soda_core.common.yaml import ContractYamlSource
    from soda_core.contracts.contract_verification import ContractVerificationSession

    now = (now or datetime.now(UTC)).astimezone(UTC)
    found = set(settings.KINDS if kinds_found is None else kinds_found)
    report = CheckReport()
    for dataset in datasets:
        path = contracts_dir / f"{dataset}.yml"
        text = _translate_types(path.read_text(), TYPE_ALIASES.get(source.engine, {}))
        kind = DATASET_KIND.get(dataset)
        result = ContractVerificationSession.execute(
            contract_yaml_sources=[ContractYamlSource.from_str(text, file_path=str(path))],
            data_source_impls=[source.impl],
            variables=_variables(
                source,
                subreddits,
                bool(found) if kind is None else kind in found,
                now,
                max_age_hours,
                future_tolerance,
                warehouse_posts,
            ),
            data_timestamp=now.isoformat(),
        )
        for contract_result in result.contract_verification_results:
            report.rows += [_row(dataset, r) for r in contract_result.check_results]
        report.errors += [f"{dataset}: {e}" for e in result.get_errors()]
    report.rows = _unique_labels(report.rows)
    return report


def enforce(report: CheckReport) -> CheckReport:
    """Raise QualityGateFailed when an error-level check failed; else hand the report on."""
    if not report.passed:
        raise QualityGateFailed(report)
    return report


def _variables(
    source: CheckSource,
    subreddits: Sequence[str],
    expect_rows: bool,
    now: datetime,
    max_age_hours: float,
    future_tolerance: timedelta,
    warehouse_posts: Sequence[str] = (),
) -> dict[str, Any]:
    not_after = now + future_tolerance
    names = sorted({s.lower() for s in subreddits})
    held = ", ".join(duck.quote_literal(i) for i in sorted(set(warehouse_posts)))
    return {
        "warehouse_post_ids": held or "''",
        "data_source": source.name,
        "namespace": source.namespace,
        "schema": source.namespace.rsplit("/", 1)[-1],
        "min_rows": 1 if expect_rows else 0,
        "subreddits_filtered": "true" if names else "false",
        "subreddits": ", ".join(duck.quote_literal(n) for n in names) or "''",
        "not_after": not_after.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds"),
        "not_after_epoch": int(not_after.timestamp()),
        "now_epoch": int(now.timestamp()),
        "max_age_hours": max_age_hours,
    }


def _translate_types(text: str, aliases: Mapping[str, str]) -> str:
    """Rewrite `data_type: X` lines in place, so error locations keep their line numbers."""
    if not aliases:
        return text
    return re.sub(
        r"^(\s*data_type:\s*)(\w+)\s*$",
        lambda m: m.group(1) + aliases.get(m.group(2).lower(), m.group(2)),
        text,
        flags=re.MULTILINE,
    )


def _row(dataset: str, result: Any) -> CheckRow:
    check = result.check
    level = check.threshold.level if check.threshold else "fail"
    outcome = result.outcome.value.lower().replace("_", " ").replace("warn", "warned")
    detail = ""
    if outcome != "passed" and check.type == "schema":
        detail = result.log_table_row_diagnostics(verbose=False).replace("\n", "; ")
    return CheckRow(
        dataset=dataset,
        check=check_label(check.type, check.column_name, check.name, check.qualifier),
        outcome=outcome,
        severity=SEVERITY.get(str(level).lower(), "error"),
        figure=result.threshold_value,
        detail=detail,
    )


def check_label(
    check_type: str, column: str | None, name: str | None, qualifier: str | None
) -> str:
    """What a check is called in messages, artifacts and `check_results`: the contract's
    `name:` when it gives one, else the type (and column), with the qualifier that tells two
    checks of one type apart. Soda fills in a generic name ("No missing values") when the
    contract gives none; that one says less than `id missing`."""
    if name and name not in (SODA_DEFAULT_NAMES.get(check_type), check_type):
        return name
    label = f"{column} {check_type}" if column else check_type
    return f"{label} ({qualifier})" if qualifier else label


def _unique_labels(rows: list[CheckRow]) -> list[CheckRow]:
    """`check_results` is keyed by (run, dataset, check): two checks that share a label (the
    same `name:` given twice) are numbered rather than overwrite each other."""
    seen: dict[tuple[str, str], int] = {}
    unique = []
    for row in rows:
        key = (row.dataset, row.check)
        seen[key] = seen.get(key, 0) + 1
        unique.append(row if seen[key] == 1 else replace(row, check=f"{row.check} #{seen[key]}"))
    return unique


@task(name="check", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10)
def check_task(
    lake: Lake,
    scope: RunScope,
    curated_keys: dict[str, list[str]],
    kinds_found: list[str],
    max_age_hours: float = 48.0,
    engine: CheckEngine | None = None,
    warehouse_posts: Sequence[str] = (),
) -> CheckReport:
    """Run all five contracts on the scope's rows of the run's files, an empty mart included;
    returns the report, raises nothing (the flow publishes and records it, then calls
    `enforce`). `engine`: where they run (tasks.run.engines.build_check_engine); default
    DuckDB over the lake. Retried once, for a briefly unreachable engine: a failed check is a
    result, not an exception."""
    open_source = engine.open if engine else partial(lake_source, lake)
    with open_source(scope, curated_keys) as source:
        return run_checks(
            source,
            subreddits=scope.subreddits,
            kinds_found=kinds_found,
            max_age_hours=max_age_hours,
            warehouse_posts=warehouse_posts,
        )


def posts_answered_outside(
    lake: Lake, scope: RunScope, curated_keys: Mapping[str, Sequence[str]]
) -> list[str]:
    """Fullnames of the posts that the scope's comments answer but the scope's posts do not
    hold. An incremental run reads today's comments, many on posts of earlier days that
    earlier runs loaded: the referential checks ask the warehouse about these (the flow passes
    the ones it holds as `warehouse_posts`) rather than warn about posts that are there."""
    comments = list(curated_keys.get("comments") or [])
    if not comments:
        return []
    posts = list(curated_keys.get("posts") or [])
    con = duck.connect()
    try:
        with tempfile.TemporaryDirectory(prefix="reddit-refs-") as tmp:
            read = partial(readable_path, lake, tmp_dir=Path(tmp))
            known = (
                f"select id from read_parquet({duck.path_list([str(read(k)) for k in posts])}) "
                f"where id is not null and {scope.subreddit_sql()}"
                if posts
                else "select cast(null as varchar) as id where false"
            )
            rows = con.execute(
                f"select distinct post_id from read_parquet("
                f"{duck.path_list([str(read(k)) for k in comments])}) "
                f"where post_id is not null and {scope.subreddit_sql()} "
                f"and post_id not in ({known})"
            ).fetchall()
    finally:
        con.close()
    return sorted(settings.FULLNAME_PREFIX["posts"] + row[0] for row in rows)


def answered_posts_in_warehouse(
    lake: Lake,
    scope: RunScope,
    curated_keys: Mapping[str, Sequence[str]],
    held: Callable[[str, Sequence[str]], set[str]],
) -> list[str]:
    """Bare ids of the posts outside the run's scope that its comments answer and that the
    warehouse holds (`held`: tasks.run.engines.Warehouse.held); `warehouse_posts` of check_task."""
    outside = posts_answered_outside(lake, scope, curated_keys)
    return sorted(name.rpartition("_")[2] for name in held("posts", outside)) if outside else []


# -- results: artifact, events, history -------------------------------------------------------


def publish_check_results(
    report: CheckReport, run_id: str | None = None, key: str = ARTIFACT_KEY
) -> list[str]:
    """A table artifact of every check, and one `reddit_pipeline.quality.failed` event per
    dataset that failed an error-level check (a `.warned` event per dataset with warnings),
    so automations can alert without parsing logs. Returns the events' names by dataset."""
    from prefect.artifacts import create_table_artifact
    from prefect.events import emit_event

    rows = [
        {k: row[k] for k in ("dataset", "check", "outcome", "severity", "figure")}
        for row in report.table()
    ]
    verdict = "passed" if report.passed else "FAILED (load stopped)"
    create_table_artifact(
        table=rows or [{"dataset": "", "check": "", "outcome": "no checks run"}],
        key=key,
        description=f"Data contract checks of run {run_id or '?'}: {verdict}, "
        f"{len(report.failures)} failed, {len(report.warnings)} warnings",
    )
    emitted = []
    groups = [(QUALITY_FAILED_EVENT, report.failed_datasets())]
    warned: dict[str, list[CheckRow]] = {}
    for row in report.warnings:
        warned.setdefault(row.dataset, []).append(row)
    groups.append((QUALITY_WARNED_EVENT, warned))
    for event, by_dataset in groups:
        for dataset, failed in sorted(by_dataset.items()):
            errors = [e for e in report.errors if e.startswith(f"{dataset}:")]
            emit_event(
                event=event,
                resource={
                    "prefect.resource.id": f"reddit_pipeline.dataset.{dataset}",
                    "prefect.resource.name": dataset,
                    "reddit_pipeline.run_id": run_id or "",
                },
                payload={
                    "dataset": dataset,
                    "run_id": run_id,
                    "checks": [asdict(row) for row in failed],
                    "contract_errors": errors,
                    "summary": "; ".join([r.describe() for r in failed] + errors),
                },
            )
            emitted.append(f"{event}:{dataset}")
    return emitted


def record_check_results(store: StateStore, run_id: str, report: CheckReport) -> None:
    """Keep the run's check rows for history in the state store; a retried check stage
    overwrites its rows."""
    checked_at = datetime.now(UTC).replace(tzinfo=None)
    store.record_check_rows(
        run_id,
        checked_at,
        (
            (
                row.dataset,
                row.check,
                row.outcome,
                row.severity,
                None if row.figure is None else float(row.figure),
                row.detail,
            )
            for row in [*report.rows, *report.error_rows()]
        ),
    )
