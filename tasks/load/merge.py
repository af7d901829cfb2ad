"""Load: curated Parquet -> warehouse tables, through a staging table and one MERGE per table,
all in one transaction: the warehouse holds the old state or the new one, never a mix.

Only a strictly newer version replaces a row, so loading the same files twice changes nothing.
Only the rows of the run's scope (tasks.core.scope) are merged: a curated file holds every subreddit
of its day, and a run over r/rust must not load r/python rows it neither asked for nor checked.
The statements are plain SQL that DuckDB, PostgreSQL 15+ and Redshift all accept: Redshift's
MERGE takes no target alias and no `WHEN MATCHED AND`, and it lacks IS DISTINCT FROM and
FILTER, so staged rows that are not newer are pruned first and the MERGE is unconditional.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tasks.core import duck

# Each warehouse table: its key, and when a matched row is replaced.
TABLE_KEYS = {
    "posts": ("id",),
    "comments": ("id",),
    "subreddit_daily": ("subreddit", "day"),
}


# Ids asked about per query (PostgreSQL, Redshift): an unfiltered dump run has a watermark
# per subreddit (~100k in a real month), and one IN list of them all would be megabytes.
HELD_BATCH = 1000


@dataclass
class LoadResult:
    # table -> subreddit -> (rows inserted, rows replaced by a newer version)
    changes: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    # table -> column -> text values cut to fit the warehouse (Redshift's 65,535-byte
    # VARCHAR); the rows are loaded, the cut is counted here and in the run summary.
    truncated: dict[str, dict[str, int]] = field(default_factory=dict)

    def inserted_totals(self) -> dict[str, int]:
        return {t: sum(n for n, _ in subs.values()) for t, subs in self.changes.items()}

    def updated_totals(self) -> dict[str, int]:
        return {t: sum(n for _, n in subs.values()) for t, subs in self.changes.items()}

    @property
    def changed(self) -> int:
        return sum(self.inserted_totals().values()) + sum(self.updated_totals().values())


@dataclass(frozen=True)
class MergeStatements:
    """What loading one staged table runs, in order: counts (one row per subreddit: inserted,
    replaced), prune (drop staged rows that are not newer), merge (unconditional)."""

    counts: str
    prune: str
    merge: str


def replace_condition(table: str, columns: Sequence[str], s: str, t: str) -> str:
    """When a staged row `s` replaces the warehouse row `t` with the same key: a strictly newer
    retrieval when the table has one, else any difference (null-safe, without IS DISTINCT FROM)."""
    if "retrieved_at" in columns:
        return (
            f"{s}.retrieved_at > {t}.retrieved_at "
            f"or ({t}.retrieved_at is null and {s}.retrieved_at is not null)"
        )
    keys = TABLE_KEYS[table]
    return " or ".join(
        f"({s}.{c} <> {t}.{c} or ({s}.{c} is null) <> ({t}.{c} is null))"
        for c in columns
        if c not in keys
    )


def merge_statements(table: str, columns: Sequence[str]) -> MergeStatements:
    """The portable load of `stage_{table}` into `table` (see the module docstring)."""
    keys = TABLE_KEYS[table]
    stage = f"stage_{table}"
    replace = replace_condition(table, columns, "s", "t")
    counts = (
        f"select s.subreddit, "
        f"cast(sum(case when t.{keys[0]} is null then 1 else 0 end) as bigint), "
        f"cast(sum(case when t.{keys[0]} is not null and ({replace}) then 1 else 0 end) "
        f"as bigint) from {stage} s left join {table} t on "
        + " and ".join(f"t.{k} = s.{k}" for k in keys)
        + " group by s.subreddit"
    )
    # The target of DELETE and MERGE takes no alias in Redshift: name the tables instead.
    prune = (
        f"delete from {stage} using {table} where "
        + " and ".join(f"{table}.{k} = {stage}.{k}" for k in keys)
        + f" and not coalesce(({replace_condition(table, columns, stage, table)}), false)"
    )
    merge = (
        f"merge into {table} using {stage} s on "
        + " and ".join(f"{table}.{k} = s.{k}" for k in keys)
        + " when matched then update set "
        + ", ".join(f"{c} = s.{c}" for c in columns if c not in keys)
        + f" when not matched then insert ({', '.join(columns)}) "
        f"values ({', '.join('s.' + c for c in columns)})"
    )
    return MergeStatements(counts, prune, merge)


def bare_ids(fullnames: Sequence[str]) -> dict[str, str]:
    """bare id -> fullname: the tables' key is the bare id (`t3_abc` is post `abc`), and a
    lookup by key is what PostgreSQL's primary key index answers."""
    return {name.rpartition("_")[2]: name for name in fullnames}


def held_sql(table: str, ids: Sequence[str]) -> str:
    """Which of the given ids a warehouse table holds; the same text on DuckDB, PostgreSQL and
    Redshift. Literals, not parameters: the three drivers spell placeholders differently, and
    the values are Reddit ids from the state store."""
    return f"select id from {table} where id in ({', '.join(duck.quote_literal(i) for i in ids)})"


def chunks(values: Sequence[str], size: int = HELD_BATCH) -> list[Sequence[str]]:
    return [values[i : i + size] for i in range(0, len(values), size)]
