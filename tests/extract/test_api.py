"""The extract-api task's retry policy: what time can fix is retried, what only the user can
fix is not."""

from __future__ import annotations

import pytest
from prefect.states import Failed

from tasks.extract.api import _retry_unless_only_the_user_can_fix_it
from tasks.extract.reddit_api import (
    RedditAuthError,
    RedditGaveUpError,
    RedditUnreachableError,
    RedditWaitError,
)


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (RedditAuthError("Reddit refused the credentials from REDDIT_CLIENT_SECRET"), False),
        (ValueError("not valid subreddit names: ['a b']"), False),
        (TypeError("unexpected keyword"), False),
        (RedditWaitError("Reddit answered 429 (Retry-After: 3600): a wait of 3600 s"), False),
        (RedditUnreachableError("nothing answers at http://127.0.0.1:9"), False),
        (RedditGaveUpError("GET /r/python/new: gave up after 6 attempts"), True),
        (RuntimeError("GET /r/python/new: unexpected HTTP 418"), True),
        (OSError("connection reset"), True),
    ],
)
def test_only_errors_time_can_fix_are_retried(error: Exception, retried: bool) -> None:
    state = Failed(data=error)
    assert _retry_unless_only_the_user_can_fix_it(None, None, state) is retried


@pytest.mark.parametrize(
    "field", ["reddit_max_wait", "reddit_total_wait", "reddit_unreachable_after"]
)
def test_wait_bounds_must_be_positive_and_reach_the_client(field: str) -> None:
    from datetime import timedelta

    from pydantic import ValidationError

    from tasks.config import PipelineConfig
    from tasks.extract.api import client_options

    with pytest.raises(ValidationError, match=field):
        PipelineConfig(**{field: timedelta(0)})
    options = client_options(PipelineConfig(**{field: timedelta(seconds=7)}))
    seconds = {
        "reddit_max_wait": options.max_wait_seconds,
        "reddit_total_wait": options.total_wait_seconds,
        "reddit_unreachable_after": options.unreachable_after_seconds,
    }
    assert seconds[field] == 7
