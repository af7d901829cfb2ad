"""The extract-api task's retry policy: what time can fix is retried, what only the user can
fix is not."""

from __future__ import annotations

import pytest
from prefect.states import Failed

from tasks.extract import _retry_unless_only_the_user_can_fix_it
from tasks.reddit_api import RedditAuthError, RedditGaveUpError


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (RedditAuthError("Reddit refused the credentials from REDDIT_CLIENT_SECRET"), False),
        (ValueError("not valid subreddit names: ['a b']"), False),
        (TypeError("unexpected keyword"), False),
        (RedditGaveUpError("GET /r/python/new: gave up after 6 attempts"), True),
        (RuntimeError("GET /r/python/new: unexpected HTTP 418"), True),
        (OSError("connection reset"), True),
    ],
)
def test_only_errors_time_can_fix_are_retried(error: Exception, retried: bool) -> None:
    state = Failed(data=error)
    assert _retry_unless_only_the_user_can_fix_it(None, None, state) is retried
