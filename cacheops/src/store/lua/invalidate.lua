-- Invalidate the cached values that some saved rows of one table may change.
-- Cost O(schemes x rows), independent of how many values are cached.
-- Conjunction keys are built here, but all share KEYS[1]'s hash tag {P:T}: one slot.
-- The Redis store runs it when the schemes it read before for the table may be
-- out of date; otherwise it deletes the same keys in a MULTI/EXEC (redis.rs).
--
-- KEYS[1]  {P:T}:schemes
-- KEYS[2]  {P:T}:gen
-- KEYS[3]  {P:T}:all
-- ARGV[1]  conjunction key prefix {P:T}:j:
-- ARGV[2]  news channel (see news.rs)
-- ARGV[3]  the publishing store's origin line (`@<token>`), first line of the news
-- ARGV[4]  '1' to reply with the stamp keys deleted, '0' for their number only
-- ARGV[5]  number of rows, then per row: number of columns, then column, term
--          pairs (escaped column name, and `<name>=<value>` with the value
--          encoded as in conjunction keys)
-- Deletes the stamp keys (whether they existed or not) and publishes them on the
-- news channel: local tiers drop the values depending on them. Replies with
-- them too when asked (the caller's own local tier applies them at once).

local dropped = {KEYS[3]}

local function finish()
  -- DEL in chunks: unpack() of too many values fails.
  for first = 1, #dropped, 1000 do
    redis.call('DEL', unpack(dropped, first, math.min(first + 999, #dropped)))
  end
  redis.call('PUBLISH', ARGV[2], ARGV[3] .. '\n' .. table.concat(dropped, '\n'))
  if ARGV[4] == '1' then
    return dropped
  end
  return #dropped
end

local function whole_table()
  dropped[#dropped + 1] = KEYS[2]
  return finish()
end

local schemes = redis.call('SMEMBERS', KEYS[1])
local kept = false
for _, scheme in ipairs(schemes) do
  if scheme == '' then
    kept = true
    break
  end
end
if not kept then
  -- Schemes lost (the set always holds the sentinel '' once anything was fenced):
  -- we cannot know which conjunctions exist, so invalidate them all.
  return whole_table()
end

local rows = {}
local at = 6
for r = 1, tonumber(ARGV[5]) do
  local row = {}
  local ncols = tonumber(ARGV[at])
  at = at + 1
  for _ = 1, ncols do
    row[ARGV[at]] = ARGV[at + 1]
    at = at + 2
  end
  rows[r] = row
end

-- The conjunction key `row` hits for a scheme, or nil when the row lacks one of
-- its columns (as layout::row_conj_key; the whole script is Layout::dropped_by).
-- `columns` is nil for a one-column scheme: most are, and they need no split and
-- no join.
local function conj_key(scheme, columns, row)
  if columns == nil then
    local term = row[scheme]
    return term and ARGV[1] .. term
  end
  local terms = {}
  for i, column in ipairs(columns) do
    local term = row[column]
    if term == nil then
      return nil
    end
    terms[i] = term
  end
  return ARGV[1] .. table.concat(terms, '&')
end

local seen = {}
for _, scheme in ipairs(schemes) do
  if scheme ~= '' then
    local columns = nil
    if string.find(scheme, ',', 1, true) then
      columns = {}
      for column in string.gmatch(scheme, '[^,]+') do
        columns[#columns + 1] = column
      end
    end
    for _, row in ipairs(rows) do
      local key = conj_key(scheme, columns, row)
      if key == nil then
        -- A missing column is a wildcard: the row may match any value of it.
        return whole_table()
      end
      if not seen[key] then
        seen[key] = true
        dropped[#dropped + 1] = key
      end
    end
  end
end
return finish()
