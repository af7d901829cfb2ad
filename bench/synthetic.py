"""A synthetic Pushshift-style comments dump (RC_YYYY-MM.zst) for benchmarks.

Why synthetic: a real month of comments is tens of GB and cannot ship with the repo, yet the
benchmark must run on every machine with the same bytes. The lines imitate what makes real dumps
costly to parse: ~475 bytes a line, bodies from a few bytes to a few KB with escapes, newlines
and non-ASCII text (raw UTF-8 and \\uXXXX escapes), skewed subreddit popularity, ids in base36
that increase with time, `edited` false or an epoch. A fixed seed makes the output identical on
every run. Lines are built with string formatting from precomputed pools because json.dumps per
record would make generation slower than the pipeline it feeds.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import zstandard

# 2024-01-01T00:00:00Z; items spread over 30 days.
START_UTC = 1_704_067_200
SPAN_SECONDS = 30 * 86_400
FIRST_COMMENT_ID = int("kfa00000", 36)
FIRST_POST_ID = int("18v00000", 36)

SUBREDDITS = [
    "AskReddit", "politics", "worldnews", "nba", "nfl", "soccer", "gaming", "funny", "pics",
    "news", "movies", "todayilearned", "wallstreetbets", "memes", "AmItheAsshole",
    "PublicFreakout", "Damnthatsinteresting", "interestingasfuck", "unpopularopinion",
    "relationship_advice", "LivestreamFail", "leagueoflegends", "hockey", "formula1",
    "Genshin_Impact", "CFB", "teenagers", "canada", "europe", "de", "france", "brasil",
    "mexico", "india", "unitedkingdom", "australia", "personalfinance", "programming", "python",
    "dataengineering", "datascience", "MachineLearning", "technology", "science", "askscience",
    "explainlikeimfive", "OldSchoolCool", "aww", "Music", "books",
]  # fmt: skip

WORDS = (  # noqa: SIM905 (a word list reads better as text)
    "the a to and of is it that you in for this i was on with but be have not are just like "
    "what so if my they think would people can get one all at or about do more from he no "
    "really game time good even because know there up out how when we don yeah year make "
    "pipeline data team season vote market price player fans coach policy source article"
).split()
UNICODE_BITS = [
    "café", "naïve", "über", "São Paulo", "Zürich", "日本語", "한국어", "Ελληνικά", "русский",
    "😂", "👍", "🔥", "™", "—", "…", "«quote»", "½", "€5", "∑", "≠",
]  # fmt: skip


def _body(rng: random.Random) -> str:
    """One comment body: mostly short, a long tail of multi-paragraph text."""
    roll = rng.random()
    if roll < 0.04:
        return rng.choice(["[deleted]", "[removed]"])
    n_words = int(rng.paretovariate(1.6) * 4) if roll < 0.99 else rng.randint(100, 400)
    n_words = min(n_words, 600)
    words = [rng.choice(WORDS) for _ in range(max(n_words, 1))]
    if rng.random() < 0.25:
        for _ in range(rng.randint(1, 3)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(UNICODE_BITS))
    if rng.random() < 0.1:
        words.insert(rng.randrange(len(words) + 1), '"quoted"')
    text = " ".join(words)
    if len(words) > 30 and rng.random() < 0.6:
        cut = rng.randrange(10, len(words))
        text = " ".join(words[:cut]) + "\n\n" + " ".join(words[cut:])
    if rng.random() < 0.05:
        text = "> " + text + "\n\nhttps://example.com/a?b=1&c=2"
    return text


def _author(rng: random.Random, index: int) -> str:
    first = rng.choice(["Quiet", "big", "Lazy", "throwaway", "the", "Mr", "real", "Salty", "No"])
    second = rng.choice(["Panda", "otter", "Gamer", "_dev", "Spoon", "Llama", "Ghost", "Fox"])
    return f"{first}{second}{index % 9973}"


def _base36(value: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = []
    while value:
        value, rem = divmod(value, 36)
        out.append(digits[rem])
    return "".join(reversed(out)) or "0"


def iter_lines(records: int, seed: int = 20240101, block: int = 50_000):
    """Yield encoded NDJSON blocks of up to `block` lines; memory is bounded by one block."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    # JSON-escaped pools: escaping once here, never per record.
    bodies = [json.dumps(_body(rng), ensure_ascii=rng.random() < 0.5)[1:-1] for _ in range(20_000)]
    authors = [_author(rng, i) for i in range(50_000)]
    authors[:50] = ["[deleted]"] * 50  # ~0.1% of the pool, drawn more often below
    author_ids = [_base36(rng.getrandbits(36)) for _ in authors]
    sub_ids = [_base36(rng.getrandbits(24)) for _ in SUBREDDITS]
    # Zipf-like popularity: AskReddit gets ~20%, the tail a fraction of a percent.
    weights = 1.0 / np.arange(1, len(SUBREDDITS) + 1) ** 1.1
    weights /= weights.sum()
    flairs = ["null"] * 8 + ['"Verified"', '"Moderator"', '"🇩🇪 Germany"', '":flair: Fan"']

    comment_id = FIRST_COMMENT_ID
    for first in range(0, records, block):
        n = min(block, records - first)
        subs = nrng.choice(len(SUBREDDITS), size=n, p=weights)
        # Evenly spread over the span, in id order, as in a real monthly dump.
        created = START_UTC + ((first + np.arange(n, dtype=np.int64)) * SPAN_SECONDS) // records
        steps = nrng.integers(1, 40, size=n)
        body_ix = nrng.integers(0, len(bodies), size=n)
        # Skewed towards low indexes (a few prolific authors); ~10% draw '[deleted]'.
        author_ix = (len(authors) * nrng.random(size=n) ** 3).astype(np.int64)
        scores = (nrng.pareto(1.5, size=n) * 3).astype(np.int64) - nrng.integers(0, 3, size=n)
        post_ix = nrng.integers(0, 200_000, size=n)
        parent_roll = nrng.random(size=n)
        edited_roll = nrng.random(size=n)
        lag = nrng.integers(60, 40 * 86_400, size=n)
        flair_ix = nrng.integers(0, len(flairs), size=n)
        lines = []
        for i in range(n):
            comment_id += int(steps[i])
            cid = _base36(comment_id)
            s = int(subs[i])
            sub = SUBREDDITS[s]
            ts = int(created[i])
            a = int(author_ix[i])
            author = authors[a]
            link = _base36(FIRST_POST_ID + int(post_ix[i]) * 7 + s)
            parent = (
                f"t3_{link}"
                if parent_roll[i] < 0.45
                else f"t1_{_base36(comment_id - int(steps[i]) * 3 - 11)}"
            )
            edited = "false" if edited_roll[i] < 0.96 else str(ts + int(lag[i]) // 50)
            afn = "null" if author == "[deleted]" else f'"t2_{author_ids[a]}"'
            lines.append(
                f'{{"author":"{author}","author_flair_text":'
                f'{flairs[flair_ix[i]]},"author_fullname":{afn},"body":"{bodies[body_ix[i]]}",'
                f'"controversiality":{int(edited_roll[i] < 0.02)},"created_utc":{ts},'
                f'"distinguished":null,"edited":{edited},"id":"{cid}",'
                f'"is_submitter":{"true" if parent_roll[i] > 0.93 else "false"},'
                f'"link_id":"t3_{link}","parent_id":"{parent}",'
                f'"permalink":"/r/{sub}/comments/{link}/comment/{cid}/",'
                f'"retrieved_on":{ts + int(lag[i])},"score":{int(scores[i])},'
                f'"stickied":false,"subreddit":"{sub}","subreddit_id":"t5_{sub_ids[s]}"}}\n'
            )
        yield "".join(lines).encode()


def write_dump(path: Path, records: int, seed: int = 20240101) -> int:
    """Stream `records` lines into a zstd dump at `path`; returns decompressed bytes written.

    Level 3 with a 128 MiB window (window_log 27): real dumps use larger windows, which only
    matter for the decompressor's memory, and the pipeline already allows up to 2 GiB.
    """
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=27, threads=2)
    written = 0
    with (
        path.open("wb") as raw,
        zstandard.ZstdCompressor(compression_params=params).stream_writer(raw) as out,
    ):
        for data in iter_lines(records, seed):
            out.write(data)
            written += len(data)
    return written
