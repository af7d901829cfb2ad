"""Fixtures of the operations tests: an HTTP receiver the automations notify."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()
