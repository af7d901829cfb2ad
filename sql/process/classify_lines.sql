-- One pass over a chunk of dump lines: find what makes a line unusable, and the three fields
-- every later step needs. Each line's JSON is parsed once (json_extract_string with a list of
-- paths, under try: malformed JSON gives null); only the rare lines that fail are examined
-- again to name the reason. The raw text is carried through untouched for the raw layer.
with lines as (
    select
        row_number() over () + $first_line - 1 as line_no,
        raw
    from read_csv(
        $chunk_path,
        columns = {'raw': 'VARCHAR'},
        delim = chr(1),
        quote = '',
        escape = '',
        header = false,
        auto_detect = false,
        strict_mode = false,
        max_line_size = 1073741824
    )
),

parsed as (
    select
        line_no,
        raw,
        try(json_extract_string(raw, ['$.id', '$.subreddit', '$.created_utc'])) as fields
    from lines
),

typed as (
    select
        line_no,
        raw,
        fields[1] as id,
        lower(fields[2]) as subreddit,
        try_cast(fields[3] as double) as created_utc
    from parsed
)

select
    line_no,
    raw,
    id,
    subreddit,
    created_utc,
    strftime(to_timestamp(created_utc), '%Y-%m-%d') as dt,
    case
        -- An id implies a JSON object; without one, find out what the line is.
        when id is null then
            case
                when raw is null or trim(raw) = '' then 'blank'
                when not json_valid(raw) then 'not valid JSON'
                when json_type(raw) <> 'OBJECT' then 'not a JSON object'
                else 'missing id'
            end
        when trim(id) = '' then 'missing id'
        when created_utc is null or isnan(created_utc) or isinf(created_utc)
            then 'unusable created_utc'
        -- Reddit opened in June 2005; a later date than tomorrow is a broken clock or field.
        when created_utc < 1117584000 or created_utc > epoch(now()) + 86400
            then 'created_utc out of range'
        when coalesce(subreddit, '') = '' then 'missing subreddit'
    end as reason
from typed
