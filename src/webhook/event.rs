//! Provisioning events as the app receives them: the type vocabulary, the
//! JSON body (`id` stable across retries, the receiver's idempotency key),
//! and the `events = ["user.*"]` filters of a webhook target.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Every event type the app can receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "user.created")]
    UserCreated,
    #[serde(rename = "user.updated")]
    UserUpdated,
    #[serde(rename = "user.deactivated")]
    UserDeactivated,
    #[serde(rename = "user.reactivated")]
    UserReactivated,
    #[serde(rename = "user.deleted")]
    UserDeleted,
    #[serde(rename = "group.created")]
    GroupCreated,
    #[serde(rename = "group.updated")]
    GroupUpdated,
    #[serde(rename = "group.deleted")]
    GroupDeleted,
    #[serde(rename = "group.members_added")]
    GroupMembersAdded,
    #[serde(rename = "group.members_removed")]
    GroupMembersRemoved,
    #[serde(rename = "session.revoked")]
    SessionRevoked,
}

impl EventType {
    pub const ALL: [EventType; 11] = [
        Self::UserCreated,
        Self::UserUpdated,
        Self::UserDeactivated,
        Self::UserReactivated,
        Self::UserDeleted,
        Self::GroupCreated,
        Self::GroupUpdated,
        Self::GroupDeleted,
        Self::GroupMembersAdded,
        Self::GroupMembersRemoved,
        Self::SessionRevoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserCreated => "user.created",
            Self::UserUpdated => "user.updated",
            Self::UserDeactivated => "user.deactivated",
            Self::UserReactivated => "user.reactivated",
            Self::UserDeleted => "user.deleted",
            Self::GroupCreated => "group.created",
            Self::GroupUpdated => "group.updated",
            Self::GroupDeleted => "group.deleted",
            Self::GroupMembersAdded => "group.members_added",
            Self::GroupMembersRemoved => "group.members_removed",
            Self::SessionRevoked => "session.revoked",
        }
    }
}

/// Where a change came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Scim,
    SamlJit,
    Admin,
}

/// One event, exactly as it is signed and sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `evt_` + 128 random bits; the same on every retry.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// RFC 3339 time of the change.
    pub timestamp: String,
    pub tenant: String,
    pub source: Source,
    /// The SCIM client or IdP that made the change.
    pub actor: String,
    /// The full SCIM representation after the change (for `user.updated`
    /// also `changed_attributes`; for membership events the member ids).
    pub data: Value,
}

impl Event {
    pub fn new(kind: EventType, tenant: &str, source: Source, actor: &str, data: Value) -> Self {
        let id = hex::encode(crate::secret::random_bytes::<16>());
        Self {
            id: format!("evt_{id}"),
            kind,
            timestamp: crate::clock::rfc3339(crate::clock::now_ms()),
            tenant: tenant.to_string(),
            source,
            actor: actor.to_string(),
            data,
        }
    }

    /// The exact bytes that are signed and sent.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A target's `events = [...]` filter: exact types, `"user.*"` prefixes, `"*"`.
#[derive(Clone, Debug)]
pub struct EventFilter(Vec<String>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown event pattern {0:?}: use a type such as \"user.created\", a family such as \"user.*\", or \"*\"")]
pub struct BadPattern(pub String);

impl EventFilter {
    /// Checks every pattern names at least one event type.
    pub fn parse(patterns: &[String]) -> Result<Self, BadPattern> {
        for p in patterns {
            let f = Self(vec![p.clone()]);
            if !EventType::ALL.iter().any(|t| f.matches(*t)) {
                return Err(BadPattern(p.clone()));
            }
        }
        Ok(Self(patterns.to_vec()))
    }

    pub fn matches(&self, t: EventType) -> bool {
        let name = t.as_str();
        self.0.iter().any(|p| match p.strip_suffix(".*") {
            _ if p == "*" => true,
            Some(family) => name.split_once('.').is_some_and(|(f, _)| f == family),
            None => p == name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_carries_the_documented_fields() {
        let e = Event::new(
            EventType::UserCreated,
            "acme",
            Source::Scim,
            "jumpcloud",
            serde_json::json!({"id": "u1"}),
        );
        let v: Value = serde_json::from_slice(&e.body()).unwrap();
        for k in [
            "id",
            "type",
            "timestamp",
            "tenant",
            "source",
            "actor",
            "data",
        ] {
            assert!(v.get(k).is_some(), "{k} missing in {v}");
        }
        assert_eq!(v["type"], "user.created");
        assert_eq!(v["source"], "scim");
        assert!(v["id"].as_str().unwrap().starts_with("evt_"));
        assert_ne!(
            e.id,
            Event::new(EventType::UserCreated, "a", Source::Scim, "x", Value::Null).id
        );
    }

    #[test]
    fn filters_match_exact_types_families_and_everything() {
        let f = EventFilter::parse(&["user.*".into(), "group.deleted".into()]).unwrap();
        assert!(f.matches(EventType::UserDeactivated));
        assert!(f.matches(EventType::GroupDeleted));
        assert!(!f.matches(EventType::GroupCreated));
        assert!(!f.matches(EventType::SessionRevoked));
        assert!(EventFilter::parse(&["*".into()])
            .unwrap()
            .matches(EventType::SessionRevoked));
        assert!(EventFilter::parse(&["users.*".into()]).is_err());
        assert!(EventFilter::parse(&["user.create".into()]).is_err());
    }
}
