-- Release a stampede lock only if the caller still holds it: a holder whose lock
-- expired (slow computation) must not delete the lock another caller took since.
--
-- KEYS[1]  P:l:<key>, the lock
-- ARGV[1]  the caller's token
-- Returns 1 if released, 0 if the lock was gone or held by another token.

if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
