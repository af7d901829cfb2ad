-- Raw post JSON -> one typed row per line, Reddit's own field names, one type per field
-- whatever the dump's vintage. Reads the relation `raw_lines(line_no, raw, batch_retrieved_utc)`:
-- line_no is where the line sits in its dump while staging (null when reprocessing the raw layer)
-- and is passed through; batch_retrieved_utc is the batch's retrieval time for API batches
-- (Reddit's JSON has none), null for dumps. JSON that does not parse gives a row of nulls:
-- staging quarantines it, and the raw layer holds none.
-- Drift handled here: created_utc is a number or a numeric string; score may be null;
-- older dumps say retrieved_on, newer ones retrieved_utc; edited is false, true or an epoch
-- (kept as its JSON text: staging turns it into is_edited and edited_at).
-- Bounds (tasks/settings.py): a retrieval time outside them is dropped (the next spelling, or
-- null, is taken), and dt is null for a created_utc outside them, so no value ever reaches
-- to_timestamp out of its range (such lines are quarantined by classify_lines.sql).
-- `coerced` lists the fields whose JSON value was present but not of the field's type (or out
-- of bounds) and so became null: staging counts them. tasks.process.duckdb_engine.process_sql drops it.
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
),

epochs as (
    select
        *,
        try_cast(f[23] as double) as created,
        try_cast(f[24] as double) as edited_epoch,
        try_cast(f[25] as double) as retrieved_utc_field,
        try_cast(f[26] as double) as retrieved_on_field
    from fields
),

typed as (
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
        created as created_utc,
        f[24] as edited,
        coalesce(
            case
                when retrieved_utc_field >= {{EARLIEST_EPOCH}}
                    and retrieved_utc_field < {{LATEST_EPOCH}}
                    then retrieved_utc_field
            end,
            case
                when retrieved_on_field >= {{EARLIEST_EPOCH}}
                    and retrieved_on_field < {{LATEST_EPOCH}}
                    then retrieved_on_field
            end,
            batch_retrieved_utc
        ) as retrieved_utc,
        case
            when created >= {{EARLIEST_EPOCH}} and created < {{LATEST_EPOCH}}
                then strftime(to_timestamp(created), '%Y-%m-%d')
        end as dt,
        line_no,
        f,
        edited_epoch
    from epochs
)

select
    * exclude (f, edited_epoch),
    list_filter([
        case when f[13] is not null and score is null then 'score' end,
        case when f[14] is not null and num_comments is null then 'num_comments' end,
        case when f[15] is not null and upvote_ratio is null then 'upvote_ratio' end,
        case when f[16] is not null and over_18 is null then 'over_18' end,
        case when f[17] is not null and is_self is null then 'is_self' end,
        case when f[18] is not null and spoiler is null then 'spoiler' end,
        case when f[19] is not null and stickied is null then 'stickied' end,
        case when f[20] is not null and locked is null then 'locked' end,
        case
            when edited_epoch > 1
                and not (edited_epoch >= {{EARLIEST_EPOCH}} and edited_epoch < {{LATEST_EPOCH}})
                then 'edited'
        end,
        case
            when (f[25] is not null or f[26] is not null) and retrieved_utc is null
                then 'retrieved_utc'
        end
    ], lambda c: c is not null) as coerced
from typed
