"""Reddit API source: new posts and comments, refreshes and comment trees, via asyncpraw."""

from tasks.reddit_api.client import ClientOptions, RedditClient
from tasks.reddit_api.comment_trees import fetch_comment_trees
from tasks.reddit_api.credentials import (
    RedditAuth,
    check_user_agent,
    credentials_from_env,
    one_line,
)
from tasks.reddit_api.errors import (
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
from tasks.reddit_api.listings import (
    GAP_CAP,
    GAP_ENDED,
    RejectedItem,
    Resumed,
    SubredditExtract,
    extract_api,
    run_extract,
)
from tasks.reddit_api.ratelimit import SharedRateLimiter, WaitBudget, limiter_for
from tasks.reddit_api.refresh import posts_to_refresh, refresh_posts

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
    "one_line",
    "posts_to_refresh",
    "refresh_posts",
    "run_extract",
]
