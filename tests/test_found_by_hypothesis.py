"""The failures the generated tests found, each kept as an ordinary example (the shrunk line,
or the shrunk sequence of runs), so they stay fixed whatever the generators draw later."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from test_run_sequences import PipelineRuns, Run
from test_run_sequences import world as world_fixture  # noqa: F401  (the fixture `world`)
from test_single_line import assert_line_kept_or_quarantined, stage_among_good_lines

T0 = 1_714_521_600


def _post(**fields: object) -> bytes:
    record = {"id": "gen00001", "subreddit": "python", "created_utc": T0, "score": 1}
    return json.dumps({**record, **fields}, ensure_ascii=False).encode()


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(_post(created_utc=-(2**63)), id="-2**63"),
        pytest.param(_post(created_utc=2**53 + 1), id="2**53+1"),
        pytest.param(_post(created_utc=10**13), id="milliseconds"),
        pytest.param(_post(created_utc=1e20), id="1e20"),
        pytest.param(_post(created_utc=-1e308), id="-1e308"),
        pytest.param(_post(created_utc="nan"), id="string-nan"),
        pytest.param(_post(created_utc="Infinity"), id="string-Infinity"),
        pytest.param(_post(created_utc="-inf"), id="string-minus-inf"),
        pytest.param(_post().replace(str(T0).encode(), b"NaN"), id="bare-NaN"),
        pytest.param(_post().replace(str(T0).encode(), b"-Infinity"), id="bare-minus-Infinity"),
        pytest.param(_post().replace(str(T0).encode(), b"1e999"), id="bare-1e999"),
    ],
)
def test_created_utc_beyond_the_timestamp_range_is_quarantined_and_the_rest_lands(
    line: bytes,
) -> None:
    """Found: DuckDB's to_timestamp raises 'Epoch seconds out of range' on the whole chunk."""
    landed, line_no = stage_among_good_lines(line, 2)
    assert_line_kept_or_quarantined(landed, line, line_no)


def test_subreddit_longer_than_a_file_name_is_quarantined_and_the_rest_lands() -> None:
    """Found: a 300-character name becomes a raw key component: OSError, name too long."""
    line = _post(subreddit="a" * 300)
    landed, line_no = stage_among_good_lines(line, 0)
    assert_line_kept_or_quarantined(landed, line, line_no)


def test_subreddit_dot_dot_is_quarantined_and_the_rest_lands() -> None:
    """Found: '../..' becomes subreddit=../.. in the raw key; the lake refuses the key and the
    whole stage fails."""
    line = _post(subreddit="../..")
    landed, line_no = stage_among_good_lines(line, 3)
    assert_line_kept_or_quarantined(landed, line, line_no)


def test_subreddit_with_a_nul_character_is_quarantined_and_the_rest_lands() -> None:
    """Found: a \\u0000 in the name reaches the file system: 'embedded null byte'."""
    line = _post(subreddit="py\u0000thon")
    landed, line_no = stage_among_good_lines(line, 6)
    assert_line_kept_or_quarantined(landed, line, line_no)


# ---- run sequences (tests/test_run_sequences.py), replayed step by step --------------------
@pytest.fixture
def machine(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PipelineRuns]:
    """A fresh machine over the session's inputs; the tests call its rules in order."""
    PipelineRuns.world = request.getfixturevalue("world_fixture")
    for name, value in PipelineRuns.world.reddit_env.items():
        monkeypatch.setenv(name, value)
    state = PipelineRuns()
    yield state
    state.teardown()


@pytest.mark.e2e
def test_a_filtered_run_over_days_the_lake_holds_for_other_subreddits_succeeds(
    machine: PipelineRuns,
) -> None:
    """Found (shrunk): the model rebuilt whole days, other subreddits included, so the check
    'subreddit is one the run asked for' stopped the load and the run failed."""
    machine.first_run(run=Run("dump", ("crawl1/RS_2024-05.zst",), (), None, None, True))
    machine.every_warehouse_holds_what_the_model_says()
    machine.switch_warehouse()
    machine.run_dumps(
        run=Run(
            "dump",
            ("crawl1/RS_2024-05.zst", "late/python_submissions.zst"),
            ("python",),
            None,
            datetime(2024, 5, 3, tzinfo=UTC),
            True,
        )
    )
    machine.every_warehouse_holds_what_the_model_says()


@pytest.mark.e2e
def test_a_run_into_a_new_warehouse_loads_everything_in_its_scope(machine: PipelineRuns) -> None:
    """Found (shrunk): the watermarks belonged to the state store, not to the warehouse, so
    the first incremental run into a new warehouse read only the last hour before them."""
    machine.first_run(run=Run("dump", ("crawl1/RS_2024-05.zst",), (), None, None, True))
    machine.every_warehouse_holds_what_the_model_says()
    machine.switch_warehouse()
    machine.rerun(full_refresh=False)
    machine.every_warehouse_holds_what_the_model_says()


@pytest.mark.e2e
def test_an_api_run_for_fewer_subreddits_after_one_for_all_succeeds(machine: PipelineRuns) -> None:
    """Found (shrunk): the API's days hold every subreddit read before, so a narrower API run
    failed its check 'subreddit is one the run asked for' (the dump case above, from the API)."""
    machine.first_run(
        run=Run(
            "dump",
            ("crawl1/RS_2024-05.zst", "crawl1/RC_2024-05.zst", "crawl2/RS_2024-05.zst"),
            (),
            None,
            None,
            False,
        )
    )
    machine.every_warehouse_holds_what_the_model_says()
    machine.run_api(run=Run("api", (), ()))
    machine.every_warehouse_holds_what_the_model_says()
    machine.run_api(run=Run("api", (), ("rust", "dataengineering")))
    machine.every_warehouse_holds_what_the_model_says()
