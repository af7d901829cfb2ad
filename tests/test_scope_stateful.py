"""Search for a sequence of runs that leaves a warehouse other than the union of the scopes of
the runs loaded into it: runs over subsets of subreddits, into one of two warehouses sharing a
lake and a state store, with a warehouse deleted now and then."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import duckdb
import pytest
from helpers import latest_sample
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from flows.main import reddit_pipeline
from tasks.config import PipelineConfig

pytestmark = pytest.mark.e2e

SUBREDDITS = ("python", "rust", "askhistorians")
WAREHOUSES = ("a", "b")


class SharedLake(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="reddit-scope-"))
        # What each warehouse must hold: the subreddits of the runs loaded since it was made.
        self.loaded: dict[str, set[str]] = {w: set() for w in WAREHOUSES}
        self.posts = {i: r["subreddit"].lower() for i, r in latest_sample("RS_2024-03.zst").items()}

    def _warehouse(self, name: str) -> Path:
        return self.root / f"{name}.duckdb"

    @rule(
        warehouse=st.sampled_from(WAREHOUSES),
        subreddits=st.sets(st.sampled_from(SUBREDDITS), min_size=1, max_size=2),
    )
    def run(self, warehouse: str, subreddits: set[str]) -> None:
        config = PipelineConfig(
            subreddits=sorted(subreddits),
            lake_dir=self.root / "lake",
            state_path=self.root / "state.duckdb",
            warehouse_path=self._warehouse(warehouse),
        )
        assert reddit_pipeline(config).status == "completed"
        self.loaded[warehouse] |= subreddits

    @rule(warehouse=st.sampled_from(WAREHOUSES))
    def delete_warehouse(self, warehouse: str) -> None:
        self._warehouse(warehouse).unlink(missing_ok=True)
        self.loaded[warehouse] = set()

    @invariant()
    def each_warehouse_holds_the_union_of_its_runs_scopes(self) -> None:
        for name in WAREHOUSES:
            path = self._warehouse(name)
            held: set[str] = set()
            if path.exists():
                con = duckdb.connect(str(path), read_only=True)
                try:
                    held = {row[0] for row in con.execute("select id from posts").fetchall()}
                finally:
                    con.close()
            expected = {i for i, sub in self.posts.items() if sub in self.loaded[name]}
            assert held == expected, (name, sorted(self.loaded[name]))

    def teardown(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


SharedLake.TestCase.settings = settings(
    max_examples=3,
    stateful_step_count=4,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.usefixtures("prefect_api")
class TestSharedLake(SharedLake.TestCase):  # type: ignore[misc]
    pass
