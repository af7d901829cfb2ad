"""Which source a run reads, from its config: the dumps it names, the Reddit API when it has
credentials and subreddits, else the bundled sample. The credentials come from a
RedditCredentials block or the environment, so this is where the API source meets blocks/.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pydantic import ValidationError

from tasks.config import PipelineConfig
from tasks.extract import RedditAuth, credentials_from_env, one_line


@dataclass(frozen=True)
class ResolvedSource:
    name: str
    auth: RedditAuth | None
    reason: str


def resolve_source(config: PipelineConfig) -> ResolvedSource:
    """'auto' becomes the API when credentials are configured, the sample otherwise."""
    if config.source in ("sample", "dump"):
        return ResolvedSource(config.source, None, f"--source {config.source}")
    auth = load_auth(config)
    if config.comment_tree_posts and (auth is None or not config.subreddits):
        raise ValueError(
            "--comment-tree reads from the Reddit API: give --subreddit and Reddit credentials "
            "(REDDIT_CLIENT_ID, REDDIT_CLIENT_SECRET, REDDIT_USER_AGENT or a RedditCredentials "
            "block)"
        )
    if config.source == "api":
        if auth is None:
            raise ValueError(
                "the API source needs Reddit credentials: set REDDIT_CLIENT_ID, "
                "REDDIT_CLIENT_SECRET and REDDIT_USER_AGENT, or give a RedditCredentials block"
            )
        return ResolvedSource("api", auth, f"Reddit API, credentials from {auth.source}")
    if auth is not None and config.subreddits:
        return ResolvedSource("api", auth, f"Reddit API, credentials from {auth.source}")
    why = "no Reddit credentials configured" if auth is None else "no --subreddit given"
    return ResolvedSource("sample", None, f"the bundled sample dump ({why})")


def load_auth(config: PipelineConfig) -> RedditAuth | None:
    if config.reddit_credentials_block:
        from blocks.reddit import RedditCredentials

        name = config.reddit_credentials_block
        fields = {f: f"field {f}" for f in RedditCredentials.model_fields}
        try:
            return RedditCredentials.load(name).to_auth()
        except ValidationError as exc:
            raise ValueError(f"RedditCredentials block {name!r}: {one_line(exc, fields)}") from None
        except RuntimeError as exc:
            # Prefect wraps a block that fails validation in a RuntimeError of its own.
            if not isinstance(exc.__cause__, ValidationError):
                raise
            problem = one_line(exc.__cause__, fields)
            raise ValueError(f"RedditCredentials block {name!r}: {problem}") from None
    return credentials_from_env(os.environ)
