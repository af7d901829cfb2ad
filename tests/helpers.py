"""Helpers shared by the end-to-end tests: run the CLI, fingerprint a warehouse, write dumps."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import zstandard

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
