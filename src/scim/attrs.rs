//! `scim::attrs` holds the RFC 7643 attribute characteristics that the pure
//! SCIM cores need to interpret SCIM JSON: each attribute's type, whether it
//! is multi-valued, `caseExact`, `mutability` and `required`, for the User
//! core schema, the enterprise User extension and the Group core schema,
//! plus the common attributes (`id`, `externalId`, `meta`).
//!
//! `filter` asks it how to compare (case-exactly? as a dateTime?) and `patch`
//! asks it how to write (coerce `"False"` to a boolean, refuse to change a
//! read-only `id`, append to a multi-valued attribute). It knows nothing
//! about storage or HTTP; the tables are transcribed from RFC 7643 §3.1,
//! §4.1, §4.2, §4.3 and §8.7.1, so they are the same facts the `/Schemas`
//! endpoint publishes.

/// The URN of the User core schema (RFC 7643 §8.7.1).
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The URN of the Group core schema (RFC 7643 §8.7.1).
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The URN of the enterprise User extension (RFC 7643 §4.3).
pub const ENTERPRISE_USER_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// Which SCIM resource a JSON document represents: it decides which schema
/// (and so which caseExact and mutability rules) applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    User,
    Group,
}

impl ResourceKind {
    /// The core schema URN; attribute names qualified with it are the same
    /// as unqualified ones.
    pub fn core_schema(self) -> &'static str {
        match self {
            Self::User => USER_SCHEMA,
            Self::Group => GROUP_SCHEMA,
        }
    }

    /// The extension schemas this gateway knows for the resource; any other
    /// extension URN a client sends is tolerated and ignored.
    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            Self::User => &[ENTERPRISE_USER_SCHEMA],
            Self::Group => &[],
        }
    }

    /// The attributes of the core schema, common attributes included.
    pub fn core_attributes(self) -> &'static [AttrDef] {
        match self {
            Self::User => USER_ATTRS,
            Self::Group => GROUP_ATTRS,
        }
    }

    /// The attributes of one of `extensions()`, or `None` for a URN this
    /// gateway does not know (compared case-insensitively).
    pub fn extension_attributes(self, urn: &str) -> Option<(&'static str, &'static [AttrDef])> {
        match self {
            Self::User if urn.eq_ignore_ascii_case(ENTERPRISE_USER_SCHEMA) => {
                Some((ENTERPRISE_USER_SCHEMA, ENTERPRISE_ATTRS))
            }
            _ => None,
        }
    }

    /// True if `urn` names this resource's core schema (case-insensitively).
    pub fn is_core_schema(self, urn: &str) -> bool {
        urn.eq_ignore_ascii_case(self.core_schema())
    }
}

/// RFC 7643 §2.3 data types, as far as they change how a value is compared
/// or coerced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrType {
    String,
    Boolean,
    DateTime,
    Reference,
    Binary,
    Complex,
}

/// RFC 7643 §7 `mutability`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    /// May be set once (when a value is added), never changed.
    Immutable,
    /// Accepted, never returned (`password`).
    WriteOnly,
}

/// One attribute definition: the characteristics the cores act on.
#[derive(Debug, PartialEq, Eq)]
pub struct AttrDef {
    /// The canonical (schema) spelling; JSON written by `patch` uses it.
    pub name: &'static str,
    pub ty: AttrType,
    pub multi_valued: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub required: bool,
    pub sub_attributes: &'static [AttrDef],
}

impl AttrDef {
    /// A sub-attribute by name, compared case-insensitively (RFC 7644
    /// §3.10: attribute names are case-insensitive).
    pub fn sub(&self, name: &str) -> Option<&'static AttrDef> {
        find(self.sub_attributes, name)
    }

    pub fn is_complex(&self) -> bool {
        self.ty == AttrType::Complex
    }
}

/// An attribute by name in a table, case-insensitively.
pub fn find(table: &'static [AttrDef], name: &str) -> Option<&'static AttrDef> {
    table.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

/// Whether values of the attribute at `path` compare case-exactly
/// (RFC 7643 `caseExact`). `path` is `attr` or `attr.sub`, optionally
/// prefixed with a schema URN and `:` (`urn:...:enterprise:2.0:User:manager.value`).
/// Unknown attributes follow RFC 7643 §2.3.1's default for strings: not
/// case-exact.
pub fn case_exact(kind: ResourceKind, path: &str) -> bool {
    lookup_path(kind, path).is_some_and(|d| d.case_exact)
}

/// The definition of the attribute at `path` (same syntax as
/// [`case_exact`]), or `None` if this gateway does not know it.
pub fn lookup_path(kind: ResourceKind, path: &str) -> Option<&'static AttrDef> {
    let (table, rest) = match path.rsplit_once(':') {
        Some((urn, rest)) => {
            let table = if kind.is_core_schema(urn) {
                kind.core_attributes()
            } else {
                kind.extension_attributes(urn)?.1
            };
            (table, rest)
        }
        None => (kind.core_attributes(), path),
    };
    match rest.split_once('.') {
        Some((name, sub)) => find(table, name)?.sub(sub),
        None => find(table, rest),
    }
}

// ---------------------------------------------------------------------------
// The tables. Built from `const fn`s so each line reads like the RFC's
// schema listing.
// ---------------------------------------------------------------------------

const fn attr(name: &'static str, ty: AttrType) -> AttrDef {
    AttrDef {
        name,
        ty,
        multi_valued: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        required: false,
        sub_attributes: &[],
    }
}

const fn string(name: &'static str) -> AttrDef {
    attr(name, AttrType::String)
}

const fn boolean(name: &'static str) -> AttrDef {
    attr(name, AttrType::Boolean)
}

const fn reference(name: &'static str) -> AttrDef {
    attr(name, AttrType::Reference)
}

const fn complex(name: &'static str, subs: &'static [AttrDef]) -> AttrDef {
    AttrDef {
        sub_attributes: subs,
        ..attr(name, AttrType::Complex)
    }
}

const fn multi(name: &'static str, subs: &'static [AttrDef]) -> AttrDef {
    AttrDef {
        multi_valued: true,
        ..complex(name, subs)
    }
}

const fn exact(a: AttrDef) -> AttrDef {
    AttrDef {
        case_exact: true,
        ..a
    }
}

const fn read_only(a: AttrDef) -> AttrDef {
    AttrDef {
        mutability: Mutability::ReadOnly,
        ..a
    }
}

const fn immutable(a: AttrDef) -> AttrDef {
    AttrDef {
        mutability: Mutability::Immutable,
        ..a
    }
}

const fn required(a: AttrDef) -> AttrDef {
    AttrDef {
        required: true,
        ..a
    }
}

/// RFC 7643 §3.1 `meta`: server-maintained, compared case-exactly.
const META_SUBS: &[AttrDef] = &[
    read_only(exact(string("resourceType"))),
    read_only(exact(attr("created", AttrType::DateTime))),
    read_only(exact(attr("lastModified", AttrType::DateTime))),
    read_only(exact(reference("location"))),
    read_only(exact(string("version"))),
];

/// `emails`, `phoneNumbers`, `ims`, `entitlements`, `roles`.
const TYPED_VALUE_SUBS: &[AttrDef] = &[
    string("value"),
    string("display"),
    string("type"),
    boolean("primary"),
];

const PHOTO_SUBS: &[AttrDef] = &[
    reference("value"),
    string("display"),
    string("type"),
    boolean("primary"),
];

const CERT_SUBS: &[AttrDef] = &[
    attr("value", AttrType::Binary),
    string("display"),
    string("type"),
    boolean("primary"),
];

const NAME_SUBS: &[AttrDef] = &[
    string("formatted"),
    string("familyName"),
    string("givenName"),
    string("middleName"),
    string("honorificPrefix"),
    string("honorificSuffix"),
];

const ADDRESS_SUBS: &[AttrDef] = &[
    string("formatted"),
    string("streetAddress"),
    string("locality"),
    string("region"),
    string("postalCode"),
    string("country"),
    string("type"),
    boolean("primary"),
];

/// A user's groups: computed from memberships, so read-only (RFC 7643 §4.1.2).
const USER_GROUP_SUBS: &[AttrDef] = &[
    read_only(string("value")),
    read_only(reference("$ref")),
    read_only(string("display")),
    read_only(string("type")),
];

/// Group members. `value` is required here (a member without an id means
/// nothing); `display` is not in RFC 7643's Group schema listing but §4.2's
/// prose and every IdP send it, so it is kept rather than dropped.
const MEMBER_SUBS: &[AttrDef] = &[
    required(immutable(string("value"))),
    immutable(reference("$ref")),
    immutable(string("type")),
    string("display"),
];

const MANAGER_SUBS: &[AttrDef] = &[
    string("value"),
    reference("$ref"),
    read_only(string("displayName")),
];

const USER_ATTRS: &[AttrDef] = &[
    read_only(exact(string("id"))),
    exact(string("externalId")),
    read_only(complex("meta", META_SUBS)),
    required(string("userName")),
    complex("name", NAME_SUBS),
    string("displayName"),
    string("nickName"),
    reference("profileUrl"),
    string("title"),
    string("userType"),
    string("preferredLanguage"),
    string("locale"),
    string("timezone"),
    boolean("active"),
    AttrDef {
        mutability: Mutability::WriteOnly,
        ..string("password")
    },
    multi("emails", TYPED_VALUE_SUBS),
    multi("phoneNumbers", TYPED_VALUE_SUBS),
    multi("ims", TYPED_VALUE_SUBS),
    multi("photos", PHOTO_SUBS),
    multi("addresses", ADDRESS_SUBS),
    read_only(multi("groups", USER_GROUP_SUBS)),
    multi("entitlements", TYPED_VALUE_SUBS),
    multi("roles", TYPED_VALUE_SUBS),
    multi("x509Certificates", CERT_SUBS),
];

const ENTERPRISE_ATTRS: &[AttrDef] = &[
    string("employeeNumber"),
    string("costCenter"),
    string("organization"),
    string("division"),
    string("department"),
    complex("manager", MANAGER_SUBS),
];

const GROUP_ATTRS: &[AttrDef] = &[
    read_only(exact(string("id"))),
    exact(string("externalId")),
    read_only(complex("meta", META_SUBS)),
    required(string("displayName")),
    multi("members", MEMBER_SUBS),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7643_case_exactness_of_common_and_user_attributes() {
        use ResourceKind::*;
        assert!(case_exact(User, "id"));
        assert!(case_exact(User, "externalId"));
        assert!(case_exact(User, "meta.lastModified"));
        assert!(case_exact(Group, "meta.version"));
        assert!(!case_exact(User, "userName"));
        assert!(!case_exact(User, "emails.value"));
        assert!(!case_exact(User, "displayName"));
        assert!(!case_exact(Group, "displayName"));
        assert!(!case_exact(Group, "members.value"));
    }

    #[test]
    fn attribute_names_and_schema_urns_are_case_insensitive() {
        use ResourceKind::*;
        assert!(case_exact(User, "EXTERNALID"));
        assert!(case_exact(
            User,
            "urn:ietf:params:scim:schemas:core:2.0:user:externalId"
        ));
        let d = lookup_path(
            User,
            "URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:manager.VALUE",
        );
        assert_eq!(d.map(|d| d.name), Some("value"));
    }

    #[test]
    fn unknown_attributes_default_to_case_insensitive_strings() {
        assert!(!case_exact(ResourceKind::User, "favouriteColour"));
        assert!(!case_exact(
            ResourceKind::User,
            "urn:example:ext:1.0:User:x"
        ));
        // Group attributes are not User attributes.
        assert!(lookup_path(ResourceKind::User, "members").is_none());
        assert!(lookup_path(ResourceKind::Group, "userName").is_none());
    }
}
