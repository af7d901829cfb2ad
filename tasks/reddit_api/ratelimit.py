"""One rate limiter per OAuth client, shared by every coroutine that uses the client.

Reddit counts requests per OAuth client in a fixed window and says where we stand in three
headers: X-Ratelimit-Used, X-Ratelimit-Remaining and X-Ratelimit-Reset (whole seconds to the
end of the window). asyncprawcore keeps similar state per session but without a lock, so many
coroutines read the same "remaining" and burst into a 429. Here one lock orders every request
and the remaining budget is spread evenly over the time left in the window, whatever its length.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

# X-Ratelimit-Reset is whole seconds, so one reading places the window's end within a second;
# an estimate more than this beyond the current one means the server started a new window.
RESET_RESOLUTION_SECONDS = 1.0


@dataclass
class LimiterStats:
    """Counters a benchmark or a run log can report."""

    requests: int = 0
    rate_limited: int = 0
    waited_seconds: float = 0.0


class SharedRateLimiter:
    """Paces requests from the X-Ratelimit-* headers; never assumes the window's length.

    Until the first response of a window arrives nothing is known, so a single probe goes out
    and the others wait for its headers. One request of each window is left unused: when
    Remaining reaches 0 asyncprawcore's own per-session limiter sleeps at least a whole second
    (it rounds up), which would cost far more than one request on short windows.
    """

    def __init__(
        self,
        *,
        reserve: int = 1,
        global_limit: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reserve = reserve
        self.global_limit = global_limit
        self.stats = LimiterStats()
        self._clock = clock
        self._lock = asyncio.Lock()
        self._learned = asyncio.Event()
        self._probing = False
        self._remaining: int | None = None
        self._window_end: float | None = None
        self._previous_end = -math.inf
        self._last_sent = -math.inf
        self._hold_until = -math.inf

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for this client's next turn; the request is made inside the block."""
        if self.global_limit:
            await _take_global_slot(self.global_limit)
        probe = await self._acquire()
        try:
            yield
        finally:
            if probe:
                self._probing = False
                self._learned.set()

    def observe(self, headers: Mapping[str, str]) -> None:
        """Fold one response's rate-limit headers into the shared state."""
        try:
            remaining = int(float(headers["x-ratelimit-remaining"]))
            reset = float(headers["x-ratelimit-reset"])
        except (KeyError, ValueError):
            return  # the token endpoint and some errors carry no rate-limit headers
        end = self._clock() + reset
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
        self._learned.set()

    def hold(self, seconds: float) -> None:
        """Stop every coroutine for a while, e.g. for a 429's Retry-After."""
        self._hold_until = max(self._hold_until, self._clock() + seconds)

    def _start_window(self, end: float, remaining: int) -> None:
        self._window_end = end
        self._remaining = remaining

    async def _acquire(self) -> bool:
        """Return once this request may go; True when it is the probe of an unknown window."""
        async with self._lock:
            started = self._clock()
            while True:
                wait = self._wait_seconds(self._clock())
                if wait is None:
                    self._learned.clear()
                    await self._learned.wait()
                elif wait > 0:
                    await asyncio.sleep(wait)
                else:
                    break
            now = self._clock()
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


async def _take_global_slot(name: str) -> None:
    """Share one client id between workers through a Prefect global concurrency limit."""
    from prefect.concurrency.asyncio import rate_limit

    await rate_limit(name, occupy=1)
