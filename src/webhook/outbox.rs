//! The outbox: provisioning events written in the same atomic write as the
//! directory change they describe, then delivered per target in lanes.
//!
//! A directory write carries an [`Emit`]: the events the caller planned and
//! the targets each one is for. The store fills in what only it knows (the
//! record after the change, the members that really changed, the version)
//! and appends one entry per (target, event) to that target's *lane* for the
//! resource, inside the same redb transaction or Redis Lua script. A change
//! is never committed without its events, nor an event without its change.
//!
//! Lanes give the ordering guarantee: one lane per (target, user or group);
//! only the head of a lane can be claimed, so a later event about a resource
//! waits for the earlier one, and a failing resource blocks only its own
//! lane. A head is finished by a delivery, a retry (put back with a due
//! time), or a dead letter (the lane moves on; `replay` re-queues it).
//!
//! [`OutboxStore`] is implemented by both store backends; the delivery worker
//! (`webhook::deliver`) only talks to this trait.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::event::{Event, EventType, Source};
use crate::directory::{Group, User};
use crate::store_error::StoreResult;

/// An event as the outbox keeps it: everything needed to render the body,
/// and the record snapshot taken inside the write.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxEvent {
    /// `evt_` + 128 random bits: the `webhook-id` on every attempt.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Time of the change, ms since the epoch.
    pub at_ms: u64,
    pub tenant: String,
    pub source: Source,
    pub actor: String,
    /// `user.updated` & co: the SCIM attribute names that changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// Membership events: the member ids added or removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// The user after the change (user events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    /// The group after the change (group events; without members for
    /// membership events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Group>,
    /// `session.revoked`: the data as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Value>,
}

impl OutboxEvent {
    /// A new event with a fresh id, timed now.
    pub fn new(kind: EventType, tenant: &str, source: Source, actor: &str) -> Self {
        let proto = Event::new(kind, tenant, source, actor, Value::Null);
        Self {
            id: proto.id,
            kind,
            at_ms: crate::clock::now_ms(),
            tenant: tenant.to_string(),
            source,
            actor: actor.to_string(),
            changed: Vec::new(),
            members: Vec::new(),
            user: None,
            group: None,
            extra: None,
        }
    }

    pub fn with_user(mut self, u: &User) -> Self {
        self.user = Some(u.clone());
        self
    }

    pub fn with_group(mut self, g: &Group) -> Self {
        self.group = Some(g.clone());
        self
    }

    /// The id of the user or group the event is about.
    pub fn resource_id(&self) -> &str {
        if let Some(g) = &self.group {
            return &g.id;
        }
        if let Some(u) = &self.user {
            return &u.id;
        }
        self.extra
            .as_ref()
            .and_then(|e| e.get("user_id"))
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The lane this event waits in: one per user or group of a tenant.
    /// Session events share their user's lane, so `session.revoked` follows
    /// the `user.deactivated` that caused it.
    pub fn lane(&self) -> String {
        let family = if self.kind.as_str().starts_with("group.") {
            "group"
        } else {
            "user"
        };
        format!("{family}/{}/{}", self.resource_id(), self.tenant)
    }

    /// True when the event has nothing to say (a membership event whose
    /// members were all already there); the store then writes nothing.
    pub fn is_empty(&self) -> bool {
        matches!(
            self.kind,
            EventType::GroupMembersAdded | EventType::GroupMembersRemoved
        ) && self.members.is_empty()
    }

    /// The body the receiver gets. `scim_base` is the SCIM base URL, for
    /// `meta.location`. Users are rendered without `groups` (memberships
    /// travel as `group.members_*` events).
    pub fn render(&self, scim_base: &str) -> Event {
        let mut data = if let Some(u) = &self.user {
            crate::scim::resource::user_to_json(u, &[], scim_base)
        } else if let Some(g) = &self.group {
            let mut v = crate::scim::resource::group_to_json(g, scim_base);
            if self.kind.as_str().starts_with("group.members_") {
                if let Some(o) = v.as_object_mut() {
                    o.remove("members");
                }
            }
            v
        } else {
            self.extra.clone().unwrap_or(Value::Null)
        };
        if let Some(o) = data.as_object_mut() {
            if !self.changed.is_empty() {
                o.insert("changedAttributes".into(), json!(self.changed));
            }
            if !self.members.is_empty() {
                let key = if self.kind == EventType::GroupMembersAdded {
                    "membersAdded"
                } else {
                    "membersRemoved"
                };
                let list: Vec<Value> = self.members.iter().map(|m| json!({"value": m})).collect();
                o.insert(key.into(), Value::Array(list));
            }
        }
        Event {
            id: self.id.clone(),
            kind: self.kind,
            timestamp: crate::clock::rfc3339(self.at_ms),
            tenant: self.tenant.clone(),
            source: self.source,
            actor: self.actor.clone(),
            data,
        }
    }
}

/// One planned event and the targets it is for.
#[derive(Clone, Debug)]
pub struct Planned {
    pub event: OutboxEvent,
    pub targets: Vec<String>,
}

/// What a directory write appends to the outbox. Empty for writes nobody
/// subscribed to (and for every write when no webhook is configured).
#[derive(Clone, Debug, Default)]
pub struct Emit {
    pub events: Vec<Planned>,
}

impl Emit {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn one(event: OutboxEvent, targets: Vec<String>) -> Self {
        let mut e = Self::default();
        e.push(event, targets);
        e
    }

    /// Adds an event if any target wants it.
    pub fn push(&mut self, event: OutboxEvent, targets: Vec<String>) {
        if !targets.is_empty() {
            self.events.push(Planned { event, targets });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Store side: the user after the write, for every user event.
    pub fn fill_user(&mut self, u: &User) {
        for p in &mut self.events {
            if !p.event.kind.as_str().starts_with("group.") {
                p.event.user = Some(u.clone());
            }
        }
    }

    /// Store side: the group after the write (members included).
    pub fn fill_group(&mut self, g: &Group) {
        for p in &mut self.events {
            if p.event.kind.as_str().starts_with("group.") {
                p.event.group = Some(g.clone());
            }
        }
    }

    /// Store side: the members a membership write really changed, and the
    /// group (without members) after it. Events left empty are dropped.
    pub fn fill_members(&mut self, g: &Group, changed: &[String]) {
        let bare = Group {
            members: Vec::new(),
            ..g.clone()
        };
        for p in &mut self.events {
            if matches!(
                p.event.kind,
                EventType::GroupMembersAdded | EventType::GroupMembersRemoved
            ) {
                p.event.members = changed.to_vec();
                p.event.group = Some(bare.clone());
            }
        }
        self.events.retain(|p| !p.event.is_empty());
    }
}

/// One lane head claimed for delivery.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub target: String,
    pub event: OutboxEvent,
    /// The lane it heads, as the store recorded it.
    pub lane: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When the first of those failed (`max_age` counts from there, so an
    /// event that waited behind others, or was replayed, gets its full
    /// retry window).
    pub failing_since_ms: Option<u64>,
    /// Backend handle (the Redis stream entry id; empty for redb).
    pub handle: String,
}

/// How a delivery attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// 2xx: the lane moves on.
    Delivered,
    /// Failed; try again at `due_ms` (the lane waits).
    Retry { due_ms: u64, error: String },
    /// Failed past `max_age`: kept as a dead letter, the lane moves on.
    Dead { error: String },
}

/// An event that could not be delivered before `max_age`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub target: String,
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub tenant: String,
    /// When the event happened / when it was given up, ms since the epoch.
    pub at_ms: u64,
    pub dead_ms: u64,
    pub attempts: u32,
    pub error: String,
}

impl DeadLetter {
    /// The operator's selection for replay/discard: the named event ids
    /// (all when none), happening at or after `since_ms`, before `before_ms`.
    pub fn selected(&self, ids: &[String], since_ms: Option<u64>, before_ms: Option<u64>) -> bool {
        (ids.is_empty() || ids.contains(&self.event_id))
            && since_ms.is_none_or(|s| self.at_ms >= s)
            && before_ms.is_none_or(|b| self.at_ms < b)
    }
}

/// Queue figures of one target, for `portcullis webhooks status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetStatus {
    pub target: String,
    /// Events waiting in lanes (heads included).
    pub pending: u64,
    /// Age of the oldest waiting event, ms (0 when none).
    pub oldest_pending_ms: u64,
    /// Events currently waiting for a retry.
    pub retrying: u64,
    pub dead_letters: u64,
    /// Counters since the store was created.
    pub delivered: u64,
    pub failed_attempts: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

/// Where the backends keep lanes, retries and dead letters.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Appends events that come with no directory change (backfill,
    /// `session.revoked`).
    async fn append_events(&self, emit: Emit) -> StoreResult<()>;

    /// Up to `max` lane heads of `target` that are due, claimed for
    /// `consumer` (another consumer does not get them unless this one stays
    /// silent for `reclaim_after`). Waits up to `wait` when none is ready.
    async fn claim(
        &self,
        target: &str,
        consumer: &str,
        max: usize,
        wait: Duration,
        reclaim_after: Duration,
    ) -> StoreResult<Vec<Delivery>>;

    /// Records the outcome of an attempt on a claimed head. Idempotent: a
    /// head already finished (by a consumer that re-claimed it) is left alone.
    async fn finish(&self, delivery: &Delivery, outcome: &Outcome) -> StoreResult<()>;

    /// Events waiting in one lane of a target (a sync delivery must not
    /// overtake them).
    async fn lane_len(&self, target: &str, lane: &str) -> StoreResult<u64>;

    /// Queue figures for each named target.
    async fn status(&self, targets: &[String]) -> StoreResult<Vec<TargetStatus>>;

    /// Dead letters of the named targets, oldest event first.
    async fn dead_letters(&self, targets: &[String]) -> StoreResult<Vec<DeadLetter>>;

    /// Puts dead letters of `target` back at the end of their lanes. With
    /// `ids`, only those events; with `since_ms`, only events that happened
    /// at or after it. Returns how many were re-queued.
    async fn replay(
        &self,
        target: &str,
        ids: &[String],
        since_ms: Option<u64>,
    ) -> StoreResult<usize>;

    /// Drops dead letters of `target` for good (the app will never get
    /// them): with `ids`, only those; with `before_ms`, only events that
    /// happened before it. Returns how many were dropped.
    async fn discard(
        &self,
        target: &str,
        ids: &[String],
        before_ms: Option<u64>,
    ) -> StoreResult<usize>;
}

/// Milliseconds to wait before attempt `attempts + 1`: exponential from
/// `initial`, capped at `max`, with full jitter over the upper half so
/// retries of many lanes do not arrive together.
pub fn backoff(attempts: u32, initial: Duration, max: Duration) -> Duration {
    let exp = initial.saturating_mul(1u32 << attempts.min(20));
    let cap = exp.min(max).max(Duration::from_millis(1));
    let half = cap / 2;
    let jitter = rand::random_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> User {
        User {
            id: id.into(),
            tenant: "acme".into(),
            ..User::new("a@acme.test")
        }
    }

    #[test]
    fn lanes_are_per_resource_and_session_events_follow_their_user() {
        let a = OutboxEvent::new(EventType::UserUpdated, "acme", Source::Scim, "jc")
            .with_user(&user("u1"));
        let mut s = OutboxEvent::new(EventType::SessionRevoked, "acme", Source::Admin, "op");
        s.extra = Some(json!({"user_id": "u1"}));
        assert_eq!(a.lane(), s.lane());
        let b = OutboxEvent::new(EventType::UserUpdated, "acme", Source::Scim, "jc")
            .with_user(&user("u2"));
        assert_ne!(a.lane(), b.lane());
        let other_tenant = OutboxEvent::new(EventType::UserUpdated, "beta", Source::Scim, "jc")
            .with_user(&user("u1"));
        assert_ne!(a.lane(), other_tenant.lane());
    }

    #[test]
    fn membership_events_without_changes_are_dropped() {
        let mut e = Emit::one(
            OutboxEvent::new(EventType::GroupMembersAdded, "acme", Source::Scim, "jc"),
            vec!["app".into()],
        );
        e.fill_members(&Group::new("Eng"), &[]);
        assert!(e.is_empty());
        let mut e = Emit::one(
            OutboxEvent::new(EventType::GroupMembersAdded, "acme", Source::Scim, "jc"),
            vec!["app".into()],
        );
        e.fill_members(&Group::new("Eng"), &["u1".into()]);
        let body = e.events[0].event.render("https://gw/scim/v2");
        assert_eq!(body.data["membersAdded"], json!([{"value": "u1"}]));
        assert!(body.data.get("members").is_none());
        assert!(Emit::one(
            OutboxEvent::new(EventType::UserCreated, "acme", Source::Scim, "jc"),
            vec![]
        )
        .is_empty());
    }

    #[test]
    fn rendered_users_carry_scim_json_and_changed_attributes() {
        let mut e = OutboxEvent::new(EventType::UserUpdated, "acme", Source::Scim, "jc")
            .with_user(&user("u1"));
        e.changed = vec!["displayName".into()];
        let body = e.render("https://gw/scim/v2");
        assert_eq!(body.id, e.id);
        assert_eq!(body.data["userName"], "a@acme.test");
        assert_eq!(body.data["meta"]["location"], "https://gw/scim/v2/Users/u1");
        assert_eq!(body.data["changedAttributes"], json!(["displayName"]));
        let again = e.render("https://gw/scim/v2");
        assert_eq!(
            body.body(),
            again.body(),
            "the body is the same on every attempt"
        );
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let i = Duration::from_millis(100);
        let m = Duration::from_secs(5);
        for a in 0..30 {
            let d = backoff(a, i, m);
            assert!(d <= m, "attempt {a}: {d:?}");
            let floor = (i.saturating_mul(1 << a.min(20))).min(m) / 2;
            assert!(d >= floor, "attempt {a}: {d:?} < {floor:?}");
        }
    }
}
