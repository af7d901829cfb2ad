        -- timestamps (UTC) from Reddit's epoch seconds, the same for posts and comments; an
        -- epoch outside tasks/settings.py's bounds is null, never handed to to_timestamp
        -- (which raises on 1e20, NaN or inf): processed files written before the process
        -- models bounded retrieved_utc may still hold one. `edited` is false or the edit's epoch.
        case
            when created_utc >= {{EARLIEST_EPOCH}} and created_utc < {{LATEST_EPOCH}}
                then cast(to_timestamp(created_utc) as timestamp)
        end as created_at,
        case
            when try_cast(edited as double) >= {{EARLIEST_EPOCH}}
                and try_cast(edited as double) < {{LATEST_EPOCH}}
                then cast(to_timestamp(try_cast(edited as double)) as timestamp)
        end as edited_at,
        case
            when retrieved_utc >= {{EARLIEST_EPOCH}} and retrieved_utc < {{LATEST_EPOCH}}
                then cast(to_timestamp(retrieved_utc) as timestamp)
        end as retrieved_at
