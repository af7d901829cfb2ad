"""Reddit API source: new posts and comments, refreshes and comment trees, via asyncpraw.

Self-contained: it imports only tasks.settings and tasks.config of the rest of the project,
so it can be read, tested and reused as a client library of its own.
"""

from tasks.extract.reddit_api.client import ClientOptions, RedditClient
from tasks.extract.reddit_api.comment_trees import fetch_comment_trees
from tasks.extract.reddit_api.credentials import (
    RedditAuth,
    check_user_agent,
    credentials_from_env,
    one_line,
)
from tasks.extract.reddit_api.errors import (
    GlobalLimitError,
    GlobalLimitMissingError,
    RateLimitedError,
    RedditAPIError,
    RedditAuthError,
    RedditGaveUpError,
    RedditRedirectedError,
    RedditUnavailableError,
    RedditUnreachableError,
    RedditWaitError,
    RetriableRedditError,
)
from tasks.extract.reddit_api.listings import (
    GAP_CAP,
    GAP_ENDED,
    RejectedItem,
    Resumed,
    SubredditExtract,
    extract_api,
    run_extract,
)
from tasks.extract.reddit_api.ratelimit import SharedRateLimiter, WaitBudget, limiter_for
from tasks.extract.reddit_api.refresh import posts_to_refresh, refresh_posts
from tasks.extract.reddit_api.things import newer_mark, order_key

__all__ = [
    "GAP_CAP",
    "GAP_ENDED",
    "ClientOptions",
    "GlobalLimitError",
    "GlobalLimitMissingError",
    "RateLimitedError",
    "RedditAPIError",
    "RedditAuth",
    "RedditAuthError",
    "RedditClient",
    "RedditGaveUpError",
    "RedditRedirectedError",
    "RedditUnavailableError",
    "RedditUnreachableError",
    "RedditWaitError",
    "RejectedItem",
    "Resumed",
    "RetriableRedditError",
    "SharedRateLimiter",
    "SubredditExtract",
    "WaitBudget",
    "check_user_agent",
    "credentials_from_env",
    "extract_api",
    "fetch_comment_trees",
    "limiter_for",
    "newer_mark",
    "one_line",
    "order_key",
    "posts_to_refresh",
    "refresh_posts",
    "run_extract",
]
