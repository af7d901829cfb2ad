-- Raw comment JSON -> one typed row per line, Reddit's own field names, one type per field.
-- Reads the relation `raw_lines(line_no, raw, batch_retrieved_utc)`, as posts.sql does, with
-- the same drift rules.
with fields as (
    select
        line_no,
        batch_retrieved_utc,
        try(json_extract_string(raw, [
            '$.id', '$.name', '$.subreddit', '$.subreddit_id', '$.author', '$.author_fullname',
            '$.body', '$.link_id', '$.parent_id', '$.permalink', '$.score',
            '$.controversiality', '$.distinguished', '$.stickied', '$.is_submitter',
            '$.created_utc', '$.edited', '$.retrieved_utc', '$.retrieved_on'
        ])) as f
    from raw_lines
)

select
    f[1] as id,
    coalesce(f[2], 't1_' || f[1]) as name,
    f[3] as subreddit,
    f[4] as subreddit_id,
    f[5] as author,
    f[6] as author_fullname,
    f[7] as body,
    f[8] as link_id,
    f[9] as parent_id,
    f[10] as permalink,
    try_cast(try_cast(f[11] as double) as bigint) as score,
    try_cast(try_cast(f[12] as double) as bigint) as controversiality,
    f[13] as distinguished,
    try_cast(f[14] as boolean) as stickied,
    try_cast(f[15] as boolean) as is_submitter,
    try_cast(f[16] as double) as created_utc,
    f[17] as edited,
    coalesce(try_cast(f[18] as double), try_cast(f[19] as double), batch_retrieved_utc)
        as retrieved_utc,
    strftime(to_timestamp(try_cast(f[16] as double)), '%Y-%m-%d') as dt,
    line_no
from fields
