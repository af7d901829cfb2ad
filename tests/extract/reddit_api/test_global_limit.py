"""Workers sharing one OAuth client share a Prefect global concurrency limit: each request takes
a slot from it, on a real Prefect server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from fake_reddit import FakeReddit, auth_for, fast_options

from tasks.extract.reddit_api import GlobalLimitError, GlobalLimitMissingError, extract_api


@pytest.fixture
def reddit() -> Iterator[FakeReddit]:
    with FakeReddit(limit=200, window=2.0) as server:
        yield server


def create_limit(name: str, limit: int, slot_decay_per_second: float) -> None:
    """A global concurrency limit on the test's Prefect server, as the bootstrap makes one."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    async def create() -> None:
        async with get_client() as client:
            await client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(
                    name=name, limit=limit, slot_decay_per_second=slot_decay_per_second
                )
            )

    asyncio.run(create())


def test_each_request_takes_a_slot_of_the_shared_prefect_limit(
    prefect_api: str, reddit: FakeReddit
) -> None:
    create_limit("reddit-api-test", limit=2, slot_decay_per_second=1.0)
    reddit.add_posts("python", 450, 1_700_000_000.0)
    started = time.monotonic()

    [extract] = asyncio.run(
        extract_api(
            auth_for(reddit),
            ["python"],
            ["posts"],
            {},
            base_url=reddit.url,
            options=fast_options(global_limit="reddit-api-test"),
        )
    )

    assert len(extract.lines) == 450
    # 5 listing pages through a limit of 2 slots that frees one a second: the last 3 requests
    # each wait for a slot, which the fake server's own limit (200 per 2 s) would never make.
    assert extract.requests >= 5
    assert time.monotonic() - started >= 2.5


def test_a_missing_limit_name_is_a_clear_error_before_any_request(
    prefect_api: str, reddit: FakeReddit
) -> None:
    reddit.add_posts("python", 10, 1_700_000_000.0)
    with pytest.raises(GlobalLimitMissingError) as caught:
        asyncio.run(
            extract_api(
                auth_for(reddit),
                ["python"],
                ["posts"],
                {},
                base_url=reddit.url,
                options=fast_options(global_limit="reddit-api-mispelled"),
            )
        )
    message = str(caught.value)
    assert "'reddit-api-mispelled'" in message and "--reddit-rate-limit" in message
    assert reddit.stats.api_requests == 0 and reddit.stats.token_requests == 0


def test_a_starved_worker_stops_after_the_bounded_wait(
    prefect_api: str, reddit: FakeReddit
) -> None:
    create_limit("reddit-api-starved", limit=1, slot_decay_per_second=0.05)
    reddit.add_posts("python", 450, 1_700_000_000.0)
    started = time.monotonic()
    with pytest.raises(GlobalLimitError, match=r"waited 1 s for a slot of .*'reddit-api-starved'"):
        asyncio.run(
            extract_api(
                auth_for(reddit),
                ["python"],
                ["posts"],
                {},
                base_url=reddit.url,
                options=fast_options(
                    global_limit="reddit-api-starved", global_limit_wait_seconds=1.0
                ),
            )
        )
    # One slot, freed every 20 s: the first page goes, the second gives up after 1 s.
    assert reddit.stats.api_requests == 1
    assert time.monotonic() - started < 10
