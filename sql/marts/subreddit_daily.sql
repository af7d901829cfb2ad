-- Activity per subreddit per UTC day, from the latest version of each item.
-- Deleted accounts ('[deleted]') are not authors.
with post_days as (
    select
        subreddit,
        created_date as day,
        count(*) as posts,
        avg(score) as mean_post_score,
        median(score) as median_post_score
    from posts
    group by subreddit, created_date
),

comment_days as (
    select
        subreddit,
        created_date as day,
        count(*) as comments,
        avg(score) as mean_comment_score,
        median(score) as median_comment_score
    from comments
    group by subreddit, created_date
),

authors as (
    select subreddit, created_date as day, author from posts
    union
    select subreddit, created_date as day, author from comments
),

author_days as (
    select
        subreddit,
        day,
        count(distinct author) as distinct_authors
    from authors
    where author is not null and author <> '[deleted]'
    group by subreddit, day
),

days as (
    select subreddit, day from post_days
    union
    select subreddit, day from comment_days
),

final as (
    select
        days.subreddit,
        days.day,
        coalesce(post_days.posts, 0) as posts,
        coalesce(comment_days.comments, 0) as comments,
        coalesce(author_days.distinct_authors, 0) as distinct_authors,
        post_days.mean_post_score,
        post_days.median_post_score,
        comment_days.mean_comment_score,
        comment_days.median_comment_score
    from days
    left join post_days on days.subreddit = post_days.subreddit and days.day = post_days.day
    left join comment_days
        on days.subreddit = comment_days.subreddit and days.day = comment_days.day
    left join author_days
        on days.subreddit = author_days.subreddit and days.day = author_days.day
)

select * from final
