import type { RedisClient } from './connection'

// The store's scripts, run by Redis on a channel's keys (its stream, and the sorted set of the publishers' own ids),
// which share a hash tag: one round trip each, with Redis's own clock.

/**
 * Adds an event: KEYS stream, own ids; ARGV historySize, historyMaxAge (ms, 0: none), own id ('' for none), the
 * command that hands it to live subscribers (PUBLISH, or SPUBLISH on a Redis Cluster: sharded, in the stream's
 * slot), the entry's fields. Trims the stream to about historySize entries and, by the id Redis gave the entry (its
 * clock), to those younger than historyMaxAge; the keys of a channel expire historyMaxAge after its last event, when
 * nothing in them could be replayed any more. An own id is kept by the millisecond of its entry, and own ids older
 * than the oldest entry left go. Publishes, on the channel named as the stream's key, `<id> <previous id> <fields as
 * JSON>` (previous: the entry before it, `0-0` for none), so that a subscriber that did not have the previous entry
 * knows it missed something. Returns the entry's id.
 */
const APPEND = `
local own = ARGV[3]
local fields = {}
if own ~= '' then fields[1] = 'i'; fields[2] = own end
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(fields))
local ms = tonumber(string.match(id, '^%d+'))
local age = tonumber(ARGV[2])
if age > 0 then
  redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%.0f', ms - age))
  redis.call('PEXPIRE', KEYS[1], age)
end
if own ~= '' then redis.call('ZADD', KEYS[2], string.format('%.0f', ms), own) end
if own ~= '' or redis.call('EXISTS', KEYS[2]) == 1 then
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1][1]
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.match(oldest, '^%d+'))
  if age > 0 then redis.call('PEXPIRE', KEYS[2], age) end
end
redis.call(ARGV[4], KEYS[1], id .. ' ' .. (last and last[1] or '0-0') .. ' ' .. cjson.encode(fields))
return id
`

/**
 * Where last event ids stand, and the first page after the oldest of them: KEYS stream, own ids; ARGV page size,
 * historyMaxAge, the last event ids. An id is an own id (the newest event with it), or an entry id of an event
 * without one (exactly as it was sent: `07-1` is not `7-1`), or a line feed and an entry id: the position of an
 * event, whatever its id (a stream's cursor holds positions; no id holds a line feed). An event older than
 * historyMaxAge by Redis's clock is no longer retained. Returns { the page, then each id's position or '' }; the page
 * starts after the oldest position, or at the oldest event retained when an id is not found.
 */
const READ_AFTER = `
local function ownIdOf (entry)
  local fields = entry[2]
  for i = 1, #fields, 2 do if fields[i] == 'i' then return fields[i + 1] end end
  return nil
end
local function parts (id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function after (a, b)
  local am, as = parts(a)
  local bm, bs = parts(b)
  if am ~= bm then return am > bm end
  return as > bs
end
local oldest = '-'
local age = tonumber(ARGV[2])
if age > 0 then
  local time = redis.call('TIME')
  oldest = string.format('%.0f', tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) - age) .. '-0'
end
local positions = {}
local from = nil
local all = false
for k = 3, #ARGV do
  local last = ARGV[k]
  local position = ''
  local at = string.match(last, '^\\n(%d+%-%d+)$')
  local ms = not at and redis.call('ZSCORE', KEYS[2], last)
  if at then
    local found = redis.pcall('XRANGE', KEYS[1], at, at)
    if type(found) == 'table' and found[1] ~= nil and found[1][1] == at then position = at end
  elseif ms then
    local entries = redis.call('XREVRANGE', KEYS[1], ms .. '-18446744073709551615', ms .. '-0')
    for _, entry in ipairs(entries) do
      if ownIdOf(entry) == last then position = entry[1]; break end
    end
  end
  if string.match(last, '^%d+%-%d+$') then
    local found = redis.pcall('XRANGE', KEYS[1], last, last)
    if type(found) == 'table' and found[1] ~= nil and found[1][1] == last and ownIdOf(found[1]) == nil and
      (position == '' or after(last, position)) then position = last end
  end
  if position ~= '' and oldest ~= '-' and after(oldest, position) then position = '' end
  if position == '' then all = true elseif from == nil or after(from, position) then from = position end
  positions[#positions + 1] = position
end
local page
if all then page = redis.call('XRANGE', KEYS[1], oldest, '+', 'COUNT', ARGV[1])
else page = redis.call('XRANGE', KEYS[1], '(' .. from, '+', 'COUNT', ARGV[1]) end
table.insert(positions, 1, page)
return positions
`

/**
 * What followed channels missed: KEYS streams (of one slot); ARGV entries to read of each, at most, then the position
 * each is read after. Returns `{ i, state, entries }` for each stream with entries after its position, or that Redis
 * refused: state 0, the entries after the position; 1, the position is no longer retained and the stream was trimmed
 * since it was made: entries after the position may have been trimmed before they were read (said so even when the
 * first one retained came right after it: a stream does not say which it trimmed), and these are the oldest
 * retained; or Redis's error, the stream not read. A stream that starts after the position without having been
 * trimmed (made again: its keys expired, Redis restarted without persistence) lost nothing it could have kept:
 * state 0. `0-0` (following began on an empty stream) is never retained.
 */
const CATCH_UP = `
local out = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local position = ARGV[i + 1]
  local entries = redis.pcall('XRANGE', key, '(' .. position, '+', 'COUNT', ARGV[1])
  if entries['err'] then
    out[#out + 1] = i; out[#out + 1] = entries['err']; out[#out + 1] = {}
  elseif #entries > 0 then
    local state = 0
    if #redis.call('XRANGE', key, position, position) == 0 and
      redis.call('XRANGE', key, '-', '+', 'COUNT', 1)[1][1] == entries[1][1] then
      local info = redis.call('XINFO', 'STREAM', key)
      local added, length
      for k = 1, #info, 2 do
        if info[k] == 'entries-added' then added = info[k + 1] elseif info[k] == 'length' then length = info[k + 1] end
      end
      if added == nil or added > length then state = 1 end
    end
    out[#out + 1] = i; out[#out + 1] = state; out[#out + 1] = entries
  end
end
return out
`

export type Entry = [id: string, fields: string[]]

/** What CATCH_UP answers, flat: the stream's index (from 1), its state, its entries. */
export type CatchUpAnswer = Array<number | string | Entry[]>

export interface ScriptedClient {
  sseAppend: (stream: string, ownIds: string, historySize: number, historyMaxAge: number, ownId: string,
    publish: 'PUBLISH' | 'SPUBLISH', ...fields: string[]) => Promise<string>
  sseReadAfter: (stream: string, ownIds: string, count: number, historyMaxAge: number, ...lastEventIds: string[]) =>
  Promise<[entries: Entry[], ...positions: string[]]>
  sseCatchUp: (streams: number, ...keysThenCountThenPositions: Array<string | number>) => Promise<CatchUpAnswer>
}

/** The client, with the store's scripts as commands (EVALSHA, and EVAL the first time a Redis does not have them). */
export function withScripts (client: RedisClient): RedisClient & ScriptedClient {
  client.defineCommand('sseAppend', { numberOfKeys: 2, lua: APPEND })
  client.defineCommand('sseReadAfter', { numberOfKeys: 2, lua: READ_AFTER })
  // Its number of keys is its first argument.
  client.defineCommand('sseCatchUp', { lua: CATCH_UP })
  return client as RedisClient & ScriptedClient
}
