-- One row per comment version. link_id and parent_id come as fullnames (t3_/t1_) in most
-- dumps but bare ids in some: both are normalised to fullnames here.
with source as (
    select * from processed_comments
),

renamed as (
    select
        -- ids
        id,
        coalesce(name, 't1_' || id) as fullname,
        lower(subreddit) as subreddit,
        subreddit_id,
        case when link_id like 't3\_%' escape '\' then link_id else 't3_' || link_id end
            as post_fullname,
        case
            when parent_id like 't_\_%' escape '\' then parent_id
            when parent_id = link_id then 't3_' || parent_id
            else 't1_' || parent_id
        end as parent_fullname,

        -- text
        author,
        body,
        distinguished,

        -- numbers
        score,
        controversiality,

        -- flags
        coalesce(stickied, false) as is_stickied,
        coalesce(is_submitter, false) as is_submitter,
        coalesce(edited, 'false') not in ('false', '0', '0.0') as is_edited,
        body = '[deleted]' or (author = '[deleted]' and coalesce(body, '') <> '[removed]')
            as is_deleted,
        body = '[removed]' as is_removed,

{{> fragments/epoch_timestamps.sql}}
    from source
),

final as (
    select
        *,
        substr(post_fullname, 4) as post_id,
        parent_fullname like 't3\_%' escape '\' as is_top_level,
        cast(created_at as date) as created_date
    from renamed
)

select * from final
