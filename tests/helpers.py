"""Helpers shared by the tests: run the CLI or a Prefect server, fingerprint a warehouse, write
dumps, the sample built once, an HTTP receiver, the config bounds probed."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import httpx
import zstandard

from tasks import settings
from tasks.extract.stage import Window, stage_dump
from tasks.lake.local import LocalLake
from tasks.model.duckdb_engine import run_models
from tasks.process.duckdb_engine import process_batches

PROJECT_DIR = Path(__file__).resolve().parents[1]


def run_cli(
    args: list[str], api_url: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`python flows/main.py ...` in a subprocess, talking to the session's Prefect API."""
    full_env = {**os.environ, "PREFECT_API_URL": api_url, **(env or {})}
    return subprocess.run(
        [sys.executable, str(PROJECT_DIR / "flows" / "main.py"), *args],
        cwd=PROJECT_DIR,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def path_args(paths: dict[str, Path]) -> list[str]:
    return [
        "--lake-dir",
        str(paths["lake_dir"]),
        "--warehouse",
        str(paths["warehouse_path"]),
        "--state",
        str(paths["state_path"]),
    ]


WAREHOUSE_TABLES = ("posts", "comments", "subreddit_daily")


def warehouse_checksums(warehouse: Path) -> dict[str, tuple[int, str]]:
    """Row count and a content checksum of every warehouse table, independent of row order."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        result = {}
        present = {row[0] for row in con.execute("show tables").fetchall()}
        for table in WAREHOUSE_TABLES:
            if table not in present:
                continue
            rows = con.execute(f"select * from {table} order by all").fetchall()
            digest = hashlib.sha256(repr(rows).encode()).hexdigest()
            result[table] = (len(rows), digest)
        return result
    finally:
        con.close()


def watermarks(state: Path) -> list[tuple]:
    con = duckdb.connect(str(state), read_only=True)
    try:
        return con.execute(
            "select source, subreddit, kind, created_utc, fullname from watermarks order by all"
        ).fetchall()
    finally:
        con.close()


def dump_post(subreddit: str, n: int, created: int, retrieved_after: int = 86400) -> dict[str, Any]:
    """A minimal post as the dumps have it: id from the subreddit's initial and n, score n."""
    return {
        "id": f"{subreddit[0]}{n:05d}",
        "subreddit": subreddit,
        "author": f"user{n % 3}",
        "title": f"post {n}",
        "selftext": "",
        "score": n,
        "num_comments": 0,
        "created_utc": created,
        "retrieved_on": created + retrieved_after,
    }


def write_dump(path: Path, records: list[dict[str, Any] | str]) -> Path:
    """A zstd NDJSON dump; strings are written as they are (malformed lines)."""
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zstandard.ZstdCompressor().compress(("\n".join(lines) + "\n").encode()))
    return path


# The PostgreSQL server the tests make their databases on (CI's DSN may carry a password).
PG_ADMIN_DSN = os.environ.get("TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def build_sample_curated(lake: LocalLake) -> dict[str, list[str]]:
    """The sample dumps through the real stage -> process -> model steps."""
    dts: set[str] = set()
    for name, kind in (("RS_2024-03.zst", "posts"), ("RC_2024-03.zst", "comments")):
        staged = stage_dump(settings.SAMPLE_DIR / name, lake, Window())
        dts |= process_batches(lake, kind, staged.raw_keys).dts
    return run_models(lake, sorted(dts)).curated_keys


class Receiver:
    """Collects the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        received = self.messages

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, text: str, timeout: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages:
                if text in json.dumps(message):
                    return message
            time.sleep(0.5)
        raise AssertionError(f"no notification mentioning {text!r}; got {self.messages}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# The bundled sample's subreddits, and a moment just after its last item.
SAMPLE_SUBREDDITS = ["askhistorians", "dataengineering", "datascience", "python", "rust"]
# Just after the sample's last item (2024-03-07), so the freshness checks pass.
SAMPLE_NOW = datetime(2024, 3, 8, tzinfo=UTC)


def latest_sample(name: str) -> dict[str, dict[str, Any]]:
    """The sample's usable records, latest retrieval per id, read with plain json.loads."""
    reader = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(
        (settings.SAMPLE_DIR / name).open("rb")
    )
    records = []
    for line in io.TextIOWrapper(reader, encoding="utf-8"):
        try:
            record = json.loads(line)
            float(record["created_utc"])
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(record, dict) and record.get("id"):
            records.append(record)
    return latest_by_id(records)


def latest_by_id(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each id's record of the latest retrieval, as the marts keep it."""
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        retrieved = record.get("retrieved_utc") or record.get("retrieved_on") or 0
        current = latest.get(record["id"])
        if current is None or retrieved > (
            current.get("retrieved_utc") or current.get("retrieved_on") or 0
        ):
            latest[record["id"]] = record
    return latest


# Out of range: (field, value as a deployment parameter would carry it, whether the JSON schema
# the Prefect server enforces refuses it too). A duration's upper bound is not in the schema
# (pydantic writes none for a timedelta): the run refuses it when it starts.
OUT_OF_RANGE = [
    ("overlap", "-P1D", True),
    ("overlap", "P8D", False),
    ("refresh_max_age", "-PT1S", True),
    ("refresh_max_age", "P31D", False),
    ("reddit_rate_limit_wait", "PT0S", True),
    ("reddit_rate_limit_wait", "-PT5M", True),
    ("reddit_rate_limit_wait", "PT2H", False),
    ("freshness_max_age", "PT0S", True),
    ("freshness_max_age", "00:00:00", True),
    ("state_lock_wait", "-PT1S", True),
    ("state_lock_wait", "PT2H", False),
    ("chunk_bytes", 1024, True),
    ("chunk_bytes", 2**30 + 1, True),
    ("slowdown_factor", 1.0, True),
    ("slowdown_factor", 101.0, True),
    ("slowdown_history", 2, True),
    ("slowdown_history", 1001, True),
]


# The Prefect CLI of this environment.
PREFECT = [sys.executable, "-m", "prefect"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def prefect_server(home: Path, timeout: float = 180) -> Iterator[dict[str, str]]:
    """`prefect server start` on a free port with its own PREFECT_HOME; yields the environment
    for child commands, and stops the server by its PID (its process group) afterwards."""
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_CLI_PROMPT": "false",
    }
    home.mkdir(parents=True, exist_ok=True)
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env={k: v for k, v in env.items() if k != "PREFECT_API_URL"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"prefect server exited: {(home / 'server.log').read_text()}")
            try:
                if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"prefect server not healthy after {timeout}s")
            time.sleep(0.5)
        yield env
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def run(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """A command in the project folder with the given environment, its output captured."""
    return subprocess.run(
        args, cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=timeout
    )
