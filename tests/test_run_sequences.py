"""Generated sequences of runs, checked after every step against a plain reference model.

The rules are what a user does: run over dump files, the bundled sample or the API (the fake
Reddit server) with some subreddits and a window, rerun, --full-refresh, switch to a new
warehouse, kill a run at a crash point and run it again; and what Reddit does: new posts
arrive in r/python, and during a run its listing misbehaves (an `after` anchor or a whole
page deleted between two pages, a listing that says it ended though it did not, items moved
across pages, malformed children spliced in), or Reddit refuses a run (401).

After each step every warehouse must hold exactly what `Reference` computes: for each id
some run into it had in its scope (subreddit in the filter, created in [since, until), at
or after that warehouse's watermark less the overlap unless the window is re-read), the
version retrieved last among those the lake held then. Every run must succeed, except the
refused one, which must change nothing.

Runs go in-process under the session's Prefect server; only the killed run is a subprocess
(`python flows/main.py` with REDDIT_PIPELINE_CRASH_AT), its rerun in-process again.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
import zstandard
from fake_reddit import USER_AGENT, FakeReddit, bad_child, serve
from helpers import PROJECT_DIR, run_cli
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from strategies import budget

from tasks import settings as pipeline_settings
from tasks.extract.reddit_api import settings as api_settings

pytestmark = pytest.mark.e2e

SUBREDDITS = ("python", "rust", "dataengineering")
OVERLAP = 3600.0  # PipelineConfig.overlap's default
DAY = 86_400
T0 = 1_714_521_600  # 2024-05-01T00:00:00Z
CRASH_POINTS = (
    "stage:chunk",
    "after:stage",
    "after:process",
    "after:model",
    "load:posts",
    "load:comments",
    "after:load",
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# Windows on day bounds: a run's scope is whole days, so a bound inside a day would leave
# it to the implementation whether the rest of that day is merged.
SINCES = (None, utc("2024-03-03"), utc("2024-05-02"), utc("2024-05-03"))
UNTILS = (None, utc("2024-03-05"), utc("2024-05-03"), utc("2024-05-04"), utc("2024-05-05"))


# ---- the inputs -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Version:
    """One retrieval of one item, as an input holds it."""

    kind: str
    id: str
    subreddit: str
    created: float
    retrieved: float | None
    score: int | None

    def rank(self) -> tuple[bool, float, bool, int]:
        # posts.sql / comments.sql: retrieved last wins, nulls last, then the higher score.
        return (
            self.retrieved is not None,
            self.retrieved or 0.0,
            self.score is not None,
            self.score or 0,
        )


def _post(ident: str, sub: str, created: int, retrieved: int, score: int) -> dict[str, Any]:
    return {
        "id": ident,
        "subreddit": sub,
        "author": f"u_{ident[-2:]}",
        "title": f"post {ident}",
        "selftext": "",
        "score": score,
        "num_comments": 0,
        "created_utc": created,
        "retrieved_on": retrieved,
    }


def _comment(ident: str, sub: str, created: int, retrieved: int, score: int) -> dict[str, Any]:
    post = "t3_zzp" + ident[3:-2] + "02"
    return {
        "id": ident,
        "subreddit": sub,
        "author": f"u_{ident[-2:]}",
        "body": f"comment {ident}",
        "link_id": post,
        "parent_id": post,
        "score": score,
        "created_utc": created,
        "retrieved_on": retrieved,
    }


def _item(kind: str, sub: str, day: int, hour: int, minute: int = 0, tag: str = "") -> tuple:
    letter = "p" if kind == "posts" else "c"
    ident = f"zz{letter}{tag}{sub[:2]}{day}{hour:02d}"
    return ident, T0 + day * DAY + hour * 3600 + minute * 60


def build_dumps(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Five dumps over 2024-05-01..04 in three subreddits: a first crawl, a re-crawl of some
    ids (retrieved later, other scores) with a new day, and a per-subreddit dump of late
    items, one inside the hour of overlap before python's watermark and one outside it.
    Every version of an id has its own retrieval time. Returns name -> records."""
    dumps: dict[str, list[dict[str, Any]]] = {}
    make = {"posts": _post, "comments": _comment}
    for kind, prefix, hours in (("posts", "RS", (2, 11, 20)), ("comments", "RC", (3, 12, 21))):
        first, second = [], []
        for sub in SUBREDDITS:
            for day in range(3):
                for hour in hours:
                    ident, created = _item(kind, sub, day, hour)
                    # Dumps spell some names in another case; the filter ignores case.
                    spelled = sub.capitalize() if hour in (11, 12) and sub == "rust" else sub
                    first.append(make[kind](ident, spelled, created, created + DAY, 10))
                    if hour != hours[1]:
                        second.append(make[kind](ident, sub, created, created + 5 * DAY, 20))
                for hour in hours[:2]:
                    ident, created = _item(kind, sub, 3, hour)
                    second.append(make[kind](ident, sub, created, created + DAY, 11))
        dumps[f"crawl1/{prefix}_2024-05.zst"] = first
        dumps[f"crawl2/{prefix}_2024-05.zst"] = second
    late = []
    for hour, minute in ((19, 30), (8, 0)):
        ident, created = _item("posts", "python", 2, hour, minute, tag="l")
        late.append(_post(ident, "python", created, created + 2 * DAY, 30))
    ident, created = _item("posts", "python", 1, 11)
    late.append(_post(ident, "python", created, created + 9 * DAY, 40))
    dumps["late/python_submissions.zst"] = late
    for name, records in dumps.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        body = "".join(json.dumps(r) + "\n" for r in records).encode()
        path.write_bytes(zstandard.ZstdCompressor(level=3).compress(body))
    return dumps


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def score(value: Any) -> int | None:
    """A score as staging types it: a number or a numeric string ('12' from the API)."""
    number = _number(value)
    return None if number is None else int(number)


def versions_of(kind: str, records: list[Any]) -> list[Version]:
    """The usable records of an input, read with plain json semantics: an object with an id,
    a subreddit and a created_utc from Reddit's opening to now (what staging keeps)."""
    out = []
    for record in records:
        if not isinstance(record, dict) or not record.get("id") or not record.get("subreddit"):
            continue
        created = _number(record.get("created_utc"))
        if created is None or not 1_117_584_000 <= created <= time.time() + DAY:
            continue
        retrieved = _number(record.get("retrieved_utc"))
        if retrieved is None:
            retrieved = _number(record.get("retrieved_on"))
        out.append(
            Version(
                kind,
                str(record["id"]),
                str(record["subreddit"]).lower(),
                created,
                retrieved,
                score(record.get("score")),
            )
        )
    return out


def sample_versions() -> list[Version]:
    out = []
    for name, kind in (("RS_2024-03.zst", "posts"), ("RC_2024-03.zst", "comments")):
        reader = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(
            (pipeline_settings.SAMPLE_DIR / name).open("rb")
        )
        records = []
        for line in io.TextIOWrapper(reader, encoding="utf-8"):
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        out += versions_of(kind, records)
    return out


# ---- the reference model --------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """What one run reads and where it writes: the rules' one description of a run."""

    source: str  # dump | sample | api
    dumps: tuple[str, ...] = ()
    subreddits: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    full_refresh: bool = False

    def rereads(self) -> bool:
        return self.full_refresh or (self.since is not None and self.until is not None)


def day_of(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%d")


@dataclass
class Reference:
    """What each warehouse must hold, in a few lines of plain Python.

    A run stages the items of its inputs in its filter and window, and (unless it re-reads
    the window) at or after the warehouse's watermark less the overlap. Its scope is the days
    it staged items for, times its filter: the warehouse then holds every item the lake has
    in that scope, in the version retrieved last."""

    lake: dict[tuple[str, str], Version] = field(default_factory=dict)
    warehouses: dict[str, dict[tuple[str, str], Version]] = field(default_factory=dict)
    marks: dict[str, dict[tuple[str, str, str], float]] = field(default_factory=dict)

    def run(
        self,
        warehouse: str,
        run: Run,
        inputs: list[Version],
        holds: frozenset[tuple[str, str, str]] = frozenset(),
    ) -> None:
        """`holds`: (source, subreddit, kind) whose listing had a gap nothing could get past,
        so their watermark must stay where it is."""
        marks = self.marks.setdefault(warehouse, {})
        held = self.warehouses.setdefault(warehouse, {})
        since = run.since.timestamp() if run.since else -math.inf
        until = run.until.timestamp() if run.until else math.inf

        def wanted(v: Version) -> bool:
            return not run.subreddits or v.subreddit in run.subreddits

        def staged(v: Version) -> bool:
            if not wanted(v) or not since <= v.created < until:
                return False
            mark = marks.get((run.source, v.subreddit, v.kind))
            return run.rereads() or mark is None or v.created >= mark - OVERLAP

        scope = [v for v in inputs if staged(v)]
        for v in scope:
            current = self.lake.get((v.kind, v.id))
            if current is None or v.rank() > current.rank():
                self.lake[(v.kind, v.id)] = v
        days = {day_of(v.created) for v in scope}
        for key, v in self.lake.items():
            if day_of(v.created) in days and wanted(v):
                held[key] = v
        for v in scope:
            key = (run.source, v.subreddit, v.kind)
            if key not in holds:
                marks[key] = max(marks.get(key, -math.inf), v.created)

    def mark(self, warehouse: str, key: tuple[str, str, str]) -> float | None:
        return self.marks.get(warehouse, {}).get(key)


# ---- what a hostile Reddit serves, and what a reader that recovers gets from it -------------
BUSY = "python"  # the one subreddit whose posts fill several pages
PAGE = api_settings.PAGE_SIZE  # 100 items a page
RESUME_TRIES = api_settings.RESUME_TRIES  # items tried, one after another, past a vanished anchor
LISTING_FAULTS = (None, "delete_anchors", "delete_pages", "end_early")
SPLICE_PROBLEMS = ("missing_created", "null_created", "text_created", "more", "string_score")


@dataclass(frozen=True)
class ApiFault:
    """What Reddit does to r/python's posts during one run: one listing fault on the first
    page (see FakeReddit), listing positions swapped, bad children spliced in."""

    listing: str | None = None
    swaps: tuple[tuple[int, int], ...] = ()
    splices: tuple[tuple[int, str], ...] = ()


def splice_child(position: int, problem: str) -> dict[str, Any]:
    """The child spliced in for a fault: the same for the model and the server, with an id
    of its own (no content id is this long)."""
    return bad_child("posts", BUSY, f"zs{position:03d}{SPLICE_PROBLEMS.index(problem)}", problem)


def _usable(child: dict[str, Any]) -> bool:
    created = child.get("data", {}).get("created_utc")
    return child.get("kind") == "t3" and isinstance(created, int | float)


def read_as_served(
    content: list[dict[str, Any]],
    fault: ApiFault,
    mark: float | None,
) -> tuple[list[dict[str, Any]], int, bool]:
    """What a reader that recovers gets from r/python's posts as the fake serves them under
    `fault`: the usable items, how many distinct bad children it met, and whether the
    watermark must hold. The server is played on a copy of its content, page by page, as
    it answers (an item deleted moves the later positions up).

    Each page is the 100 children after the `after` anchor. Paging stops after a page whose
    every usable item is older than the watermark less the overlap, at the listing's end,
    or on a page of nothing new. The listing fault strikes on the first page with more
    behind it: a deleted anchor is resumed after one of the three items read before it that
    is still there, an early end after the last item read; after a page deleted whole no
    such item is left, and what lay behind it waits for the next run.
    """
    content = list(content)
    spliced = [(position, splice_child(position, problem)) for position, problem in fault.splices]
    read: dict[str, dict[str, Any]] = {}
    bad: set[str] = set()
    strike = fault.listing
    after: str | None = None
    while True:
        items = serve(content, "posts", list(fault.swaps), spliced)
        names = [c["data"].get("name") for c in items]
        if after is not None and after not in names:
            order = list(read)
            before = order[: order.index(after)] if after in order else order
            alive = [n for n in reversed(before[-RESUME_TRIES:]) if n in names]
            if not alive:
                return list(read.values()), len(bad), True
            after = alive[0]
        start = names.index(after) + 1 if after is not None else 0
        page = items[start : start + PAGE]
        more = start + PAGE < len(items)
        usable = [c["data"] for c in page if _usable(c)]
        bad.update(json.dumps(c, sort_keys=True) for c in page if not _usable(c))
        fresh = [d for d in usable if d["name"] not in read]
        for d in usable:
            read.setdefault(d["name"], d)
        if usable and mark is not None and all(d["created_utc"] <= mark - OVERLAP for d in usable):
            break
        if not more or not fresh:
            break
        after = page[-1]["data"]["name"]
        if strike == "delete_anchors":
            content = [d for d in content if d["name"] != after]
        elif strike == "delete_pages":
            gone = {c["data"].get("name") for c in page}
            content = [d for d in content if d["name"] not in gone]
        elif strike == "end_early":
            after = list(read)[-1]
        strike = None
    return list(read.values()), len(bad), False


def warehouse_rows(path: Path) -> dict[tuple[str, str], int | None]:
    """(kind, id) -> score of every row of the posts and comments tables."""
    if not path.exists():
        return {}
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = {r[0] for r in con.execute("show tables").fetchall()}
        return {
            (kind, ident): score
            for kind in pipeline_settings.KINDS
            if kind in tables
            for ident, score in con.execute(f"select id, score from {kind}").fetchall()
        }
    finally:
        con.close()


# ---- the machine ----------------------------------------------------------------------------
@dataclass
class World:
    """What the whole test session shares: the inputs, the fake Reddit, the Prefect API."""

    prefect_api: str
    dump_dir: Path
    dumps: dict[str, list[Version]]
    sample: list[Version]
    reddit: FakeReddit
    reddit_env: dict[str, str]
    reddit_content: dict[str, Any]  # the server's content at the start of every example

    def api_versions(self, subreddits: tuple[str, ...]) -> list[Version]:
        now = time.time()
        return [
            Version(kind, item["id"], sub, item["created_utc"], now, item["score"])
            for sub in subreddits
            for kind in pipeline_settings.KINDS
            for item in self.reddit.content(sub, kind)
        ]

    def arrive(self, count: int) -> None:
        """New posts in r/python, each a minute and a second newer than the newest so far."""
        newest = max(d["created_utc"] for d in self.reddit.content(BUSY, "posts"))
        self.reddit.add_posts(BUSY, count, newest + 61, step=61)

    def inputs(self, run: Run) -> list[Version]:
        if run.source == "sample":
            return self.sample
        if run.source == "api":
            return self.api_versions(run.subreddits or SUBREDDITS)
        return [v for name in run.dumps for v in self.dumps[name]]


subsets = st.lists(st.sampled_from(SUBREDDITS), max_size=2, unique=True).map(tuple)


def _window(pair: tuple[datetime | None, datetime | None]) -> tuple[datetime | None, ...]:
    since, until = pair
    if since and until and since >= until:
        return since, None
    return since, until


windows = st.tuples(st.sampled_from(SINCES), st.sampled_from(UNTILS)).map(_window)
dump_sets = st.lists(
    st.sampled_from(
        [
            "crawl1/RS_2024-05.zst",
            "crawl1/RC_2024-05.zst",
            "crawl2/RS_2024-05.zst",
            "crawl2/RC_2024-05.zst",
            "late/python_submissions.zst",
        ]
    ),
    min_size=1,
    max_size=3,
    unique=True,
).map(tuple)
dump_runs = st.builds(
    lambda dumps, subs, window, full: Run("dump", dumps, subs, *window, full),
    dump_sets,
    subsets,
    windows,
    st.booleans(),
)
sample_runs = st.builds(
    lambda subs, window, full: Run("sample", (), subs, *window, full),
    subsets,
    windows,
    st.booleans(),
)
api_runs = st.builds(lambda subs: Run("api", (), subs), subsets)
# r/python alone, or every subreddit (the other listings are one short page each).
hostile_runs = st.sampled_from([Run("api", (), (BUSY,)), Run("api")])
positions = st.integers(0, 3 * PAGE - 1)
api_faults = st.builds(
    ApiFault,
    listing=st.sampled_from(LISTING_FAULTS),
    swaps=st.lists(st.tuples(positions, positions), max_size=3).map(tuple),
    # Not the last child of a page: that one is the next page's `after` anchor.
    splices=st.lists(
        st.tuples(
            positions.filter(lambda p: p % PAGE != PAGE - 1), st.sampled_from(SPLICE_PROBLEMS)
        ),
        max_size=3,
    ).map(tuple),
)


class PipelineRuns(RuleBasedStateMachine):
    world: World  # set by the test, before hypothesis builds a machine

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="run-sequences-"))
        self.model = Reference()
        self.warehouses_made = 0
        self.warehouse = "warehouse-0"
        self.last: Run | None = None

    # -- how a run is made ---------------------------------------------------------------------
    def paths(self) -> dict[str, Path]:
        return {
            "lake_dir": self.root / "lake",
            "warehouse_path": self.root / f"{self.warehouse}.duckdb",
            "state_path": self.root / "state.duckdb",
        }

    def config(self, run: Run) -> Any:
        from tasks.config import PipelineConfig

        return PipelineConfig(
            source=run.source,
            dump_paths=[self.world.dump_dir / name for name in run.dumps],
            subreddits=list(run.subreddits or (SUBREDDITS if run.source == "api" else ())),
            since=run.since,
            until=run.until,
            full_refresh=run.full_refresh,
            reddit_base_url=self.world.reddit.url if run.source == "api" else None,
            **self.paths(),
        )

    def cli_args(self, run: Run) -> list[str]:
        args = ["--source", run.source]
        for name in run.dumps:
            args += ["--dump-path", str(self.world.dump_dir / name)]
        for sub in run.subreddits or (SUBREDDITS if run.source == "api" else ()):
            args += ["--subreddit", sub]
        if run.since:
            args += ["--since", run.since.isoformat()]
        if run.until:
            args += ["--until", run.until.isoformat()]
        if run.full_refresh:
            args.append("--full-refresh")
        if run.source == "api":
            args += ["--reddit-url", self.world.reddit.url]
        paths = self.paths()
        args += ["--lake-dir", str(paths["lake_dir"]), "--warehouse", str(paths["warehouse_path"])]
        return [*args, "--state", str(paths["state_path"])]

    def execute(self, run: Run) -> None:
        """One run in-process; it must succeed, and then the model takes it too."""
        from flows.main import reddit_pipeline

        inputs = self.world.inputs(run)
        summary = reddit_pipeline(self.config(run))
        assert summary.status == "completed", summary.messages
        self.model.run(self.warehouse, run, inputs)
        self.last = run

    # -- the user's actions --------------------------------------------------------------------
    @initialize(run=dump_runs)
    def first_run(self, run: Run) -> None:
        self.execute(run)

    @rule(run=dump_runs)
    def run_dumps(self, run: Run) -> None:
        self.execute(run)

    @rule(run=sample_runs)
    def run_sample(self, run: Run) -> None:
        self.execute(run)

    @rule(run=api_runs)
    def run_api(self, run: Run) -> None:
        self.execute(run)

    @rule(run=hostile_runs, fault=api_faults)
    def run_api_against_a_hostile_reddit(self, run: Run, fault: ApiFault) -> None:
        """r/python's listing misbehaves during the run. The run must still succeed, keep
        every item it could page to, quarantine the bad children it met, say when a gap
        could not be crossed, and then hold that listing's watermark so a later run reads
        the gap."""
        from flows.main import reddit_pipeline

        reddit = self.world.reddit
        clean = self.world.inputs(run)
        key = ("api", BUSY, "posts")
        mark = None if run.rereads() else self.model.mark(self.warehouse, key)
        read, bad, holds = read_as_served(reddit.content(BUSY, "posts"), fault, mark)
        reddit.swaps = list(fault.swaps)
        for position, problem in fault.splices:
            reddit.spliced[BUSY, "posts"].append((position, splice_child(position, problem)))
        if fault.listing:
            setattr(reddit, fault.listing, 1)
        try:
            summary = reddit_pipeline(self.config(run))
        finally:
            reddit.switches_off()
        assert summary.status == "completed", summary.messages
        now = time.time()
        inputs = [v for v in clean if (v.subreddit, v.kind) != (BUSY, "posts")]
        inputs += [
            Version(
                "posts",
                d["id"],
                BUSY,
                d["created_utc"],
                now,
                score(d["score"]),
            )
            for d in read
        ]
        assert summary.quarantined == bad, (summary.quarantined, bad, fault)
        gaps = [g for g in summary.listing_gaps if (g["subreddit"], g["kind"]) == (BUSY, "posts")]
        assert bool(gaps) == holds, (summary.listing_gaps, summary.messages, fault)
        self.model.run(self.warehouse, run, inputs, frozenset({key}) if holds else frozenset())
        self.last = run

    @rule(run=api_runs)
    def a_run_reddit_refuses_changes_nothing(self, run: Run) -> None:
        """Every listing answers 401 after a fresh token (revoked app, suspended account):
        the run fails at once, and no warehouse and no watermark moves (the invariant and
        the runs after it say so)."""
        from flows.main import reddit_pipeline

        reddit = self.world.reddit
        reddit.inject("401", "/r/", times=10_000)
        try:
            with pytest.raises(Exception, match=r"401|authori[sz]"):
                reddit_pipeline(self.config(run))
        finally:
            reddit.faults.clear()

    @rule(count=st.integers(1, 100))
    def new_posts_arrive(self, count: int) -> None:
        self.world.arrive(count)

    @precondition(lambda self: self.last is not None)
    @rule(full_refresh=st.booleans())
    def rerun(self, full_refresh: bool) -> None:
        assert self.last is not None
        last = self.last
        self.execute(
            Run(last.source, last.dumps, last.subreddits, last.since, last.until, full_refresh)
        )

    @rule()
    def switch_warehouse(self) -> None:
        self.warehouses_made += 1
        self.warehouse = f"warehouse-{self.warehouses_made}"

    @rule(run=dump_runs)
    def run_in_a_new_warehouse(self, run: Run) -> None:
        """What a user does after pointing the pipeline at another warehouse."""
        self.switch_warehouse()
        self.execute(run)

    @rule(run=st.one_of(dump_runs, sample_runs), crash_at=st.sampled_from(CRASH_POINTS))
    def kill_then_rerun(self, run: Run, crash_at: str) -> None:
        inputs = self.world.inputs(run)
        killed = run_cli(
            self.cli_args(run),
            self.world.prefect_api,
            # This checkout's packages, not whichever one the environment has installed.
            env={
                **self.world.reddit_env,
                "PYTHONPATH": str(PROJECT_DIR),
                "REDDIT_PIPELINE_CRASH_AT": crash_at,
            },
        )
        # A run that stages nothing never reaches the points after the stage: it completes.
        assert killed.returncode in (-9, 0), killed.stderr[-3000:]
        if killed.returncode == 0:
            self.model.run(self.warehouse, run, inputs)
        self.execute(run)

    # -- what must hold after every step -------------------------------------------------------
    @invariant()
    def every_warehouse_holds_what_the_model_says(self) -> None:
        for name, expected in self.model.warehouses.items():
            actual = warehouse_rows(self.root / f"{name}.duckdb")
            want = {key: v.score for key, v in expected.items()}
            missing = sorted(set(want) - set(actual))
            extra = sorted(set(actual) - set(want))
            wrong = sorted(k for k in set(want) & set(actual) if want[k] != actual[k])
            assert not (missing or extra or wrong), (
                f"{name}: {len(missing)} missing {missing[:5]}, {len(extra)} extra "
                f"{extra[:5]}, {len(wrong)} with another version "
                f"{[(k, actual[k], want[k]) for k in wrong[:5]]}"
            )

    def teardown(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self.world.reddit.restore(self.world.reddit_content)


@pytest.fixture(scope="module")
def world(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    dump_dir = tmp_path_factory.mktemp("run-sequence-dumps")
    records = build_dumps(dump_dir)
    kinds = {
        name: "posts" if "RS_" in name or "submissions" in name else "comments" for name in records
    }
    dumps = {name: versions_of(kinds[name], rs) for name, rs in records.items()}
    with FakeReddit(limit=600, window=2.0) as reddit:
        # Two days ago from 00:00:07 UTC: r/python's 254 posts and up to 5 x 100 arrivals
        # stay inside that day, wherever in today the test runs.
        start = (time.time() // DAY - 2) * DAY + 7
        for n, sub in enumerate(SUBREDDITS):
            posts = reddit.add_posts(sub, 4, start + n * 600, step=60)
            reddit.add_comments(sub, posts[0], 4, start + n * 600 + 30, step=30)
        reddit.add_posts(BUSY, 250, start + 3600, step=61)
        env = {
            "REDDIT_CLIENT_ID": reddit.client_id,
            "REDDIT_CLIENT_SECRET": reddit.client_secret,
            "REDDIT_USER_AGENT": USER_AGENT,
        }
        yield World(prefect_api, dump_dir, dumps, sample_versions(), reddit, env, reddit.snapshot())


@pytest.fixture
def machine(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineRuns]:
    """A machine for an example test: a generated sequence's steps, written out."""
    for name, value in world.reddit_env.items():
        monkeypatch.setenv(name, value)
    PipelineRuns.world = world
    runs = PipelineRuns()
    yield runs
    runs.teardown()


def test_generated_run_sequences_leave_each_warehouse_as_the_model_computes(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in world.reddit_env.items():
        monkeypatch.setenv(name, value)
    PipelineRuns.world = world
    run_state_machine_as_test(
        PipelineRuns,
        settings=settings(
            max_examples=budget(ci=10, fuzz=150),
            stateful_step_count=budget(ci=5, fuzz=25),
        ),
    )


def test_reference_model_skips_items_before_the_watermark_less_the_overlap() -> None:
    """The model's own rules on three runs: the second reads only what is at most an hour
    older than the newest item the first one staged, yet its scope is the whole day; a new
    warehouse starts from nothing."""
    first = [Version("posts", "a", "python", T0 + 10 * 3600, T0 + DAY, 1)]
    second = [
        Version("posts", "b", "python", T0 + 9 * 3600 + 1, T0 + DAY, 1),
        Version("posts", "c", "python", T0 + 8 * 3600, T0 + DAY, 1),
        Version("posts", "d", "rust", T0 + DAY + 60, T0 + 2 * DAY, 1),
    ]
    model = Reference()
    model.run("w", Run("dump"), first)
    model.run("w", Run("dump", subreddits=("rust",)), second)
    assert set(model.warehouses["w"]) == {("posts", "a"), ("posts", "d")}
    model.run("w", Run("dump"), second)
    assert set(model.warehouses["w"]) == {("posts", "a"), ("posts", "b"), ("posts", "d")}
    model.run("w2", Run("dump", subreddits=("python",)), second)
    assert set(model.warehouses["w2"]) == {("posts", "a"), ("posts", "b"), ("posts", "c")}


def test_a_vanished_page_above_the_watermark_holds_it_until_a_run_reads_the_gap(
    machine: PipelineRuns,
) -> None:
    """150 posts arrive after a first run; during the next one Reddit deletes the first page
    it served, anchor and all, so nothing leads past it. The run keeps the 99 it read, says
    which listing has a gap, and leaves r/python's watermark where it was: the rerun reads
    the 51 behind the gap, with the machine's invariant checked at every step."""
    machine.run_api(Run("api", (), (BUSY,)))
    before = machine.model.mark(machine.warehouse, ("api", BUSY, "posts"))
    machine.every_warehouse_holds_what_the_model_says()
    machine.new_posts_arrive(150)
    machine.run_api_against_a_hostile_reddit(
        Run("api", (), (BUSY,)), ApiFault(listing="delete_pages", splices=((5, "more"),))
    )
    machine.every_warehouse_holds_what_the_model_says()
    assert machine.model.mark(machine.warehouse, ("api", BUSY, "posts")) == before
    held = warehouse_rows(machine.root / f"{machine.warehouse}.duckdb")
    machine.rerun(full_refresh=False)
    machine.every_warehouse_holds_what_the_model_says()
    after = warehouse_rows(machine.root / f"{machine.warehouse}.duckdb")
    # The first page held 99 posts and the `more` stub (quarantined): 51 lay behind it.
    assert len(after) - len(held) == 51


def test_reader_model_pages_a_hostile_listing() -> None:
    """The reference reader itself: a deleted first page holds the watermark unless that
    page was all older than it; a deleted anchor and an early end are read past; bad
    children count once, and only on pages read."""
    content = [
        {"name": f"t3_{i}", "id": str(i), "created_utc": 10_000.0 - i, "score": 1}
        for i in range(250)
    ]
    bad = ((150, "more"),)
    read, n_bad, holds = read_as_served(content, ApiFault("delete_pages", splices=bad), None)
    assert (len(read), n_bad, holds) == (100, 0, True)
    for listing in ("delete_anchors", "end_early", None):
        read, n_bad, holds = read_as_served(content, ApiFault(listing, splices=bad), None)
        assert ([d["name"] for d in read], n_bad, holds) == ([d["name"] for d in content], 1, False)
    # A watermark far above every item: the first page is all older, paging stops there.
    far = 10_000.0 + 2 * OVERLAP
    assert read_as_served(content, ApiFault("delete_pages", splices=bad), far)[1:] == (0, False)
    # An old item moved onto page 1 does not stop paging; one moved behind an old page is
    # not reached (no reader can see it without paging the whole listing).
    mark = 10_000.0 - 100 + OVERLAP  # items 0..99 are new enough: page 2 is all old
    read, _, _ = read_as_served(content, ApiFault(swaps=((50, 220),)), mark)
    names = {d["name"] for d in read}
    assert "t3_220" in names and "t3_50" not in names and len(names) == 200


def test_a_refused_run_between_two_runs_changes_nothing(machine: PipelineRuns) -> None:
    machine.run_api(Run("api", (), ("rust",)))
    before = warehouse_rows(machine.root / f"{machine.warehouse}.duckdb")
    machine.world.arrive(10)
    machine.a_run_reddit_refuses_changes_nothing(Run("api"))
    assert warehouse_rows(machine.root / f"{machine.warehouse}.duckdb") == before
    machine.every_warehouse_holds_what_the_model_says()
    machine.run_api(Run("api"))
    machine.every_warehouse_holds_what_the_model_says()


def test_a_first_api_run_that_loses_its_first_page_then_one_with_swaps_loses_nothing(
    machine: PipelineRuns, world: World
) -> None:
    """The sequence an earlier draft of these rules failed on (51 posts missing): a dump
    run, then an API run over every subreddit whose first r/python page is deleted once
    served (with a child whose created_utc is null on it), then an API run of r/python with
    items moved across pages. The second holds r/python's watermark; the third reads what
    lay behind the deleted page."""
    machine.first_run(Run("dump", ("crawl1/RS_2024-05.zst",)))
    machine.run_api_against_a_hostile_reddit(
        Run("api"), ApiFault(listing="delete_pages", splices=((3, "null_created"),))
    )
    machine.every_warehouse_holds_what_the_model_says()
    assert machine.model.mark(machine.warehouse, ("api", BUSY, "posts")) is None
    machine.run_api_against_a_hostile_reddit(
        Run("api", (), (BUSY,)), ApiFault(swaps=((10, 120), (0, 99)))
    )
    machine.every_warehouse_holds_what_the_model_says()
    api_posts = {
        key
        for key in warehouse_rows(machine.root / f"{machine.warehouse}.duckdb")
        if key[0] == "posts" and key[1].startswith("1")
    }
    # Every post Reddit had at the start: the deleted page's 99 from the second run, the
    # rest from the third.
    served = world.reddit_content["subreddits"]
    assert len(api_posts) == sum(len(kinds["posts"]) for kinds in served.values())


def test_a_held_watermark_is_not_moved_by_the_refresh_of_posts_another_run_read(
    machine: PipelineRuns,
) -> None:
    """Found by the fuzz profile: a run into a new warehouse whose r/python listing lost its
    first page held that listing's watermark, but the refresh of recent posts (posts an
    earlier run had put in the lake) committed one anyway, past the gap; the next run then
    skipped the 154 posts behind it."""
    machine.run_api(Run("api", (), (BUSY,)))
    machine.switch_warehouse()
    machine.run_api_against_a_hostile_reddit(
        Run("api", (), (BUSY,)), ApiFault(listing="delete_pages")
    )
    con = duckdb.connect(str(machine.paths()["state_path"]), read_only=True)
    try:
        marks = con.execute(
            "select subreddit, kind from watermarks where destination like ?",
            [f"%{machine.warehouse}%"],
        ).fetchall()
    finally:
        con.close()
    assert (BUSY, "posts") not in marks and (BUSY, "comments") in marks
    machine.rerun(full_refresh=False)
    machine.every_warehouse_holds_what_the_model_says()
