"""Named failures of the Reddit source, so callers and retry policies can tell them apart.

Messages never carry secrets: they are built here from the status, the path and the name of
the place the credentials came from, and are raised `from None` because asyncprawcore's own
exceptions keep the request's form data (which holds the password of a script app).
"""

from __future__ import annotations


class RedditAPIError(Exception):
    """Base of every error this package raises on purpose."""


class RetriableRedditError(RedditAPIError):
    """A failure worth another try: 5xx, timeout, dropped connection, truncated or bad JSON."""


class RateLimitedError(RetriableRedditError):
    """Reddit answered 429; wait `retry_after` seconds, then try again."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RedditGaveUpError(RedditAPIError):
    """Retries ran out; the message names the request and the last failure."""


class RedditAuthError(RedditAPIError):
    """Reddit refused the credentials; retrying cannot help."""


class RefusedTokenError(RedditAuthError):
    """A 401 to a request made with a token issued a moment ago: the client turns it into a
    RedditAuthError that names where the credentials came from."""


class RedditUnavailableError(RedditAPIError):
    """A 403, 404 or redirect: the resource is missing, private, banned or quarantined."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{reason} ({status})")
        self.status = status
        self.reason = reason


class GlobalLimitError(RedditAPIError):
    """No slot of the shared Prefect concurrency limit within the wait: other workers hold it."""


class GlobalLimitMissingError(GlobalLimitError, ValueError):
    """The named Prefect concurrency limit does not exist (or has no slot decay): a config
    error, so a ValueError that the task's retry policy does not repeat."""


class NoAnswerError(RetriableRedditError):
    """No HTTP answer at all: connection refused or reset, DNS failure, or a timeout."""


class RedditUnreachableError(RedditAPIError):
    """The Reddit URL never answered within the configured time: a wrong URL or no network,
    which another try 30 s later would not fix."""


class RedditWaitError(RedditAPIError):
    """Reddit asked for a wait longer than one wait or the run's waits together may last."""


class RedditRedirectedError(RedditUnavailableError):
    """Reddit redirected a listing elsewhere: to /subreddits/search when the subreddit does
    not exist, to another subreddit's listing for a renamed name or an alias (r/random)."""

    def __init__(self, status: int, reason: str, location: str) -> None:
        super().__init__(status, reason)
        self.location = location
