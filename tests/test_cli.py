"""`python flows/main.py`: arguments a user gets wrong end in one line, never a traceback."""

from __future__ import annotations

import json
import os
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


def test_a_plain_script_run_without_the_makefile_logs_no_telemetry_error(tmp_path: Path) -> None:
    """`python flows/main.py` as a user types it: none of the Makefile's variables, a fresh
    Prefect home, the temporary server Prefect starts for a run without an API."""
    from helpers import path_args

    made_by_make = ("PREFECT_", "SODA_", "DO_NOT_TRACK")
    env = {k: v for k, v in os.environ.items() if not k.startswith(made_by_make)}
    (tmp_path / "prefect").mkdir()
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "240"  # a loaded test machine
    paths = {n: tmp_path / f for n, f in (("lake_dir", "lake"), ("warehouse_path", "w.duckdb"))}
    paths["state_path"] = tmp_path / "state.duckdb"

    result = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "flows" / "main.py"), *path_args(paths)],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=tmp_path,
        env=env,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "telemetry" not in (result.stdout + result.stderr).lower(), result.stderr[-3000:]


def test_a_password_in_the_reddit_url_is_never_stored_shown_or_logged(
    prefect_api: str, tmp_path: Path
) -> None:
    import time
    from uuid import UUID

    import duckdb
    from fake_reddit import USER_AGENT, FakeReddit
    from helpers import path_args, run_cli
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    password = "pw-Sekr3t-9"
    paths = {
        "lake_dir": tmp_path / "lake",
        "warehouse_path": tmp_path / "w.duckdb",
        "state_path": tmp_path / "state.duckdb",
    }
    with FakeReddit(limit=200, window=2.0) as reddit:
        reddit.add_posts("python", 5, time.time() - 3600, step=60)
        url = reddit.url.replace("http://", f"http://proxyuser:{password}@")
        env = {
            "REDDIT_CLIENT_ID": reddit.client_id,
            "REDDIT_CLIENT_SECRET": reddit.client_secret,
            "REDDIT_USER_AGENT": USER_AGENT,
        }
        args = ["--source", "api", "--subreddit", "python", "--reddit-url", url]
        result = run_cli([*args, *path_args(paths)], prefect_api, env=env)

    con = duckdb.connect(str(paths["state_path"]), read_only=True)
    parameters, error, flow_run_id = con.execute(
        "select parameters, error, flow_run_id from pipeline_runs"
    ).fetchone()
    con.close()
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(UUID(flow_run_id))
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(flow_run_id)]))
        )

    assert json.loads(parameters)["reddit_base_url"] == url.replace(password, "***")
    assert flow_run.parameters["config"]["reddit_base_url"] == url.replace(password, "***")
    assert logs, "the run's logs reached the API"
    for text in (result.stdout, result.stderr, parameters, error or "", *(x.message for x in logs)):
        assert password not in text


def test_bad_credentials_print_one_line_on_stderr_and_the_traceback_only_with_debug(
    prefect_api: str, tmp_path: Path
) -> None:
    from fake_reddit import USER_AGENT, FakeReddit
    from helpers import path_args, run_cli

    paths = {
        "lake_dir": tmp_path / "lake",
        "warehouse_path": tmp_path / "w.duckdb",
        "state_path": tmp_path / "state.duckdb",
    }
    with FakeReddit(limit=200, window=2.0) as reddit:
        env = {
            "REDDIT_CLIENT_ID": reddit.client_id,
            "REDDIT_CLIENT_SECRET": "not-the-secret",
            "REDDIT_USER_AGENT": USER_AGENT,
        }
        args = ["--source", "api", "--subreddit", "python", "--reddit-url", reddit.url]
        plain = run_cli([*args, *path_args(paths)], prefect_api, env=env)
        debug = run_cli([*args, *path_args(paths), "--debug"], prefect_api, env=env)

    assert plain.returncode == 1
    [line] = plain.stderr.splitlines()
    assert line.startswith("error: the run failed: RedditAuthError"), line
    assert "Traceback" not in plain.stdout
    assert "Finished in state Failed" in plain.stdout  # Prefect's log, without tracebacks
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.splitlines()[-1].startswith("error: the run failed: RedditAuthError")
