"""Reddit API constants. Anything a caller may change is a keyword argument instead."""

# Reddit's default host names; tests and benchmarks inject a local server instead.
OAUTH_URL = "https://oauth.reddit.com"
REDDIT_URL = "https://www.reddit.com"
ACCESS_TOKEN_PATH = "/api/v1/access_token"

# A listing page holds at most 100 items and a listing about 1000 in all.
PAGE_SIZE = 100
LISTING_CAP = 1000
# How many older anchors to try when a listing ends early (its `after` item was deleted
# between two pages): each try is one request.
RESUME_TRIES = 3
# /api/info and /api/morechildren both take at most 100 ids per request.
INFO_BATCH = 100
MORECHILDREN_BATCH = 100

LISTING_PATHS = {"posts": "/r/{sub}/new", "comments": "/r/{sub}/comments"}
KIND_PREFIX = {"posts": "t3_", "comments": "t1_"}

DEFAULT_OVERLAP_SECONDS = 3600.0
DEFAULT_REFRESH_MAX_AGE_SECONDS = 3 * 24 * 3600.0

# asyncprawcore reads its own timeout once, at import; ours is enforced around each request.
REQUEST_TIMEOUT_SECONDS = 16.0
MAX_ATTEMPTS = 6
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0
# Longest single wait Reddit may impose (a Retry-After, a used-up window) before the run
# fails naming it, and the longest all such waits of a run may last together.
MAX_WAIT_SECONDS = 300.0
TOTAL_WAIT_SECONDS = 1800.0
# Waits from this long on are logged with their reason and counted in the run's total.
LOG_WAIT_SECONDS = 3.0
# A Reddit URL that never answered for this long is unreachable: the run fails naming it.
UNREACHABLE_AFTER_SECONDS = 60.0
# Longest wait for one slot of a shared Prefect global concurrency limit: many times the
# spacing a busy limit gives (e.g. 1.6 slots per second) yet short of a hung run.
GLOBAL_LIMIT_WAIT_SECONDS = 300.0

# Raw lines are compact UTF-8 JSON, the shape DuckDB and the dumps use.
JSON_SEPARATORS = (",", ":")

ENV_VARS = {
    "client_id": "REDDIT_CLIENT_ID",
    "client_secret": "REDDIT_CLIENT_SECRET",
    "user_agent": "REDDIT_USER_AGENT",
    "username": "REDDIT_USERNAME",
    "password": "REDDIT_PASSWORD",
}
