-- The server's lower() of each code point in %(code_points)s (int[], no 0, no surrogate),
-- for crmtasks.search.text_case. Rows: code point, lowered text.
SELECT c, lower(chr(c)) FROM unnest(%(code_points)s::int[]) AS c
