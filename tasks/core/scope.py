"""A run's scope: the one definition of what the model rebuilds, what the checks look at and
what the load merges, shared by all three (and by backfills and the rebuild).

Its own module because the model, the checks and the load must agree on it without importing
each other. A scope is the days the run touched, for the subreddits it asked for (none named:
every subreddit):

- the model rebuilds each of its days whole, every subreddit of the lake included: a curated
  file is one per day, and Athena, the rebuild and later runs read it as the day's truth;
- the checks see only the scope's rows of the processed and curated data, so a run filtered to
  r/rust is not failed by the r/python rows another run left in the same days;
- the load merges only the scope's rows, so a warehouse holds exactly the union of the scopes
  of the runs loaded into it, and a watermark is committed only for what the load merged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from tasks.core import duck


@dataclass(frozen=True)
class RunScope:
    """Days (YYYY-MM-DD) and subreddits (lower case; empty: every subreddit) of one run."""

    days: tuple[str, ...] = ()
    subreddits: tuple[str, ...] = ()

    @classmethod
    def of(cls, days: Iterable[str], subreddits: Iterable[str] = ()) -> RunScope:
        """Sorted and unique; subreddit names lower-cased, as the models spell them (dumps mix
        `Python` and `python` for one subreddit)."""
        return cls(tuple(sorted(set(days))), tuple(sorted({s.lower() for s in subreddits})))

    @property
    def every_subreddit(self) -> bool:
        return not self.subreddits

    def covers(self, subreddit: str) -> bool:
        return self.every_subreddit or subreddit.lower() in self.subreddits

    def subreddit_sql(self, column: str = "subreddit") -> str:
        """A SQL condition (DuckDB, PostgreSQL, Redshift and Athena alike) that keeps the
        scope's subreddits; processed rows keep the dump's spelling, hence lower()."""
        if self.every_subreddit:
            return "true"
        names = ", ".join(duck.quote_literal(s) for s in self.subreddits)
        return f"lower({column}) in ({names})"

    def filter_batch(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The rows of an Arrow batch (curated: `subreddit` lower case) within the scope."""
        if self.every_subreddit or batch.num_rows == 0:
            return batch
        wanted = pa.array(self.subreddits, type=pa.string())
        column = pc.utf8_lower(batch.column("subreddit").cast(pa.string()))
        return batch.filter(pc.fill_null(pc.is_in(column, value_set=wanted), False))

    def describe(self) -> str:
        days = f"{self.days[0]}..{self.days[-1]}" if self.days else "no day"
        subs = ", ".join(self.subreddits) if self.subreddits else "every subreddit"
        return f"{len(self.days)} day(s) {days}, {subs}"
