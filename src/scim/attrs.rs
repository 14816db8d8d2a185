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

/// RFC 7643 §7 `returned`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Returned {
    Always,
    Default,
    Never,
}

/// RFC 7643 §7 `uniqueness`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uniqueness {
    None,
    /// Unique within the tenant (the server's scope of visibility).
    Server,
}

/// One attribute definition: the characteristics the cores act on, and
/// the ones `/Schemas` publishes (rendered from these same tables by
/// `scim::schemas`, so what is published is what the server does).
#[derive(Debug, PartialEq, Eq)]
pub struct AttrDef {
    /// The canonical (schema) spelling; JSON written by `patch` uses it.
    pub name: &'static str,
    pub ty: AttrType,
    pub multi_valued: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub required: bool,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    /// `referenceTypes` of a reference attribute.
    pub reference_types: &'static [&'static str],
    /// `canonicalValues` (suggested, not a closed set).
    pub canonical_values: &'static [&'static str],
    pub description: &'static str,
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
        returned: Returned::Default,
        uniqueness: Uniqueness::None,
        reference_types: &[],
        canonical_values: &[],
        description: "",
        sub_attributes: &[],
    }
}

const fn about(description: &'static str, a: AttrDef) -> AttrDef {
    AttrDef { description, ..a }
}

const fn unique(a: AttrDef) -> AttrDef {
    AttrDef {
        uniqueness: Uniqueness::Server,
        ..a
    }
}

const fn refs(reference_types: &'static [&'static str], a: AttrDef) -> AttrDef {
    AttrDef {
        reference_types,
        ..a
    }
}

const fn canonical(canonical_values: &'static [&'static str], a: AttrDef) -> AttrDef {
    AttrDef {
        canonical_values,
        ..a
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
    read_only(exact(refs(&["uri"], reference("location")))),
    read_only(exact(string("version"))),
];

const EMAIL_SUBS: &[AttrDef] = &[
    about("The email address.", string("value")),
    about("A label for display.", string("display")),
    canonical(&["work", "home", "other"], string("type")),
    about("The primary address (at most one).", boolean("primary")),
];

const PHONE_SUBS: &[AttrDef] = &[
    about("The phone number.", string("value")),
    about("A label for display.", string("display")),
    canonical(
        &["work", "home", "mobile", "fax", "pager", "other"],
        string("type"),
    ),
    about("The primary number (at most one).", boolean("primary")),
];

const IM_SUBS: &[AttrDef] = &[
    about("The instant messaging address.", string("value")),
    about("A label for display.", string("display")),
    canonical(
        &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"],
        string("type"),
    ),
    about("The primary address (at most one).", boolean("primary")),
];

/// `entitlements`, `roles`: no canonical types.
const TYPED_VALUE_SUBS: &[AttrDef] = &[
    about("The value.", string("value")),
    about("A label for display.", string("display")),
    about("A label for the value's function.", string("type")),
    about("The primary value (at most one).", boolean("primary")),
];

const PHOTO_SUBS: &[AttrDef] = &[
    about(
        "The URL of the image.",
        refs(&["external"], reference("value")),
    ),
    about("A label for display.", string("display")),
    canonical(&["photo", "thumbnail"], string("type")),
    about("The primary photo (at most one).", boolean("primary")),
];

const CERT_SUBS: &[AttrDef] = &[
    about(
        "A DER certificate, base64.",
        attr("value", AttrType::Binary),
    ),
    about("A label for display.", string("display")),
    about("A label for the certificate's function.", string("type")),
    about("The primary certificate (at most one).", boolean("primary")),
];

const NAME_SUBS: &[AttrDef] = &[
    about("The full name, for display.", string("formatted")),
    about("The family name.", string("familyName")),
    about("The given name.", string("givenName")),
    about("The middle name(s).", string("middleName")),
    about("Honorific prefix, such as Ms.", string("honorificPrefix")),
    about("Honorific suffix, such as III.", string("honorificSuffix")),
];

const ADDRESS_SUBS: &[AttrDef] = &[
    about("The full address, for display.", string("formatted")),
    about("The street address.", string("streetAddress")),
    about("The city or locality.", string("locality")),
    about("The state or region.", string("region")),
    about("The zip or postal code.", string("postalCode")),
    about("The country.", string("country")),
    canonical(&["work", "home", "other"], string("type")),
    about("The primary address (at most one).", boolean("primary")),
];

/// A user's groups: computed from memberships, so read-only (RFC 7643 §4.1.2).
const USER_GROUP_SUBS: &[AttrDef] = &[
    about("The group's id.", read_only(string("value"))),
    about(
        "The group's URI.",
        read_only(refs(&["Group"], reference("$ref"))),
    ),
    about("The group's displayName.", read_only(string("display"))),
];

/// Group members. `value` is required (a member without an id means
/// nothing). `display` is the member's own label, set by the server when
/// the member is added, so it is read-only: what a client sends is ignored.
const MEMBER_SUBS: &[AttrDef] = &[
    about(
        "The id of a User or Group of this tenant.",
        required(immutable(string("value"))),
    ),
    about(
        "The member's URI.",
        immutable(refs(&["User", "Group"], reference("$ref"))),
    ),
    about(
        "User or Group (resolved by the server from the id).",
        immutable(canonical(&["User", "Group"], string("type"))),
    ),
    about(
        "The member's displayName (else userName) when it was added.",
        read_only(string("display")),
    ),
];

/// The manager: kept as the client sent it (RFC 7643 §4.3 makes
/// `displayName` read-only, but this server stores no user it could take
/// it from, so it keeps the client's).
const MANAGER_SUBS: &[AttrDef] = &[
    about("The manager's id.", string("value")),
    about("The manager's URI.", refs(&["User"], reference("$ref"))),
    about("The manager's displayName.", string("displayName")),
];

const USER_ATTRS: &[AttrDef] = &[
    AttrDef {
        returned: Returned::Always,
        ..unique(read_only(exact(string("id"))))
    },
    unique(exact(string("externalId"))),
    read_only(complex("meta", META_SUBS)),
    about(
        "Unique per tenant, compared case-insensitively.",
        unique(required(string("userName"))),
    ),
    about("The user's name parts.", complex("name", NAME_SUBS)),
    about("The name to display.", string("displayName")),
    about("The casual name.", string("nickName")),
    about(
        "The user's online profile.",
        refs(&["external"], reference("profileUrl")),
    ),
    about("The user's title.", string("title")),
    about("The relationship to the organization.", string("userType")),
    about(
        "Preferred language (RFC 7231).",
        string("preferredLanguage"),
    ),
    about("Default location (RFC 5646).", string("locale")),
    about("Time zone (IANA).", string("timezone")),
    about(
        "Whether the user may sign in. Absent means what the client's auto_activate says.",
        boolean("active"),
    ),
    AttrDef {
        mutability: Mutability::WriteOnly,
        returned: Returned::Never,
        ..string("password")
    },
    about("Email addresses.", multi("emails", EMAIL_SUBS)),
    about("Phone numbers.", multi("phoneNumbers", PHONE_SUBS)),
    about("Instant messaging addresses.", multi("ims", IM_SUBS)),
    about("Photo URLs.", multi("photos", PHOTO_SUBS)),
    about("Postal addresses.", multi("addresses", ADDRESS_SUBS)),
    about(
        "The groups the user is a direct member of (computed).",
        read_only(multi("groups", USER_GROUP_SUBS)),
    ),
    about("Entitlements.", multi("entitlements", TYPED_VALUE_SUBS)),
    about(
        "Roles as the client sent them (not the gateway role).",
        multi("roles", TYPED_VALUE_SUBS),
    ),
    about("X.509 certificates.", multi("x509Certificates", CERT_SUBS)),
];

const ENTERPRISE_ATTRS: &[AttrDef] = &[
    about("The employee number.", string("employeeNumber")),
    about("The cost center.", string("costCenter")),
    about("The organization.", string("organization")),
    about("The division.", string("division")),
    about("The department.", string("department")),
    about("The user's manager.", complex("manager", MANAGER_SUBS)),
];

const GROUP_ATTRS: &[AttrDef] = &[
    AttrDef {
        returned: Returned::Always,
        ..unique(read_only(exact(string("id"))))
    },
    unique(exact(string("externalId"))),
    read_only(complex("meta", META_SUBS)),
    about(
        "Unique per tenant, compared case-insensitively.",
        unique(required(string("displayName"))),
    ),
    about("Direct members.", multi("members", MEMBER_SUBS)),
];

/// Attributes every resource has (RFC 7643 §3.1): published in no schema.
pub const COMMON_ATTRIBUTES: &[&str] = &["id", "externalId", "meta"];

/// The enterprise extension's attributes.
pub fn enterprise_attributes() -> &'static [AttrDef] {
    ENTERPRISE_ATTRS
}

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
