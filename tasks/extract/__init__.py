"""The sources: dump files read line by line (dumps), lines staged into raw batches and, with the
DuckDB engine, processed on the way (stage), and the Reddit API (api, over the self-contained
client in reddit_api/).

Imports tasks.core, tasks.lake, tasks.process and tasks.state.
"""

from tasks.extract.api import extract_api_task
from tasks.extract.dumps import DumpError, check_dump, dump_kind
from tasks.extract.reddit_api import (
    RedditAuth,
    check_user_agent,
    credentials_from_env,
    newer_mark,
    one_line,
)
from tasks.extract.stage import StageResult, Window, damaged_input_error, stage_dump_task

__all__ = [
    "DumpError",
    "RedditAuth",
    "StageResult",
    "Window",
    "check_dump",
    "check_user_agent",
    "credentials_from_env",
    "damaged_input_error",
    "dump_kind",
    "extract_api_task",
    "newer_mark",
    "one_line",
    "stage_dump_task",
]
