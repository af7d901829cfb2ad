-- Which lines of a dump chunk are usable, and where each one goes. Reads `processed`: the
-- kind's process model (posts.sql or comments.sql) over the chunk's lines, so each line's JSON
-- is parsed once, for staging and processing alike. Lines whose JSON gave no id are marked
-- 'unparsed' here; unparsed_reason.sql then names what is wrong with them (they are rare).
-- The bounds are tasks/settings.py's; valid_subreddit is a macro staging makes from
-- tasks/lake/raw.py's RECORD_SUBREDDIT_PATTERN (a name becomes a lake key's folder).
select
    processed.*,
    lower(subreddit) as subreddit_key,
    case
        when id is null then 'unparsed'
        when trim(id) = '' then 'missing id'
        when created_utc is null or isnan(created_utc) or isinf(created_utc)
            then 'unusable created_utc'
        when created_utc < {{EARLIEST_EPOCH}} or created_utc >= {{LATEST_EPOCH}}
            then 'created_utc out of range'
        when created_utc > epoch(now()) + {{MAX_FUTURE_SECONDS}}
            then 'created_utc in the future'
        when coalesce(subreddit, '') = '' then 'missing subreddit'
        when not valid_subreddit(subreddit) then 'invalid subreddit name'
    end as reason
from processed
