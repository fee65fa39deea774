-- Invalidate the cached values that some saved rows of one table may change.
-- Cost O(schemes x rows), independent of how many values are cached.
-- Conjunction keys are built here, but all share KEYS[1]'s hash tag {P:T}: one slot.
--
-- KEYS[1]  {P:T}:schemes
-- KEYS[2]  {P:T}:gen
-- KEYS[3]  {P:T}:all
-- ARGV[1]  conjunction key prefix {P:T}:j:
-- ARGV[2]  news channel (see news.rs)
-- ARGV[3]  the publishing store's origin line (`@<token>`), first line of the news
-- ARGV[4]  number of rows, then per row: number of columns, then column, value
--          pairs (escaped column names, values encoded as in conjunction keys)
-- Returns the stamp keys deleted (whether they existed or not), also published on
-- the news channel: local tiers drop the values depending on them.

local dropped = {KEYS[3]}

local function finish()
  -- DEL in chunks: unpack() of too many values fails.
  for first = 1, #dropped, 1000 do
    redis.call('DEL', unpack(dropped, first, math.min(first + 999, #dropped)))
  end
  redis.call('PUBLISH', ARGV[2], ARGV[3] .. '\n' .. table.concat(dropped, '\n'))
  return dropped
end

local function whole_table()
  dropped[#dropped + 1] = KEYS[2]
  return finish()
end

if redis.call('EXISTS', KEYS[1]) == 0 then
  -- Schemes lost: we cannot know which conjunctions exist, so invalidate them all.
  return whole_table()
end

local rows = {}
local at = 5
for r = 1, tonumber(ARGV[4]) do
  local row = {}
  local ncols = tonumber(ARGV[at])
  at = at + 1
  for _ = 1, ncols do
    row[ARGV[at]] = ARGV[at + 1]
    at = at + 2
  end
  rows[r] = row
end

-- The conjunction key `row` hits for `columns`, or nil when the row lacks one of
-- them (the same function as layout::row_conj_key).
local function conj_key(columns, row)
  local parts = {}
  for i, column in ipairs(columns) do
    local value = row[column]
    if value == nil then
      return nil
    end
    parts[i] = column .. '=' .. value
  end
  return ARGV[1] .. table.concat(parts, '&')
end

local seen = {}
for _, scheme in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if scheme ~= '' then
    local columns = {}
    for column in string.gmatch(scheme, '[^,]+') do
      columns[#columns + 1] = column
    end
    for _, row in ipairs(rows) do
      local key = conj_key(columns, row)
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
