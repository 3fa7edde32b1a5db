//! Lua scripts: each is one round trip and runs atomically in Redis.

use redis::Script;
use std::sync::LazyLock;

/// The room's epoch, created (from the caller's proposal) when missing. Inlined in the
/// script that writes a room's log (reads never create anything), so a log and its epoch are
/// made together and lost together. KEYS[ek]: epoch key; ARGV[ep]: a fresh random proposal.
macro_rules! epoch_lua {
    ($key:literal, $proposal:literal) => {
        concat!(
            "redis.call('SET', KEYS[",
            $key,
            "], ARGV[",
            $proposal,
            "], 'NX')\n",
            "local epoch = redis.call('GET', KEYS[",
            $key,
            "])\n"
        )
    };
}

/// The stream KEYS[1]'s `fields` (XINFO STREAM) and its resume `boundary`: `0-0` while it
/// never lost an entry (`entries-added == length`), else its first retained id (`MAXLEN`
/// trimming records nothing of what it removed). Shared by SINCE and KEPT_SINCE.
macro_rules! boundary_lua {
    () => {
        r#"
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local fields = {}
for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
local boundary = '0-0'
if tonumber(fields['entries-added']) > tonumber(fields['length']) and fields['first-entry'] then
  boundary = fields['first-entry'][1]
end
"#
    };
}

/// Stores a message and publishes it, atomically; a retry is answered with the original.
///
/// With a `clientMsgId` (ARGV[9] = 1, its key KEYS[4]) a message this user already posted in
/// this room within the window is not stored again: the reply is `=` and its id. Otherwise
/// the message is appended to the room's stream (capped), published as an envelope (see
/// [`Envelope`](crate::wire::Envelope): head + id + the frame assembled around the id and the
/// stored body's fields), the `clientMsgId` remembered, and (ARGV[10] = 1, one Redis only:
/// in a cluster the index lives in another slot) the room's newest id recorded in the room
/// index, the last key. Reply: the new id. (One bulk string either way: cheaper to parse than
/// an array, and every message pays for it.)
///
/// KEYS: stream, channel, epoch, [sent key], [room index]. ARGV: maxlen, stored body (a JSON
/// object), envelope head (`<origin> `), room id, idempotency window (s), epoch proposal,
/// origin (stored with the entry, so a catch-up skips the sender too), the publish command
/// (`PUBLISH`, or `SPUBLISH` in a cluster), has a sent key, keeps the index.
pub static POST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        r#"
local sent = ARGV[9] == '1' and KEYS[4] or nil
if sent then
  local original = redis.call('GET', sent)
  if original then return '=' .. original end
end
"#,
        epoch_lua!("3", "6"),
        r#"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'm', ARGV[2], 'o', ARGV[7])
local ms = string.match(id, '^(%d+)')
redis.call(ARGV[8], KEYS[2], ARGV[3] .. id .. '\n{"type":"message","id":"' .. id .. '","timestamp":' .. ms .. ',' .. string.sub(ARGV[2], 2))
if ARGV[10] == '1' then redis.call('HSET', KEYS[#KEYS], ARGV[4], id) end
if sent then redis.call('SET', sent, id, 'EX', ARGV[5]) end
return id
"#
    ))
});

/// The epoch (empty while the room's log was never written), then newest-first entries
/// older than ARGV[1] (`+` or `(id`), at most ARGV[2]: `epoch, id, body, id, body, ...`.
/// Reads only. KEYS: stream, epoch.
pub static PAGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local epoch = redis.call('GET', KEYS[2]) or ''
local entries = redis.call('XREVRANGE', KEYS[1], ARGV[1], '-', 'COUNT', ARGV[2])
local out = {epoch}
for _, e in ipairs(entries) do out[#out + 1] = e[1]; out[#out + 1] = e[2][2] end
return out
"#,
    )
});

/// Whether the entry ARGV[1] is in the stream KEYS[1] (`1` or `0`): a position given
/// without an epoch is resumed only where the log proves it (the entry is still there).
macro_rules! found_lua {
    () => {
        r#"
local found = '0'
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) > 0 then found = '1' end
"#
    };
}

/// The epoch (empty while the log was never written), the oldest position that can still be
/// resumed exactly (`0-0` while the stream never lost an entry, `entries-added == length`;
/// else its first retained id, since `MAXLEN ~` trimming records nothing of what it
/// removed), whether ARGV[1] itself is in the log, then the entries after ARGV[1], at most
/// ARGV[2], with their origins: `epoch, boundary, found, id, body, origin, ...`. Reads only.
/// KEYS: stream, epoch.
pub static SINCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        r#"
local epoch = redis.call('GET', KEYS[2]) or ''
if redis.call('EXISTS', KEYS[1]) == 0 then return {epoch, '0-0', '0'} end
"#,
        boundary_lua!(),
        found_lua!(),
        r#"
local out = {epoch, boundary, found}
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
for _, e in ipairs(entries) do
  out[#out + 1] = e[1]; out[#out + 1] = e[2][2]; out[#out + 1] = e[2][4] or '-'
end
return out
"#
    ))
});

/// Keeps a channel publication and publishes it, atomically: appends the data to the
/// channel's stream (capped at exactly ARGV[1] entries), gives the stream and the epoch (made
/// if missing) the same expiry, ARGV[4] ms from now (one script, one clock: they expire
/// together, so a position is never resumed from a later incarnation of the history), and
/// publishes the envelope `<head><id>\n<prefix><id><suffix>`. Reply: the offset.
/// KEYS: stream, pub/sub channel, epoch. ARGV: size, data (JSON), envelope head, ttl (ms),
/// epoch proposal, publish command, frame prefix, frame suffix.
pub static PUBLISH_KEPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call('SET', KEYS[3], ARGV[5], 'NX', 'PX', ARGV[4])
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
redis.call(ARGV[6], KEYS[2], ARGV[3] .. id .. '\n' .. ARGV[7] .. id .. ARGV[8])
return id
"#,
    )
});

/// The epoch of a channel's history (empty when it has none: never written, or expired),
/// then its newest ARGV[1] publications, newest first: `epoch, id, data, id, data, ...`.
/// Reads only. KEYS: stream, epoch.
pub static KEPT_RECENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local out = {redis.call('GET', KEYS[2]) or ''}
if tonumber(ARGV[1]) == 0 then return out end
for _, e in ipairs(redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[1])) do
  out[#out + 1] = e[1]; out[#out + 1] = e[2][2]
end
return out
"#,
    )
});

/// A channel's publications after ARGV[1], at most ARGV[2]. A channel without an epoch
/// (its history was never written, or expired) is `{''}`; one whose history holds nothing,
/// `{epoch}`. Otherwise: `epoch, boundary (as SINCE), the newest offset given, found (as
/// SINCE), id, data, ...`. Reads only. KEYS: stream, epoch.
pub static KEPT_SINCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        r#"
local epoch = redis.call('GET', KEYS[2])
if not epoch then return {''} end
if redis.call('EXISTS', KEYS[1]) == 0 then return {epoch} end
"#,
        boundary_lua!(),
        found_lua!(),
        r#"
local out = {epoch, boundary, fields['last-generated-id'], found}
for _, e in ipairs(redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])) do
  out[#out + 1] = e[1]; out[#out + 1] = e[2][2]
end
return out
"#
    ))
});

/// Adds a job to the queue KEYS[1] (capped at ARGV[1] jobs), first making each listed group
/// (ARGV[3] on) that does not exist yet, at the end of the stream: a new group starts with
/// this job, never with the jobs kept before it. Reply: the job's id. ARGV[2]: the data.
pub static QUEUE_ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
for i = 3, #ARGV do redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[i], '$', 'MKSTREAM') end
return redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'd', ARGV[2])
"#,
    )
});

/// Up to ARGV[3] jobs of the queue KEYS[1] for consumer ARGV[2] of group ARGV[1]: first those
/// pending longer than ARGV[4] ms (XAUTOCLAIM, which counts the delivery), then new ones
/// (XREADGROUP, not blocking). A queue or group that does not exist gives nothing (and is not
/// made: only adding a job does). A job delivered more than ARGV[5] times is acknowledged
/// unfinished, i.e. dropped. Reply: `dropped count, dropped ids..., id, data, deliveries,
/// ...` (all strings).
pub static QUEUE_CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'0'} end
local consumers = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if consumers['err'] then return {'0'} end
local count = tonumber(ARGV[3])
local jobs = {}
local dropped = {}
local given = 0
local start = '0-0'
repeat
  local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[4], start, 'COUNT', count - given)
  start = r[1]
  for _, e in ipairs(r[2]) do
    local id = e[1]
    local pending = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
    local deliveries = pending[1] and pending[1][4] or 1
    if deliveries > tonumber(ARGV[5]) then
      redis.call('XACK', KEYS[1], ARGV[1], id)
      dropped[#dropped + 1] = id
    else
      jobs[#jobs + 1] = id; jobs[#jobs + 1] = e[2][2]; jobs[#jobs + 1] = tostring(deliveries)
      given = given + 1
    end
  end
until start == '0-0' or given >= count
if given < count then
  local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', count - given, 'STREAMS', KEYS[1], '>')
  if r then
    for _, e in ipairs(r[1][2]) do
      jobs[#jobs + 1] = e[1]; jobs[#jobs + 1] = e[2][2]; jobs[#jobs + 1] = '1'
    end
  end
end
local out = {tostring(#dropped)}
for _, id in ipairs(dropped) do out[#out + 1] = id end
for _, field in ipairs(jobs) do out[#out + 1] = field end
return out
"#,
    )
});

/// Acknowledges job ARGV[2] of group ARGV[1] in the queue KEYS[1] if it is pending with
/// consumer ARGV[3], for delivery ARGV[4] (empty: any): a worker whose job was given to
/// another since never acknowledges the other's. Then trims the jobs every group is done
/// with (older than each group's oldest pending job, or than the first after its last
/// delivered one). Reply: 1, or 0 when it was not pending with them.
pub static QUEUE_ACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local pending = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if pending['err'] or not pending[1] then return 0 end
if pending[1][2] ~= ARGV[3] then return 0 end
if ARGV[4] ~= '' and tostring(pending[1][4]) ~= ARGV[4] then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
local function parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local keep_ms, keep_seq = nil, nil
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local f = {}
  for i = 1, #group, 2 do f[group[i]] = group[i + 1] end
  local ms, seq
  if tonumber(f['pending']) > 0 then
    ms, seq = parts(redis.call('XPENDING', KEYS[1], f['name'])[2])
  else
    ms, seq = parts(f['last-delivered-id'])
    seq = seq + 1
  end
  if not keep_ms or ms < keep_ms or (ms == keep_ms and seq < keep_seq) then
    keep_ms, keep_seq = ms, seq
  end
end
if keep_ms then
  redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d-%d', keep_ms, keep_seq))
end
return 1
"#,
    )
});

/// Shared by JOIN and LEAVE: the instance ids of user ARGV[2]'s connections other than
/// ARGV[1] in the members hash KEYS[1]. Whether those instances are alive is for the caller
/// to check: their leases live in other slots of a cluster, where a script may not read them.
const OTHER_CONNECTIONS: &str = r#"
local function other_instances(hash, conn, user)
  local sids = {}
  local vals = redis.call('HGETALL', hash)
  for i = 1, #vals, 2 do
    local field, value = vals[i], vals[i + 1]
    if field ~= conn and string.sub(value, 1, #user + 1) == user .. '\t' then
      local sid = string.match(field, '^([^/]+)/')
      if sid then sids[#sids + 1] = sid end
    end
  end
  return sids
end
"#;

/// Adds a connection to a room's members. Reply: the instances of the user's other
/// connections there (the user is new in the room unless one of them is alive).
/// KEYS: members hash. ARGV: connection key, user id, name.
pub static JOIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{OTHER_CONNECTIONS}
local others = other_instances(KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '\t' .. ARGV[3])
return others
"#
    ))
});

/// Removes a connection from a room's members. Reply: `{-1}` when the connection was not
/// there; else the number of entries left, then the instances of the user's other
/// connections there (the user has left unless one of them is alive).
/// KEYS: members hash. ARGV: connection key, user id.
pub static LEAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{OTHER_CONNECTIONS}
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return {{'-1'}} end
local reply = {{tostring(redis.call('HLEN', KEYS[1]))}}
for _, sid in ipairs(other_instances(KEYS[1], ARGV[1], ARGV[2])) do reply[#reply + 1] = sid end
return reply
"#
    ))
});

/// Records rooms' newest message ids in the room index, never moving one back (instances
/// write it apart, in any order). KEYS: the index. ARGV: room, id, room, id, ...
pub static ROOM_INDEX: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
for i = 1, #ARGV, 2 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  local newer = true
  if current then
    local cm, cs = string.match(current, '^(%d+)-(%d+)$')
    local nm, ns = string.match(ARGV[i + 1], '^(%d+)-(%d+)$')
    cm, cs, nm, ns = tonumber(cm), tonumber(cs), tonumber(nm), tonumber(ns)
    newer = nm > cm or (nm == cm and ns > cs)
  end
  if newer then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return #ARGV / 2
"#,
    )
});

/// Counts a hit in a fixed window: the first hit starts the window (the key's TTL).
/// KEYS: counter. ARGV: window in ms. Reply: `{count, ms until the window ends}`.
pub static COUNT_HIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {count, redis.call('PTTL', KEYS[1])}
"#,
    )
});

/// Takes one back from a fixed-window counter, never below zero, keeping its window (its
/// TTL). KEYS: counter.
pub static COUNT_UNDO: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count > 0 then redis.call('DECR', KEYS[1]) end
"#,
    )
});

/// Adds a room to a user's list, keeping its place if it is there; the first time, starts the
/// read position at ARGV[3] (none when empty: the room had no messages). Reply: `{position}`
/// (empty: none), or `{}` for a new room when the list holds ARGV[4] already. ARGV[5] > 0:
/// both keys expire after that many seconds (guests), refreshed with every follow.
/// KEYS: the user's rooms (sorted set), read positions (hash). ARGV: room, score (now, ms),
/// read_from, max, ttl (s).
pub static FOLLOW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return {} end
  -- After every room already there, even within the same millisecond.
  local score = tonumber(ARGV[2])
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if last[2] and tonumber(last[2]) >= score then score = tonumber(last[2]) + 1 end
  redis.call('ZADD', KEYS[1], score, ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], ARGV[1], ARGV[3]) end
end
if tonumber(ARGV[5]) > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  redis.call('EXPIRE', KEYS[2], ARGV[5])
end
return {redis.call('HGET', KEYS[2], ARGV[1]) or ''}
"#,
    )
});

/// Moves a read position forward, never back: the position now, or nil when the room is not
/// on the user's list. Ids compare as `<ms>-<seq>` pairs of numbers.
/// KEYS: the user's rooms, read positions. ARGV: room, id.
pub static MARK_READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return false end
local current = redis.call('HGET', KEYS[2], ARGV[1])
if current then
  local cm, cs = string.match(current, '^(%d+)-(%d+)$')
  local nm, ns = string.match(ARGV[2], '^(%d+)-(%d+)$')
  cm, cs, nm, ns = tonumber(cm), tonumber(cs), tonumber(nm), tonumber(ns)
  if cm > nm or (cm == nm and cs >= ns) then return current end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return ARGV[2]
"#,
    )
});
