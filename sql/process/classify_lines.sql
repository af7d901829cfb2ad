-- Which lines of a dump chunk are usable, and where each one goes. Reads `processed`: the
-- kind's process model (posts.sql or comments.sql) over the chunk's lines, so each line's JSON
-- is parsed once, for staging and processing alike. Lines whose JSON gave no id are marked
-- 'unparsed' here; unparsed_reason.sql then names what is wrong with them (they are rare).
select
    processed.*,
    lower(subreddit) as subreddit_key,
    case
        when id is null then 'unparsed'
        when trim(id) = '' then 'missing id'
        when created_utc is null or isnan(created_utc) or isinf(created_utc)
            then 'unusable created_utc'
        -- Reddit opened in June 2005; a later date than tomorrow is a broken clock or field.
        when created_utc < 1117584000 or created_utc > epoch(now()) + 86400
            then 'created_utc out of range'
        when coalesce(subreddit, '') = '' then 'missing subreddit'
    end as reason
from processed
