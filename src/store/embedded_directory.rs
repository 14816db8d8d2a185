//! `DirectoryStore` on the embedded redb file. Every write is one redb write
//! transaction, and redb runs one write transaction at a time, so a record,
//! its indexes and its memberships change together and membership changes to
//! one group are serialised for free. Reads use read transactions (a
//! consistent snapshot) and never block writers.
//!
//! Keys are tuples starting with the tenant, so a tenant's entries are one
//! contiguous range and no tenant can address another's.
//!
//! Tables (`tenant` first in every key):
//! - `dir_users` (tenant, id) → User JSON (tombstones included)
//! - `dir_user_names` (tenant, folded userName) → id; `dir_user_external_ids`
//!   (tenant, externalId) → id; `dir_user_emails` multimap (tenant, folded
//!   email) → ids. Live users only.
//! - `dir_groups` (tenant, id) → Group JSON without members
//! - `dir_group_names` (tenant, folded displayName) → id;
//!   `dir_group_external_ids` (tenant, externalId) → id
//! - `dir_members` (tenant, group id, member id) → Member JSON (forward index)
//! - `dir_member_of` multimap (tenant, member id) → group ids (reverse index)
//! - `dir_user_order` (tenant, created ms, id) → () for live users, and
//!   `dir_group_order` the same for groups: the listing order, so a page is
//!   a skip and a short range read instead of a read of the tenant
//! - `dir_counts` (tenant, "users" | "groups") → how many live users /
//!   groups (absent = 0), kept with every create, tombstone and delete
//! - `dir_order_buckets`: live entries of the order tables per time bucket
//!   (`embedded_rank`), so a page's first entry is found without a walk
//!   through the entries before it
//! - `dir_schema` name → version of the derived tables above
//!
//! The order, count and bucket tables came after the others. A database
//! written before them has no `listing` entry in `dir_schema`, or one below
//! `LISTING_VERSION`: opening it rebuilds them from `dir_users` /
//! `dir_groups`, for every tenant, once, inside the open's write
//! transaction (O(records), at startup), and records the version; later
//! opens skip it. So pages and counts are never read from a
//! half-built index, and there is no per-request fallback to a scan.

use async_trait::async_trait;
use redb::{
    Database, MultimapTable, MultimapTableDefinition, ReadableTable, Table, TableDefinition,
    WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::embedded::EmbeddedStore;
use super::embedded_rank::{self, BUCKETS};
use super::{StoreError, StoreResult};
use crate::clock::now_ms;
use crate::directory::rules::{self, GroupKeys, UserKeys};
use crate::directory::{
    DirectoryError, DirectoryResult, DirectoryStore, Group, GroupRef, Member, MembershipChange,
    Page, User,
};
use crate::webhook::outbox::Emit;

type Pair = (&'static str, &'static str);
type Triple = (&'static str, &'static str, &'static str);

const USERS: TableDefinition<Pair, &[u8]> = TableDefinition::new("dir_users");
const USER_NAMES: TableDefinition<Pair, &str> = TableDefinition::new("dir_user_names");
const USER_EXTERNAL_IDS: TableDefinition<Pair, &str> =
    TableDefinition::new("dir_user_external_ids");
const USER_EMAILS: MultimapTableDefinition<Pair, &str> =
    MultimapTableDefinition::new("dir_user_emails");
const GROUPS: TableDefinition<Pair, &[u8]> = TableDefinition::new("dir_groups");
const GROUP_NAMES: TableDefinition<Pair, &str> = TableDefinition::new("dir_group_names");
const GROUP_EXTERNAL_IDS: TableDefinition<Pair, &str> =
    TableDefinition::new("dir_group_external_ids");
const MEMBERS: TableDefinition<Triple, &[u8]> = TableDefinition::new("dir_members");
const MEMBER_OF: MultimapTableDefinition<Pair, &str> =
    MultimapTableDefinition::new("dir_member_of");
type Ordered = (&'static str, u64, &'static str);
const USER_ORDER: TableDefinition<Ordered, ()> = TableDefinition::new("dir_user_order");
const GROUP_ORDER: TableDefinition<Ordered, ()> = TableDefinition::new("dir_group_order");
const COUNTS: TableDefinition<Pair, u64> = TableDefinition::new("dir_counts");
const SCHEMA: TableDefinition<&str, u64> = TableDefinition::new("dir_schema");
/// `dir_schema` entry saying which version of the order, count and bucket
/// tables is built (1: order and counts; 2: buckets too).
const LISTING: &str = "listing";
const LISTING_VERSION: u64 = 2;
const USERS_KIND: &str = "users";
const GROUPS_KIND: &str = "groups";

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Embedded(e.to_string())
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode<T: Serialize>(v: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Creates the directory tables, so read transactions can always open them.
/// Called from `EmbeddedStore::open`.
pub(super) fn create_tables(txn: &WriteTransaction) -> StoreResult<()> {
    txn.open_table(USERS).map_err(err)?;
    txn.open_table(USER_NAMES).map_err(err)?;
    txn.open_table(USER_EXTERNAL_IDS).map_err(err)?;
    txn.open_multimap_table(USER_EMAILS).map_err(err)?;
    txn.open_table(GROUPS).map_err(err)?;
    txn.open_table(GROUP_NAMES).map_err(err)?;
    txn.open_table(GROUP_EXTERNAL_IDS).map_err(err)?;
    txn.open_table(MEMBERS).map_err(err)?;
    txn.open_multimap_table(MEMBER_OF).map_err(err)?;
    txn.open_table(USER_ORDER).map_err(err)?;
    txn.open_table(GROUP_ORDER).map_err(err)?;
    txn.open_table(COUNTS).map_err(err)?;
    txn.open_table(BUCKETS).map_err(err)?;
    let mut schema = txn.open_table(SCHEMA).map_err(err)?;
    let built = schema.get(LISTING).map_err(err)?.map(|v| v.value());
    if built.is_none_or(|v| v < LISTING_VERSION) {
        build_listing(txn)?;
        schema.insert(LISTING, LISTING_VERSION).map_err(err)?;
    }
    Ok(())
}

/// Builds the order and count tables from the records (see the module
/// doc): for a database written before they existed.
fn build_listing(txn: &WriteTransaction) -> StoreResult<()> {
    let mut user_order = txn.open_table(USER_ORDER).map_err(err)?;
    let mut group_order = txn.open_table(GROUP_ORDER).map_err(err)?;
    let mut counts = txn.open_table(COUNTS).map_err(err)?;
    let mut buckets = txn.open_table(BUCKETS).map_err(err)?;
    user_order.retain(|_, _| false).map_err(err)?;
    group_order.retain(|_, _| false).map_err(err)?;
    counts.retain(|_, _| false).map_err(err)?;
    buckets.retain(|_, _| false).map_err(err)?;
    let mut tally: std::collections::BTreeMap<(String, &str), u64> = Default::default();
    let mut per_bucket: std::collections::BTreeMap<(String, &str, u64), u64> = Default::default();
    for entry in txn.open_table(USERS).map_err(err)?.iter().map_err(err)? {
        let (k, v) = entry.map_err(err)?;
        let (t, id) = k.value();
        let u: User = decode(v.value())?;
        if !u.deleted {
            user_order
                .insert((t, u.meta.created_ms, id), ())
                .map_err(err)?;
            *tally.entry((t.to_string(), USERS_KIND)).or_default() += 1;
            for n in embedded_rank::nodes(u.meta.created_ms) {
                *per_bucket
                    .entry((t.to_string(), USERS_KIND, n))
                    .or_default() += 1;
            }
        }
    }
    for entry in txn.open_table(GROUPS).map_err(err)?.iter().map_err(err)? {
        let (k, v) = entry.map_err(err)?;
        let (t, id) = k.value();
        let g: Group = decode(v.value())?;
        group_order
            .insert((t, g.meta.created_ms, id), ())
            .map_err(err)?;
        *tally.entry((t.to_string(), GROUPS_KIND)).or_default() += 1;
        for n in embedded_rank::nodes(g.meta.created_ms) {
            *per_bucket
                .entry((t.to_string(), GROUPS_KIND, n))
                .or_default() += 1;
        }
    }
    for ((t, kind), n) in tally {
        counts.insert((t.as_str(), kind), n).map_err(err)?;
    }
    for ((t, kind, node), n) in per_bucket {
        buckets.insert((t.as_str(), kind, node), n).map_err(err)?;
    }
    Ok(())
}

/// A count from `dir_counts` (absent = 0).
fn count(table: &impl ReadableTable<Pair, u64>, tenant: &str, kind: &str) -> StoreResult<u64> {
    Ok(table
        .get((tenant, kind))
        .map_err(err)?
        .map(|v| v.value())
        .unwrap_or(0))
}

/// Ids at positions `offset .. offset + limit` of an order table's range
/// for `tenant` (`kind` names its buckets): the buckets say where the page
/// starts, so only entries of one fine bucket are skipped.
fn page_ids(
    txn: &redb::ReadTransaction,
    order: TableDefinition<Ordered, ()>,
    tenant: &str,
    kind: &str,
    offset: usize,
    limit: usize,
    total: u64,
) -> StoreResult<Vec<String>> {
    let mut out = Vec::with_capacity(limit.min(1024));
    // Past the end (by the count): no walk through the whole range.
    let Ok(offset) = u64::try_from(offset) else {
        return Ok(out);
    };
    if limit == 0 || offset >= total {
        return Ok(out);
    }
    let buckets = txn.open_table(BUCKETS).map_err(err)?;
    let Some((start, skip)) = embedded_rank::seek(&buckets, tenant, kind, offset)? else {
        return Ok(out);
    };
    let skip = usize::try_from(skip).map_err(err)?;
    let table = txn.open_table(order).map_err(err)?;
    let range = table
        .range((tenant, start, "")..(tenant, u64::MAX, "\u{10FFFF}"))
        .map_err(err)?;
    for entry in range.skip(skip).take(limit) {
        let (k, _) = entry.map_err(err)?;
        out.push(k.value().2.to_string());
    }
    Ok(out)
}

/// Runs a directory operation on the blocking pool.
async fn run<T, F>(store: &EmbeddedStore, f: F) -> DirectoryResult<T>
where
    T: Send + 'static,
    F: FnOnce(&Database) -> DirectoryResult<T> + Send + 'static,
{
    store.blocking(move |db| Ok(f(db))).await?
}

fn load<T: DeserializeOwned>(
    table: &impl ReadableTable<Pair, &'static [u8]>,
    tenant: &str,
    id: &str,
) -> StoreResult<Option<T>> {
    match table.get((tenant, id)).map_err(err)? {
        Some(v) => decode(v.value()).map(Some),
        None => Ok(None),
    }
}

fn lookup(
    table: &impl ReadableTable<Pair, &'static str>,
    tenant: &str,
    key: &str,
) -> StoreResult<Option<String>> {
    Ok(table
        .get((tenant, key))
        .map_err(err)?
        .map(|v| v.value().to_string()))
}

/// The members of one group, ordered by id (the key order).
fn load_members(
    table: &impl ReadableTable<Triple, &'static [u8]>,
    tenant: &str,
    group_id: &str,
) -> StoreResult<Vec<Member>> {
    let mut out = Vec::new();
    for entry in table.range((tenant, group_id, "")..).map_err(err)? {
        let (k, v) = entry.map_err(err)?;
        let (t, g, _) = k.value();
        if t != tenant || g != group_id {
            break;
        }
        out.push(decode(v.value())?);
    }
    Ok(out)
}

/// Every table, opened for writing in one transaction.
struct Tables<'txn> {
    users: Table<'txn, Pair, &'static [u8]>,
    user_names: Table<'txn, Pair, &'static str>,
    user_external_ids: Table<'txn, Pair, &'static str>,
    user_emails: MultimapTable<'txn, Pair, &'static str>,
    groups: Table<'txn, Pair, &'static [u8]>,
    group_names: Table<'txn, Pair, &'static str>,
    group_external_ids: Table<'txn, Pair, &'static str>,
    members: Table<'txn, Triple, &'static [u8]>,
    member_of: MultimapTable<'txn, Pair, &'static str>,
    user_order: Table<'txn, Ordered, ()>,
    group_order: Table<'txn, Ordered, ()>,
    counts: Table<'txn, Pair, u64>,
    buckets: Table<'txn, (&'static str, &'static str, u64), u64>,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> StoreResult<Self> {
        Ok(Self {
            users: txn.open_table(USERS).map_err(err)?,
            user_names: txn.open_table(USER_NAMES).map_err(err)?,
            user_external_ids: txn.open_table(USER_EXTERNAL_IDS).map_err(err)?,
            user_emails: txn.open_multimap_table(USER_EMAILS).map_err(err)?,
            groups: txn.open_table(GROUPS).map_err(err)?,
            group_names: txn.open_table(GROUP_NAMES).map_err(err)?,
            group_external_ids: txn.open_table(GROUP_EXTERNAL_IDS).map_err(err)?,
            members: txn.open_table(MEMBERS).map_err(err)?,
            member_of: txn.open_multimap_table(MEMBER_OF).map_err(err)?,
            user_order: txn.open_table(USER_ORDER).map_err(err)?,
            group_order: txn.open_table(GROUP_ORDER).map_err(err)?,
            counts: txn.open_table(COUNTS).map_err(err)?,
            buckets: txn.open_table(BUCKETS).map_err(err)?,
        })
    }

    fn add_count(&mut self, t: &str, kind: &str, delta: i64) -> StoreResult<()> {
        if delta == 0 {
            return Ok(());
        }
        let n = count(&self.counts, t, kind)?.saturating_add_signed(delta);
        if n == 0 {
            self.counts.remove((t, kind)).map_err(err)?;
        } else {
            self.counts.insert((t, kind), n).map_err(err)?;
        }
        Ok(())
    }

    /// Keeps the user order and count in step with a write of user `id`:
    /// `before` is the stored record (`None`: there was none), `after` the
    /// record written (`None`: removed). Only live users are listed.
    fn relist_user(
        &mut self,
        t: &str,
        id: &str,
        before: Option<&User>,
        after: Option<&User>,
    ) -> StoreResult<()> {
        let listed = |u: Option<&User>| u.filter(|u| !u.deleted).map(|u| u.meta.created_ms);
        let (was, is) = (listed(before), listed(after));
        if was == is {
            return Ok(());
        }
        if let Some(c) = was {
            self.user_order.remove((t, c, id)).map_err(err)?;
            embedded_rank::adjust(&mut self.buckets, t, USERS_KIND, c, -1)?;
        }
        if let Some(c) = is {
            self.user_order.insert((t, c, id), ()).map_err(err)?;
            embedded_rank::adjust(&mut self.buckets, t, USERS_KIND, c, 1)?;
        }
        self.add_count(t, USERS_KIND, is.is_some() as i64 - was.is_some() as i64)
    }

    /// As `relist_user`, for groups (every stored group is listed).
    fn relist_group(
        &mut self,
        t: &str,
        id: &str,
        before: Option<&Group>,
        after: Option<&Group>,
    ) -> StoreResult<()> {
        let (was, is) = (
            before.map(|g| g.meta.created_ms),
            after.map(|g| g.meta.created_ms),
        );
        if was == is {
            return Ok(());
        }
        if let Some(c) = was {
            self.group_order.remove((t, c, id)).map_err(err)?;
            embedded_rank::adjust(&mut self.buckets, t, GROUPS_KIND, c, -1)?;
        }
        if let Some(c) = is {
            self.group_order.insert((t, c, id), ()).map_err(err)?;
            embedded_rank::adjust(&mut self.buckets, t, GROUPS_KIND, c, 1)?;
        }
        self.add_count(t, GROUPS_KIND, is.is_some() as i64 - was.is_some() as i64)
    }

    fn user(&self, t: &str, id: &str) -> StoreResult<Option<User>> {
        load(&self.users, t, id)
    }

    fn group(&self, t: &str, id: &str) -> StoreResult<Option<Group>> {
        load(&self.groups, t, id)
    }

    fn put_user(&mut self, t: &str, user: &User) -> StoreResult<()> {
        let bytes = encode(user)?;
        self.users
            .insert((t, user.id.as_str()), bytes.as_slice())
            .map_err(err)?;
        Ok(())
    }

    /// Stores the group record; members live in `dir_members`, not here.
    fn put_group(&mut self, t: &str, group: &Group) -> StoreResult<()> {
        let record = Group {
            members: Vec::new(),
            ..group.clone()
        };
        let bytes = encode(&record)?;
        self.groups
            .insert((t, group.id.as_str()), bytes.as_slice())
            .map_err(err)?;
        Ok(())
    }

    /// `Conflict` if a unique key in `keys` belongs to someone other than `id`.
    fn check_user_keys(&self, t: &str, id: &str, keys: &UserKeys) -> DirectoryResult<()> {
        if let Some(n) = &keys.user_name {
            if lookup(&self.user_names, t, n)?.is_some_and(|o| o != id) {
                return Err(DirectoryError::Conflict { what: "userName" });
            }
        }
        if let Some(x) = &keys.external_id {
            if lookup(&self.user_external_ids, t, x)?.is_some_and(|o| o != id) {
                return Err(DirectoryError::Conflict { what: "externalId" });
            }
        }
        Ok(())
    }

    fn index_user(&mut self, t: &str, id: &str, keys: &UserKeys) -> StoreResult<()> {
        if let Some(n) = &keys.user_name {
            self.user_names.insert((t, n.as_str()), id).map_err(err)?;
        }
        if let Some(x) = &keys.external_id {
            self.user_external_ids
                .insert((t, x.as_str()), id)
                .map_err(err)?;
        }
        for e in &keys.emails {
            self.user_emails.insert((t, e.as_str()), id).map_err(err)?;
        }
        Ok(())
    }

    /// Removes `id`'s entries; an entry that now names someone else stays.
    fn unindex_user(&mut self, t: &str, id: &str, keys: &UserKeys) -> StoreResult<()> {
        if let Some(n) = &keys.user_name {
            if lookup(&self.user_names, t, n)?.as_deref() == Some(id) {
                self.user_names.remove((t, n.as_str())).map_err(err)?;
            }
        }
        if let Some(x) = &keys.external_id {
            if lookup(&self.user_external_ids, t, x)?.as_deref() == Some(id) {
                self.user_external_ids
                    .remove((t, x.as_str()))
                    .map_err(err)?;
            }
        }
        for e in &keys.emails {
            self.user_emails.remove((t, e.as_str()), id).map_err(err)?;
        }
        Ok(())
    }

    fn check_group_keys(&self, t: &str, id: &str, keys: &GroupKeys) -> DirectoryResult<()> {
        if lookup(&self.group_names, t, &keys.display_name)?.is_some_and(|o| o != id) {
            return Err(DirectoryError::Conflict {
                what: "displayName",
            });
        }
        if let Some(x) = &keys.external_id {
            if lookup(&self.group_external_ids, t, x)?.is_some_and(|o| o != id) {
                return Err(DirectoryError::Conflict { what: "externalId" });
            }
        }
        Ok(())
    }

    fn index_group(&mut self, t: &str, id: &str, keys: &GroupKeys) -> StoreResult<()> {
        self.group_names
            .insert((t, keys.display_name.as_str()), id)
            .map_err(err)?;
        if let Some(x) = &keys.external_id {
            self.group_external_ids
                .insert((t, x.as_str()), id)
                .map_err(err)?;
        }
        Ok(())
    }

    fn unindex_group(&mut self, t: &str, id: &str, keys: &GroupKeys) -> StoreResult<()> {
        if lookup(&self.group_names, t, &keys.display_name)?.as_deref() == Some(id) {
            self.group_names
                .remove((t, keys.display_name.as_str()))
                .map_err(err)?;
        }
        if let Some(x) = &keys.external_id {
            if lookup(&self.group_external_ids, t, x)?.as_deref() == Some(id) {
                self.group_external_ids
                    .remove((t, x.as_str()))
                    .map_err(err)?;
            }
        }
        Ok(())
    }

    /// The member entry for `id`: a live user or a group of the tenant.
    fn resolve_member(&self, t: &str, id: &str) -> DirectoryResult<Member> {
        if let Some(u) = self.user(t, id)? {
            if !u.deleted {
                return Ok(Member::user(&u));
            }
        } else if let Some(g) = self.group(t, id)? {
            return Ok(Member::group(&g));
        }
        Err(rules::unknown_member(id))
    }

    fn resolve_members(&self, t: &str, ids: &[String]) -> DirectoryResult<Vec<Member>> {
        ids.iter().map(|id| self.resolve_member(t, id)).collect()
    }

    /// Adds one membership; false if it was already there.
    fn add_member(&mut self, t: &str, group_id: &str, m: &Member) -> StoreResult<bool> {
        if self
            .members
            .get((t, group_id, m.value.as_str()))
            .map_err(err)?
            .is_some()
        {
            return Ok(false);
        }
        self.put_member(t, group_id, m)?;
        Ok(true)
    }

    fn put_member(&mut self, t: &str, group_id: &str, m: &Member) -> StoreResult<()> {
        let bytes = encode(m)?;
        self.members
            .insert((t, group_id, m.value.as_str()), bytes.as_slice())
            .map_err(err)?;
        self.member_of
            .insert((t, m.value.as_str()), group_id)
            .map_err(err)?;
        Ok(())
    }

    /// Removes one membership; false if it was not there.
    fn remove_member(&mut self, t: &str, group_id: &str, member_id: &str) -> StoreResult<bool> {
        let removed = self
            .members
            .remove((t, group_id, member_id))
            .map_err(err)?
            .is_some();
        self.member_of
            .remove((t, member_id), group_id)
            .map_err(err)?;
        Ok(removed)
    }

    fn member_ids(&self, t: &str, group_id: &str) -> StoreResult<Vec<String>> {
        Ok(load_members(&self.members, t, group_id)?
            .into_iter()
            .map(|m| m.value)
            .collect())
    }

    /// Records a membership change on the group: next version.
    fn bump_group(&mut self, t: &str, group_id: &str, now: u64) -> StoreResult<u64> {
        let Some(mut g) = self.group(t, group_id)? else {
            return Ok(0);
        };
        g.meta = rules::next_meta(&g.meta, now);
        self.put_group(t, &g)?;
        Ok(g.meta.version)
    }

    /// Takes `member_id` out of every group it belongs to (user deletion,
    /// group deletion), bumping each group's version.
    fn leave_all_groups(&mut self, t: &str, member_id: &str, now: u64) -> StoreResult<()> {
        let group_ids: Vec<String> = self
            .member_of
            .remove_all((t, member_id))
            .map_err(err)?
            .map(|v| v.map(|g| g.value().to_string()).map_err(err))
            .collect::<StoreResult<_>>()?;
        for g in group_ids {
            if self
                .members
                .remove((t, g.as_str(), member_id))
                .map_err(err)?
                .is_some()
            {
                self.bump_group(t, &g, now)?;
            }
        }
        Ok(())
    }
}

impl EmbeddedStore {
    /// Runs a directory write with the outbox events it fills in, in the
    /// next group commit (`embedded_batch`): the change and its events
    /// commit together, or neither does. Wakes the delivery workers when
    /// there were events. `f` may run more than once, each time with a
    /// fresh copy of `emit`, so it must not consume what it captures.
    async fn write_op<T, F>(&self, emit: Emit, mut f: F) -> DirectoryResult<T>
    where
        T: Send + 'static,
        F: FnMut(&mut Tables<'_>, &mut Emit) -> DirectoryResult<T> + Send + 'static,
    {
        let wake = !emit.is_empty();
        let out = self
            .write(move |txn| -> DirectoryResult<T> {
                let mut emit = emit.clone();
                let out = {
                    let mut tables = Tables::open(txn)?;
                    f(&mut tables, &mut emit)?
                };
                super::embedded_outbox::append(txn, &emit)?;
                Ok(out)
            })
            .await?;
        if wake {
            self.outbox_appended();
        }
        Ok(out)
    }
}

fn read_user(db: &Database, t: &str, id: &str) -> DirectoryResult<Option<User>> {
    let txn = db.begin_read().map_err(err)?;
    let users = txn.open_table(USERS).map_err(err)?;
    Ok(load(&users, t, id)?)
}

/// A live user found through a unique index.
fn user_via(
    db: &Database,
    index: TableDefinition<Pair, &str>,
    t: &str,
    key: &str,
) -> DirectoryResult<Option<User>> {
    let txn = db.begin_read().map_err(err)?;
    let Some(id) = lookup(&txn.open_table(index).map_err(err)?, t, key)? else {
        return Ok(None);
    };
    let users = txn.open_table(USERS).map_err(err)?;
    Ok(load::<User>(&users, t, &id)?.filter(|u| !u.deleted))
}

fn read_group(db: &Database, t: &str, id: &str) -> DirectoryResult<Option<Group>> {
    let txn = db.begin_read().map_err(err)?;
    let groups = txn.open_table(GROUPS).map_err(err)?;
    let Some(mut g) = load::<Group>(&groups, t, id)? else {
        return Ok(None);
    };
    g.members = load_members(&txn.open_table(MEMBERS).map_err(err)?, t, id)?;
    Ok(Some(g))
}

fn group_via(
    db: &Database,
    index: TableDefinition<Pair, &str>,
    t: &str,
    key: &str,
) -> DirectoryResult<Option<Group>> {
    let id = {
        let txn = db.begin_read().map_err(err)?;
        lookup(&txn.open_table(index).map_err(err)?, t, key)?
    };
    match id {
        Some(id) => read_group(db, t, &id),
        None => Ok(None),
    }
}

#[async_trait]
impl DirectoryStore for EmbeddedStore {
    async fn create_user_emit(
        &self,
        tenant: &str,
        user: User,
        emit: Emit,
    ) -> DirectoryResult<User> {
        let user = rules::new_user(tenant, user, now_ms())?;
        self.write_op(emit, move |w, emit| {
            let mut user = user.clone();
            // A fresh id that exists already (122 random bits: never, in practice).
            while w.user(&user.tenant, &user.id)?.is_some() {
                user.id = rules::new_id();
            }
            let t = user.tenant.as_str();
            let keys = UserKeys::of(&user);
            w.check_user_keys(t, &user.id, &keys)?;
            w.index_user(t, &user.id, &keys)?;
            w.put_user(t, &user)?;
            w.relist_user(t, &user.id, None, Some(&user))?;
            emit.fill_user(&user);
            Ok(user)
        })
        .await
    }

    async fn get_user(&self, tenant: &str, id: &str) -> DirectoryResult<Option<User>> {
        let (t, id) = (tenant.to_string(), id.to_string());
        run(self, move |db| read_user(db, &t, &id)).await
    }

    async fn user_by_user_name(
        &self,
        tenant: &str,
        user_name: &str,
    ) -> DirectoryResult<Option<User>> {
        let Some(key) = rules::identifier_key(user_name) else {
            return Ok(None);
        };
        let (t, wanted) = (tenant.to_string(), user_name.to_string());
        run(self, move |db| {
            Ok(user_via(db, USER_NAMES, &t, &key)?
                .filter(|u| rules::same_identifier(&u.user_name, &wanted)))
        })
        .await
    }

    async fn user_by_external_id(
        &self,
        tenant: &str,
        external_id: &str,
    ) -> DirectoryResult<Option<User>> {
        let (t, key) = (tenant.to_string(), external_id.to_string());
        run(self, move |db| user_via(db, USER_EXTERNAL_IDS, &t, &key)).await
    }

    async fn users_by_email(&self, tenant: &str, email: &str) -> DirectoryResult<Vec<User>> {
        let Some(key) = rules::identifier_key(email) else {
            return Ok(Vec::new());
        };
        let (t, wanted) = (tenant.to_string(), email.to_string());
        run(self, move |db| {
            let txn = db.begin_read().map_err(err)?;
            let emails = txn.open_multimap_table(USER_EMAILS).map_err(err)?;
            let users = txn.open_table(USERS).map_err(err)?;
            let mut out = Vec::new();
            for id in emails.get((t.as_str(), key.as_str())).map_err(err)? {
                let id = id.map_err(err)?;
                if let Some(u) = load::<User>(&users, &t, id.value())? {
                    if !u.deleted && rules::has_email(&u, &wanted) {
                        out.push(u);
                    }
                }
            }
            rules::sort_users(&mut out);
            Ok(out)
        })
        .await
    }

    async fn replace_user_emit(
        &self,
        tenant: &str,
        user: User,
        expected_version: Option<u64>,
        emit: Emit,
    ) -> DirectoryResult<User> {
        let t = tenant.to_string();
        let now = now_ms();
        self.write_op(emit, move |w, emit| {
            let current = w
                .user(&t, &user.id)?
                .ok_or(DirectoryError::NotFound { what: "user" })?;
            let user = rules::replacement_user(&current, user.clone(), expected_version, now)?;
            let (old, new) = (UserKeys::of(&current), UserKeys::of(&user));
            w.check_user_keys(&t, &user.id, &new)?;
            w.unindex_user(&t, &user.id, &old)?;
            w.index_user(&t, &user.id, &new)?;
            w.put_user(&t, &user)?;
            w.relist_user(&t, &user.id, Some(&current), Some(&user))?;
            emit.fill_user(&user);
            Ok(user)
        })
        .await
    }

    async fn delete_user_emit(&self, tenant: &str, id: &str, emit: Emit) -> DirectoryResult<()> {
        let (t, id) = (tenant.to_string(), id.to_string());
        let now = now_ms();
        self.write_op(emit, move |w, emit| {
            let current = w
                .user(&t, &id)?
                .ok_or(DirectoryError::NotFound { what: "user" })?;
            w.unindex_user(&t, &id, &UserKeys::of(&current))?;
            w.users.remove((t.as_str(), id.as_str())).map_err(err)?;
            w.relist_user(&t, &id, Some(&current), None)?;
            w.leave_all_groups(&t, &id, now)?;
            emit.fill_user(&rules::as_deleted(&current));
            Ok(())
        })
        .await
    }

    async fn tombstone_user_emit(
        &self,
        tenant: &str,
        id: &str,
        emit: Emit,
    ) -> DirectoryResult<User> {
        let (t, id) = (tenant.to_string(), id.to_string());
        let now = now_ms();
        self.write_op(emit, move |w, emit| {
            let current = w
                .user(&t, &id)?
                .ok_or(DirectoryError::NotFound { what: "user" })?;
            let user = rules::tombstone(&current, now)?;
            w.unindex_user(&t, &id, &UserKeys::of(&current))?;
            w.put_user(&t, &user)?;
            w.relist_user(&t, &id, Some(&current), Some(&user))?;
            w.leave_all_groups(&t, &id, now)?;
            emit.fill_user(&user);
            Ok(user)
        })
        .await
    }

    async fn list_users(&self, tenant: &str) -> DirectoryResult<Vec<User>> {
        let t = tenant.to_string();
        run(self, move |db| {
            let txn = db.begin_read().map_err(err)?;
            let users = txn.open_table(USERS).map_err(err)?;
            let mut out = Vec::new();
            for entry in users.range((t.as_str(), "")..).map_err(err)? {
                let (k, v) = entry.map_err(err)?;
                if k.value().0 != t {
                    break;
                }
                let u: User = decode(v.value())?;
                if !u.deleted {
                    out.push(u);
                }
            }
            rules::sort_users(&mut out);
            Ok(out)
        })
        .await
    }

    async fn count_users(&self, tenant: &str) -> DirectoryResult<u64> {
        let t = tenant.to_string();
        run(self, move |db| {
            let txn = db.begin_read().map_err(err)?;
            Ok(count(
                &txn.open_table(COUNTS).map_err(err)?,
                &t,
                USERS_KIND,
            )?)
        })
        .await
    }

    async fn users_page(
        &self,
        tenant: &str,
        offset: usize,
        limit: usize,
    ) -> DirectoryResult<Page<User>> {
        let t = tenant.to_string();
        run(self, move |db| {
            let txn = db.begin_read().map_err(err)?;
            let total = count(&txn.open_table(COUNTS).map_err(err)?, &t, USERS_KIND)?;
            let ids = page_ids(&txn, USER_ORDER, &t, USERS_KIND, offset, limit, total)?;
            let users = txn.open_table(USERS).map_err(err)?;
            let mut items = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(u) = load::<User>(&users, &t, &id)?.filter(|u| !u.deleted) {
                    items.push(u);
                }
            }
            Ok(Page { total, items })
        })
        .await
    }

    async fn create_group_emit(
        &self,
        tenant: &str,
        group: Group,
        emit: Emit,
    ) -> DirectoryResult<Group> {
        let group = rules::new_group(tenant, group, now_ms())?;
        let ids = rules::member_ids(&group.id, group.members.iter().map(|m| m.value.as_str()))?;
        self.write_op(emit, move |w, emit| {
            let mut group = group.clone();
            let t = group.tenant.clone();
            // As for users; a new random id cannot be among the members.
            while w.group(&t, &group.id)?.is_some() {
                group.id = rules::new_id();
            }
            let keys = GroupKeys::of(&group);
            w.check_group_keys(&t, &group.id, &keys)?;
            let mut members = w.resolve_members(&t, &ids)?;
            w.index_group(&t, &group.id, &keys)?;
            w.put_group(&t, &group)?;
            w.relist_group(&t, &group.id, None, Some(&group))?;
            for m in &members {
                w.put_member(&t, &group.id, m)?;
            }
            members.sort_by(|a, b| a.value.cmp(&b.value));
            group.members = members;
            emit.fill_group(&group);
            Ok(group)
        })
        .await
    }

    async fn get_group(&self, tenant: &str, id: &str) -> DirectoryResult<Option<Group>> {
        let (t, id) = (tenant.to_string(), id.to_string());
        run(self, move |db| read_group(db, &t, &id)).await
    }

    async fn group_by_display_name(
        &self,
        tenant: &str,
        display_name: &str,
    ) -> DirectoryResult<Option<Group>> {
        let (t, key) = (tenant.to_string(), rules::fold(display_name));
        run(self, move |db| group_via(db, GROUP_NAMES, &t, &key)).await
    }

    async fn group_by_external_id(
        &self,
        tenant: &str,
        external_id: &str,
    ) -> DirectoryResult<Option<Group>> {
        let (t, key) = (tenant.to_string(), external_id.to_string());
        run(self, move |db| group_via(db, GROUP_EXTERNAL_IDS, &t, &key)).await
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
        let now = now_ms();
        self.write_op(emit, move |w, emit| {
            let mut group = group.clone();
            let t = group.tenant.clone();
            let current = w
                .group(&t, &group.id)?
                .ok_or(DirectoryError::NotFound { what: "group" })?;
            rules::check_version(current.meta.version, expected_version)?;
            let (old, new) = (GroupKeys::of(&current), GroupKeys::of(&group));
            w.check_group_keys(&t, &group.id, &new)?;
            let mut members = w.resolve_members(&t, &ids)?;
            w.unindex_group(&t, &group.id, &old)?;
            w.index_group(&t, &group.id, &new)?;
            let keep: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
            for old_id in w.member_ids(&t, &group.id)? {
                if !keep.contains(old_id.as_str()) {
                    w.remove_member(&t, &group.id, &old_id)?;
                }
            }
            for m in &members {
                w.put_member(&t, &group.id, m)?;
            }
            group.meta = rules::next_meta(&current.meta, now);
            w.put_group(&t, &group)?;
            w.relist_group(&t, &group.id, Some(&current), Some(&group))?;
            members.sort_by(|a, b| a.value.cmp(&b.value));
            group.members = members;
            emit.fill_group(&group);
            Ok(group)
        })
        .await
    }

    async fn delete_group_emit(&self, tenant: &str, id: &str, emit: Emit) -> DirectoryResult<()> {
        let (t, id) = (tenant.to_string(), id.to_string());
        let now = now_ms();
        self.write_op(emit, move |w, emit| {
            let mut current = w
                .group(&t, &id)?
                .ok_or(DirectoryError::NotFound { what: "group" })?;
            current.members = load_members(&w.members, &t, &id)?;
            emit.fill_group(&current);
            w.unindex_group(&t, &id, &GroupKeys::of(&current))?;
            for m in w.member_ids(&t, &id)? {
                w.remove_member(&t, &id, &m)?;
            }
            w.groups.remove((t.as_str(), id.as_str())).map_err(err)?;
            w.relist_group(&t, &id, Some(&current), None)?;
            w.leave_all_groups(&t, &id, now)?;
            Ok(())
        })
        .await
    }

    async fn add_members_emit(
        &self,
        tenant: &str,
        group_id: &str,
        member_ids: &[String],
        emit: Emit,
    ) -> DirectoryResult<MembershipChange> {
        let ids = rules::member_ids(group_id, member_ids.iter().map(String::as_str))?;
        let (t, gid) = (tenant.to_string(), group_id.to_string());
        let now = now_ms();
        self.write_op(emit, move |w, emit| {
            let mut current = w
                .group(&t, &gid)?
                .ok_or(DirectoryError::NotFound { what: "group" })?;
            let members = w.resolve_members(&t, &ids)?;
            let mut changed = Vec::new();
            for m in &members {
                if w.add_member(&t, &gid, m)? {
                    changed.push(m.value.clone());
                }
            }
            let version = if changed.is_empty() {
                current.meta.version
            } else {
                w.bump_group(&t, &gid, now)?
            };
            current.meta = w.group(&t, &gid)?.map(|g| g.meta).unwrap_or_default();
            emit.fill_members(&current, &changed);
            Ok(MembershipChange { changed, version })
        })
        .await
    }

    async fn remove_members_emit(
        &self,
        tenant: &str,
        group_id: &str,
        member_ids: &[String],
        emit: Emit,
    ) -> DirectoryResult<MembershipChange> {
        let ids = rules::removal_ids(member_ids.iter().map(String::as_str));
        let (t, gid) = (tenant.to_string(), group_id.to_string());
        let now = now_ms();
        self.write_op(emit, move |w, emit| {
            let mut current = w
                .group(&t, &gid)?
                .ok_or(DirectoryError::NotFound { what: "group" })?;
            let mut changed = Vec::new();
            for id in &ids {
                if w.remove_member(&t, &gid, id)? {
                    changed.push(id.clone());
                }
            }
            let version = if changed.is_empty() {
                current.meta.version
            } else {
                w.bump_group(&t, &gid, now)?
            };
            current.meta = w.group(&t, &gid)?.map(|g| g.meta).unwrap_or_default();
            emit.fill_members(&current, &changed);
            Ok(MembershipChange { changed, version })
        })
        .await
    }

    async fn list_groups(&self, tenant: &str) -> DirectoryResult<Vec<Group>> {
        let t = tenant.to_string();
        run(self, move |db| {
            let txn = db.begin_read().map_err(err)?;
            let groups = txn.open_table(GROUPS).map_err(err)?;
            let members = txn.open_table(MEMBERS).map_err(err)?;
            let mut out = Vec::new();
            for entry in groups.range((t.as_str(), "")..).map_err(err)? {
                let (k, v) = entry.map_err(err)?;
                if k.value().0 != t {
                    break;
                }
                let mut g: Group = decode(v.value())?;
                g.members = load_members(&members, &t, &g.id)?;
                out.push(g);
            }
            rules::sort_groups(&mut out);
            Ok(out)
        })
        .await
    }

    async fn count_groups(&self, tenant: &str) -> DirectoryResult<u64> {
        let t = tenant.to_string();
        run(self, move |db| {
            let txn = db.begin_read().map_err(err)?;
            Ok(count(
                &txn.open_table(COUNTS).map_err(err)?,
                &t,
                GROUPS_KIND,
            )?)
        })
        .await
    }

    async fn groups_page(
        &self,
        tenant: &str,
        offset: usize,
        limit: usize,
    ) -> DirectoryResult<Page<Group>> {
        let t = tenant.to_string();
        run(self, move |db| {
            let txn = db.begin_read().map_err(err)?;
            let total = count(&txn.open_table(COUNTS).map_err(err)?, &t, GROUPS_KIND)?;
            let ids = page_ids(&txn, GROUP_ORDER, &t, GROUPS_KIND, offset, limit, total)?;
            let groups = txn.open_table(GROUPS).map_err(err)?;
            let members = txn.open_table(MEMBERS).map_err(err)?;
            let mut items = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(mut g) = load::<Group>(&groups, &t, &id)? {
                    g.members = load_members(&members, &t, &id)?;
                    items.push(g);
                }
            }
            Ok(Page { total, items })
        })
        .await
    }

    async fn groups_of_user(
        &self,
        tenant: &str,
        member_id: &str,
    ) -> DirectoryResult<Vec<GroupRef>> {
        let (t, id) = (tenant.to_string(), member_id.to_string());
        run(self, move |db| {
            let txn = db.begin_read().map_err(err)?;
            let member_of = txn.open_multimap_table(MEMBER_OF).map_err(err)?;
            let groups = txn.open_table(GROUPS).map_err(err)?;
            let mut out = Vec::new();
            for gid in member_of.get((t.as_str(), id.as_str())).map_err(err)? {
                let gid = gid.map_err(err)?;
                if let Some(g) = load::<Group>(&groups, &t, gid.value())? {
                    out.push(g.summary());
                }
            }
            rules::sort_group_refs(&mut out);
            Ok(out)
        })
        .await
    }
}
