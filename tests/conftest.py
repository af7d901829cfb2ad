"""Shared fixtures: a Prefect API for the whole session, and per-test lakes, warehouses and
state stores in temporary folders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from aws_fixtures import moto_server  # noqa: F401  (a fixture shared by the cloud tests)
from helpers import PG_ADMIN_DSN

os.environ.setdefault("SODA_CORE_TELEMETRY_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

PROJECT_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """A temporary Prefect server for the session; subprocesses reach it by URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


@pytest.fixture(autouse=True)
def signal_handlers_put_back() -> Iterator[None]:
    """A command's main() called in-process installs the CLI's SIGINT and SIGTERM handlers;
    the next test (and pytest's own Ctrl-C) gets the ones it had."""
    import signal

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in before.items():
        if signal.getsignal(signum) is not handler and handler is not None:
            signal.signal(signum, handler)


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, Path]:
    """Where one test's lake, warehouse and state store live."""
    return {
        "lake_dir": tmp_path / "lake",
        "warehouse_path": tmp_path / "warehouse.duckdb",
        "state_path": tmp_path / "state.duckdb",
    }


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    """A fresh PostgreSQL database on this machine's server, dropped afterwards."""
    import uuid

    import psycopg

    name = f"reddit_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'create database "{name}"')
    try:
        yield PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'drop database if exists "{name}" with (force)')


# Hypothesis: `ci` (the default) is derandomized and bounded so `make test` stays within
# minutes; `make fuzz` selects `fuzz` (HYPOTHESIS_PROFILE=fuzz), which searches far longer.
# The example budgets of each generated test follow the profile (tests/strategies.py).
from hypothesis import HealthCheck  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402

_SLOW_IS_FINE = [
    HealthCheck.too_slow,
    HealthCheck.function_scoped_fixture,
    HealthCheck.data_too_large,
    HealthCheck.large_base_example,
]
hypothesis_settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    stateful_step_count=8,
    suppress_health_check=_SLOW_IS_FINE,
)
hypothesis_settings.register_profile(
    "fuzz",
    deadline=None,
    print_blob=True,
    stateful_step_count=20,
    suppress_health_check=_SLOW_IS_FINE,
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
