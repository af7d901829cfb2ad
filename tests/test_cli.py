"""`python flows/main.py`: arguments a user gets wrong end in one line, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flows.cli import build_parser, parse_config

PROJECT_DIR = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PROJECT_DIR / "flows" / "main.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_DIR,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "last tuesday"], "not a date or time"),
        (["--dump-path", "/nonexistent/RC_2024-01.zst"], "dump file not found"),
        (["--subreddit", "no spaces allowed"], "not a valid subreddit name"),
        (["--since", "2024-03-05", "--until", "2024-03-01"], "must be before"),
        (["--source", "sample", "--dump-path", "x.zst"], "needs --source dump"),
        (["--raw-codec", "lz4"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_non_zero_with_one_line(args: list[str], message: str) -> None:
    result = _run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error")]) <= 1


def test_a_file_that_is_not_a_dump_is_refused_before_any_work(tmp_path: Path) -> None:
    fake = tmp_path / "RS_2024-01.zst"
    fake.write_text('{"id": "x"}\n')
    result = _run("--dump-path", str(fake))
    assert result.returncode == 2
    assert "is not a zstd file" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_documents_every_option() -> None:
    text = build_parser().format_help()
    for option in (
        "--subreddit",
        "--since",
        "--until",
        "--source",
        "--dump-path",
        "--lake-dir",
        "--warehouse",
        "--full-refresh",
    ):
        assert option in text


def test_arguments_become_a_validated_config(tmp_path: Path) -> None:
    config = parse_config(
        [
            "--subreddit",
            "Python",
            "--subreddit",
            "r/DataEngineering",
            "--since",
            "2024-03-02",
            "--warehouse",
            str(tmp_path / "w.duckdb"),
            "--full-refresh",
        ]
    )
    assert config.subreddits == ["dataengineering", "python"]
    assert config.since is not None and config.since.isoformat() == "2024-03-02T00:00:00+00:00"
    assert config.full_refresh
    assert config.source == "auto"


def test_api_options_become_config_and_bad_ones_are_one_line_errors() -> None:
    config = parse_config(
        [
            "--subreddit",
            "python",
            "--reddit-rate-limit",
            "reddit-api",
            "--reddit-rate-limit-wait",
            "45",
            "--comment-tree",
            "t3_1AbC2d",
            "--comment-tree",
            "1abc2d",
            "--comment-tree",
            "zz9",
            "--state-lock-wait",
            "0",
        ]
    )
    assert config.reddit_rate_limit == "reddit-api"
    assert config.reddit_rate_limit_wait.total_seconds() == 45
    assert config.comment_tree_posts == ["1abc2d", "zz9"]
    assert config.state_lock_wait.total_seconds() == 0
    for args, message in (
        (["--comment-tree", "https://reddit.com/x"], "is not a post id"),
        (["--reddit-rate-limit-wait", "0"], "not a positive number of seconds"),
        (["--source", "sample", "--comment-tree", "1abc2d"], "needs the API source"),
    ):
        result = _run(*args)
        assert result.returncode == 2, args
        assert message in result.stderr and "Traceback" not in result.stderr
