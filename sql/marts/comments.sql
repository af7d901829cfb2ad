-- The latest version of each comment, by retrieval time (see posts.sql).
with versions as (
    select
        *,
        row_number() over (
            partition by id
            order by retrieved_at desc nulls last, score desc nulls last
        ) as version_rank
    from stg_comments
),

final as (
    select * exclude (version_rank)
    from versions
    where version_rank = 1
)

select * from final
