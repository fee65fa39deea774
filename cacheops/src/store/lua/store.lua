-- Store a computed value only if every stamp read by its fence is unchanged:
-- an invalidation that ran after the fence (so possibly after the SQL read old
-- data) deleted or replaced one of them, and the value is refused.
--
-- KEYS[1]     P:q:<key>, the value key
-- KEYS[2..]   stamp keys, canonical order
-- ARGV[1]     value TTL in milliseconds
-- ARGV[2..#KEYS]  the stamps the fence saw, same order
-- ARGV[#KEYS+1]   the framed value (checksum of those stamps, then the payload)
-- Returns 1 if stored, 0 if refused.
--
-- This script touches keys of several tables, hence several hash tags: it runs on
-- standalone Redis or Sentinel only. In Redis Cluster it would be rejected with
-- CROSSSLOT; a cluster mode would have to compare the stamps with one read per
-- slot (MGET per table, pipelined), then SET the value (WATCH cannot span nodes),
-- accepting the small window between those reads and the SET, or keep the value
-- and all its stamps in one slot by giving up per-table hash tags.

local n = #KEYS
if n > 1 then
  local current = redis.call('MGET', unpack(KEYS, 2))
  for i = 1, n - 1 do
    -- A missing stamp reads as false, never equal to a string.
    if current[i] ~= ARGV[i + 1] then
      return 0
    end
  end
end
redis.call('SET', KEYS[1], ARGV[n + 1], 'PX', ARGV[1])
return 1
