"""Faults from outside the code, and points to inject them at in tests.

Crash points: `REDDIT_PIPELINE_CRASH_AT=<point>` makes the process kill itself (SIGKILL: no
cleanup, no finally) when it reaches that point, the way a lost worker or an OOM kill would.
`REDDIT_PIPELINE_INTERRUPT_AT=<point>` sends it SIGINT there instead, as Ctrl-C would;
`<point>@duckdb` sends it while a DuckDB statement runs, where most of a run's time goes and
where DuckDB turns the interrupt into `RuntimeError('Query interrupted')`. Unset, they do
nothing.

Interrupts: DuckDB swallows the KeyboardInterrupt of a Ctrl-C that lands inside a statement, so
a task with retries would retry an interrupted load as if it had failed, and the run could end
with status 0. `install_interrupt_handlers` (the CLI's main) remembers every SIGINT and SIGTERM,
so the flow and the retry conditions can tell an interrupt from a failure whatever form it
reached them in.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType
from typing import Any

ENV_VAR = "REDDIT_PIPELINE_CRASH_AT"
INTERRUPT_ENV_VAR = "REDDIT_PIPELINE_INTERRUPT_AT"
_received: list[int] = []


class RunInterrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT or SIGTERM. A KeyboardInterrupt, so Prefect records the
    flow run as crashed and no task retries it."""


def crash_point(name: str) -> None:
    """A point between two steps: kill or interrupt the process here when a test asks, and
    raise an interrupt that a library swallowed earlier (DuckDB), so the run stops at the next
    step whatever retried."""
    if os.environ.get(ENV_VAR) == name:
        os.kill(os.getpid(), signal.SIGKILL)
    wanted = os.environ.get(INTERRUPT_ENV_VAR, "")
    if wanted == name:
        os.kill(os.getpid(), signal.SIGINT)
    elif wanted == f"{name}@duckdb":
        _interrupt_inside_duckdb()
    if _received:
        raise RunInterrupted(interruption())


def _interrupt_inside_duckdb() -> None:
    """SIGINT while a DuckDB statement runs. DuckDB stops the statement when the signal's
    handler runs during it (then raising RuntimeError('Query interrupted')); where it does not
    get to run before the statement ends, the handler's KeyboardInterrupt follows it, so the
    statement is also stopped from outside half a second later, as a long one would end."""
    import duckdb

    con = duckdb.connect()

    def interrupt() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)
        con.interrupt()

    sender = threading.Timer(0.2, interrupt)
    sender.start()
    try:  # a statement that runs until it is stopped
        con.execute("select count(*) from range(1000000000000) r where r % 7 = 3").fetchall()
    finally:
        sender.join()
        con.close()


def install_interrupt_handlers() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt (the default for SIGINT; SIGTERM would end
    the process without cleanup) and are remembered. Main thread only, as signal handlers are."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _on_signal)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    raise RunInterrupted(interruption())


def interruption() -> str | None:
    """'interrupted by SIGINT' once the process received an interrupt, else None."""
    if not _received:
        return None
    return f"interrupted by {signal.Signals(_received[0]).name}"


def interruption_of(exc: BaseException) -> str | None:
    """Why a run stopped, when it was interrupted, in whatever form the interrupt reached
    the flow: KeyboardInterrupt, Prefect's TerminationSignal (SIGTERM during a flow run), or
    the error of the DuckDB statement it stopped (the CLI's handlers remember the signal)."""
    from prefect.exceptions import TerminationSignal

    if reason := interruption():
        return reason
    if isinstance(exc, TerminationSignal):
        return f"interrupted by {signal.Signals(exc.signal).name}"
    return "interrupted" if isinstance(exc, KeyboardInterrupt) else None


def reraise_as_interrupt(exc: BaseException, reason: str | None) -> None:
    """An interrupt that surfaced as another error (a DuckDB statement's 'Query
    interrupted') goes on as RunInterrupted, so no caller mistakes it for a failure."""
    from prefect.exceptions import TerminationSignal

    if reason and not isinstance(exc, KeyboardInterrupt | TerminationSignal):
        raise RunInterrupted(reason) from exc


def exit_status() -> int:
    """The shell's status for a process ended by the first signal received: 128 + its number
    (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + (_received[0] if _received else signal.SIGINT)


def retry_unless_interrupted(task: Any, task_run: Any, state: Any) -> bool:
    """A Prefect retry_condition_fn: never retry a task the user interrupted, whether the
    interrupt reached it as KeyboardInterrupt or as the error of a DuckDB statement."""
    return interruption() is None
