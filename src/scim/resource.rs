//! The SCIM JSON representation of directory users and groups (RFC 7643):
//! typed model → JSON for responses (with `meta`, computed `groups`, the
//! enterprise extension), JSON → typed model for POST/PUT (tolerant of
//! unknown attributes and of clients' quirks such as Entra's string
//! booleans), and `attributes` / `excludedAttributes` projection. It knows
//! nothing about HTTP or storage.

use serde_json::{json, Map, Value};

use super::attrs::ResourceKind;
use super::ScimError;
use crate::directory::model::{
    Address, Enterprise, Group, GroupRef, Manager, MultiValue, Name, User,
};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// Longest plain string attribute accepted, in bytes (`name.givenName`,
/// `title`, `locale`, ...): far above what an IdP sends; it keeps a record
/// and every webhook carrying it bounded.
pub const MAX_STRING_LEN: usize = crate::directory::rules::MAX_VALUE_LEN;
/// Longest reference (`profileUrl`, `photos.value`, `$ref`), in bytes.
pub const MAX_REFERENCE_LEN: usize = 2048;
/// Longest binary value (`x509Certificates.value`, base64 DER), in bytes.
pub const MAX_BINARY_LEN: usize = 16 * 1024;
/// Most values of one multi-valued user attribute (emails, roles, ...).
pub const MAX_VALUES: usize = 100;

fn put(obj: &mut Map<String, Value>, key: &str, v: &Option<String>) {
    if let Some(s) = v {
        obj.insert(key.to_string(), json!(s));
    }
}

fn put_bool(obj: &mut Map<String, Value>, key: &str, v: Option<bool>) {
    if let Some(b) = v {
        obj.insert(key.to_string(), json!(b));
    }
}

fn multi_to_json(values: &[MultiValue]) -> Value {
    Value::Array(
        values
            .iter()
            .map(|m| {
                let mut o = Map::new();
                o.insert("value".into(), json!(m.value));
                put(&mut o, "display", &m.display);
                put(&mut o, "type", &m.kind);
                put_bool(&mut o, "primary", m.primary);
                Value::Object(o)
            })
            .collect(),
    )
}

fn meta_json(kind: &str, location: String, meta: &crate::directory::model::Meta) -> Value {
    json!({
        "resourceType": kind,
        "created": meta.created_rfc3339(),
        "lastModified": meta.last_modified_rfc3339(),
        "location": location,
        "version": meta.etag(),
    })
}

/// A user as SCIM JSON. `base` is the SCIM base URL (for `meta.location`
/// and group `$ref`s); `groups` are the user's groups (computed). Every
/// attribute the client set comes back as it was set; nothing it did not
/// set appears (a `primary` never sent, an `active` never sent).
pub fn user_to_json(u: &User, groups: &[GroupRef], base: &str) -> Value {
    let mut o = Map::new();
    let mut schemas = vec![json!(USER_SCHEMA)];
    if !u.enterprise.is_empty() {
        schemas.push(json!(ENTERPRISE_SCHEMA));
    }
    o.insert("schemas".into(), Value::Array(schemas));
    o.insert("id".into(), json!(u.id));
    put(&mut o, "externalId", &u.external_id);
    o.insert("userName".into(), json!(u.user_name));
    if !u.name.is_empty() {
        let mut n = Map::new();
        put(&mut n, "formatted", &u.name.formatted);
        put(&mut n, "familyName", &u.name.family_name);
        put(&mut n, "givenName", &u.name.given_name);
        put(&mut n, "middleName", &u.name.middle_name);
        put(&mut n, "honorificPrefix", &u.name.honorific_prefix);
        put(&mut n, "honorificSuffix", &u.name.honorific_suffix);
        o.insert("name".into(), Value::Object(n));
    }
    put(&mut o, "displayName", &u.display_name);
    put(&mut o, "nickName", &u.nick_name);
    put(&mut o, "profileUrl", &u.profile_url);
    put(&mut o, "title", &u.title);
    put(&mut o, "userType", &u.user_type);
    put(&mut o, "preferredLanguage", &u.preferred_language);
    put(&mut o, "locale", &u.locale);
    put(&mut o, "timezone", &u.timezone);
    if !u.active_unset {
        o.insert("active".into(), json!(u.active));
    }
    for (key, values) in [
        ("emails", &u.emails),
        ("phoneNumbers", &u.phone_numbers),
        ("ims", &u.ims),
        ("photos", &u.photos),
    ] {
        if !values.is_empty() {
            o.insert(key.into(), multi_to_json(values));
        }
    }
    if !u.addresses.is_empty() {
        let list: Vec<Value> = u
            .addresses
            .iter()
            .map(|a| {
                let mut m = Map::new();
                put(&mut m, "formatted", &a.formatted);
                put(&mut m, "streetAddress", &a.street_address);
                put(&mut m, "locality", &a.locality);
                put(&mut m, "region", &a.region);
                put(&mut m, "postalCode", &a.postal_code);
                put(&mut m, "country", &a.country);
                put(&mut m, "type", &a.kind);
                put_bool(&mut m, "primary", a.primary);
                Value::Object(m)
            })
            .collect();
        o.insert("addresses".into(), Value::Array(list));
    }
    if !groups.is_empty() {
        o.insert("groups".into(), groups_json(groups, base));
    }
    for (key, values) in [
        ("entitlements", &u.entitlements),
        ("roles", &u.roles),
        ("x509Certificates", &u.x509_certificates),
    ] {
        if !values.is_empty() {
            o.insert(key.into(), multi_to_json(values));
        }
    }
    if !u.enterprise.is_empty() {
        let e = &u.enterprise;
        let mut m = Map::new();
        put(&mut m, "employeeNumber", &e.employee_number);
        put(&mut m, "costCenter", &e.cost_center);
        put(&mut m, "organization", &e.organization);
        put(&mut m, "division", &e.division);
        put(&mut m, "department", &e.department);
        if let Some(mg) = &e.manager {
            let mut mm = Map::new();
            put(&mut mm, "value", &mg.value);
            put(&mut mm, "$ref", &mg.reference);
            put(&mut mm, "displayName", &mg.display_name);
            m.insert("manager".into(), Value::Object(mm));
        }
        o.insert(ENTERPRISE_SCHEMA.into(), Value::Object(m));
    }
    o.insert(
        "meta".into(),
        meta_json("User", format!("{base}/Users/{}", u.id), &u.meta),
    );
    Value::Object(o)
}

/// A user's computed `groups` attribute.
pub fn groups_json(groups: &[GroupRef], base: &str) -> Value {
    Value::Array(
        groups
            .iter()
            .map(|g| json!({"value": g.id, "display": g.display_name, "$ref": format!("{base}/Groups/{}", g.id)}))
            .collect(),
    )
}

/// A group as SCIM JSON (members included unless the caller projects them out).
pub fn group_to_json(g: &Group, base: &str) -> Value {
    let members: Vec<Value> = g
        .members
        .iter()
        .map(|m| {
            let mut o = Map::new();
            o.insert("value".into(), json!(m.value));
            let path = if m.kind.as_str() == "Group" {
                "Groups"
            } else {
                "Users"
            };
            o.insert("$ref".into(), json!(format!("{base}/{path}/{}", m.value)));
            o.insert("type".into(), json!(m.kind.as_str()));
            put(&mut o, "display", &m.display);
            Value::Object(o)
        })
        .collect();
    let mut o = Map::new();
    o.insert("schemas".into(), json!([GROUP_SCHEMA]));
    o.insert("id".into(), json!(g.id));
    put(&mut o, "externalId", &g.external_id);
    o.insert("displayName".into(), json!(g.display_name));
    o.insert("members".into(), Value::Array(members));
    o.insert(
        "meta".into(),
        meta_json("Group", format!("{base}/Groups/{}", g.id), &g.meta),
    );
    Value::Object(o)
}

/// Case-insensitive member lookup: SCIM attribute names are case-insensitive.
fn get<'a>(o: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    o.get(key).or_else(|| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// What a string attribute may hold, beyond being a JSON string.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Text {
    /// An identifier (userName, externalId, ids, email and member values,
    /// a Group's displayName): no control character at all.
    Identifier,
    /// Free text (names, titles, a formatted address may span lines): no
    /// control character but tab, CR and LF.
    Plain,
    /// A URI (`profileUrl`, `photos.value`, `$ref`).
    Reference,
    /// Base64 (`x509Certificates.value`).
    Binary,
}

impl Text {
    fn limit(self) -> usize {
        match self {
            Self::Identifier | Self::Plain => MAX_STRING_LEN,
            Self::Reference => MAX_REFERENCE_LEN,
            Self::Binary => MAX_BINARY_LEN,
        }
    }
}

/// What a parse lets through that it would otherwise refuse: the values
/// the representation a PATCH started from already held. They were stored
/// by SAML JIT (which checks identifiers only), by an older gateway, or
/// generated by the server (member `display`), and a PATCH that does not
/// touch them (`replace active false`) must not fail because of them. Empty
/// for POST and PUT bodies, where everything is the client's.
#[derive(Default)]
struct Kept {
    strings: std::collections::HashSet<String>,
    before: Map<String, Value>,
}

impl Kept {
    fn of(before: &Value) -> Self {
        fn collect(v: &Value, out: &mut std::collections::HashSet<String>) {
            match v {
                Value::String(s) => {
                    out.insert(s.clone());
                }
                Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
                Value::Object(o) => o.values().for_each(|x| collect(x, out)),
                _ => {}
            }
        }
        let mut strings = std::collections::HashSet::new();
        collect(before, &mut strings);
        Self {
            strings,
            before: before.as_object().cloned().unwrap_or_default(),
        }
    }

    fn string(&self, s: &str) -> bool {
        self.strings.contains(s)
    }

    /// The top-level multi-valued attribute `key` as it was.
    fn values(&self, key: &str) -> &[Value] {
        get(&self.before, key)
            .and_then(|v| v.as_array())
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

/// Refuses a string attribute's value that is too long or holds a control
/// character it may not (U+0000 never).
fn check_text(kept: &Kept, key: &str, s: &str, text: Text) -> Result<(), ScimError> {
    if kept.string(s) {
        return Ok(());
    }
    if s.len() > text.limit() {
        return Err(ScimError::invalid_value(format!(
            "{key} is longer than {} bytes",
            text.limit()
        )));
    }
    let allowed = |c: char| text == Text::Plain && matches!(c, '\t' | '\n' | '\r');
    if s.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(ScimError::invalid_value(format!(
            "{key} contains a control character"
        )));
    }
    if text == Text::Identifier && s.chars().any(crate::directory::rules::is_invisible) {
        return Err(ScimError::invalid_value(format!(
            "{key} contains an invisible formatting character (zero-width, bidirectional)"
        )));
    }
    Ok(())
}

/// A string attribute: a JSON string (never a number, a boolean or an
/// object: a client sending one has mapped the wrong attribute), or
/// absent/`null`.
fn string(
    kept: &Kept,
    o: &Map<String, Value>,
    key: &str,
    text: Text,
) -> Result<Option<String>, ScimError> {
    match get(o, key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            check_text(kept, key, s, text)?;
            Ok(Some(s.clone()))
        }
        Some(other) => Err(ScimError::invalid_value(format!(
            "{key} must be a string, not {}",
            kind_of(other)
        ))),
    }
}

/// The JSON type of a value, for error messages that do not echo it back.
fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Accepts JSON booleans and the strings "True"/"False" (Entra ID sends them).
pub fn boolean(v: &Value, key: &str) -> Result<bool, ScimError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(ScimError::invalid_value(format!(
            "{key} must be a boolean, not {}",
            kind_of(other)
        ))),
    }
}

fn optional_bool(o: &Map<String, Value>, key: &str) -> Result<Option<bool>, ScimError> {
    match get(o, key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => boolean(v, key).map(Some),
    }
}

/// A complex attribute: an object, or absent/`null`.
fn object<'a>(
    o: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, ScimError> {
    match get(o, key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(other) => Err(ScimError::invalid_value(format!(
            "{key} must be an object, not {}",
            kind_of(other)
        ))),
    }
}

/// A multi-valued attribute: an array of objects (empty when absent).
fn elements<'a>(
    kept: &Kept,
    o: &'a Map<String, Value>,
    key: &str,
) -> Result<Vec<&'a Map<String, Value>>, ScimError> {
    let items = match get(o, key) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(ScimError::invalid_value(format!(
                "{key} must be an array, not {}",
                kind_of(other)
            )))
        }
    };
    if items.len() > MAX_VALUES && items.len() > kept.values(key).len() {
        return Err(ScimError::invalid_value(format!(
            "{key} has more than {MAX_VALUES} values"
        )));
    }
    items
        .iter()
        .map(|item| match item {
            Value::Object(m) => Ok(m),
            other => Err(ScimError::invalid_value(format!(
                "{key} values must be objects, not {}",
                kind_of(other)
            ))),
        })
        .collect()
}

/// RFC 7643 §2.4: `primary: true` appears at most once per attribute.
fn one_primary(
    kept: &Kept,
    key: &str,
    primaries: impl Iterator<Item = Option<bool>>,
) -> Result<(), ScimError> {
    let primary = |v: &Value| {
        v.get("primary")
            .is_some_and(|p| boolean(p, "primary").unwrap_or(false))
    };
    let before = kept.values(key).iter().filter(|v| primary(v)).count();
    let n = primaries.filter(|p| *p == Some(true)).count();
    if n > 1 && n > before {
        return Err(ScimError::invalid_value(format!(
            "more than one {key} value is primary"
        )));
    }
    Ok(())
}

/// A multi-valued attribute of `value`/`display`/`type`/`primary` values.
/// `value_text` is what `value` holds. A value without `value` means
/// nothing and is left out (a PATCH that removed a value's `value` leaves
/// such a husk behind).
fn multi_from_json(
    kept: &Kept,
    o: &Map<String, Value>,
    key: &str,
    value_text: Text,
) -> Result<Vec<MultiValue>, ScimError> {
    let mut out = Vec::new();
    for m in elements(kept, o, key)? {
        let element = || -> Result<Option<MultiValue>, ScimError> {
            let Some(value) = string(kept, m, "value", value_text)? else {
                return Ok(None);
            };
            Ok(Some(MultiValue {
                value,
                kind: string(kept, m, "type", Text::Plain)?,
                primary: optional_bool(m, "primary")?,
                display: string(kept, m, "display", Text::Plain)?,
            }))
        };
        out.extend(element().map_err(|e| e.within(key))?);
    }
    one_primary(kept, key, out.iter().map(|m| m.primary))?;
    Ok(out)
}

/// Refuses a `schemas` that is not an array of this resource's URNs: the
/// core schema must be listed, and nothing this gateway does not serve
/// (a Group URN on a User, an extension it does not know, which would
/// otherwise be silently dropped). An absent `schemas` is tolerated, as
/// some clients omit it on writes.
fn check_schemas(o: &Map<String, Value>, kind: ResourceKind) -> Result<(), ScimError> {
    let list = match get(o, "schemas") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(ScimError::invalid_syntax(format!(
                "schemas must be an array of schema URNs, not {}",
                kind_of(other)
            )))
        }
    };
    let mut core = false;
    for urn in list {
        let Value::String(urn) = urn else {
            return Err(ScimError::invalid_syntax(format!(
                "schemas must hold schema URNs (strings), not {}",
                kind_of(urn)
            )));
        };
        if kind.is_core_schema(urn) {
            core = true;
        } else if kind.extension_attributes(urn).is_none() {
            return Err(ScimError::invalid_value(format!(
                "schema {urn:?} is not served for a {kind:?}; this server knows {}",
                std::iter::once(kind.core_schema())
                    .chain(kind.extensions().iter().copied())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    if !core {
        return Err(ScimError::invalid_value(format!(
            "schemas must include {}",
            kind.core_schema()
        )));
    }
    Ok(())
}

/// `o` with its core-schema-qualified top-level keys
/// (`urn:ietf:params:scim:schemas:core:2.0:User:active`) under their bare
/// names, as PATCH reads them: ignoring them would drop what the client set
/// (an `active: false` among them). Both forms of one name are ambiguous
/// and refused.
fn unqualified(
    o: &Map<String, Value>,
    kind: ResourceKind,
) -> Result<std::borrow::Cow<'_, Map<String, Value>>, ScimError> {
    let core = kind.core_schema();
    let strip = |k: &str| -> Option<String> {
        (k.len() > core.len() + 1
            && k.get(..core.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(core))
            && k.as_bytes()[core.len()] == b':')
            .then(|| k[core.len() + 1..].to_string())
    };
    if !o.keys().any(|k| strip(k).is_some()) {
        return Ok(std::borrow::Cow::Borrowed(o));
    }
    let mut out = Map::new();
    for (k, v) in o {
        let name = strip(k).unwrap_or_else(|| k.clone());
        if out
            .keys()
            .any(|have: &String| have.eq_ignore_ascii_case(&name))
        {
            return Err(ScimError::invalid_value(format!(
                "{name} is given twice (bare and schema-qualified)"
            )));
        }
        out.insert(name, v.clone());
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// Refuses data under a schema URN this server does not serve (a custom
/// extension object, or `urn:...:attr` keys of one): it would be dropped
/// while the client believes it stored. Unknown plain attribute names are
/// ignored, as RFC 7644 §3.3 allows.
fn check_extension_keys(o: &Map<String, Value>, kind: ResourceKind) -> Result<(), ScimError> {
    for k in o.keys() {
        if !k.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")) {
            continue;
        }
        let core = kind.core_schema();
        let qualified_core = k.len() > core.len()
            && k.get(..core.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(core))
            && k.as_bytes()[core.len()] == b':';
        let known = kind.is_core_schema(k)
            || qualified_core
            || kind.extensions().iter().any(|e| e.eq_ignore_ascii_case(k));
        if !known {
            return Err(ScimError::invalid_value(format!(
                "{k:?} is not an attribute or extension this server serves for a {kind:?}"
            )));
        }
    }
    Ok(())
}

fn enterprise_from_json(kept: &Kept, o: &Map<String, Value>) -> Result<Enterprise, ScimError> {
    let Some(e) = object(o, ENTERPRISE_SCHEMA)? else {
        return Ok(Enterprise::default());
    };
    let manager = match get(e, "manager") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(Manager {
            value: string(kept, m, "value", Text::Identifier)?,
            reference: string(kept, m, "$ref", Text::Reference)?,
            display_name: string(kept, m, "displayName", Text::Plain)?,
        }),
        // Entra sends the manager id as a plain string.
        Some(Value::String(s)) => {
            check_text(kept, "manager", s, Text::Identifier)?;
            Some(Manager {
                value: Some(s.clone()),
                ..Manager::default()
            })
        }
        Some(other) => {
            return Err(ScimError::invalid_value(format!(
                "manager must be an object, not {}",
                kind_of(other)
            )))
        }
    }
    .filter(|m| *m != Manager::default());
    Ok(Enterprise {
        employee_number: string(kept, e, "employeeNumber", Text::Plain)?,
        cost_center: string(kept, e, "costCenter", Text::Plain)?,
        organization: string(kept, e, "organization", Text::Plain)?,
        division: string(kept, e, "division", Text::Plain)?,
        department: string(kept, e, "department", Text::Plain)?,
        manager,
    })
}

/// A user from a POST/PUT body (or a patched representation). Unknown
/// attributes are ignored; read-only ones (`id`, `meta`, `groups`) are not
/// taken from the client, nor is `password` (the gateway keeps none).
/// Values of the wrong type, over-long strings and control characters are
/// refused, never converted. An absent `active` is returned as
/// `active_unset` with `active = absent_active` (the client's
/// `auto_activate`): a value the client sends always wins.
pub fn user_from_json(v: &Value, absent_active: bool) -> Result<User, ScimError> {
    parse_user(v, absent_active, &Kept::default())
}

fn parse_user(v: &Value, absent_active: bool, kept: &Kept) -> Result<User, ScimError> {
    let Value::Object(o) = v else {
        return Err(ScimError::invalid_syntax("a User must be a JSON object"));
    };
    check_schemas(o, ResourceKind::User)?;
    check_extension_keys(o, ResourceKind::User)?;
    let o = &*unqualified(o, ResourceKind::User)?;
    let user_name = string(kept, o, "userName", Text::Identifier)?
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ScimError::invalid_value("userName is required"))?;
    let name = match object(o, "name")? {
        Some(n) => (|| -> Result<Name, ScimError> {
            Ok(Name {
                formatted: string(kept, n, "formatted", Text::Plain)?,
                given_name: string(kept, n, "givenName", Text::Plain)?,
                family_name: string(kept, n, "familyName", Text::Plain)?,
                middle_name: string(kept, n, "middleName", Text::Plain)?,
                honorific_prefix: string(kept, n, "honorificPrefix", Text::Plain)?,
                honorific_suffix: string(kept, n, "honorificSuffix", Text::Plain)?,
            })
        })()
        .map_err(|e| e.within("name"))?,
        None => Name::default(),
    };
    let addresses = elements(kept, o, "addresses")?
        .into_iter()
        .map(|a| {
            (|| -> Result<Address, ScimError> {
                Ok(Address {
                    formatted: string(kept, a, "formatted", Text::Plain)?,
                    street_address: string(kept, a, "streetAddress", Text::Plain)?,
                    locality: string(kept, a, "locality", Text::Plain)?,
                    region: string(kept, a, "region", Text::Plain)?,
                    postal_code: string(kept, a, "postalCode", Text::Plain)?,
                    country: string(kept, a, "country", Text::Plain)?,
                    kind: string(kept, a, "type", Text::Plain)?,
                    primary: optional_bool(a, "primary")?,
                })
            })()
            .map_err(|e| e.within("addresses"))
        })
        .collect::<Result<Vec<_>, ScimError>>()?
        .into_iter()
        .filter(|a| *a != Address::default())
        .collect::<Vec<_>>();
    one_primary(kept, "addresses", addresses.iter().map(|a| a.primary))?;
    let active = optional_bool(o, "active")?;
    Ok(User {
        external_id: string(kept, o, "externalId", Text::Identifier)?,
        user_name,
        name,
        display_name: string(kept, o, "displayName", Text::Plain)?,
        nick_name: string(kept, o, "nickName", Text::Plain)?,
        profile_url: string(kept, o, "profileUrl", Text::Reference)?,
        title: string(kept, o, "title", Text::Plain)?,
        user_type: string(kept, o, "userType", Text::Plain)?,
        preferred_language: string(kept, o, "preferredLanguage", Text::Plain)?,
        locale: string(kept, o, "locale", Text::Plain)?,
        timezone: string(kept, o, "timezone", Text::Plain)?,
        active: active.unwrap_or(absent_active),
        active_unset: active.is_none(),
        emails: multi_from_json(kept, o, "emails", Text::Identifier)?,
        phone_numbers: multi_from_json(kept, o, "phoneNumbers", Text::Plain)?,
        ims: multi_from_json(kept, o, "ims", Text::Plain)?,
        photos: multi_from_json(kept, o, "photos", Text::Reference)?,
        addresses,
        entitlements: multi_from_json(kept, o, "entitlements", Text::Plain)?,
        roles: multi_from_json(kept, o, "roles", Text::Plain)?,
        x509_certificates: multi_from_json(kept, o, "x509Certificates", Text::Binary)?,
        enterprise: enterprise_from_json(kept, o)?,
        ..User::default()
    })
}

/// A user from a PATCH result: as [`user_from_json`], but values `before`
/// (the representation the PATCH started from) already held are not
/// refused again, so a PATCH that leaves them alone (a deactivation) goes
/// through.
pub fn patched_user_from_json(
    patched: &Value,
    before: &Value,
    absent_active: bool,
) -> Result<User, ScimError> {
    parse_user(patched, absent_active, &Kept::of(before))
}

/// A group from a PATCH result, with `before`'s values exempt as in
/// [`patched_user_from_json`] (member `display` is the member's own label,
/// which SAML JIT may have stored unchecked).
pub fn patched_group_from_json(
    patched: &Value,
    before: &Value,
) -> Result<(Group, Vec<String>), ScimError> {
    parse_group(patched, &Kept::of(before))
}

/// A group and the member ids asked for, from a POST/PUT body. Okta and
/// Entra send memberships in the body of a POST or PUT as well as in PATCH.
/// Member `display` and `$ref` are not taken: the server shows each
/// member's own label and URI.
pub fn group_from_json(v: &Value) -> Result<(Group, Vec<String>), ScimError> {
    parse_group(v, &Kept::default())
}

fn parse_group(v: &Value, kept: &Kept) -> Result<(Group, Vec<String>), ScimError> {
    let Value::Object(o) = v else {
        return Err(ScimError::invalid_syntax("a Group must be a JSON object"));
    };
    check_schemas(o, ResourceKind::Group)?;
    check_extension_keys(o, ResourceKind::Group)?;
    let o = &*unqualified(o, ResourceKind::Group)?;
    let display_name = string(kept, o, "displayName", Text::Identifier)?
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ScimError::invalid_value("displayName is required"))?;
    let mut members = Vec::new();
    let items = match get(o, "members") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(items)) => items.as_slice(),
        Some(other) => {
            return Err(ScimError::invalid_value(format!(
                "members must be an array, not {}",
                kind_of(other)
            )))
        }
    };
    let mut seen = std::collections::HashSet::new();
    for item in items {
        let Value::Object(m) = item else {
            return Err(ScimError::invalid_value(format!(
                "members values must be objects, not {}",
                kind_of(item)
            )));
        };
        let id = string(kept, m, "value", Text::Identifier)?
            .ok_or_else(|| ScimError::invalid_value("every member needs a value"))?;
        match string(kept, m, "type", Text::Plain)?.as_deref() {
            None => {}
            Some(t) if t.eq_ignore_ascii_case("User") || t.eq_ignore_ascii_case("Group") => {}
            Some(t) => {
                return Err(ScimError::invalid_value(format!(
                    "member type {t:?} is neither User nor Group"
                )))
            }
        }
        string(kept, m, "$ref", Text::Reference)?;
        string(kept, m, "display", Text::Plain)?;
        if seen.insert(id.clone()) {
            members.push(id);
        }
    }
    let group = Group {
        display_name,
        external_id: string(kept, o, "externalId", Text::Identifier)?,
        ..Group::default()
    };
    Ok((group, members))
}

/// Applies `attributes` / `excludedAttributes` (RFC 7644 §3.9). `id`,
/// `schemas` and `meta.resourceType`-bearing `meta` are always returned.
/// Paths are case-insensitive; `name.givenName` selects a sub-attribute;
/// URN-qualified names select within their schema.
pub fn project(resource: &Value, attributes: &[String], excluded: &[String]) -> Value {
    let Value::Object(o) = resource else {
        return resource.clone();
    };
    let split = |p: &str| -> (String, Option<String>) {
        let p = p.trim();
        for schema in [USER_SCHEMA, GROUP_SCHEMA] {
            if p.len() > schema.len()
                && p.get(..schema.len())
                    .is_some_and(|h| h.eq_ignore_ascii_case(schema))
                && p.as_bytes()[schema.len()] == b':'
            {
                return split_dot(&p[schema.len() + 1..]);
            }
        }
        if p.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) {
            return (ENTERPRISE_SCHEMA.to_string(), None);
        }
        let n = ENTERPRISE_SCHEMA.len();
        if p.len() > n + 1
            && p.get(..n)
                .is_some_and(|h| h.eq_ignore_ascii_case(ENTERPRISE_SCHEMA))
            && p.as_bytes()[n] == b':'
        {
            return (ENTERPRISE_SCHEMA.to_string(), Some(p[n + 1..].to_string()));
        }
        split_dot(p)
    };
    fn split_dot(p: &str) -> (String, Option<String>) {
        match p.split_once('.') {
            Some((a, b)) => (a.to_string(), Some(b.to_string())),
            None => (p.to_string(), None),
        }
    }
    let always = ["id", "schemas", "meta"];
    let mut out = Map::new();
    if !attributes.is_empty() {
        let wanted: Vec<(String, Option<String>)> = attributes.iter().map(|a| split(a)).collect();
        for (k, v) in o {
            if always.contains(&k.as_str()) {
                out.insert(k.clone(), v.clone());
                continue;
            }
            let subs: Vec<&Option<String>> = wanted
                .iter()
                .filter(|(a, _)| a.eq_ignore_ascii_case(k))
                .map(|(_, s)| s)
                .collect();
            if subs.is_empty() {
                continue;
            }
            if subs.iter().any(|s| s.is_none()) {
                out.insert(k.clone(), v.clone());
            } else {
                out.insert(
                    k.clone(),
                    keep_subs(
                        v,
                        &subs.iter().filter_map(|s| s.as_deref()).collect::<Vec<_>>(),
                    ),
                );
            }
        }
    } else {
        let dropped: Vec<(String, Option<String>)> = excluded.iter().map(|a| split(a)).collect();
        for (k, v) in o {
            let hits: Vec<&Option<String>> = dropped
                .iter()
                .filter(|(a, _)| a.eq_ignore_ascii_case(k))
                .map(|(_, s)| s)
                .collect();
            if always.contains(&k.as_str()) || hits.is_empty() {
                out.insert(k.clone(), v.clone());
            } else if hits.iter().all(|s| s.is_some()) {
                out.insert(
                    k.clone(),
                    drop_subs(
                        v,
                        &hits.iter().filter_map(|s| s.as_deref()).collect::<Vec<_>>(),
                    ),
                );
            }
        }
    }
    Value::Object(out)
}

fn keep_subs(v: &Value, subs: &[&str]) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| subs.iter().any(|s| s.eq_ignore_ascii_case(k)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|i| keep_subs(i, subs)).collect()),
        other => other.clone(),
    }
}

fn drop_subs(v: &Value, subs: &[&str]) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !subs.iter().any(|s| s.eq_ignore_ascii_case(k)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|i| drop_subs(i, subs)).collect()),
        other => other.clone(),
    }
}

/// A ListResponse page.
pub fn list_response(resources: Vec<Value>, total: usize, start_index: usize) -> Value {
    json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "itemsPerPage": resources.len(),
        "startIndex": start_index,
        "Resources": resources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_user() -> User {
        User {
            id: "u1".into(),
            user_name: "ann@example.com".into(),
            external_id: Some("jc-1".into()),
            name: Name {
                given_name: Some("Ann".into()),
                family_name: Some("Lee".into()),
                ..Name::default()
            },
            emails: vec![MultiValue {
                value: "ann@example.com".into(),
                kind: Some("work".into()),
                primary: Some(true),
                display: None,
            }],
            enterprise: Enterprise {
                department: Some("R&D".into()),
                ..Enterprise::default()
            },
            ..User::new("ann@example.com")
        }
    }

    #[test]
    fn user_json_round_trips_through_the_typed_model() {
        let groups = vec![GroupRef {
            id: "g1".into(),
            display_name: "Staff".into(),
        }];
        let v = user_to_json(&sample_user(), &groups, "https://gw/scim/v2");
        assert_eq!(v["schemas"], json!([USER_SCHEMA, ENTERPRISE_SCHEMA]));
        assert_eq!(v["name"]["givenName"], "Ann");
        assert_eq!(v["groups"][0]["$ref"], "https://gw/scim/v2/Groups/g1");
        assert_eq!(v[ENTERPRISE_SCHEMA]["department"], "R&D");
        assert_eq!(v["meta"]["resourceType"], "User");
        assert_eq!(v["meta"]["location"], "https://gw/scim/v2/Users/u1");
        let back = user_from_json(&v, true).unwrap();
        assert_eq!(back.user_name, "ann@example.com");
        assert_eq!(back.emails, sample_user().emails);
        assert_eq!(back.enterprise.department.as_deref(), Some("R&D"));
        assert!(back.id.is_empty(), "id is never taken from the client");
    }

    #[test]
    fn entra_string_booleans_and_case_insensitive_names_are_accepted() {
        let v = json!({"UserName": "x@y", "Active": "False", "emails": [{"value": "x@y", "primary": "True"}], "unknownAttr": 1});
        let u = user_from_json(&v, true).unwrap();
        assert!(!u.active);
        assert_eq!(u.emails[0].primary, Some(true));
    }

    #[test]
    fn refuses_missing_user_name_and_wrong_types() {
        assert_eq!(
            user_from_json(&json!({"name": {}}), true)
                .unwrap_err()
                .scim_type,
            Some("invalidValue")
        );
        assert_eq!(
            user_from_json(&json!({"userName": "a", "active": 3}), true)
                .unwrap_err()
                .scim_type,
            Some("invalidValue")
        );
        assert_eq!(
            user_from_json(&json!([1]), true).unwrap_err().scim_type,
            Some("invalidSyntax")
        );
    }

    #[test]
    fn schema_qualified_core_attributes_are_read_not_dropped() {
        let q = |a: &str| format!("{USER_SCHEMA}:{a}");
        let u = user_from_json(&json!({"userName": "a", q("active"): false}), true).unwrap();
        assert!(!u.active, "a qualified active: false must not mean absent");
        assert!(!u.active_unset);
        let u = user_from_json(&json!({q("userName"): "b", q("displayName"): "B"}), true).unwrap();
        assert_eq!(
            (u.user_name.as_str(), u.display_name.as_deref()),
            ("b", Some("B"))
        );
        assert!(user_from_json(
            &json!({"userName": "a", "active": true, q("active"): false}),
            true
        )
        .is_err());
        let (g, _) = group_from_json(&json!({format!("{GROUP_SCHEMA}:displayName"): "G"})).unwrap();
        assert_eq!(g.display_name, "G");
    }

    #[test]
    fn group_members_are_deduplicated() {
        let (g, m) = group_from_json(&json!({"displayName": "Admins", "members": [{"value": "a"}, {"value": "a"}, {"value": "b"}]})).unwrap();
        assert_eq!(g.display_name, "Admins");
        assert_eq!(m, vec!["a", "b"]);
    }

    #[test]
    fn projection_keeps_id_schemas_meta_and_honours_sub_attributes() {
        let v = user_to_json(&sample_user(), &[], "https://gw/scim/v2");
        let p = project(&v, &["userName".into(), "name.givenName".into()], &[]);
        assert_eq!(p["userName"], "ann@example.com");
        assert_eq!(p["name"], json!({"givenName": "Ann"}));
        assert!(p.get("emails").is_none());
        assert!(p.get("id").is_some() && p.get("meta").is_some() && p.get("schemas").is_some());
        let p = project(&v, &[format!("{USER_SCHEMA}:userName")], &[]);
        assert_eq!(p["userName"], "ann@example.com");
        let p = project(&v, &[format!("{ENTERPRISE_SCHEMA}:department")], &[]);
        assert_eq!(p[ENTERPRISE_SCHEMA], json!({"department": "R&D"}));
        let p = project(&v, &[], &[ENTERPRISE_SCHEMA.to_string()]);
        assert!(p.get(ENTERPRISE_SCHEMA).is_none());
        // A multi-byte character where a schema URN would end must not panic.
        let odd = format!("{}é{}", "a".repeat(41), "a");
        let _ = project(&v, std::slice::from_ref(&odd), std::slice::from_ref(&odd));
        let p = project(&v, &[], &["emails".into(), "name.familyName".into()]);
        assert!(p.get("emails").is_none());
        assert_eq!(p["name"], json!({"givenName": "Ann"}));
    }

    #[test]
    fn entra_reads_groups_without_members() {
        let g = Group {
            id: "g1".into(),
            display_name: "Staff".into(),
            members: vec![crate::directory::model::Member::user(&sample_user())],
            ..Group::default()
        };
        let v = group_to_json(&g, "https://gw/scim/v2");
        assert_eq!(v["members"][0]["type"], "User");
        let p = project(&v, &[], &["members".into()]);
        assert!(p.get("members").is_none());
        assert_eq!(p["displayName"], "Staff");
    }
}
