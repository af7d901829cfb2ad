"""Crash points for the restart tests: `REDDIT_PIPELINE_CRASH_AT=<point>` makes the process
kill itself (SIGKILL: no cleanup, no finally) when it reaches that point, the way a lost
worker or an OOM kill would. Unset, this does nothing."""

from __future__ import annotations

import os
import signal

ENV_VAR = "REDDIT_PIPELINE_CRASH_AT"


def crash_point(name: str) -> None:
    if os.environ.get(ENV_VAR) == name:
        os.kill(os.getpid(), signal.SIGKILL)
