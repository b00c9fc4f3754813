"""The Lua scripts of the broker: each Redis Streams step that must be atomic is one script.

Redis runs a script without interleaving other commands, so a check and the action it guards
cannot race with another consumer (taskiq-redis 1.2.4 guards its ``XAUTOCLAIM`` with a lock that
a killed worker can leave behind; these scripts need no lock).
"""

from __future__ import annotations

__all__ = ["ACK", "DELETE_IDLE_CONSUMER", "KEEP", "KICK", "RECLAIM"]

KICK = """
-- KEYS[1] stream, KEYS[2] deduplication key; ARGV[1] window (ms, 0: off), ARGV[2..] fields
local window = tonumber(ARGV[1])
if window > 0 then
  if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', window) then
    return false
  end
end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
"""

RECLAIM = """
-- Entries of the group idle for at least min_idle ms (their consumer died, stalled, or released
-- them): dead-letter those delivered max_deliveries times already, claim up to `want` others.
-- KEYS[1] stream, KEYS[2] dead-letter stream
-- ARGV: group, consumer, min_idle, max_deliveries, dead_lettering (1/0), want, scan
-- Returns {{id, fields, deliveries}...}, dead-lettered count}
local stream, dlq = KEYS[1], KEYS[2]
local group, consumer = ARGV[1], ARGV[2]
local min_idle, max_deliveries = tonumber(ARGV[3]), tonumber(ARGV[4])
local dead_lettering, want, scan = ARGV[5] == '1', tonumber(ARGV[6]), tonumber(ARGV[7])
local pending = redis.call('XPENDING', stream, group, 'IDLE', min_idle, '-', '+', scan)
local claimed, dead = {}, 0
for _, entry in ipairs(pending) do
  local id, deliveries = entry[1], tonumber(entry[4])
  if dead_lettering and deliveries >= max_deliveries then
    local found = redis.call('XRANGE', stream, id, id)
    if #found > 0 then
      local fields = found[1][2]
      table.insert(fields, 'dead_source_id')
      table.insert(fields, id)
      table.insert(fields, 'dead_deliveries')
      table.insert(fields, tostring(deliveries))
      redis.call('XADD', dlq, '*', unpack(fields))
      dead = dead + 1
    end
    redis.call('XACK', stream, group, id)
    redis.call('XDEL', stream, id)
  elseif #claimed < want then
    local got = redis.call('XCLAIM', stream, group, consumer, min_idle, id)
    if #got > 0 and type(got[1][2]) == 'table' then
      table.insert(claimed, {got[1][1], got[1][2], deliveries + 1})
    elseif #got > 0 then
      redis.call('XACK', stream, group, id)  -- its entry was deleted: nothing to deliver
    end
  end
end
return {claimed, dead}
"""

KEEP = """
-- Set the idle time of an entry this consumer still holds (a heartbeat: low idle; a release:
-- idle past the visibility timeout, so the next reclaim pass takes it). JUSTID: the delivery
-- count is not incremented. 0 if the entry is no longer pending for this consumer.
-- KEYS[1] stream; ARGV: group, id, consumer, idle (ms)
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then
  return 0
end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'IDLE', tonumber(ARGV[4]), 'JUSTID')
return 1
"""

ACK = """
-- Acknowledge and delete an entry (streams keep acked entries forever otherwise).
-- KEYS[1] stream; ARGV: group, id. Returns 1 if it was still pending, else 0.
local n = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return n
"""

DELETE_IDLE_CONSUMER = """
-- Remove a consumer from the group if it holds nothing (deleting one that holds entries would
-- drop them from the pending list: never redelivered). KEYS[1] stream; ARGV: group, consumer
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p > 0 then
  return 0
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
"""
