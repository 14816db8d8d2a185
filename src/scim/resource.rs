//! The SCIM JSON representation of directory users and groups (RFC 7643):
//! typed model → JSON for responses (with `meta`, computed `groups`, the
//! enterprise extension), JSON → typed model for POST/PUT (tolerant of
//! unknown attributes and of clients' quirks such as Entra's string
//! booleans), and `attributes` / `excludedAttributes` projection. It knows
//! nothing about HTTP or storage.

use serde_json::{json, Map, Value};

use super::ScimError;
use crate::directory::{Address, Enterprise, Group, GroupRef, Manager, MultiValue, Name, User};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

fn put(obj: &mut Map<String, Value>, key: &str, v: &Option<String>) {
    if let Some(s) = v {
        obj.insert(key.to_string(), json!(s));
    }
}

fn multi_to_json(values: &[MultiValue]) -> Value {
    Value::Array(
        values
            .iter()
            .map(|m| {
                let mut o = Map::new();
                o.insert("value".into(), json!(m.value));
                put(&mut o, "type", &m.kind);
                put(&mut o, "display", &m.display);
                if m.primary {
                    o.insert("primary".into(), json!(true));
                }
                Value::Object(o)
            })
            .collect(),
    )
}

fn meta_json(kind: &str, location: String, meta: &crate::directory::Meta) -> Value {
    json!({
        "resourceType": kind,
        "created": meta.created_rfc3339(),
        "lastModified": meta.last_modified_rfc3339(),
        "location": location,
        "version": meta.etag(),
    })
}

/// A user as SCIM JSON. `base` is the SCIM base URL (for `meta.location`
/// and group `$ref`s); `groups` are the user's groups (computed).
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
        put(&mut n, "givenName", &u.name.given_name);
        put(&mut n, "familyName", &u.name.family_name);
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
    o.insert("active".into(), json!(u.active));
    if !u.emails.is_empty() {
        o.insert("emails".into(), multi_to_json(&u.emails));
    }
    if !u.phone_numbers.is_empty() {
        o.insert("phoneNumbers".into(), multi_to_json(&u.phone_numbers));
    }
    if !u.roles.is_empty() {
        o.insert("roles".into(), multi_to_json(&u.roles));
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
                if a.primary {
                    m.insert("primary".into(), json!(true));
                }
                Value::Object(m)
            })
            .collect();
        o.insert("addresses".into(), Value::Array(list));
    }
    if !groups.is_empty() {
        o.insert("groups".into(), groups_json(groups, base));
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

fn string(o: &Map<String, Value>, key: &str) -> Result<Option<String>, ScimError> {
    match get(o, key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(ScimError::invalid_value(format!(
            "{key} must be a string, not {other}"
        ))),
    }
}

/// Accepts JSON booleans and the strings "True"/"False" (Entra ID sends them).
pub fn boolean(v: &Value, key: &str) -> Result<bool, ScimError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(ScimError::invalid_value(format!(
            "{key} must be a boolean, not {other}"
        ))),
    }
}

fn multi_from_json(o: &Map<String, Value>, key: &str) -> Result<Vec<MultiValue>, ScimError> {
    let Some(v) = get(o, key) else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = v else {
        if v.is_null() {
            return Ok(Vec::new());
        }
        return Err(ScimError::invalid_value(format!("{key} must be an array")));
    };
    let mut out = Vec::new();
    for item in items {
        let Value::Object(m) = item else {
            return Err(ScimError::invalid_value(format!(
                "{key} entries must be objects"
            )));
        };
        let Some(value) = string(m, "value")? else {
            continue;
        };
        out.push(MultiValue {
            value,
            kind: string(m, "type")?,
            primary: get(m, "primary")
                .map(|p| boolean(p, "primary"))
                .transpose()?
                .unwrap_or(false),
            display: string(m, "display")?,
        });
    }
    Ok(out)
}

/// A user from a POST/PUT body. Unknown attributes are ignored; read-only
/// ones (`id`, `meta`, `groups`) are not taken from the client.
pub fn user_from_json(v: &Value) -> Result<User, ScimError> {
    let Value::Object(o) = v else {
        return Err(ScimError::invalid_syntax("a User must be a JSON object"));
    };
    let user_name = string(o, "userName")?
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ScimError::invalid_value("userName is required"))?;
    let name = match get(o, "name") {
        Some(Value::Object(n)) => Name {
            formatted: string(n, "formatted")?,
            given_name: string(n, "givenName")?,
            family_name: string(n, "familyName")?,
            middle_name: string(n, "middleName")?,
            honorific_prefix: string(n, "honorificPrefix")?,
            honorific_suffix: string(n, "honorificSuffix")?,
        },
        None | Some(Value::Null) => Name::default(),
        Some(_) => return Err(ScimError::invalid_value("name must be an object")),
    };
    let addresses = match get(o, "addresses") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_object())
            .map(|a| {
                Ok(Address {
                    formatted: string(a, "formatted")?,
                    street_address: string(a, "streetAddress")?,
                    locality: string(a, "locality")?,
                    region: string(a, "region")?,
                    postal_code: string(a, "postalCode")?,
                    country: string(a, "country")?,
                    kind: string(a, "type")?,
                    primary: get(a, "primary")
                        .map(|p| boolean(p, "primary"))
                        .transpose()?
                        .unwrap_or(false),
                })
            })
            .collect::<Result<Vec<_>, ScimError>>()?,
        _ => Vec::new(),
    };
    let enterprise = match get(o, ENTERPRISE_SCHEMA) {
        Some(Value::Object(e)) => Enterprise {
            employee_number: string(e, "employeeNumber")?,
            cost_center: string(e, "costCenter")?,
            organization: string(e, "organization")?,
            division: string(e, "division")?,
            department: string(e, "department")?,
            manager: match get(e, "manager") {
                Some(Value::Object(m)) => Some(Manager {
                    value: string(m, "value")?,
                    display_name: string(m, "displayName")?,
                }),
                // Some clients send the manager id as a plain string.
                Some(Value::String(s)) => Some(Manager {
                    value: Some(s.clone()),
                    display_name: None,
                }),
                _ => None,
            },
        },
        _ => Enterprise::default(),
    };
    Ok(User {
        external_id: string(o, "externalId")?,
        user_name,
        name,
        display_name: string(o, "displayName")?,
        nick_name: string(o, "nickName")?,
        profile_url: string(o, "profileUrl")?,
        title: string(o, "title")?,
        user_type: string(o, "userType")?,
        preferred_language: string(o, "preferredLanguage")?,
        locale: string(o, "locale")?,
        timezone: string(o, "timezone")?,
        active: get(o, "active")
            .map(|a| boolean(a, "active"))
            .transpose()?
            .unwrap_or(true),
        emails: multi_from_json(o, "emails")?,
        phone_numbers: multi_from_json(o, "phoneNumbers")?,
        addresses,
        roles: multi_from_json(o, "roles")?,
        enterprise,
        ..User::default()
    })
}

/// A group and the member ids asked for, from a POST/PUT body.
pub fn group_from_json(v: &Value) -> Result<(Group, Vec<String>), ScimError> {
    let Value::Object(o) = v else {
        return Err(ScimError::invalid_syntax("a Group must be a JSON object"));
    };
    let display_name = string(o, "displayName")?
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ScimError::invalid_value("displayName is required"))?;
    let mut members = Vec::new();
    if let Some(Value::Array(items)) = get(o, "members") {
        for item in items {
            match item
                .as_object()
                .map(|m| string(m, "value"))
                .transpose()?
                .flatten()
            {
                Some(id) if !members.contains(&id) => members.push(id),
                Some(_) => {}
                None => return Err(ScimError::invalid_value("every member needs a value")),
            }
        }
    }
    let group = Group {
        display_name,
        external_id: string(o, "externalId")?,
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
                primary: true,
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
        let back = user_from_json(&v).unwrap();
        assert_eq!(back.user_name, "ann@example.com");
        assert_eq!(back.emails, sample_user().emails);
        assert_eq!(back.enterprise.department.as_deref(), Some("R&D"));
        assert!(back.id.is_empty(), "id is never taken from the client");
    }

    #[test]
    fn entra_string_booleans_and_case_insensitive_names_are_accepted() {
        let v = json!({"UserName": "x@y", "Active": "False", "emails": [{"value": "x@y", "primary": "True"}], "unknownAttr": 1});
        let u = user_from_json(&v).unwrap();
        assert!(!u.active);
        assert!(u.emails[0].primary);
    }

    #[test]
    fn refuses_missing_user_name_and_wrong_types() {
        assert_eq!(
            user_from_json(&json!({"name": {}})).unwrap_err().scim_type,
            Some("invalidValue")
        );
        assert_eq!(
            user_from_json(&json!({"userName": "a", "active": 3}))
                .unwrap_err()
                .scim_type,
            Some("invalidValue")
        );
        assert_eq!(
            user_from_json(&json!([1])).unwrap_err().scim_type,
            Some("invalidSyntax")
        );
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
            members: vec![crate::directory::Member::user(&sample_user())],
            ..Group::default()
        };
        let v = group_to_json(&g, "https://gw/scim/v2");
        assert_eq!(v["members"][0]["type"], "User");
        let p = project(&v, &[], &["members".into()]);
        assert!(p.get("members").is_none());
        assert_eq!(p["displayName"], "Staff");
    }
}
