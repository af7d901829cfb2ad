"""The command line of `python flows/main.py`: arguments -> PipelineConfig, with one-line
errors instead of tracebacks for anything the user typed wrong."""

from __future__ import annotations

import argparse
import io
import logging
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from tasks import settings
from tasks.config import PipelineConfig
from tasks.extract import DumpError, check_dump

T = TypeVar("T")


def _timestamp(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date or time; use ISO 8601, e.g. 2024-03-01 or "
            "2024-03-01T12:00:00+00:00"
        ) from None


def _seconds(text: str) -> timedelta:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return timedelta(seconds=seconds)


def _wait(text: str) -> timedelta:
    """Seconds to wait; 0 means do not wait at all."""
    return timedelta(0) if text.strip() in ("0", "0.0") else _seconds(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python flows/main.py",
        description="Run the reddit_pipeline flow: extract, stage, process, model, load, commit. "
        "With no arguments it reads the bundled sample dump in data/sample and writes "
        f"everything under {settings.LOCAL_DIR}.",
    )
    parser.add_argument(
        "--subreddit",
        action="append",
        default=[],
        metavar="NAME",
        help="keep this subreddit (case-insensitive; repeat for several). Default: all.",
    )
    parser.add_argument(
        "--since", type=_timestamp, help="keep items created at or after this UTC time"
    )
    parser.add_argument("--until", type=_timestamp, help="keep items created before this UTC time")
    parser.add_argument(
        "--source",
        choices=["auto", "sample", "dump", "api"],
        help="'api' reads Reddit (REDDIT_CLIENT_ID, REDDIT_CLIENT_SECRET, REDDIT_USER_AGENT or "
        "--reddit-block); 'dump' reads --dump-path files; 'sample' the bundled sample. Default "
        "'auto': dump files if given, else the API when credentials and --subreddit are given, "
        "else the sample",
    )
    parser.add_argument(
        "--reddit-block", metavar="NAME", help="a RedditCredentials block holding the API keys"
    )
    parser.add_argument(
        "--reddit-url", metavar="URL", help="another Reddit endpoint (a proxy or a test server)"
    )
    parser.add_argument(
        "--reddit-rate-limit",
        metavar="NAME",
        help="take a slot of this Prefect global concurrency limit before each Reddit request "
        "(workers sharing one client id; the bootstrap makes 'reddit-api')",
    )
    parser.add_argument(
        "--reddit-rate-limit-wait",
        type=_seconds,
        metavar="SECONDS",
        help="longest wait for a slot of --reddit-rate-limit before the run fails (default 300)",
    )
    parser.add_argument(
        "--comment-tree",
        action="append",
        default=[],
        metavar="POST_ID",
        help="also read this post's whole comment tree (id or t3_ fullname; repeat for several)",
    )
    parser.add_argument(
        "--dump-path",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="a dump file: RS_YYYY-MM.zst, RC_YYYY-MM.zst, <sub>_submissions.zst or "
        "<sub>_comments.zst (repeat for several)",
    )
    parser.add_argument(
        "--lake-dir", type=Path, help=f"lake folder (default {settings.DEFAULT_LAKE_DIR})"
    )
    parser.add_argument(
        "--warehouse",
        type=Path,
        help=f"DuckDB warehouse file (default {settings.DEFAULT_WAREHOUSE_PATH})",
    )
    parser.add_argument(
        "--state", type=Path, help=f"DuckDB state file (default {settings.DEFAULT_STATE_PATH})"
    )
    parser.add_argument(
        "--state-lock-wait",
        type=_wait,
        metavar="SECONDS",
        help="PostgreSQL state: wait this long for another run over the same subreddits "
        "(default 60)",
    )
    parser.add_argument(
        "--raw-codec", choices=["gzip", "zstd"], help="codec of raw batches (default gzip)"
    )
    parser.add_argument(
        "--check-engine",
        choices=["auto", "duckdb", "athena", "postgres", "redshift"],
        help="where the data contracts run (default auto: Athena when the models run there, "
        "else DuckDB over the lake); postgres and redshift use the warehouse settings",
    )
    parser.add_argument(
        "--check-schema",
        metavar="NAME",
        help="schema of the checked tables for --check-engine postgres (default reddit_check, "
        "replaced every run) or redshift (required), the Glue database of the views for athena",
    )
    parser.add_argument(
        "--full-refresh",
        action="store_true",
        help="ignore the watermarks and re-read the whole window",
    )
    parser.add_argument(
        "--keep-partial-input",
        action="store_true",
        help="load what was read of a truncated or corrupt dump instead of failing the run",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show Prefect's log on stderr with the tracebacks of failures (without it, the "
        "log goes to stdout without tracebacks and a failure is one line on stderr; the "
        "Prefect UI shows the tracebacks either way)",
    )
    return parser


def parse_config(argv: list[str] | None = None) -> PipelineConfig:
    """Parse and validate; on any user error, exit 2 with one line on stderr."""
    parser = build_parser()
    args = parser.parse_args(argv)
    source = args.source or ("dump" if args.dump_path else "auto")
    if source != "dump" and args.dump_path:
        parser.error("--dump-path needs --source dump (or no --source)")
    values = {
        "source": source,
        "dump_paths": args.dump_path,
        "subreddits": args.subreddit,
        "since": args.since,
        "until": args.until,
        "full_refresh": args.full_refresh,
        "keep_partial_input": args.keep_partial_input,
        "lake_dir": args.lake_dir,
        "warehouse_path": args.warehouse,
        "state_path": args.state,
        "raw_codec": args.raw_codec,
        "reddit_credentials_block": args.reddit_block,
        "reddit_base_url": args.reddit_url,
        "reddit_rate_limit": args.reddit_rate_limit,
        "reddit_rate_limit_wait": args.reddit_rate_limit_wait,
        "comment_tree_posts": args.comment_tree,
        "state_lock_wait": args.state_lock_wait,
        "check_engine": args.check_engine,
        "check_schema": args.check_schema,
    }
    try:
        config = PipelineConfig(**{k: v for k, v in values.items() if v is not None})
        if config.source == "dump":
            for path in config.input_files():
                check_dump(path)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        parser.exit(2, f"error: {where + ': ' if where else ''}{first['msg']}\n")
    except DumpError as exc:
        parser.exit(2, f"error: {exc}\n")
    return config


class _WithoutTraceback(logging.Formatter):
    """The console formatter's lines without the tracebacks of exceptions. The record is left
    as it was: Prefect's API handler formats it on its own, so the UI keeps the traceback."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def one_line_console() -> None:
    """Prefect's console log to stdout without tracebacks, so that a failed run shows exactly
    one line on stderr: the error the CLI prints (a failed flow's traceback alone was 73
    lines before it). Call it after prefect has set its logging up (at import)."""
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    consoles = {
        handler
        for logger in loggers
        for handler in logger.handlers
        if isinstance(handler, PrefectConsoleHandler)
    }
    for handler in consoles:
        handler.setStream(_STDOUT)
        handler.console.file = _STDOUT
        handler.setFormatter(_WithoutTraceback(handler.formatter))


class _CurrentStdout(io.TextIOBase):
    """Whatever sys.stdout is when a line is written (a test's capture, or a wrapper set after
    this was called), not the stream that was there at the time."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()

    def isatty(self) -> bool:
        return sys.stdout.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(sys.stdout, "encoding", "utf-8")


_STDOUT = _CurrentStdout()


def report_failure(exc: BaseException, what: str, after_interrupt: str) -> int:
    """The one line on stderr for a command that ended on `exc`, and its exit status: 128 +
    the signal for an interrupt (recorded as cancelled; `after_interrupt` says what next),
    1 for a failure."""
    from tasks.core import faults

    reason = faults.interruption()
    if reason or not isinstance(exc, Exception):
        print(
            f"error: the {what} was {reason or 'interrupted'}: it is recorded as cancelled"
            f"{after_interrupt}",
            file=sys.stderr,
        )
        return faults.exit_status()
    print(f"error: the {what} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 1


def run_command(
    run: Callable[[], T], show: Callable[[T], None], what: str, after_interrupt: str, debug: bool
) -> int:
    """Every command's life: the log to stdout unless --debug (so stderr holds one line on
    failure), SIGINT and SIGTERM remembered as interrupts, then `run`, its result shown, and
    the exit status (report_failure's for a failed or interrupted one)."""
    from prefect.exceptions import TerminationSignal

    from tasks.core import faults

    if not debug:
        one_line_console()
    faults.install_interrupt_handlers()
    try:
        result = run()
    except (Exception, KeyboardInterrupt, TerminationSignal) as exc:
        return report_failure(exc, what, after_interrupt)
    show(result)
    return 0
