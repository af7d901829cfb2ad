"""The one hook into asyncprawcore: a Requestor that sees every HTTP response.

asyncpraw takes a `requestor_class`; its `request` context manager is where each aiohttp
response passes, headers included. Here the shared limiter reads the rate-limit headers, and
429, 5xx and transport failures become our own exceptions. That keeps asyncprawcore's retry
(which sleeps up to 4 s per attempt, ignores timeouts and raises 429 at once) out of the way
and leaves one retry policy: the client's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlparse

import aiohttp
from asyncprawcore import Requestor
from asyncprawcore.exceptions import RequestException

from tasks.extract.reddit_api import settings
from tasks.extract.reddit_api.errors import (
    NoAnswerError,
    RateLimitedError,
    RedditAPIError,
    RefusedTokenError,
    RetriableRedditError,
)
from tasks.extract.reddit_api.ratelimit import SharedRateLimiter

RETRY_STATUSES = frozenset({408, 500, 502, 503, 504, 520, 522})
KEEP_BODY_STATUSES = frozenset({400, 401, 403, 404})


class ObservingRequestor(Requestor):
    """Feeds response headers to the shared limiter and classifies retriable failures."""

    def __init__(
        self,
        *,
        limiter: SharedRateLimiter,
        on_answer: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.limiter = limiter
        self.on_answer = on_answer
        # Whether the access token was issued since the last successful API answer: a 401
        # then is not an expired token but a refusal (asyncprawcore would fetch token after
        # token, and raise KeyError(401) when the answer has no www-authenticate header).
        self.token_is_fresh = False

    @asynccontextmanager
    async def request(
        self, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        method, url = str(args[0]), str(args[1])
        try:
            async with super().request(*args, timeout=timeout, **kwargs) as response:
                if self.on_answer is not None:
                    self.on_answer()
                self.limiter.observe(response.headers)
                self._check_token(url, response.status)
                _raise_if_retriable(method, url, response)
                if response.status in KEEP_BODY_STATUSES:
                    # The reason ("private", "banned", ...) is in the body; read it while the
                    # connection is open so the error handler can still see it.
                    await response.read()
                yield response
        except RequestException as exc:
            original = exc.original_exception
            if isinstance(original, RedditAPIError):
                raise original from None
            raise NoAnswerError(
                f"{method} {urlparse(url).path}: {type(original).__name__}: {original}"
            ) from None

    def _check_token(self, url: str, status: int) -> None:
        path = urlparse(url).path
        if path.endswith(settings.ACCESS_TOKEN_PATH):
            self.token_is_fresh = status == 200
        elif status == 401 and self.token_is_fresh:
            raise RefusedTokenError(f"401 at {path} with a token issued a moment ago")
        elif 200 <= status < 300:
            self.token_is_fresh = False


def _raise_if_retriable(method: str, url: str, response: aiohttp.ClientResponse) -> None:
    path = urlparse(url).path
    if response.status == 429:
        retry_after, header = _retry_after(response)
        raise RateLimitedError(
            f"{method} {path}: 429 Too Many Requests ({header})", retry_after=retry_after
        )
    if response.status in RETRY_STATUSES:
        raise RetriableRedditError(f"{method} {path}: HTTP {response.status}")


def _retry_after(response: aiohttp.ClientResponse) -> tuple[float, str]:
    """Retry-After when given, else the time to the window's reset, else one second; with
    the header it came from, as the server's demand to name in a log line or an error."""
    names = {"retry-after": "Retry-After", "x-ratelimit-reset": "X-Ratelimit-Reset"}
    for header, name in names.items():
        try:
            seconds = max(0.0, float(response.headers[header]))
        except (KeyError, ValueError):
            continue
        return seconds, f"{name}: {response.headers[header]}"
    return 1.0, "no Retry-After header"
