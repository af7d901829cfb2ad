-- Raw comment JSON -> one typed row per line, Reddit's own field names, one type per field.
-- Reads the relation `raw_lines(line_no, raw, batch_retrieved_utc)`, as posts.sql does, with
-- the same drift rules, bounds and `coerced` list.
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
),

epochs as (
    select
        *,
        try_cast(f[16] as double) as created,
        try_cast(f[17] as double) as edited_epoch,
        try_cast(f[18] as double) as retrieved_utc_field,
        try_cast(f[19] as double) as retrieved_on_field
    from fields
),

typed as (
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
        created as created_utc,
        f[17] as edited,
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
        case when f[11] is not null and score is null then 'score' end,
        case when f[12] is not null and controversiality is null then 'controversiality' end,
        case when f[14] is not null and stickied is null then 'stickied' end,
        case when f[15] is not null and is_submitter is null then 'is_submitter' end,
        case
            when edited_epoch > 1
                and not (edited_epoch >= {{EARLIEST_EPOCH}} and edited_epoch < {{LATEST_EPOCH}})
                then 'edited'
        end,
        case
            when (f[18] is not null or f[19] is not null) and retrieved_utc is null
                then 'retrieved_utc'
        end
    ], lambda c: c is not null) as coerced
from typed
