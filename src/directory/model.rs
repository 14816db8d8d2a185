//! The directory's records: what the store keeps for a user and a group.
//!
//! Field names are snake_case Rust names and are the store's serialization;
//! the SCIM JSON shape (camelCase, schema URNs, `meta.location`) is produced
//! by a separate mapping layer, so the stored form can evolve without
//! breaking clients and vice versa. Every struct defaults missing fields
//! (`#[serde(default)]`), so records written by an older gateway still load.
//!
//! A user's groups are deliberately absent: they are computed from the
//! membership index (`DirectoryStore::groups_of_user`), never stored twice.

use serde::{Deserialize, Serialize};

/// How a user came into the directory; kept for audit and to decide who may
/// adopt whom (SCIM adopts a SAML JIT user with the same userName; who may
/// sign in whom is `directory::trust`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProvisionedVia {
    /// Pushed by a SCIM client (`scim_client` names which one).
    Scim,
    /// Created at first SAML login (`idp` names the IdP).
    SamlJit,
    /// Created by an operator through the admin API.
    #[default]
    Admin,
}

/// Bookkeeping the store maintains; callers never set it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Meta {
    /// Creation time, milliseconds since the Unix epoch. Listing order is
    /// (created, id), so it never changes after creation.
    pub created_ms: u64,
    /// Time of the last change, milliseconds since the Unix epoch.
    pub last_modified_ms: u64,
    /// Starts at 1 and grows by one on every change: the ETag and the
    /// precondition for optimistic concurrency.
    pub version: u64,
}

impl Meta {
    /// The weak ETag SCIM clients compare (`W/"<version>"`).
    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }

    /// `created` as RFC 3339 (UTC, milliseconds), as SCIM's `meta.created`.
    pub fn created_rfc3339(&self) -> String {
        rfc3339(self.created_ms)
    }

    /// `last_modified` as RFC 3339, as SCIM's `meta.lastModified`.
    pub fn last_modified_rfc3339(&self) -> String {
        rfc3339(self.last_modified_ms)
    }
}

pub use crate::clock::rfc3339;

/// A user's name parts (RFC 7643 §4.1.1 `name`). All parts are optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Name {
    pub formatted: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub middle_name: Option<String>,
    pub honorific_prefix: Option<String>,
    pub honorific_suffix: Option<String>,
}

impl Name {
    /// True when no part is set, so the SCIM layer can omit `name`.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// One value of a multi-valued attribute: emails, phone numbers, ims,
/// photos, roles, entitlements, x509Certificates. Every sub-attribute is
/// kept as the client sent it, so it comes back the same (`primary: false`
/// stays `false`; a `primary` never sent stays absent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MultiValue {
    pub value: String,
    /// The `type` label (`work`, `home`, ...).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Never written as `null`: a gateway of the previous release (a
    /// replica in a rolling upgrade, or after a rollback) reads `primary`
    /// as a plain bool and would fail to load the whole record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
    pub display: Option<String>,
}

impl MultiValue {
    /// True if the client marked this value primary.
    pub fn is_primary(&self) -> bool {
        self.primary == Some(true)
    }
}

/// A postal address (RFC 7643 §4.1.2 `addresses`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Address {
    pub formatted: Option<String>,
    pub street_address: Option<String>,
    pub locality: Option<String>,
    pub region: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Never `null`, as [`MultiValue::primary`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
}

/// The enterprise extension's `manager` (RFC 7643 §4.3).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Manager {
    /// The manager's user id, as the client sent it (not checked: the
    /// manager may not be provisioned into this app).
    pub value: Option<String>,
    /// `$ref`, the manager's resource URI, as the client sent it.
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub display_name: Option<String>,
}

/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Enterprise {
    pub employee_number: Option<String>,
    pub cost_center: Option<String>,
    pub organization: Option<String>,
    pub division: Option<String>,
    pub department: Option<String>,
    pub manager: Option<Manager>,
}

impl Enterprise {
    /// True when nothing is set, so the SCIM layer can omit the extension.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A user: the SCIM core schema, the enterprise extension, and the
/// gateway's own fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct User {
    /// Assigned by the store on creation; never reused.
    pub id: String,
    /// Set by the store from the tenant the call was made for.
    pub tenant: String,
    /// The provisioning client's own id for this user (case-exact, unique
    /// per tenant among live users).
    pub external_id: Option<String>,
    /// Unique per tenant, compared case-insensitively (RFC 7643 `caseExact: false`).
    pub user_name: String,
    pub name: Name,
    pub display_name: Option<String>,
    pub nick_name: Option<String>,
    pub profile_url: Option<String>,
    pub title: Option<String>,
    pub user_type: Option<String>,
    pub preferred_language: Option<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    /// Whether the user may sign in: the value the client sent, or, when it
    /// sent none, what the client's `auto_activate` says an absent value
    /// means.
    pub active: bool,
    /// The client never sent `active` (or removed it): SCIM shows no
    /// `active`, while `active` above holds what that absence means.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub active_unset: bool,
    /// Indexed, lowercased, for JIT and SCIM lookups by email.
    pub emails: Vec<MultiValue>,
    pub phone_numbers: Vec<MultiValue>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ims: Vec<MultiValue>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub photos: Vec<MultiValue>,
    pub addresses: Vec<Address>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entitlements: Vec<MultiValue>,
    /// SCIM `roles` as the client sent them (not the gateway role).
    pub roles: Vec<MultiValue>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub x509_certificates: Vec<MultiValue>,
    pub enterprise: Enterprise,

    /// The gateway role (e.g. `member`, `admin`) that feeds the JWT.
    pub role: String,
    pub provisioned_via: ProvisionedVia,
    /// The `[[scim.client]]` name that created or adopted this user. When
    /// set (and configured), the IdPs tied to that client own the user.
    pub scim_client: Option<String>,
    /// The `[[saml.idp]]` id that created this user by JIT, or claimed it as
    /// an unowned user at sign-in (`directory::trust`). Cleared when a SCIM
    /// client not tied to that IdP adopts the user.
    pub idp: Option<String>,
    /// The SAML NameID last seen for this user.
    pub name_id: Option<String>,
    /// A soft-deleted user: kept by id for audit, but gone from every lookup
    /// index and listing, so its userName can be taken again. Set only by
    /// `tombstone_user`.
    pub deleted: bool,
    pub meta: Meta,
}

impl User {
    /// A live, active user with just a userName: the starting point for
    /// JIT and tests; fill in the rest with struct update syntax.
    pub fn new(user_name: impl Into<String>) -> Self {
        Self {
            user_name: user_name.into(),
            active: true,
            ..Self::default()
        }
    }

    /// The label a group member entry shows for this user.
    pub fn label(&self) -> String {
        self.display_name
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| self.user_name.clone())
    }

    /// The primary email, else the first one.
    pub fn primary_email(&self) -> Option<&str> {
        self.emails
            .iter()
            .find(|e| e.is_primary())
            .or_else(|| self.emails.first())
            .map(|e| e.value.as_str())
    }
}

/// What a member entry points at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MemberKind {
    #[default]
    User,
    Group,
}

impl MemberKind {
    /// The SCIM `type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
        }
    }
}

/// One member of a group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Member {
    /// The member's id (a user id, or a group id for nested groups).
    pub value: String,
    /// Resolved by the store when the member is written; what a caller sends
    /// here is ignored.
    #[serde(rename = "type")]
    pub kind: MemberKind,
    /// The member's label when it was added (displayName, else userName).
    /// Informational: it is not rewritten when the member is renamed.
    pub display: Option<String>,
}

impl Member {
    pub fn user(u: &User) -> Self {
        Self {
            value: u.id.clone(),
            kind: MemberKind::User,
            display: Some(u.label()),
        }
    }

    pub fn group(g: &Group) -> Self {
        Self {
            value: g.id.clone(),
            kind: MemberKind::Group,
            display: Some(g.display_name.clone()),
        }
    }
}

/// A group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Group {
    /// Assigned by the store on creation.
    pub id: String,
    /// Set by the store from the tenant the call was made for.
    pub tenant: String,
    /// Unique per tenant, compared case-insensitively: IdPs find and adopt
    /// groups by name.
    pub display_name: String,
    /// The provisioning client's own id for this group (unique per tenant).
    pub external_id: Option<String>,
    /// Direct members, ordered by id. Stored apart from the group record
    /// (one entry per member), so a membership change never rewrites the
    /// whole list.
    pub members: Vec<Member>,
    pub meta: Meta,
}

impl Group {
    pub fn new(display_name: impl Into<String>) -> Self {
        Self {
            display_name: display_name.into(),
            ..Self::default()
        }
    }

    pub fn summary(&self) -> GroupRef {
        GroupRef {
            id: self.id.clone(),
            display_name: self.display_name.clone(),
        }
    }
}

/// What `groups_of_user` returns: enough for the JWT `groups` claim and the
/// SCIM `groups` attribute, without loading every member list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRef {
    pub id: String,
    pub display_name: String,
}

/// The result of `add_members` / `remove_members`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipChange {
    /// Ids whose membership actually changed (added, or removed), in the
    /// order asked; repeats and no-ops are left out. Feeds the
    /// `group.members_added` / `members_removed` webhook events.
    pub changed: Vec<String>,
    /// The group's version after the call (unchanged if `changed` is empty).
    pub version: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The previous release's shape of the two structs that changed type.
    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct OldValue {
        #[serde(default)]
        primary: bool,
    }
    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct OldUser {
        #[serde(default)]
        emails: Vec<OldValue>,
        #[serde(default)]
        addresses: Vec<OldValue>,
    }

    #[test]
    fn records_load_in_the_previous_release() {
        let u = User {
            emails: vec![MultiValue {
                value: "a@b".into(),
                ..MultiValue::default()
            }],
            addresses: vec![Address {
                country: Some("NL".into()),
                ..Address::default()
            }],
            ..User::new("a@b")
        };
        let stored = serde_json::to_string(&u).unwrap();
        serde_json::from_str::<OldUser>(&stored)
            .expect("an unset primary must not be stored as null");
        let back: User = serde_json::from_str(&stored).unwrap();
        assert_eq!(back, u);
    }
}
