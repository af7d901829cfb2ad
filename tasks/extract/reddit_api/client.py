"""The Reddit client: real asyncpraw, our rate limiter, timeouts and one retry policy."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlparse

import asyncpraw
from asyncprawcore.exceptions import (
    BadJSON,
    Forbidden,
    NotFound,
    OAuthException,
    Redirect,
    ResponseException,
)

from tasks.config import mask_url_credentials
from tasks.extract.reddit_api import settings
from tasks.extract.reddit_api.credentials import RedditAuth
from tasks.extract.reddit_api.errors import (
    GlobalLimitError,
    NoAnswerError,
    RateLimitedError,
    RedditAuthError,
    RedditGaveUpError,
    RedditRedirectedError,
    RedditUnavailableError,
    RedditUnreachableError,
    RefusedTokenError,
    RetriableRedditError,
)
from tasks.extract.reddit_api.ratelimit import (
    SharedRateLimiter,
    WaitBudget,
    limiter_for,
    take_global_slot,
)
from tasks.extract.reddit_api.requestor import ObservingRequestor

Check = Callable[[Any], None]
T = TypeVar("T")


@dataclass(frozen=True)
class ClientOptions:
    """How patient the client is; defaults suit Reddit, tests shrink them."""

    timeout_seconds: float = settings.REQUEST_TIMEOUT_SECONDS
    max_attempts: int = settings.MAX_ATTEMPTS
    backoff_base_seconds: float = settings.BACKOFF_BASE_SECONDS
    backoff_max_seconds: float = settings.BACKOFF_MAX_SECONDS
    # Longest single wait and longest total of waits Reddit may impose (Retry-After, a
    # used-up window); `budget` shares the total between the clients of one run.
    max_wait_seconds: float = settings.MAX_WAIT_SECONDS
    total_wait_seconds: float = settings.TOTAL_WAIT_SECONDS
    budget: WaitBudget | None = None
    # A Reddit URL that has not answered once in this long is unreachable.
    unreachable_after_seconds: float = settings.UNREACHABLE_AFTER_SECONDS
    # Name of a Prefect global concurrency limit (with slot decay) shared by every worker
    # that uses the same client id; None keeps the limiting inside this process.
    global_limit: str | None = None
    # How long one request may wait for a slot of that limit before the run fails.
    global_limit_wait_seconds: float = settings.GLOBAL_LIMIT_WAIT_SECONDS


class RedditClient:
    """One OAuth client: every coroutine using it, and every other RedditClient of the same
    client id in this process, shares its limiter and its morechildren lock."""

    def __init__(
        self,
        auth: RedditAuth,
        base_url: str | None = None,
        options: ClientOptions | None = None,
        limiter: SharedRateLimiter | None = None,
    ) -> None:
        self.auth = auth
        self.options = options or ClientOptions()
        self.limiter = limiter or limiter_for(auth.client_id, base_url)
        self.budget = self.options.budget or WaitBudget(
            self.options.max_wait_seconds, self.options.total_wait_seconds
        )
        # What messages name: a proxy's password in the URL is a secret like any other.
        self.url = mask_url_credentials((base_url or settings.OAUTH_URL).rstrip("/"))
        self._refused: str | None = None
        self._answered = False
        self._started = time.monotonic()
        self._reddit = _make_reddit(auth, base_url, self.limiter, self._saw_answer)

    def _saw_answer(self) -> None:
        self._answered = True

    @property
    def morechildren_lock(self) -> asyncio.Lock:
        """Reddit allows one /api/morechildren request at a time per OAuth client."""
        return self.limiter.morechildren_lock()

    async def __aenter__(self) -> RedditClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._reddit.close()

    async def get(
        self, path: str, params: Mapping[str, str | int] | None = None, check: Check | None = None
    ) -> Any:
        """GET a path and return Reddit's parsed JSON untouched, retrying what is retriable.

        `check` validates the shape; a ValueError from it counts as a bad response and is
        retried like truncated JSON.
        """
        last: Exception | None = None
        for attempt in range(1, self.options.max_attempts + 1):
            try:
                data = await self._get_once(path, dict(params or {}))
                if check is not None:
                    check(data)
                return data
            except GlobalLimitError:
                raise  # a config error, or already waited long: another try would not help
            except RateLimitedError as exc:
                last = exc
                self.limiter.count_rate_limited()
                self.budget.claim(exc.retry_after, f"Reddit answered {exc}")
                self.limiter.hold(exc.retry_after)
            except (RetriableRedditError, ValueError) as exc:
                last = exc
                self._stop_if_unreachable(exc, final=attempt == self.options.max_attempts)
                pause = self._backoff(attempt)
                self.budget.claim(pause, f"retrying GET {path} after: {exc}")
                await asyncio.sleep(pause)
        raise RedditGaveUpError(
            f"GET {path}: gave up after {self.options.max_attempts} attempts; last error: {last}"
        ) from None

    def _stop_if_unreachable(self, exc: Exception, final: bool) -> None:
        """A URL that never answered (nothing listening, a host that accepts and stays
        silent, no route) is a wrong URL or no network: fail within the configured time."""
        if self._answered or not isinstance(exc, NoAnswerError):
            return
        waited = time.monotonic() - self._started
        if final or waited + self._backoff(1) >= self.options.unreachable_after_seconds:
            raise RedditUnreachableError(
                f"nothing answers at {self.url} ({waited:.0f} s, last: {exc}): check the Reddit "
                "URL (reddit_base_url, --reddit-url) and the network"
            ) from None

    async def _get_once(self, path: str, params: dict[str, str | int]) -> Any:
        if self.options.global_limit:
            await take_global_slot(
                self.options.global_limit, self.options.global_limit_wait_seconds
            )
        timeout = self.options.timeout_seconds
        try:
            async with self.limiter.slot(self.budget):
                if self._refused is not None:
                    # Another coroutine's request was refused a moment ago: sending this one
                    # would only ask for another token with the same bad credentials.
                    raise RedditAuthError(self._refused)
                timeout = self._timeout()
                return await asyncio.wait_for(
                    self._reddit.request(method="GET", path=path, params=params), timeout
                )
        except TimeoutError:
            raise NoAnswerError(f"GET {path}: no answer within {timeout:.3g} s") from None
        except BadJSON:
            raise RetriableRedditError(f"GET {path}: response is not valid JSON") from None
        except RefusedTokenError as exc:
            self._refused = _auth_message(self.auth, str(exc))
            raise RedditAuthError(self._refused) from None
        except OAuthException as exc:
            self._refused = _auth_message(self.auth, f"token refused: {exc.error}")
            raise RedditAuthError(self._refused) from None
        except Redirect as exc:
            raise _redirect_error(exc.response.status, exc.path) from None
        except (Forbidden, NotFound) as exc:
            reason = _describe(exc.response.status, await _body_reason(exc.response))
            raise RedditUnavailableError(exc.response.status, reason) from None
        except ResponseException as exc:
            error = _response_error(self.auth, path, exc)
            if isinstance(error, RedditAuthError):
                self._refused = str(error)
            raise error from None

    def _timeout(self) -> float:
        """The request timeout, cut to what is left of the unreachable bound until the URL
        has answered once."""
        if self._answered:
            return self.options.timeout_seconds
        left = self.options.unreachable_after_seconds - (time.monotonic() - self._started)
        return max(0.1, min(self.options.timeout_seconds, left))

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter, so parallel retries do not land together."""
        ceiling = self.options.backoff_base_seconds * 2 ** (attempt - 1)
        return min(self.options.backoff_max_seconds, ceiling) * random.uniform(0.5, 1.0)


async def run_all(jobs: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run jobs concurrently; on the first failure cancel the rest and raise that failure.

    asyncio.gather would leave the others running against a client about to be closed, and a
    TaskGroup would wrap a plain "bad credentials" in an ExceptionGroup.
    """
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _make_reddit(
    auth: RedditAuth,
    base_url: str | None,
    limiter: SharedRateLimiter,
    on_answer: Callable[[], None],
) -> Any:
    urls: dict[str, str] = {}
    if base_url:
        base = base_url.rstrip("/")
        urls = {"oauth_url": base, "reddit_url": base, "short_url": base}
    return asyncpraw.Reddit(
        client_id=auth.client_id,
        client_secret=auth.client_secret.get_secret_value(),
        user_agent=auth.user_agent,
        username=auth.username,
        password=auth.password.get_secret_value() if auth.password else None,
        check_for_updates=False,
        requestor_class=ObservingRequestor,
        requestor_kwargs={"limiter": limiter, "on_answer": on_answer},
        **urls,
    )


def _response_error(auth: RedditAuth, path: str, exc: ResponseException) -> Exception:
    status = exc.response.status
    at = urlparse(str(exc.response.url)).path
    if status in (400, 401) and at.endswith(settings.ACCESS_TOKEN_PATH):
        return RedditAuthError(_auth_message(auth, f"{status} at {settings.ACCESS_TOKEN_PATH}"))
    if status == 401:
        return RedditAuthError(_auth_message(auth, f"401 at {at}"))
    return RuntimeError(f"GET {path}: unexpected HTTP {status} from {at}")


def _auth_message(auth: RedditAuth, what: str) -> str:
    fields = "client_id and client_secret"
    if auth.username:
        fields += ", username and password"
    return (
        f"Reddit refused the credentials from {auth.source} ({what}): check its {fields} "
        "(a 'script' app needs the account's username and password; other apps must not set them)"
    )


LISTING_REDIRECT = re.compile(r"^/r/([A-Za-z0-9_]+)(/.*)?$")


def _redirect_error(status: int, location: str) -> RedditRedirectedError:
    """Reddit redirects a listing of a subreddit that does not exist to /subreddits/search,
    but also a renamed or differently written name, and aliases such as r/random, to another
    subreddit's listing: only the first is "not found"."""
    if location.startswith("/subreddits/search"):
        return RedditRedirectedError(status, "not found (Reddit redirects to its search)", location)
    if match := LISTING_REDIRECT.match(location):
        return RedditRedirectedError(
            status,
            f"is redirected to r/{match[1]} (renamed, or an alias such as r/random): "
            f"give --subreddit {match[1]} to read it",
            location,
        )
    return RedditRedirectedError(
        status, f"is redirected to {location}, which is not a subreddit listing", location
    )


async def _body_reason(response: Any) -> str | None:
    """Reddit explains 403/404 in the body: {"reason": "private" | "banned" | ...}."""
    try:
        body = await response.json(content_type=None)
    except Exception:
        return None
    reason = body.get("reason") if isinstance(body, dict) else None
    return str(reason) if reason else None


def _describe(status: int, reason: str | None) -> str:
    if reason:
        return f"is {reason}"
    return "not found" if status == 404 else "is forbidden"
