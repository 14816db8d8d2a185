//! `directory` owns the people and groups the gateway knows: typed `User`
//! and `Group` records, their uniqueness rules, and the indexes that find
//! them without scanning (userName, externalId, email, group displayName,
//! and group membership both ways). SAML JIT provisioning and the SCIM
//! server share it.
//!
//! It refuses to know about HTTP, SCIM JSON or SCIM filters: the SCIM layer
//! parses a filter, recognises the indexed shapes (`userName eq`, ...) and
//! calls the matching lookup here; an unfiltered, unsorted list reads
//! `users_page` / `groups_page` (an ordered index and a count, never the
//! whole tenant); anything else it evaluates over `list_users`. It does not know how bytes are stored either:
//! `DirectoryStore` is implemented by each `store` backend, and the rules
//! both backends must apply (validation, case folding, versions) live in
//! `rules`, so the two cannot drift apart.
//!
//! Every resource belongs to one tenant and every call names the tenant: a
//! tenant never sees, finds or collides with another tenant's resources.
//! Every write is atomic (one redb transaction, one Redis Lua script): a
//! record and its indexes are never seen half-written.

pub mod model;
pub(crate) mod rules;
pub mod trust;

pub use model::*;

use async_trait::async_trait;

use crate::store_error::StoreError;
use crate::webhook::outbox::Emit;

/// Why a directory call failed. The SCIM layer maps these to status codes
/// and `scimType`s in one place.
/// The tenant of everything not under a named SCIM client or IdP tenant.
pub const DEFAULT_TENANT: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The user or group named by id does not exist in this tenant (or is a
    /// tombstone, for writes).
    #[error("{what} not found")]
    NotFound { what: &'static str },
    /// A unique index already holds the value for another resource:
    /// `userName`, `externalId` or `displayName`.
    #[error("{what} is already taken in this tenant")]
    Conflict { what: &'static str },
    /// The caller's expected version (If-Match) is not the stored one;
    /// nothing was written.
    #[error("version mismatch: expected {expected}, current is {current}")]
    VersionMismatch { expected: u64, current: u64 },
    /// The request itself is unacceptable (missing userName, unknown member
    /// id, ...); nothing was written.
    #[error("invalid: {0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type DirectoryResult<T> = Result<T, DirectoryError>;

/// One page of a listing (`users_page`, `groups_page`): the records at the
/// positions asked for and how many records the whole listing has, read
/// together.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub total: u64,
    pub items: Vec<T>,
}

/// Persistence of users and groups, tenant-scoped. Implemented by each
/// `store` backend; the shared test suite (`tests/directory_store.rs`) pins
/// the contract below on both.
///
/// Lookups return `Ok(None)` (or an empty list) for a miss; writes on a
/// missing target return `NotFound`. Writes bump `meta.version` and
/// `meta.last_modified_ms`; a write that changes nothing (a repeated member
/// add) leaves them alone.
#[async_trait]
pub trait DirectoryStore: Send + Sync {
    /// Creates a user. The store assigns `id`, `tenant` and `meta`, and
    /// clears `deleted`. `Conflict` if the userName (case-insensitively) or
    /// externalId is held by a live user of the tenant; `Invalid` if the
    /// userName or an email is not an acceptable identifier
    /// (`rules::check_identifier`: NFKC, ASCII domain), here and on replace.
    async fn create_user(&self, tenant: &str, user: User) -> DirectoryResult<User> {
        self.create_user_emit(tenant, user, Emit::none()).await
    }

    /// `create_user`, appending `emit`'s events to the outbox in the same write.
    async fn create_user_emit(&self, tenant: &str, user: User, emit: Emit)
        -> DirectoryResult<User>;

    /// A user by id, tombstones included (they are kept for audit; callers
    /// serving SCIM treat `deleted` as absent).
    async fn get_user(&self, tenant: &str, id: &str) -> DirectoryResult<Option<User>>;

    /// The live user whose userName equals `user_name` ignoring case.
    /// A value `rules::check_identifier` refuses (not NFKC, non-ASCII domain)
    /// matches nothing, so a look-alike never folds onto another user.
    async fn user_by_user_name(
        &self,
        tenant: &str,
        user_name: &str,
    ) -> DirectoryResult<Option<User>>;

    /// The live user with this externalId (case-exact).
    async fn user_by_external_id(
        &self,
        tenant: &str,
        external_id: &str,
    ) -> DirectoryResult<Option<User>>;

    /// Live users having `email` among their emails, ignoring case; ordered
    /// by (created, id). Emails are not unique: two accounts may share one.
    /// Like `user_by_user_name`, a refused identifier matches nothing.
    async fn users_by_email(&self, tenant: &str, email: &str) -> DirectoryResult<Vec<User>>;

    /// Replaces the user with id `user.id` by `user` (every attribute; the
    /// store keeps id, tenant and `meta.created_ms`) and re-indexes what
    /// changed. With `expected_version`, refuses with `VersionMismatch`
    /// unless it is the stored version. `NotFound` for a tombstone.
    async fn replace_user(
        &self,
        tenant: &str,
        user: User,
        expected_version: Option<u64>,
    ) -> DirectoryResult<User> {
        self.replace_user_emit(tenant, user, expected_version, Emit::none())
            .await
    }

    /// `replace_user`, appending `emit`'s events to the outbox in the same write.
    async fn replace_user_emit(
        &self,
        tenant: &str,
        user: User,
        expected_version: Option<u64>,
        emit: Emit,
    ) -> DirectoryResult<User>;

    /// Removes the user, its index entries and its memberships in every
    /// group. Tombstones can be removed too.
    async fn delete_user(&self, tenant: &str, id: &str) -> DirectoryResult<()> {
        self.delete_user_emit(tenant, id, Emit::none()).await
    }

    /// `delete_user`, appending `emit`'s events to the outbox in the same write.
    async fn delete_user_emit(&self, tenant: &str, id: &str, emit: Emit) -> DirectoryResult<()>;

    /// Soft delete: `deleted = true`, `active = false`, out of every lookup
    /// index (its userName and externalId are free again) and every group;
    /// still readable by id. `NotFound` if already a tombstone.
    async fn tombstone_user(&self, tenant: &str, id: &str) -> DirectoryResult<User> {
        self.tombstone_user_emit(tenant, id, Emit::none()).await
    }

    /// `tombstone_user`, appending `emit`'s events to the outbox in the same write.
    async fn tombstone_user_emit(
        &self,
        tenant: &str,
        id: &str,
        emit: Emit,
    ) -> DirectoryResult<User>;

    /// Every live user of the tenant, ordered by (created, id) so paging is
    /// stable. A full read: filters other than the indexed ones run on this.
    async fn list_users(&self, tenant: &str) -> DirectoryResult<Vec<User>>;

    /// How many live users the tenant has (tombstones not counted), without
    /// reading them: a count kept with every create, tombstone and delete,
    /// in the same atomic write.
    async fn count_users(&self, tenant: &str) -> DirectoryResult<u64>;

    /// The live users at positions `offset .. offset + limit` of
    /// `list_users`'s order, (created, id), and the live-user count, both
    /// read from one snapshot. Reads an ordered index of live users, not the
    /// tenant: the cost is the skip to `offset` in that index (O(log n) on
    /// Redis, O(offset) key steps on redb) plus `limit` records. An
    /// `offset` past the end gives no items; `limit` 0 only the count.
    async fn users_page(
        &self,
        tenant: &str,
        offset: usize,
        limit: usize,
    ) -> DirectoryResult<Page<User>>;

    /// Creates a group with `group.members` (each id must be a live user or
    /// another group of the tenant). `Conflict` if the displayName (ignoring
    /// case) or externalId is taken.
    async fn create_group(&self, tenant: &str, group: Group) -> DirectoryResult<Group> {
        self.create_group_emit(tenant, group, Emit::none()).await
    }

    /// `create_group`, appending `emit`'s events to the outbox in the same write.
    async fn create_group_emit(
        &self,
        tenant: &str,
        group: Group,
        emit: Emit,
    ) -> DirectoryResult<Group>;

    async fn get_group(&self, tenant: &str, id: &str) -> DirectoryResult<Option<Group>>;

    /// The group whose displayName equals `display_name` ignoring case.
    async fn group_by_display_name(
        &self,
        tenant: &str,
        display_name: &str,
    ) -> DirectoryResult<Option<Group>>;

    async fn group_by_external_id(
        &self,
        tenant: &str,
        external_id: &str,
    ) -> DirectoryResult<Option<Group>>;

    /// Replaces the group with id `group.id`: displayName, externalId and the
    /// whole member list. A read-modify-write caller passes the version it
    /// read, so a concurrent membership change is not silently undone.
    async fn replace_group(
        &self,
        tenant: &str,
        group: Group,
        expected_version: Option<u64>,
    ) -> DirectoryResult<Group> {
        self.replace_group_emit(tenant, group, expected_version, Emit::none())
            .await
    }

    /// `replace_group`, appending `emit`'s events to the outbox in the same write.
    async fn replace_group_emit(
        &self,
        tenant: &str,
        group: Group,
        expected_version: Option<u64>,
        emit: Emit,
    ) -> DirectoryResult<Group>;

    /// Removes the group, its index entries, its members' reverse entries,
    /// and its own membership in other groups.
    async fn delete_group(&self, tenant: &str, id: &str) -> DirectoryResult<()> {
        self.delete_group_emit(tenant, id, Emit::none()).await
    }

    /// `delete_group`, appending `emit`'s events to the outbox in the same write.
    async fn delete_group_emit(&self, tenant: &str, id: &str, emit: Emit) -> DirectoryResult<()>;

    /// Adds members by id. Idempotent: an id already in the group is left
    /// alone (IdPs repeat adds). If any id is not a live user or another
    /// group of the tenant, `Invalid` and nothing is written. Membership
    /// changes to one group are serialised, so concurrent adds all land.
    async fn add_members(
        &self,
        tenant: &str,
        group_id: &str,
        member_ids: &[String],
    ) -> DirectoryResult<MembershipChange> {
        self.add_members_emit(tenant, group_id, member_ids, Emit::none())
            .await
    }

    /// `add_members`, appending `emit`'s events to the outbox in the same write.
    async fn add_members_emit(
        &self,
        tenant: &str,
        group_id: &str,
        member_ids: &[String],
        emit: Emit,
    ) -> DirectoryResult<MembershipChange>;

    /// Removes members by id; removing an absent member succeeds.
    async fn remove_members(
        &self,
        tenant: &str,
        group_id: &str,
        member_ids: &[String],
    ) -> DirectoryResult<MembershipChange> {
        self.remove_members_emit(tenant, group_id, member_ids, Emit::none())
            .await
    }

    /// `remove_members`, appending `emit`'s events to the outbox in the same write.
    async fn remove_members_emit(
        &self,
        tenant: &str,
        group_id: &str,
        member_ids: &[String],
        emit: Emit,
    ) -> DirectoryResult<MembershipChange>;

    /// Every group of the tenant with its members, ordered by (created, id).
    async fn list_groups(&self, tenant: &str) -> DirectoryResult<Vec<Group>>;

    /// How many groups the tenant has, kept like `count_users`.
    async fn count_groups(&self, tenant: &str) -> DirectoryResult<u64>;

    /// Groups (with members) at positions `offset .. offset + limit` of
    /// `list_groups`'s order, and the group count; as `users_page`.
    async fn groups_page(
        &self,
        tenant: &str,
        offset: usize,
        limit: usize,
    ) -> DirectoryResult<Page<Group>>;

    /// The groups `member_id` (a user, or a group) is a direct member of,
    /// from the reverse membership index, ordered by displayName. Empty for
    /// an unknown id. Nested groups are not expanded.
    async fn groups_of_user(&self, tenant: &str, member_id: &str)
        -> DirectoryResult<Vec<GroupRef>>;
}
