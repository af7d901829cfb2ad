-- Raw post JSON -> one typed row per line, Reddit's own field names, one type per field
-- whatever the dump's vintage. Reads the relation `raw_lines(line_no, raw, batch_retrieved_utc)`:
-- line_no is where the line sits in its dump while staging (null when reprocessing the raw layer)
-- and is passed through; batch_retrieved_utc is the batch's retrieval time for API batches
-- (Reddit's JSON has none), null for dumps. JSON that does not parse gives a row of nulls:
-- staging quarantines it, and the raw layer holds none.
-- Drift handled here: created_utc is a number or a numeric string; score may be null;
-- older dumps say retrieved_on, newer ones retrieved_utc; edited is false, true or an epoch
-- (kept as its JSON text: staging turns it into is_edited and edited_at).
with fields as (
    select
        line_no,
        batch_retrieved_utc,
        try(json_extract_string(raw, [
            '$.id', '$.name', '$.subreddit', '$.subreddit_id', '$.author', '$.author_fullname',
            '$.title', '$.selftext', '$.url', '$.domain', '$.permalink', '$.link_flair_text',
            '$.score', '$.num_comments', '$.upvote_ratio', '$.over_18', '$.is_self',
            '$.spoiler', '$.stickied', '$.locked', '$.distinguished', '$.removed_by_category',
            '$.created_utc', '$.edited', '$.retrieved_utc', '$.retrieved_on'
        ])) as f
    from raw_lines
)

select
    f[1] as id,
    coalesce(f[2], 't3_' || f[1]) as name,
    f[3] as subreddit,
    f[4] as subreddit_id,
    f[5] as author,
    f[6] as author_fullname,
    f[7] as title,
    f[8] as selftext,
    f[9] as url,
    f[10] as domain,
    f[11] as permalink,
    f[12] as link_flair_text,
    try_cast(try_cast(f[13] as double) as bigint) as score,
    try_cast(try_cast(f[14] as double) as bigint) as num_comments,
    try_cast(f[15] as double) as upvote_ratio,
    try_cast(f[16] as boolean) as over_18,
    try_cast(f[17] as boolean) as is_self,
    try_cast(f[18] as boolean) as spoiler,
    try_cast(f[19] as boolean) as stickied,
    try_cast(f[20] as boolean) as locked,
    f[21] as distinguished,
    f[22] as removed_by_category,
    try_cast(f[23] as double) as created_utc,
    f[24] as edited,
    coalesce(try_cast(f[25] as double), try_cast(f[26] as double), batch_retrieved_utc)
        as retrieved_utc,
    strftime(to_timestamp(try_cast(f[23] as double)), '%Y-%m-%d') as dt,
    line_no
from fields
