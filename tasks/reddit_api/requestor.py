"""The one hook into asyncprawcore: a Requestor that sees every HTTP response.

asyncpraw takes a `requestor_class`; its `request` context manager is where each aiohttp
response passes, headers included. Here the shared limiter reads the rate-limit headers, and
429, 5xx and transport failures become our own exceptions. That keeps asyncprawcore's retry
(which sleeps up to 4 s per attempt, ignores timeouts and raises 429 at once) out of the way
and leaves one retry policy: the client's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlparse

import aiohttp
from asyncprawcore import Requestor
from asyncprawcore.exceptions import RequestException

from tasks.reddit_api.errors import RateLimitedError, RetriableRedditError
from tasks.reddit_api.ratelimit import SharedRateLimiter

RETRY_STATUSES = frozenset({408, 500, 502, 503, 504, 520, 522})
KEEP_BODY_STATUSES = frozenset({400, 401, 403, 404})


class ObservingRequestor(Requestor):
    """Feeds response headers to the shared limiter and classifies retriable failures."""

    def __init__(self, *, limiter: SharedRateLimiter, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limiter = limiter

    @asynccontextmanager
    async def request(
        self, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        method, url = str(args[0]), str(args[1])
        try:
            async with super().request(*args, timeout=timeout, **kwargs) as response:
                self.limiter.observe(response.headers)
                _raise_if_retriable(method, url, response)
                if response.status in KEEP_BODY_STATUSES:
                    # The reason ("private", "banned", ...) is in the body; read it while the
                    # connection is open so the error handler can still see it.
                    await response.read()
                yield response
        except RequestException as exc:
            original = exc.original_exception
            if isinstance(original, RetriableRedditError):
                raise original from None
            raise RetriableRedditError(
                f"{method} {urlparse(url).path}: {type(original).__name__}: {original}"
            ) from None


def _raise_if_retriable(method: str, url: str, response: aiohttp.ClientResponse) -> None:
    path = urlparse(url).path
    if response.status == 429:
        raise RateLimitedError(
            f"{method} {path}: 429 Too Many Requests", retry_after=_retry_after(response)
        )
    if response.status in RETRY_STATUSES:
        raise RetriableRedditError(f"{method} {path}: HTTP {response.status}")


def _retry_after(response: aiohttp.ClientResponse) -> float:
    """Retry-After when given, else the time to the window's reset, else one second."""
    for header in ("retry-after", "x-ratelimit-reset"):
        try:
            return max(0.0, float(response.headers[header]))
        except (KeyError, ValueError):
            continue
    return 1.0
