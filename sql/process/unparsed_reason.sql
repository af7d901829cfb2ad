-- Why a line gave no id: reads `unparsed_lines(line_no, raw)`, the few lines that
-- classify_lines.sql marked 'unparsed'. A blank line is counted, not quarantined.
select
    line_no,
    case
        when trim(raw, ' ' || chr(9) || chr(10)) = '' then 'blank'
        when not json_valid(raw) then 'not valid JSON'
        when json_type(raw) <> 'OBJECT' then 'not a JSON object'
        else 'missing id'
    end as reason
from unparsed_lines
