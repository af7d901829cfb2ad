-- One row per post version, with every rename and derivation of a post in one place.
with source as (
    select * from processed_posts
),

renamed as (
    select
        -- ids
        id,
        coalesce(name, 't3_' || id) as fullname,
        lower(subreddit) as subreddit,
        subreddit_id,

        -- text
        author,
        title,
        selftext,
        url,
        domain,
        permalink,
        link_flair_text as flair,
        distinguished,
        removed_by_category,

        -- numbers
        score,
        num_comments,
        upvote_ratio,

        -- flags
        coalesce(over_18, false) as is_nsfw,
        coalesce(is_self, false) as is_self,
        coalesce(spoiler, false) as is_spoiler,
        coalesce(stickied, false) as is_stickied,
        coalesce(locked, false) as is_locked,
        coalesce(edited, 'false') not in ('false', '0', '0.0') as is_edited,
        selftext = '[deleted]' or (author = '[deleted]' and coalesce(selftext, '') <> '[removed]')
            as is_deleted,
        selftext = '[removed]' or removed_by_category is not null as is_removed,

{{> fragments/epoch_timestamps.sql}}
    from source
),

final as (
    select
        *,
        cast(created_at as date) as created_date
    from renamed
)

select * from final
