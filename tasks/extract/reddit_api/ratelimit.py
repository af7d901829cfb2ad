"""One rate limiter per OAuth client, shared by every coroutine that uses the client.

Reddit counts requests per OAuth client in a fixed window and says where we stand in three
headers: X-Ratelimit-Used, X-Ratelimit-Remaining and X-Ratelimit-Reset (whole seconds to the
end of the window). asyncprawcore keeps similar state per session but without a lock, so many
coroutines read the same "remaining" and burst into a 429. Here one lock orders every request
and the remaining budget is spread evenly over the time left in the window, whatever its length.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

from prefect import get_run_logger
from prefect.exceptions import MissingContextError

from tasks.extract.reddit_api import settings
from tasks.extract.reddit_api.errors import (
    GlobalLimitError,
    GlobalLimitMissingError,
    RedditWaitError,
)

# X-Ratelimit-Reset is whole seconds, so one reading places the window's end within a second;
# an estimate more than this beyond the current one means the server started a new window.
RESET_RESOLUTION_SECONDS = 1.0
# While another event loop's probe is out, this loop cannot be woken by its answer: it looks
# again this often.
PROBE_POLL_SECONDS = 0.05


@dataclass
class LimiterStats:
    """Counters a benchmark or a run log can report."""

    requests: int = 0
    rate_limited: int = 0
    waited_seconds: float = 0.0


def wait_logger() -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run's logger inside a run (so waits show in the run's log), else ours."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("tasks.extract.reddit_api")


@dataclass(eq=False)
class WaitBudget:
    """How long a run may wait for Reddit: one wait, and all long waits together.

    Reddit can ask for an hour (Retry-After: 3600) or a day (X-Ratelimit-Reset: 86400); a run
    that sleeps through that looks hung. One budget is shared by every client of a run.
    Waits shorter than `log_after_seconds` (the limiter's ordinary spacing) are neither
    logged nor counted, or a long run would use up its total on normal pacing.
    """

    max_seconds: float = settings.MAX_WAIT_SECONDS
    total_seconds: float = settings.TOTAL_WAIT_SECONDS
    log_after_seconds: float = settings.LOG_WAIT_SECONDS
    waited_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def claim(self, seconds: float, why: str) -> None:
        """Approve a wait of `seconds` (and log it), or raise RedditWaitError naming `why`."""
        if seconds < self.log_after_seconds:
            return
        if seconds > self.max_seconds:
            raise RedditWaitError(
                f"{why}: a wait of {seconds:.0f} s, longer than the {self.max_seconds:g} s "
                "allowed (reddit_max_wait); the run stops instead. Run again later, or raise "
                "reddit_max_wait"
            )
        with self._lock:
            if self.waited_seconds + seconds > self.total_seconds:
                raise RedditWaitError(
                    f"{why}: another {seconds:.0f} s would take this run's waits past the "
                    f"{self.total_seconds:g} s allowed in all (reddit_total_wait; "
                    f"{self.waited_seconds:.0f} s so far). Run again later, or raise it"
                )
            self.waited_seconds += seconds
        wait_logger().warning("Waiting %.0f s: %s", seconds, why)


@dataclass
class _LoopPrimitives:
    """asyncio locks and events belong to one event loop; each loop using the limiter gets its
    own, while the window state they guard is shared (a run calls asyncio.run more than once).
    The morechildren lock therefore serialises within one loop: a run reads its trees in one."""

    turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    learned: asyncio.Event = field(default_factory=asyncio.Event)
    morechildren: asyncio.Lock = field(default_factory=asyncio.Lock)


class SharedRateLimiter:
    """Paces requests from the X-Ratelimit-* headers; never assumes the window's length.

    Until the first response of a window arrives nothing is known, so a single probe goes out
    and the others wait for its headers. One request of each window is left unused: when
    Remaining reaches 0 asyncprawcore's own per-session limiter sleeps at least a whole second
    (it rounds up), which would cost far more than one request on short windows.
    """

    def __init__(self, *, reserve: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        self.reserve = reserve
        self.stats = LimiterStats()
        self._clock = clock
        # Guards the window state below; held only for arithmetic, never across an await.
        self._state = threading.Lock()
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPrimitives] = (
            weakref.WeakKeyDictionary()
        )
        self._probing = False
        self._remaining: int | None = None
        self._window_end: float | None = None
        self._previous_end = -math.inf
        self._last_sent = -math.inf
        self._hold_until = -math.inf

    @asynccontextmanager
    async def slot(self, budget: WaitBudget | None = None) -> AsyncIterator[None]:
        """Wait for this client's next turn; the request is made inside the block. A long
        wait for the window (Remaining used up, a long reset) is claimed from `budget`."""
        probe = await self._acquire(budget or WaitBudget())
        try:
            yield
        finally:
            if probe:
                with self._state:
                    self._probing = False
                self._here().learned.set()

    def morechildren_lock(self) -> asyncio.Lock:
        """Reddit allows one /api/morechildren request at a time per OAuth client."""
        return self._here().morechildren

    def _here(self) -> _LoopPrimitives:
        loop = asyncio.get_running_loop()
        with self._state:
            primitives = self._loops.get(loop)
            if primitives is None:
                primitives = self._loops[loop] = _LoopPrimitives()
            return primitives

    def observe(self, headers: Mapping[str, str]) -> None:
        """Fold one response's rate-limit headers into the shared state."""
        try:
            remaining = int(float(headers["x-ratelimit-remaining"]))
            reset = float(headers["x-ratelimit-reset"])
        except (KeyError, ValueError):
            return  # the token endpoint and some errors carry no rate-limit headers
        with self._state:
            self._fold(self._clock() + reset, remaining)
        with suppress(RuntimeError):  # no running loop: nobody here can be waiting
            self._here().learned.set()

    def _fold(self, end: float, remaining: int) -> None:
        if self._window_end is None:
            if end <= self._previous_end + RESET_RESOLUTION_SECONDS:
                return  # a late answer from the window that just ended
            self._start_window(end, remaining)
        elif end > self._window_end + RESET_RESOLUTION_SECONDS:
            self._previous_end = self._window_end
            self._start_window(end, remaining)
        else:
            # Rounded-up readings: the earliest end seen is the tightest bound.
            self._window_end = min(self._window_end, end)
            self._remaining = min(
                self._remaining if self._remaining is not None else remaining, remaining
            )

    def hold(self, seconds: float) -> None:
        """Stop every coroutine for a while, e.g. for a 429's Retry-After."""
        with self._state:
            self._hold_until = max(self._hold_until, self._clock() + seconds)

    def count_rate_limited(self) -> None:
        with self._state:
            self.stats.rate_limited += 1

    def _start_window(self, end: float, remaining: int) -> None:
        self._window_end = end
        self._remaining = remaining

    async def _acquire(self, budget: WaitBudget) -> bool:
        """Return once this request may go; True when it is the probe of an unknown window."""
        here = self._here()
        async with here.turn:
            started = self._clock()
            while True:
                with self._state:
                    now = self._clock()
                    wait = self._wait_seconds(now)
                    if wait is not None and wait <= 0:
                        return self._claim(now, started)
                    if wait is None:
                        here.learned.clear()
                    # A hold was claimed by whoever got the 429; the window's own waits here.
                    why = None if now < self._hold_until else self._window_demand(now)
                if wait is None:
                    with suppress(TimeoutError):
                        await asyncio.wait_for(here.learned.wait(), PROBE_POLL_SECONDS)
                    continue
                if why is not None:
                    budget.claim(wait, why)
                await asyncio.sleep(wait)

    def _window_demand(self, now: float) -> str:
        """The server's demand behind a window wait, for the log line or the error."""
        end = self._window_end if self._window_end is not None else now
        return (
            f"Reddit's rate limit (X-Ratelimit-Remaining {self._remaining}, window resets "
            f"in {end - now:.0f} s)"
        )

    def _claim(self, now: float, started: float) -> bool:
        """Take the slot (the caller holds the state lock)."""
        self.stats.waited_seconds += now - started
        self.stats.requests += 1
        self._last_sent = now
        probe = self._remaining is None
        if probe:
            self._probing = True
        else:
            self._remaining -= 1
        return probe

    def _wait_seconds(self, now: float) -> float | None:
        """Seconds until the next request may go; None while a probe's answer is awaited."""
        if now < self._hold_until:
            return self._hold_until - now
        if self._window_end is not None and now >= self._window_end:
            self._previous_end = self._window_end
            self._window_end = None
            self._remaining = None
        if self._window_end is None or self._remaining is None:
            return None if self._probing else 0.0
        usable = self._remaining - self.reserve
        if usable <= 0:
            return self._window_end - now
        # Even spacing leaves a gap after the last request equal to the others, so the
        # windows join without a burst at the boundary.
        spacing = (self._window_end - self._last_sent) / (usable + 1)
        return self._last_sent + spacing - now


async def take_global_slot(name: str, timeout_seconds: float) -> None:
    """Share one client id between workers through a Prefect global concurrency limit.

    strict: a misspelled or missing limit is an error, not a silent "no limit"; bounded: a
    worker starved by the others fails with a message instead of waiting forever.
    """
    from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError, rate_limit

    try:
        await rate_limit(name, occupy=1, timeout_seconds=timeout_seconds, strict=True)
    except ConcurrencySlotAcquisitionError:
        raise GlobalLimitMissingError(
            f"no usable Prefect global concurrency limit named {name!r}: create it with a slot "
            "decay (python flows/bootstrap.py makes 'reddit-api') or fix --reddit-rate-limit"
        ) from None
    except TimeoutError:
        raise GlobalLimitError(
            f"waited {timeout_seconds:g} s for a slot of the Prefect concurrency limit {name!r}; "
            "other workers hold it: raise the limit's slots or --reddit-rate-limit-wait"
        ) from None


_REGISTRY: dict[tuple[str, str], SharedRateLimiter] = {}
_REGISTRY_LOCK = threading.Lock()


def limiter_for(client_id: str, endpoint: str | None = None) -> SharedRateLimiter:
    """The one limiter of an OAuth client in this process: the extraction, the refresh and the
    comment trees each open a client, and Reddit counts all of them in the same window.

    Keyed by endpoint too: the same client id at another host (a proxy, a test server) has a
    window of its own.
    """
    key = ((endpoint or settings.OAUTH_URL).rstrip("/"), client_id)
    with _REGISTRY_LOCK:
        limiter = _REGISTRY.get(key)
        if limiter is None:
            limiter = _REGISTRY[key] = SharedRateLimiter()
        return limiter
