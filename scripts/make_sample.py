"""Generate the bundled sample dumps: data/sample/RS_2024-03.zst and RC_2024-03.zst.

A week (2024-03-01 .. 2024-03-07 UTC) of five subreddits in the Pushshift / Arctic Shift monthly
dump format, with the quirks real dumps have: deleted and removed items, edits, unicode, field
drift between crawls, re-crawled duplicates and a few malformed lines. The seed is fixed and
nothing depends on the clock or on hash order, so every run writes byte-identical files.

    python scripts/make_sample.py [--out DIR]      (or: make sample)
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import zstandard

SEED = 2024
START = 1709251200  # 2024-03-01T00:00:00Z
END = START + 7 * 86400
N_POSTS = 600
N_COMMENTS = 3000

# name in most records, other spellings seen in some records, subreddit_id
SUBREDDITS = [
    ("python", ["Python", "PYTHON"], "t5_2qh0y"),
    ("dataengineering", ["DataEngineering"], "t5_36en4"),
    ("rust", ["Rust"], "t5_2s7lj"),
    ("datascience", ["DataScience"], "t5_2sptq"),
    ("AskHistorians", ["askhistorians"], "t5_2ssp3"),
]
_VOCABULARY = {
    "python": "asyncio typing pandas polars packaging uv pip venv decorator generator GIL "
    "dataclass pytest import wheel",
    "dataengineering": "pipeline warehouse lakehouse parquet airflow prefect dbt spark kafka "
    "iceberg schema backfill idempotent partition",
    "rust": "borrow lifetime trait async tokio cargo crate unsafe macro serde ownership enum "
    "compiler clippy",
    "datascience": "regression model feature notebook sklearn bayesian dashboard interview "
    "metric experiment sampling forecast",
    "AskHistorians": "empire medieval treaty dynasty archive siege trade manuscript colonial "
    "revolution chronicle monastery",
    "common": "how why what is the a best way to use with for in my our question help",
}
WORDS = {sub: text.split() for sub, text in _VOCABULARY.items()}
COMMON = WORDS.pop("common")
# Text that trips naive readers: CJK, right-to-left scripts, combining marks (e + U+0301),
# 4-byte emoji (a byte split across reads breaks them), a ZWJ sequence and a flag.
UNICODE = [
    "数据管道",
    "データエンジニアリング",
    "파이썬",
    "مرحبا بالعالم",
    "שלום עולם",
    "cafe\u0301 na\u0308ive",
    "Zürich Ærøskøbing façade",
    "🐍",
    "🦀",
    "📊🔥",
    "👩\u200d💻",
    "🇩🇪",
    "∑ ≠ ∞",
]
DOMAINS = [
    "github.com",
    "i.redd.it",
    "youtube.com",
    "medium.com",
    "arxiv.org",
    "blog.rust-lang.org",
]
FLAIRS = [None, "Discussion", "Help", "Showcase", "News", "Resource", "Career"]


def base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while number:
        number, rem = divmod(number, 36)
        out = digits[rem] + out
    return out or "0"


class Sample:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.authors = [self._author(i) for i in range(400)]

    def _author(self, index: int) -> tuple[str, str]:
        rng = self.rng
        first = rng.choice(["quiet", "lazy", "rusty", "big", "old", "data", "null", "async"])
        second = rng.choice(["otter", "falcon", "pandas", "crab", "scribe", "monk", "byte"])
        return f"{first}_{second}{index}", "t2_" + base36(rng.randrange(36**6, 36**8))

    def sentence(self, sub: str, words: int) -> str:
        rng = self.rng
        pool = WORDS[sub] + COMMON
        parts = [rng.choice(pool) for _ in range(words)]
        if rng.random() < 0.15:
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(UNICODE))
        return " ".join(parts)

    def subreddit_name(self, index: int) -> str:
        name, variants, _ = SUBREDDITS[index]
        return self.rng.choice(variants) if self.rng.random() < 0.04 else name

    def text(self, sub: str) -> str:
        rng = self.rng
        paragraphs = [self.sentence(sub, rng.randint(6, 30)) for _ in range(rng.randint(1, 3))]
        return "\n\n".join(paragraphs)

    def retrieval(self, record: dict, created: int) -> None:
        """Older Pushshift records carry retrieved_on, Arctic Shift ones retrieved_utc."""
        when = created + self.rng.randint(3600, 40 * 3600)
        record["retrieved_on" if self.rng.random() < 0.4 else "retrieved_utc"] = when

    def drift(self, record: dict) -> None:
        """Field drift between crawls and dump producers."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.06:
            record["created_utc"] = str(record["created_utc"])
        elif roll < 0.08:
            record["created_utc"] = float(record["created_utc"])
        if rng.random() < 0.01:
            record["score"] = None
        if rng.random() < 0.05:
            record["edited"] = record["created_utc_int"] + round(rng.uniform(60, 86400), 3)
        for optional in ("distinguished", "author_fullname", "link_flair_text", "upvote_ratio"):
            if optional in record and rng.random() < 0.05:
                del record[optional]
        extra = rng.random()
        if extra < 0.05:
            record["all_awardings"] = []
            record["gildings"] = {}
        elif extra < 0.08:
            record["_meta"] = {"retrieval_type": "pushshift-ingest", "was_deleted_later": False}

    def post(self, pid: int, created: int, sub_index: int) -> dict:
        rng = self.rng
        name, _, sub_id = SUBREDDITS[sub_index]
        author, fullname = rng.choice(self.authors)
        title = self.sentence(name, rng.randint(4, 14)).capitalize()
        is_self = rng.random() < 0.7
        ident = base36(pid)
        slug = "_".join(title.lower().split()[:6])[:50]
        permalink = f"/r/{name}/comments/{ident}/{slug}/"
        domain = f"self.{name}" if is_self else rng.choice(DOMAINS)
        record = {
            "id": ident,
            "name": f"t3_{ident}",
            "subreddit": self.subreddit_name(sub_index),
            "subreddit_id": sub_id,
            "author": author,
            "author_fullname": fullname,
            "title": title,
            "selftext": self.text(name) if is_self else "",
            "url": f"https://www.reddit.com{permalink}" if is_self else f"https://{domain}/{slug}",
            "domain": domain,
            "permalink": permalink,
            "score": max(0, int(rng.lognormvariate(2.0, 1.5))),
            "num_comments": 0,
            "upvote_ratio": round(rng.uniform(0.5, 1.0), 2),
            "over_18": rng.random() < 0.01,
            "is_self": is_self,
            "spoiler": rng.random() < 0.01,
            "stickied": rng.random() < 0.01,
            "locked": rng.random() < 0.02,
            "distinguished": "moderator" if rng.random() < 0.01 else None,
            "link_flair_text": rng.choice(FLAIRS),
            "removed_by_category": None,
            "created_utc": created,
            "edited": False,
            "created_utc_int": created,
        }
        self.retrieval(record, created)
        roll = rng.random()
        if roll < 0.03:  # deleted by its author
            record.update(author="[deleted]", selftext="[deleted]", removed_by_category="deleted")
            record.pop("author_fullname", None)
        elif roll < 0.07:  # removed by a moderator
            record.update(selftext="[removed]", removed_by_category="moderator")
        self.drift(record)
        return record

    def comment(self, cid: int, created: int, post: dict, parent: str) -> dict:
        rng = self.rng
        name = post["permalink"].split("/")[2]
        author, fullname = rng.choice(self.authors)
        ident = base36(cid)
        record = {
            "id": ident,
            "subreddit": post["subreddit"] if rng.random() < 0.9 else name,
            "subreddit_id": post["subreddit_id"],
            "author": author,
            "author_fullname": fullname,
            "body": self.text(name),
            "link_id": post["name"],
            "parent_id": parent,
            "permalink": f"{post['permalink']}{ident}/",
            "score": int(rng.lognormvariate(0.8, 1.2)) - rng.randint(0, 2),
            "controversiality": 1 if rng.random() < 0.03 else 0,
            "distinguished": "moderator" if rng.random() < 0.005 else None,
            "stickied": False,
            "is_submitter": author == post["author"],
            "created_utc": created,
            "edited": False,
            "created_utc_int": created,
        }
        if rng.random() < 0.7:  # older dumps lack the fullname of comments
            record = {
                "id": ident,
                "name": f"t1_{ident}",
                **{k: record[k] for k in record if k != "id"},
            }
        self.retrieval(record, created)
        roll = rng.random()
        if roll < 0.03:
            record.update(author="[deleted]", body="[deleted]")
            record.pop("author_fullname", None)
        elif roll < 0.06:
            record.update(author="[deleted]", body="[removed]")
            record.pop("author_fullname", None)
        self.drift(record)
        return record


def build(rng: random.Random) -> tuple[list[dict], list[dict]]:
    sample = Sample(rng)
    post_times = sorted(rng.randrange(START, END) for _ in range(N_POSTS))
    pid = int("1b3a000", 36)
    posts = []
    for created in post_times:
        pid += rng.randint(40, 900)
        sub = rng.choices(range(len(SUBREDDITS)), weights=[30, 20, 20, 20, 10])[0]
        posts.append(sample.post(pid, created, sub))

    # A few comments answer posts from before the sample (older ids, not in RS_2024-03).
    outside = [
        sample.post(int("1aq0000", 36) + i * 977, START - 86400 * (i + 1), i % len(SUBREDDITS))
        for i in range(6)
    ]
    planned = []
    for _ in range(N_COMMENTS):
        post = rng.choice(outside) if rng.random() < 0.03 else rng.choice(posts)
        start = max(post["created_utc_int"], START)
        created = min(END - 1, start + int(rng.expovariate(1 / 14400)))
        planned.append((created, post))
    planned.sort(key=lambda item: (item[0], item[1]["id"]))

    cid = int("ksw0000", 36)
    comments: list[dict] = []
    by_post: dict[str, list[str]] = {}
    for created, post in planned:
        cid += rng.randint(200, 2500)
        earlier = by_post.setdefault(post["id"], [])
        parent = f"t1_{rng.choice(earlier)}" if earlier and rng.random() < 0.5 else post["name"]
        comment = sample.comment(cid, created, post, parent)
        earlier.append(comment["id"])
        comments.append(comment)
    for post in posts:
        post["num_comments"] = len(by_post.get(post["id"], [])) + rng.randint(0, 3)
    return posts, comments


def recrawl(rng: random.Random, records: list[dict], count: int) -> None:
    """Re-crawled duplicates: the same id again with a later retrieval time and a new score.
    Most appear later in the file; some before the original, so file order cannot decide."""
    for original in rng.sample(records[: len(records) - 10], count):
        again = dict(original)
        field = "retrieved_utc" if "retrieved_utc" in again else "retrieved_on"
        again[field] = again[field] + rng.randint(86400, 20 * 86400)
        again["score"] = (original["score"] or 0) + rng.randint(1, 50)
        position = records.index(original)
        if rng.random() < 0.7:
            records.insert(rng.randrange(position + 1, len(records) + 1), again)
        else:
            records.insert(rng.randrange(0, position + 1), again)


def serialize(rng: random.Random, records: list[dict]) -> list[bytes]:
    lines = []
    for record in records:
        record = {k: v for k, v in record.items() if k != "created_utc_int"}
        # Old Pushshift files escape non-ASCII (\ud83d\udc0d); newer ones write UTF-8.
        ascii_only = rng.random() < 0.2
        lines.append(json.dumps(record, ensure_ascii=ascii_only, separators=(",", ":")).encode())
    return lines


def add_malformed(rng: random.Random, lines: list[bytes], kind: str) -> None:
    good = lines[rng.randrange(len(lines))]
    bad = [
        b"this is not json {",
        good[: len(good) // 2],  # a truncated record
        b'[{"id":"zzz1","subreddit":"python","created_utc":1709300000}]',
        b'{"subreddit":"rust","created_utc":1709300000,"body":"' + kind.encode() + b' without id"}',
        b'{"id":"zzz2","subreddit":"python","created_utc":"yesterday","score":1}',
    ]
    for line in bad:
        lines.insert(rng.randrange(1, len(lines)), line)


def write_dump(path: Path, lines: list[bytes]) -> None:
    params = zstandard.ZstdCompressionParameters.from_level(
        19, window_log=27, write_content_size=1, write_checksum=1
    )
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(zstandard.ZstdCompressor(compression_params=params).compress(data))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "sample"
    )
    args = parser.parse_args()
    rng = random.Random(SEED)
    posts, comments = build(rng)
    recrawl(rng, posts, 5)
    recrawl(rng, comments, 10)
    post_lines = serialize(rng, posts)
    comment_lines = serialize(rng, comments)
    add_malformed(rng, post_lines, "posts")
    add_malformed(rng, comment_lines, "comments")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, lines in (("RS_2024-03.zst", post_lines), ("RC_2024-03.zst", comment_lines)):
        write_dump(args.out / name, lines)
        size = (args.out / name).stat().st_size
        print(f"{args.out / name}: {len(lines)} lines, {size} bytes")


if __name__ == "__main__":
    main()
