//! `DirectoryStore` on Redis, shared by every replica. Every write is one Lua
//! script, which Redis runs alone: a record, its indexes and its memberships
//! change together, and two membership changes to one group never
//! interleave (no lost update when an IdP sends concurrent PATCHes).
//!
//! Users are written optimistically: Rust reads the record, applies the
//! shared `directory::rules` (validation, case folding, next version), and
//! the script commits only if the stored version is still the one read
//! (else Rust re-reads and retries). That keeps every rule in Rust, and
//! user records see little contention. Group membership is the hot path
//! (IdPs add members one request at a time, concurrently), so membership
//! scripts do not compare versions: they change the member entries and bump
//! the group's version in place, and never fail for concurrency.
//!
//! Key layout; `T` = `{prefix}dir:{<tenant>}:`, the tenant written as a
//! Redis Cluster hash tag (with `%`, `:`, `{`, `}` percent-escaped) so all of
//! one tenant's keys share a slot and scripts may touch any of them:
//! - `T user:<id>` hash: `rec` (User JSON, tombstones included), `v` (version)
//! - `T users` sorted set of live user ids, score = created ms (listing order)
//!   Ties on the score are ordered by member, byte-wise, which is the id
//!   order of `rules::sort_users`; so the set is the listing order, `ZRANGE`
//!   by rank reads a page in O(log n + page) and `ZCARD` is the live-user
//!   count, both kept by the same script as the record (`PUT_USER` adds a
//!   live user and removes a tombstoned or deleted one). The set has been
//!   written since the first release of this backend: nothing to rebuild.
//! - `T idx:user_name` hash folded userName → id; `T idx:user_ext` hash
//!   externalId → id; `T idx:email:<folded email>` set of ids (live users)
//! - `T group:<id>` hash: `rec` (Group JSON without members), `v` (version),
//!   `lm` (last modified ms), `cr` (created ms), `n` (folded displayName),
//!   `x` (externalId or empty). `v`/`lm`/`cr` are authoritative over `rec`'s
//!   meta, because membership scripts bump them without rewriting `rec`.
//! - `T group:<id>:members` hash member id → Member JSON (forward index)
//! - `T groups` sorted set of group ids, score = created ms (listing order
//!   and count, as `T users`)
//! - `T idx:group_name` hash folded displayName → id; `T idx:group_ext` hash
//!   externalId → id
//! - `T member_of:<member id>` set of group ids (reverse index)
//!
//! With webhook targets, each script also appends its events to the outbox
//! (`{prefix}wh:*`, see `redis_outbox`), which is not in the tenant's hash
//! slot: the gateway needs a single Redis (with replicas/Sentinel), not a
//! Redis Cluster.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use async_trait::async_trait;
use redis::{AsyncCommands, FromRedisValue, Script, Value};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::redis::RedisStore;
use super::{StoreError, StoreResult};
use crate::clock::now_ms;
use crate::directory::rules::{self, GroupKeys, UserKeys};
use crate::directory::{
    DirectoryError, DirectoryResult, DirectoryStore, Group, GroupRef, Member, MembershipChange,
    Page, User,
};
use crate::webhook::outbox::Emit;

/// How many times a user write is retried when another writer changed the
/// same user between our read and our script. Each retry means someone else
/// succeeded, so running out takes a burst of writers on one user.
const WRITE_ATTEMPTS: usize = 16;

/// Keys per pipeline when reading many records.
const READ_CHUNK: usize = 500;

/// Lua shared by every script. `T` is the tenant key prefix (always ARGV[1]).
const PRELUDE: &str = r"
local T = ARGV[1]
-- the last argument is always the outbox spec ('' = no events); NA counts the others
local NA = #ARGV - 1
local EMIT = ARGV[#ARGV]
-- decoded before any write: a bad spec fails the script while nothing changed
local SPEC = nil
if EMIT ~= '' then SPEC = cjson.decode(EMIT) end
-- appends the planned events (`append_events`, from redis_outbox.rs); `ctx`
-- holds what only this script knows (version, changed members, record)
local function emit(ctx)
  if SPEC then append_events(SPEC, ctx) end
end
-- true if unique index `h` maps `k` to someone other than `id`
local function held(h, k, id)
  if not k or k == '' then return false end
  local o = redis.call('HGET', h, k)
  return o and o ~= id
end
-- removes `k` from index `h` if it still maps to `id`
local function drop(h, k, id)
  if k and k ~= '' and redis.call('HGET', h, k) == id then redis.call('HDEL', h, k) end
end
-- next version of group hash `g`; lm never goes backwards
local function bump(g, now)
  if redis.call('EXISTS', g) == 0 then return nil end
  local v = redis.call('HINCRBY', g, 'v', 1)
  local lm = tonumber(redis.call('HGET', g, 'lm') or '0')
  if tonumber(now) > lm then redis.call('HSET', g, 'lm', now) end
  return v
end
-- a live user or an existing group of the tenant
local function live(id)
  return redis.call('ZSCORE', T .. 'users', id) or redis.call('ZSCORE', T .. 'groups', id)
end
-- takes member `id` out of every group it is in
local function leave_all(id, now)
  local mo = T .. 'member_of:' .. id
  for _, gid in ipairs(redis.call('SMEMBERS', mo)) do
    local g = T .. 'group:' .. gid
    if redis.call('HDEL', g .. ':members', id) == 1 then bump(g, now) end
  end
  redis.call('DEL', mo)
end
";

/// Writes (creates, replaces, tombstones or deletes) one user.
/// ARGV: T, id, expected version ('' = must not exist), 'put'|'del', record,
/// version, created ms, listed '1'|'0', leave groups '1'|'0', now,
/// old userName key, old externalId, new userName key, new externalId,
/// number of old emails, old emails..., number of new emails, new emails...
const PUT_USER: &str = r"
local id = ARGV[2]
local u = T .. 'user:' .. id
local cur = redis.call('HGET', u, 'v')
if ARGV[3] == '' then
  if cur then return {'race'} end
elseif cur ~= ARGV[3] then
  return {'race'}
end
local names, exts = T .. 'idx:user_name', T .. 'idx:user_ext'
if held(names, ARGV[13], id) then return {'conflict', 'userName'} end
if held(exts, ARGV[14], id) then return {'conflict', 'externalId'} end
drop(names, ARGV[11], id)
drop(exts, ARGV[12], id)
local n_old = tonumber(ARGV[15])
for i = 16, 15 + n_old do redis.call('SREM', T .. 'idx:email:' .. ARGV[i], id) end
local at = 16 + n_old
for i = at + 1, at + tonumber(ARGV[at]) do redis.call('SADD', T .. 'idx:email:' .. ARGV[i], id) end
if ARGV[13] ~= '' then redis.call('HSET', names, ARGV[13], id) end
if ARGV[14] ~= '' then redis.call('HSET', exts, ARGV[14], id) end
if ARGV[4] == 'del' then
  redis.call('DEL', u)
else
  redis.call('HSET', u, 'rec', ARGV[5], 'v', ARGV[6])
end
if ARGV[8] == '1' then
  redis.call('ZADD', T .. 'users', ARGV[7], id)
else
  redis.call('ZREM', T .. 'users', id)
end
if ARGV[9] == '1' then leave_all(id, ARGV[10]) end
emit({})
return {'ok'}
";

/// Creates or replaces one group with its whole member list.
/// ARGV: T, id, 'create'|'replace', expected version ('' = any), record,
/// folded displayName, externalId ('' = none), now, then pairs of
/// (member id, Member JSON). Returns {'ok', version, created, last modified}.
const PUT_GROUP: &str = r"
local gid = ARGV[2]
local g = T .. 'group:' .. gid
local mkey = g .. ':members'
local names, exts = T .. 'idx:group_name', T .. 'idx:group_ext'
local creating = ARGV[3] == 'create'
if creating then
  if redis.call('EXISTS', g) == 1 then return {'race'} end
else
  local v = redis.call('HGET', g, 'v')
  if not v then return {'notfound'} end
  if ARGV[4] ~= '' and ARGV[4] ~= v then return {'version', v} end
end
if held(names, ARGV[6], gid) then return {'conflict', 'displayName'} end
if held(exts, ARGV[7], gid) then return {'conflict', 'externalId'} end
for i = 9, NA, 2 do
  if not live(ARGV[i]) then return {'invalid', ARGV[i]} end
end
if not creating then
  local old = redis.call('HMGET', g, 'n', 'x')
  drop(names, old[1], gid)
  drop(exts, old[2], gid)
  for _, m in ipairs(redis.call('HKEYS', mkey)) do
    redis.call('SREM', T .. 'member_of:' .. m, gid)
  end
  redis.call('DEL', mkey)
end
redis.call('HSET', names, ARGV[6], gid)
if ARGV[7] ~= '' then redis.call('HSET', exts, ARGV[7], gid) end
for i = 9, NA, 2 do
  redis.call('HSET', mkey, ARGV[i], ARGV[i + 1])
  redis.call('SADD', T .. 'member_of:' .. ARGV[i], gid)
end
redis.call('HSET', g, 'rec', ARGV[5], 'n', ARGV[6], 'x', ARGV[7])
if creating then
  redis.call('HSET', g, 'v', 1, 'lm', ARGV[8], 'cr', ARGV[8])
  redis.call('ZADD', T .. 'groups', ARGV[8], gid)
  emit({v = '1', cr = ARGV[8], lm = ARGV[8]})
  return {'ok', '1', ARGV[8], ARGV[8]}
end
local v = bump(g, ARGV[8])
local meta = redis.call('HMGET', g, 'cr', 'lm')
emit({v = tostring(v), cr = meta[1], lm = meta[2]})
return {'ok', tostring(v), meta[1] or '0', meta[2] or '0'}
";

/// ARGV: T, group id, now, then pairs of (member id, Member JSON).
/// Returns {'ok', version, ids added...}.
const ADD_MEMBERS: &str = r"
local gid = ARGV[2]
local g = T .. 'group:' .. gid
if redis.call('EXISTS', g) == 0 then return {'notfound'} end
for i = 4, NA, 2 do
  if not live(ARGV[i]) then return {'invalid', ARGV[i]} end
end
local out = {'ok', ''}
for i = 4, NA, 2 do
  if redis.call('HSETNX', g .. ':members', ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('SADD', T .. 'member_of:' .. ARGV[i], gid)
    table.insert(out, ARGV[i])
  end
end
if #out > 2 then out[2] = tostring(bump(g, ARGV[3])) else out[2] = redis.call('HGET', g, 'v') end
local snap = redis.call('HMGET', g, 'rec', 'cr', 'lm')
emit({m = table.concat(out, ',', 3), v = out[2], rec = snap[1], cr = snap[2], lm = snap[3]})
return out
";

/// ARGV: T, group id, now, member ids... Returns {'ok', version, ids removed...}.
const REMOVE_MEMBERS: &str = r"
local gid = ARGV[2]
local g = T .. 'group:' .. gid
if redis.call('EXISTS', g) == 0 then return {'notfound'} end
local out = {'ok', ''}
for i = 4, NA do
  if redis.call('HDEL', g .. ':members', ARGV[i]) == 1 then
    redis.call('SREM', T .. 'member_of:' .. ARGV[i], gid)
    table.insert(out, ARGV[i])
  end
end
if #out > 2 then out[2] = tostring(bump(g, ARGV[3])) else out[2] = redis.call('HGET', g, 'v') end
local snap = redis.call('HMGET', g, 'rec', 'cr', 'lm')
emit({m = table.concat(out, ',', 3), v = out[2], rec = snap[1], cr = snap[2], lm = snap[3]})
return out
";

/// ARGV: T, group id, now.
const DELETE_GROUP: &str = r"
local gid = ARGV[2]
local g = T .. 'group:' .. gid
if redis.call('EXISTS', g) == 0 then return {'notfound'} end
local old = redis.call('HMGET', g, 'n', 'x')
local snap = redis.call('HMGET', g, 'rec', 'v', 'cr', 'lm')
emit({rec = snap[1], v = snap[2], cr = snap[3], lm = snap[4]})
drop(T .. 'idx:group_name', old[1], gid)
drop(T .. 'idx:group_ext', old[2], gid)
for _, m in ipairs(redis.call('HKEYS', g .. ':members')) do
  redis.call('SREM', T .. 'member_of:' .. m, gid)
end
redis.call('DEL', g .. ':members', g)
redis.call('ZREM', T .. 'groups', gid)
leave_all(gid, ARGV[3])
return {'ok'}
";

struct Scripts {
    put_user: Script,
    put_group: Script,
    add_members: Script,
    remove_members: Script,
    delete_group: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
    let with_prelude = |body: &str| {
        Script::new(&format!(
            "{}\n{PRELUDE}\n{body}",
            super::redis_outbox::APPEND_EVENTS_LUA
        ))
    };
    Scripts {
        put_user: with_prelude(PUT_USER),
        put_group: with_prelude(PUT_GROUP),
        add_members: with_prelude(ADD_MEMBERS),
        remove_members: with_prelude(REMOVE_MEMBERS),
        delete_group: with_prelude(DELETE_GROUP),
    }
});

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode<T: Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn parse<T: FromRedisValue>(v: Value) -> StoreResult<T> {
    redis::from_redis_value(v).map_err(|e| StoreError::Redis(e.into()))
}

/// The tenant as it appears inside the hash tag: the characters that give
/// keys their structure are percent-escaped, so no tenant name can reach
/// into another tenant's keys.
fn escape_tenant(tenant: &str) -> String {
    let mut out = String::with_capacity(tenant.len());
    for c in tenant.chars() {
        match c {
            '%' | ':' | '{' | '}' => out.push_str(&format!("%{:02X}", c as u32)),
            _ => out.push(c),
        }
    }
    out
}

/// What a script answered.
enum Reply {
    Ok(Vec<String>),
    /// Another writer got there first (or a fresh id was taken): retry.
    Race,
    /// The caller's expected version is not the stored one (given here).
    Version(u64),
}

/// Turns a script reply into the outcome, or the error it reports.
fn reply(mut r: Vec<String>, what: &'static str) -> DirectoryResult<Reply> {
    if r.is_empty() {
        return Err(StoreError::Corrupt("empty directory script reply".into()).into());
    }
    let status = r.remove(0);
    match status.as_str() {
        "ok" => Ok(Reply::Ok(r)),
        "race" => Ok(Reply::Race),
        "notfound" => Err(DirectoryError::NotFound { what }),
        "conflict" => match r.first().map(String::as_str) {
            Some("userName") => Err(DirectoryError::Conflict { what: "userName" }),
            Some("externalId") => Err(DirectoryError::Conflict { what: "externalId" }),
            Some("displayName") => Err(DirectoryError::Conflict {
                what: "displayName",
            }),
            _ => Err(unexpected("conflict")),
        },
        "version" => Ok(Reply::Version(number(r.first())?)),
        "invalid" => Err(rules::unknown_member(
            r.first().map(String::as_str).unwrap_or(""),
        )),
        other => {
            Err(StoreError::Corrupt(format!("unexpected directory script reply {other:?}")).into())
        }
    }
}

/// A script answered something its caller never asks for.
fn unexpected(what: &str) -> DirectoryError {
    StoreError::Corrupt(format!("unexpected {what} reply from a directory script")).into()
}

fn number(s: Option<&String>) -> StoreResult<u64> {
    s.and_then(|s| s.parse().ok())
        .ok_or_else(|| StoreError::Corrupt("directory script returned no number".into()))
}

/// One user write, as the PUT_USER script takes it.
struct UserWrite<'a> {
    /// The version read; `None` when creating.
    read_version: Option<u64>,
    /// The new record; `None` deletes it.
    record: Option<&'a User>,
    old: UserKeys,
    new: UserKeys,
    leave_groups: bool,
    now: u64,
}

impl RedisStore {
    fn dir_prefix(&self, tenant: &str) -> String {
        format!("{}dir:{{{}}}:", self.prefix, escape_tenant(tenant))
    }

    /// Runs PUT_USER; `Ok(false)` means a concurrent writer won.
    async fn put_user(
        &self,
        t: &str,
        id: &str,
        w: UserWrite<'_>,
        emit: &Emit,
    ) -> DirectoryResult<bool> {
        let mut inv = SCRIPTS.put_user.prepare_invoke();
        inv.arg(t).arg(id);
        inv.arg(w.read_version.map(|v| v.to_string()).unwrap_or_default());
        match w.record {
            Some(u) => {
                let listed = if u.deleted { "0" } else { "1" };
                inv.arg("put")
                    .arg(encode(u)?)
                    .arg(u.meta.version)
                    .arg(u.meta.created_ms)
                    .arg(listed);
            }
            None => {
                inv.arg("del").arg("").arg(0).arg(0).arg("0");
            }
        }
        inv.arg(if w.leave_groups { "1" } else { "0" }).arg(w.now);
        inv.arg(w.old.user_name.unwrap_or_default())
            .arg(w.old.external_id.unwrap_or_default())
            .arg(w.new.user_name.unwrap_or_default())
            .arg(w.new.external_id.unwrap_or_default());
        inv.arg(w.old.emails.len()).arg(&w.old.emails);
        inv.arg(w.new.emails.len()).arg(&w.new.emails);
        inv.arg(self.outbox_spec(emit)?);
        let r: Vec<String> = inv
            .invoke_async(&mut self.conn())
            .await
            .map_err(StoreError::from)?;
        match reply(r, "user")? {
            Reply::Ok(_) => Ok(true),
            Reply::Race => Ok(false),
            Reply::Version(_) => Err(unexpected("version")),
        }
    }

    /// The size of the sorted set `key` and the ids at ranks
    /// `offset .. offset + limit`, read in one MULTI/EXEC.
    async fn ranked(
        &self,
        key: String,
        offset: usize,
        limit: usize,
    ) -> DirectoryResult<(u64, Vec<String>)> {
        if limit == 0 {
            let total: u64 = self.conn().zcard(&key).await.map_err(StoreError::from)?;
            return Ok((total, Vec::new()));
        }
        let Ok(start) = isize::try_from(offset) else {
            // Past any sorted set Redis can hold.
            let total: u64 = self.conn().zcard(&key).await.map_err(StoreError::from)?;
            return Ok((total, Vec::new()));
        };
        // A stop beyond isize is "to the end" (-1).
        let stop = isize::try_from(offset.saturating_add(limit - 1)).unwrap_or(-1);
        let (total, ids): (u64, Vec<String>) = redis::pipe()
            .atomic()
            .zcard(&key)
            .zrange(&key, start, stop)
            .query_async(&mut self.conn())
            .await
            .map_err(StoreError::from)?;
        Ok((total, ids))
    }

    async fn read_user(&self, t: &str, id: &str) -> DirectoryResult<Option<User>> {
        let rec: Option<Vec<u8>> = self
            .conn()
            .hget(format!("{t}user:{id}"), "rec")
            .await
            .map_err(StoreError::from)?;
        Ok(rec.map(|b| decode(&b)).transpose()?)
    }

    /// The records of `ids` that still exist, in the order given.
    async fn read_users(&self, t: &str, ids: &[String]) -> DirectoryResult<Vec<User>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(READ_CHUNK) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.hget(format!("{t}user:{id}"), "rec");
            }
            let recs: Vec<Option<Vec<u8>>> = pipe
                .query_async(&mut self.conn())
                .await
                .map_err(StoreError::from)?;
            for rec in recs.into_iter().flatten() {
                out.push(decode(&rec)?);
            }
        }
        Ok(out)
    }

    /// A live user through a unique index hash.
    async fn user_via(&self, t: &str, index: &str, key: &str) -> DirectoryResult<Option<User>> {
        let id: Option<String> = self
            .conn()
            .hget(format!("{t}{index}"), key)
            .await
            .map_err(StoreError::from)?;
        match id {
            Some(id) => Ok(self.read_user(t, &id).await?.filter(|u| !u.deleted)),
            None => Ok(None),
        }
    }

    /// The groups of `ids` that still exist, with members, in the order
    /// given. Each group and its members are read in one MULTI/EXEC, so a
    /// concurrent membership change is seen whole or not at all.
    async fn read_groups(&self, t: &str, ids: &[String]) -> DirectoryResult<Vec<Group>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(READ_CHUNK) {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for id in chunk {
                let g = format!("{t}group:{id}");
                pipe.cmd("HMGET").arg(&g).arg(&["rec", "v", "lm", "cr"]);
                pipe.hgetall(format!("{g}:members"));
            }
            let values: Vec<Value> = pipe
                .query_async(&mut self.conn())
                .await
                .map_err(StoreError::from)?;
            let mut values = values.into_iter();
            while let (Some(head), Some(members)) = (values.next(), values.next()) {
                let (rec, v, lm, cr): (Option<Vec<u8>>, Option<u64>, Option<u64>, Option<u64>) =
                    parse(head)?;
                let Some(rec) = rec else { continue };
                let mut g: Group = decode(&rec)?;
                g.meta.version = v.unwrap_or(g.meta.version);
                g.meta.last_modified_ms = lm.unwrap_or(g.meta.last_modified_ms);
                g.meta.created_ms = cr.unwrap_or(g.meta.created_ms);
                let members: BTreeMap<String, Vec<u8>> = parse(members)?;
                g.members = members
                    .into_iter()
                    .map(|(id, m)| {
                        let mut m: Member = decode(&m)?;
                        m.value = id;
                        Ok(m)
                    })
                    .collect::<StoreResult<_>>()?;
                out.push(g);
            }
        }
        Ok(out)
    }

    async fn read_group(&self, t: &str, id: &str) -> DirectoryResult<Option<Group>> {
        Ok(self.read_groups(t, &[id.to_string()]).await?.pop())
    }

    async fn group_via(&self, t: &str, index: &str, key: &str) -> DirectoryResult<Option<Group>> {
        let id: Option<String> = self
            .conn()
            .hget(format!("{t}{index}"), key)
            .await
            .map_err(StoreError::from)?;
        match id {
            Some(id) => self.read_group(t, &id).await,
            None => Ok(None),
        }
    }

    /// Member entries for `ids` (a live user or a group each), read before
    /// the write so the script stays free of JSON. The script re-checks
    /// that each id is still live, atomically.
    async fn resolve_members(&self, t: &str, ids: &[String]) -> DirectoryResult<Vec<Member>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(READ_CHUNK) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.hget(format!("{t}user:{id}"), "rec");
                pipe.hget(format!("{t}group:{id}"), "rec");
            }
            let recs: Vec<Option<Vec<u8>>> = pipe
                .query_async(&mut self.conn())
                .await
                .map_err(StoreError::from)?;
            for (id, pair) in chunk.iter().zip(recs.chunks(2)) {
                let member = match pair {
                    [Some(u), _] => Some(decode::<User>(u)?)
                        .filter(|u| !u.deleted)
                        .map(|u| Member::user(&u)),
                    [None, Some(g)] => Some(Member::group(&decode::<Group>(g)?)),
                    _ => None,
                };
                out.push(member.ok_or_else(|| rules::unknown_member(id))?);
            }
        }
        Ok(out)
    }

    /// Runs PUT_GROUP for `group` (members already resolved) and returns it
    /// with the meta the script settled.
    async fn put_group(
        &self,
        t: &str,
        mut group: Group,
        members: Vec<Member>,
        put: GroupPut,
        now: u64,
        mut emit: Emit,
    ) -> DirectoryResult<Option<Group>> {
        let (creating, expected_version) = match put {
            GroupPut::Create => (true, None),
            GroupPut::Replace(v) => (false, v),
        };
        let keys = GroupKeys::of(&group);
        let record = encode(&Group {
            members: Vec::new(),
            ..group.clone()
        })?;
        let mut inv = SCRIPTS.put_group.prepare_invoke();
        inv.arg(t)
            .arg(&group.id)
            .arg(if creating { "create" } else { "replace" })
            .arg(expected_version.map(|v| v.to_string()).unwrap_or_default())
            .arg(record)
            .arg(&keys.display_name)
            .arg(keys.external_id.clone().unwrap_or_default())
            .arg(now);
        for m in &members {
            inv.arg(&m.value).arg(encode(m)?);
        }
        let mut sorted = members.clone();
        sorted.sort_by(|a, b| a.value.cmp(&b.value));
        emit.fill_group(&Group {
            members: sorted,
            ..group.clone()
        });
        inv.arg(self.outbox_spec(&emit)?);
        let r: Vec<String> = inv
            .invoke_async(&mut self.conn())
            .await
            .map_err(StoreError::from)?;
        let fields = match reply(r, "group")? {
            Reply::Ok(fields) => fields,
            Reply::Race => return Ok(None),
            Reply::Version(current) => {
                return Err(DirectoryError::VersionMismatch {
                    expected: expected_version.unwrap_or(0),
                    current,
                })
            }
        };
        group.meta.version = number(fields.first())?;
        group.meta.created_ms = number(fields.get(1))?;
        group.meta.last_modified_ms = number(fields.get(2))?;
        let mut members = members;
        members.sort_by(|a, b| a.value.cmp(&b.value));
        group.members = members;
        Ok(Some(group))
    }

    async fn change_members(
        &self,
        script: &Script,
        t: &str,
        group_id: &str,
        entries: Vec<(String, Option<String>)>,
        emit: &Emit,
    ) -> DirectoryResult<MembershipChange> {
        // The lane is the group's: make sure the planned events name it (the
        // script adds the stored record and the members that changed).
        let mut emit = emit.clone();
        for p in &mut emit.events {
            if p.event.group.is_none() {
                p.event.group = Some(Group {
                    id: group_id.to_string(),
                    ..Group::default()
                });
            }
        }
        let emit = &emit;
        let mut inv = script.prepare_invoke();
        inv.arg(t).arg(group_id).arg(now_ms());
        for (id, entry) in &entries {
            inv.arg(id);
            if let Some(e) = entry {
                inv.arg(e);
            }
        }
        inv.arg(self.outbox_spec(emit)?);
        let r: Vec<String> = inv
            .invoke_async(&mut self.conn())
            .await
            .map_err(StoreError::from)?;
        match reply(r, "group")? {
            Reply::Ok(mut fields) => {
                let version = number(fields.first())?;
                fields.remove(0);
                Ok(MembershipChange {
                    changed: fields,
                    version,
                })
            }
            Reply::Race | Reply::Version(_) => Err(unexpected("race or version")),
        }
    }
}

/// Whether PUT_GROUP creates, or replaces (optionally at a version).
enum GroupPut {
    Create,
    Replace(Option<u64>),
}

/// A user write lost to concurrent writers more times than we retry.
fn busy(what: &str) -> DirectoryError {
    StoreError::Task(format!(
        "{what} changed concurrently {WRITE_ATTEMPTS} times in a row; try again"
    ))
    .into()
}

#[async_trait]
impl DirectoryStore for RedisStore {
    async fn create_user_emit(
        &self,
        tenant: &str,
        user: User,
        emit: Emit,
    ) -> DirectoryResult<User> {
        let now = now_ms();
        let mut user = rules::new_user(tenant, user, now)?;
        let t = self.dir_prefix(tenant);
        for _ in 0..WRITE_ATTEMPTS {
            let w = UserWrite {
                read_version: None,
                record: Some(&user),
                old: UserKeys::default(),
                new: UserKeys::of(&user),
                leave_groups: false,
                now,
            };
            let mut emit = emit.clone();
            emit.fill_user(&user);
            if self.put_user(&t, &user.id, w, &emit).await? {
                return Ok(user);
            }
            // The fresh id exists already (122 random bits: never, in practice).
            user.id = rules::new_id();
        }
        Err(busy("user"))
    }

    async fn get_user(&self, tenant: &str, id: &str) -> DirectoryResult<Option<User>> {
        self.read_user(&self.dir_prefix(tenant), id).await
    }

    async fn user_by_user_name(
        &self,
        tenant: &str,
        user_name: &str,
    ) -> DirectoryResult<Option<User>> {
        let Some(key) = rules::identifier_key(user_name) else {
            return Ok(None);
        };
        Ok(self
            .user_via(&self.dir_prefix(tenant), "idx:user_name", &key)
            .await?
            .filter(|u| rules::same_identifier(&u.user_name, user_name)))
    }

    async fn user_by_external_id(
        &self,
        tenant: &str,
        external_id: &str,
    ) -> DirectoryResult<Option<User>> {
        self.user_via(&self.dir_prefix(tenant), "idx:user_ext", external_id)
            .await
    }

    async fn users_by_email(&self, tenant: &str, email: &str) -> DirectoryResult<Vec<User>> {
        let Some(key) = rules::identifier_key(email) else {
            return Ok(Vec::new());
        };
        let t = self.dir_prefix(tenant);
        let ids: Vec<String> = self
            .conn()
            .smembers(format!("{t}idx:email:{key}"))
            .await
            .map_err(StoreError::from)?;
        let mut users: Vec<User> = self
            .read_users(&t, &ids)
            .await?
            .into_iter()
            .filter(|u| !u.deleted && rules::has_email(u, email))
            .collect();
        rules::sort_users(&mut users);
        Ok(users)
    }

    async fn replace_user_emit(
        &self,
        tenant: &str,
        user: User,
        expected_version: Option<u64>,
        emit: Emit,
    ) -> DirectoryResult<User> {
        let t = self.dir_prefix(tenant);
        for _ in 0..WRITE_ATTEMPTS {
            let current = self
                .read_user(&t, &user.id)
                .await?
                .ok_or(DirectoryError::NotFound { what: "user" })?;
            let now = now_ms();
            let next = rules::replacement_user(&current, user.clone(), expected_version, now)?;
            let w = UserWrite {
                read_version: Some(current.meta.version),
                record: Some(&next),
                old: UserKeys::of(&current),
                new: UserKeys::of(&next),
                leave_groups: false,
                now,
            };
            let mut emit = emit.clone();
            emit.fill_user(&next);
            if self.put_user(&t, &next.id, w, &emit).await? {
                return Ok(next);
            }
        }
        Err(busy("user"))
    }

    async fn delete_user_emit(&self, tenant: &str, id: &str, emit: Emit) -> DirectoryResult<()> {
        let t = self.dir_prefix(tenant);
        for _ in 0..WRITE_ATTEMPTS {
            let current = self
                .read_user(&t, id)
                .await?
                .ok_or(DirectoryError::NotFound { what: "user" })?;
            let w = UserWrite {
                read_version: Some(current.meta.version),
                record: None,
                old: UserKeys::of(&current),
                new: UserKeys::default(),
                leave_groups: true,
                now: now_ms(),
            };
            let mut emit = emit.clone();
            emit.fill_user(&rules::as_deleted(&current));
            if self.put_user(&t, id, w, &emit).await? {
                return Ok(());
            }
        }
        Err(busy("user"))
    }

    async fn tombstone_user_emit(
        &self,
        tenant: &str,
        id: &str,
        emit: Emit,
    ) -> DirectoryResult<User> {
        let t = self.dir_prefix(tenant);
        for _ in 0..WRITE_ATTEMPTS {
            let current = self
                .read_user(&t, id)
                .await?
                .ok_or(DirectoryError::NotFound { what: "user" })?;
            let now = now_ms();
            let tomb = rules::tombstone(&current, now)?;
            let w = UserWrite {
                read_version: Some(current.meta.version),
                record: Some(&tomb),
                old: UserKeys::of(&current),
                new: UserKeys::of(&tomb),
                leave_groups: true,
                now,
            };
            let mut emit = emit.clone();
            emit.fill_user(&tomb);
            if self.put_user(&t, id, w, &emit).await? {
                return Ok(tomb);
            }
        }
        Err(busy("user"))
    }

    async fn list_users(&self, tenant: &str) -> DirectoryResult<Vec<User>> {
        let t = self.dir_prefix(tenant);
        let ids: Vec<String> = self
            .conn()
            .zrange(format!("{t}users"), 0, -1)
            .await
            .map_err(StoreError::from)?;
        let mut users: Vec<User> = self
            .read_users(&t, &ids)
            .await?
            .into_iter()
            .filter(|u| !u.deleted)
            .collect();
        rules::sort_users(&mut users);
        Ok(users)
    }

    async fn count_users(&self, tenant: &str) -> DirectoryResult<u64> {
        let key = format!("{}users", self.dir_prefix(tenant));
        Ok(self.conn().zcard(key).await.map_err(StoreError::from)?)
    }

    async fn users_page(
        &self,
        tenant: &str,
        offset: usize,
        limit: usize,
    ) -> DirectoryResult<Page<User>> {
        let t = self.dir_prefix(tenant);
        let (total, ids) = self.ranked(format!("{t}users"), offset, limit).await?;
        // A user deleted between the two reads is left out: the page is short
        // by one, as a full read racing the same delete would be.
        let items = self
            .read_users(&t, &ids)
            .await?
            .into_iter()
            .filter(|u| !u.deleted)
            .collect();
        Ok(Page { total, items })
    }

    async fn create_group_emit(
        &self,
        tenant: &str,
        group: Group,
        emit: Emit,
    ) -> DirectoryResult<Group> {
        let now = now_ms();
        let mut group = rules::new_group(tenant, group, now)?;
        let ids = rules::member_ids(&group.id, group.members.iter().map(|m| m.value.as_str()))?;
        let t = self.dir_prefix(tenant);
        let members = self.resolve_members(&t, &ids).await?;
        for _ in 0..WRITE_ATTEMPTS {
            if let Some(g) = self
                .put_group(
                    &t,
                    group.clone(),
                    members.clone(),
                    GroupPut::Create,
                    now,
                    emit.clone(),
                )
                .await?
            {
                return Ok(g);
            }
            // The fresh id exists already; a new random id cannot be a member.
            group.id = rules::new_id();
        }
        Err(busy("group"))
    }

    async fn get_group(&self, tenant: &str, id: &str) -> DirectoryResult<Option<Group>> {
        self.read_group(&self.dir_prefix(tenant), id).await
    }

    async fn group_by_display_name(
        &self,
        tenant: &str,
        display_name: &str,
    ) -> DirectoryResult<Option<Group>> {
        self.group_via(
            &self.dir_prefix(tenant),
            "idx:group_name",
            &rules::fold(display_name),
        )
        .await
    }

    async fn group_by_external_id(
        &self,
        tenant: &str,
        external_id: &str,
    ) -> DirectoryResult<Option<Group>> {
        self.group_via(&self.dir_prefix(tenant), "idx:group_ext", external_id)
            .await
    }

    async fn replace_group_emit(
        &self,
        tenant: &str,
        mut group: Group,
        expected_version: Option<u64>,
        emit: Emit,
    ) -> DirectoryResult<Group> {
        rules::validate_group(tenant, &mut group)?;
        let ids = rules::member_ids(&group.id, group.members.iter().map(|m| m.value.as_str()))?;
        let t = self.dir_prefix(tenant);
        let members = self.resolve_members(&t, &ids).await?;
        self.put_group(
            &t,
            group,
            members,
            GroupPut::Replace(expected_version),
            now_ms(),
            emit,
        )
        .await?
        .ok_or_else(|| unexpected("race"))
    }

    async fn delete_group_emit(
        &self,
        tenant: &str,
        id: &str,
        mut emit: Emit,
    ) -> DirectoryResult<()> {
        if !emit.is_empty() {
            // The members as they were; the script adds the record it deletes.
            if let Some(g) = self.read_group(&self.dir_prefix(tenant), id).await? {
                emit.fill_group(&g);
            }
        }
        let r: Vec<String> = SCRIPTS
            .delete_group
            .prepare_invoke()
            .arg(self.dir_prefix(tenant))
            .arg(id)
            .arg(now_ms())
            .arg(self.outbox_spec(&emit)?)
            .invoke_async(&mut self.conn())
            .await
            .map_err(StoreError::from)?;
        match reply(r, "group")? {
            Reply::Ok(_) => Ok(()),
            Reply::Race | Reply::Version(_) => Err(unexpected("race or version")),
        }
    }

    async fn add_members_emit(
        &self,
        tenant: &str,
        group_id: &str,
        member_ids: &[String],
        emit: Emit,
    ) -> DirectoryResult<MembershipChange> {
        let ids = rules::member_ids(group_id, member_ids.iter().map(String::as_str))?;
        let t = self.dir_prefix(tenant);
        let entries = self
            .resolve_members(&t, &ids)
            .await?
            .into_iter()
            .map(|m| Ok((m.value.clone(), Some(encode(&m)?))))
            .collect::<StoreResult<Vec<_>>>()?;
        self.change_members(&SCRIPTS.add_members, &t, group_id, entries, &emit)
            .await
    }

    async fn remove_members_emit(
        &self,
        tenant: &str,
        group_id: &str,
        member_ids: &[String],
        emit: Emit,
    ) -> DirectoryResult<MembershipChange> {
        let entries = rules::removal_ids(member_ids.iter().map(String::as_str))
            .into_iter()
            .map(|id| (id, None))
            .collect();
        self.change_members(
            &SCRIPTS.remove_members,
            &self.dir_prefix(tenant),
            group_id,
            entries,
            &emit,
        )
        .await
    }

    async fn list_groups(&self, tenant: &str) -> DirectoryResult<Vec<Group>> {
        let t = self.dir_prefix(tenant);
        let ids: Vec<String> = self
            .conn()
            .zrange(format!("{t}groups"), 0, -1)
            .await
            .map_err(StoreError::from)?;
        let mut groups = self.read_groups(&t, &ids).await?;
        rules::sort_groups(&mut groups);
        Ok(groups)
    }

    async fn count_groups(&self, tenant: &str) -> DirectoryResult<u64> {
        let key = format!("{}groups", self.dir_prefix(tenant));
        Ok(self.conn().zcard(key).await.map_err(StoreError::from)?)
    }

    async fn groups_page(
        &self,
        tenant: &str,
        offset: usize,
        limit: usize,
    ) -> DirectoryResult<Page<Group>> {
        let t = self.dir_prefix(tenant);
        let (total, ids) = self.ranked(format!("{t}groups"), offset, limit).await?;
        let items = self.read_groups(&t, &ids).await?;
        Ok(Page { total, items })
    }

    async fn groups_of_user(
        &self,
        tenant: &str,
        member_id: &str,
    ) -> DirectoryResult<Vec<GroupRef>> {
        let t = self.dir_prefix(tenant);
        let ids: Vec<String> = self
            .conn()
            .smembers(format!("{t}member_of:{member_id}"))
            .await
            .map_err(StoreError::from)?;
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(READ_CHUNK) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.hget(format!("{t}group:{id}"), "rec");
            }
            let recs: Vec<Option<Vec<u8>>> = pipe
                .query_async(&mut self.conn())
                .await
                .map_err(StoreError::from)?;
            for rec in recs.into_iter().flatten() {
                out.push(decode::<Group>(&rec)?.summary());
            }
        }
        rules::sort_group_refs(&mut out);
        Ok(out)
    }
}
