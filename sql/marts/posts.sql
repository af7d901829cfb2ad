-- The latest version of each post: the one retrieved last (a re-crawl carries the newer score,
-- comment count and removal state). Ties keep the higher score, so the choice is stable.
with versions as (
    select
        *,
        row_number() over (
            partition by id
            order by retrieved_at desc nulls last, score desc nulls last, num_comments desc nulls last
        ) as version_rank
    from stg_posts
),

final as (
    select * exclude (version_rank)
    from versions
    where version_rank = 1
)

select * from final
