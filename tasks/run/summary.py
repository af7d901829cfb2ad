"""The run summary: counts per kind and subreddit, time per stage. Printed at the end of a
run, saved as Prefect artifacts and, as JSON, in the state store's runs table."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tasks.extract import StageResult
from tasks.load import LoadResult

COLUMNS = ("kind", "subreddit", "read", "quarantined", "staged", "new", "updated")
KIND_TABLE = {"posts": "posts", "comments": "comments"}


@dataclass
class RunSummary:
    run_id: str
    source: str
    inputs: list[str]
    stages: list[StageResult] = field(default_factory=list)
    load: LoadResult | None = None
    durations: dict[str, float] = field(default_factory=dict)
    daily_rows: dict[str, tuple[int, int]] = field(default_factory=dict)
    status: str = "running"
    messages: list[str] = field(default_factory=list)
    # API listings that ended (Reddit's ~1000-item cap) before the last run's watermark: one
    # row per subreddit and kind, with the window a dump backfill should cover.
    listing_gaps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def quarantined(self) -> int:
        return sum(s.quarantined for s in self.stages)

    @property
    def staged(self) -> int:
        return sum(sum(s.staged.values()) for s in self.stages)

    @property
    def raw_bytes(self) -> int:
        return sum(s.raw_bytes for s in self.stages)

    @property
    def damaged(self) -> list[str]:
        """Damaged inputs, "file: what, where" (the run failed on them, or kept what was read)."""
        return [e for s in self.stages for e in s.errors]

    def coerced(self) -> dict[str, int]:
        """Values of staged items that became null (wrong type, out of bounds), per
        "kind.field"."""
        totals: Counter[str] = Counter()
        for stage in self.stages:
            totals.update({f"{stage.kind}.{name}": n for name, n in stage.coerced.items()})
        return dict(sorted(totals.items()))

    def coerced_text(self) -> str:
        return ", ".join(f"{name} {n}" for name, n in self.coerced().items())

    def truncated(self) -> dict[str, dict[str, int]]:
        """Text values cut to fit the warehouse, per table and column (Redshift only)."""
        if not self.load:
            return {}
        return {
            table: {column: n for column, n in sorted(columns.items()) if n}
            for table, columns in sorted(self.load.truncated.items())
            if any(columns.values())
        }

    def rows(self) -> list[dict[str, Any]]:
        """One row per kind and subreddit, plus one per kind for lines no subreddit owns."""
        rows = []
        for kind in ("posts", "comments"):
            stages = [s for s in self.stages if s.kind == kind]
            if not stages:
                continue
            read: Counter[str] = Counter()
            staged: Counter[str] = Counter()
            for stage in stages:
                read.update(stage.read)
                staged.update(stage.staged)
            changes = self.load.changes.get(KIND_TABLE[kind], {}) if self.load else {}
            for subreddit in sorted(staged):
                new, updated = changes.get(subreddit, (0, 0))
                rows.append(
                    {
                        "kind": kind,
                        "subreddit": subreddit,
                        "read": read[subreddit],
                        "quarantined": 0,
                        "staged": staged[subreddit],
                        "new": new,
                        "updated": updated,
                    }
                )
            skipped = sum(s.skipped for s in stages)
            quarantined = sum(s.quarantined for s in stages)
            if skipped or quarantined:
                rows.append(
                    {
                        "kind": kind,
                        "subreddit": "(not kept)",
                        "read": quarantined + skipped,
                        "quarantined": quarantined,
                        "staged": 0,
                        "new": 0,
                        "updated": 0,
                    }
                )
        return rows

    def counts(self) -> dict[str, Any]:
        """The figures kept in the state store's runs table."""
        return {
            "lines": sum(s.lines for s in self.stages),
            "quarantined": self.quarantined,
            "quarantine_reasons": dict(sum((s.quarantine_reasons for s in self.stages), Counter())),
            "skipped": sum(s.skipped for s in self.stages),
            "staged": self.staged,
            "loaded_new": dict(self.load.inserted_totals()) if self.load else {},
            "loaded_updated": dict(self.load.updated_totals()) if self.load else {},
            "truncated": self.truncated(),
            "errors": self.damaged,
            "coerced": self.coerced(),
            "listing_gaps": list(self.listing_gaps),
        }

    def table(self) -> Table:
        table = Table(title=f"reddit_pipeline run {self.run_id} ({self.source})")
        for column in COLUMNS:
            table.add_column(column, justify="left" if column in ("kind", "subreddit") else "right")
        for row in self.rows():
            table.add_row(*(str(row[c]) for c in COLUMNS))
        return table

    def timings_markdown(self) -> str:
        lines = ["| stage | seconds |", "|---|---:|"]
        lines += [f"| {stage} | {seconds:.2f} |" for stage, seconds in self.durations.items()]
        reasons = self.counts()["quarantine_reasons"]
        if reasons:
            lines += ["", "| quarantine reason | lines |", "|---|---:|"]
            lines += [f"| {reason} | {n} |" for reason, n in sorted(reasons.items())]
        if self.listing_gaps:
            lines += [
                "",
                "| listing ended before the watermark | items read | may miss from | until |",
                "|---|---:|---|---|",
            ]
            lines += [
                f"| r/{g['subreddit']} {g['kind']} | {g['items_read']} | {g['may_miss_from']} "
                f"| {g['may_miss_until']} |"
                for g in self.listing_gaps
            ]
        if self.coerced():
            lines += ["", "| value coerced to null (wrong type, out of bounds) | values |"]
            lines += ["|---|---:|", *(f"| {k} | {n} |" for k, n in self.coerced().items())]
        if self.damaged:
            lines += ["", *(f"- **damaged input**: {damage}" for damage in self.damaged)]
        truncated = self.truncated()
        if truncated:
            lines += ["", "| text cut to fit the warehouse | values |", "|---|---:|"]
            lines += [
                f"| {table}.{column} | {n} |"
                for table, columns in truncated.items()
                for column, n in columns.items()
            ]
        lines += ["", *(f"- {message}" for message in self.messages)]
        return "\n".join(lines)

    def print(self, console: Console | None = None) -> None:
        console = console or Console()
        console.print(self.table())
        timings = ", ".join(f"{k} {v:.2f}s" for k, v in self.durations.items())
        console.print(f"stages: {timings}")
        if self.coerced():
            console.print(
                f"values coerced to null (wrong type, out of bounds): {self.coerced_text()}"
            )
        for damage in self.damaged:
            console.print(f"[bold red]damaged input[/] (what was read is loaded): {escape(damage)}")
        for message in self.messages:
            console.print(message)
