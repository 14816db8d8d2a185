//! Property tests of the SCIM cores over generated SCIM-shaped JSON: every
//! known attribute name (in any case), wrong-typed values, control
//! characters, nesting, and PATCH operations against them. What must hold
//! for every input, not only for the examples the other tests pin:
//!
//! - parsing a User or Group body, and applying a PATCH, never panics;
//! - a parsed user shows as JSON that parses back to the same user (what is
//!   stored is what is shown: the round trip is a fixpoint);
//! - an accepted user holds no string over its bound and no NUL;
//! - a PATCH that succeeds yields a representation that either parses or is
//!   refused with a 400, never a 5xx.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::attrs::ResourceKind;
use super::patch;
use super::resource::{
    group_from_json, user_from_json, user_to_json, ENTERPRISE_SCHEMA, MAX_BINARY_LEN, USER_SCHEMA,
};

const NAMES: &[&str] = &[
    "userName",
    "USERNAME",
    "externalId",
    "name",
    "givenName",
    "familyName",
    "displayName",
    "nickName",
    "profileUrl",
    "title",
    "locale",
    "active",
    "emails",
    "phoneNumbers",
    "ims",
    "photos",
    "addresses",
    "entitlements",
    "roles",
    "x509Certificates",
    "value",
    "display",
    "type",
    "primary",
    "locality",
    "manager",
    "$ref",
    "department",
    "members",
    "schemas",
    "id",
    "meta",
    "groups",
    "password",
    ENTERPRISE_SCHEMA,
    USER_SCHEMA,
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9@. ]{0,12}",
        Just("True".to_string()),
        Just("false".to_string()),
        Just("work".to_string()),
        Just("a\u{0}b".to_string()),
        Just("line\nbreak".to_string()),
        Just("\u{212A}ate@a.example".to_string()),
        Just("é".repeat(600)),
        Just(USER_SCHEMA.to_string()),
        Just(ENTERPRISE_SCHEMA.to_string()),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        text().prop_map(Value::String),
    ]
}

fn scim_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(NAMES), inner), 0..6).prop_map(|kv| {
                Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

/// A user body: the generated members on top of a valid userName, so most
/// inputs get past the first check.
fn user_body() -> impl Strategy<Value = Value> {
    (scim_json(), any::<bool>()).prop_map(|(v, with_name)| {
        let mut o = match v {
            Value::Object(o) => o,
            other => {
                let mut m = Map::new();
                m.insert("emails".into(), other);
                m
            }
        };
        if with_name {
            o.insert("userName".into(), json!("prop@example.com"));
        }
        Value::Object(o)
    })
}

fn patch_body() -> impl Strategy<Value = Value> {
    let path = prop_oneof![
        prop::sample::select(NAMES).prop_map(str::to_string),
        Just("name.givenName".to_string()),
        Just("emails[type eq \"work\"].value".to_string()),
        Just("addresses[type eq \"work\"].locality".to_string()),
        Just(format!("{ENTERPRISE_SCHEMA}:manager.value")),
        Just("emails[primary eq true]".to_string()),
        "[a-z\\[\\]\". ]{0,16}",
    ];
    let op = (
        prop::sample::select(&["add", "Replace", "remove", "bogus"][..]),
        prop::option::of(path),
        prop::option::of(scim_json()),
    )
        .prop_map(|(op, path, value)| {
            let mut o = Map::new();
            o.insert("op".into(), json!(op));
            if let Some(p) = path {
                o.insert("path".into(), json!(p));
            }
            if let Some(v) = value {
                o.insert("value".into(), v);
            }
            Value::Object(o)
        });
    prop::collection::vec(op, 0..4)
        .prop_map(|ops| json!({"schemas": [patch::PATCH_OP_SCHEMA], "Operations": ops}))
}

/// The user as the server shows it, parsed back.
fn reparsed(
    u: &crate::directory::model::User,
    absent_active: bool,
) -> crate::directory::model::User {
    let shown = user_to_json(u, &[], "https://gw.example/scim/v2");
    user_from_json(&shown, absent_active).expect("what the server shows parses")
}

fn check_bounds(u: &crate::directory::model::User) {
    let shown = user_to_json(u, &[], "").to_string();
    assert!(!shown.contains("\\u0000"), "NUL stored: {shown}");
    fn walk(v: &Value) {
        match v {
            Value::String(s) => assert!(s.len() <= MAX_BINARY_LEN, "unbounded string"),
            Value::Array(a) => a.iter().for_each(walk),
            Value::Object(o) => o.values().for_each(walk),
            _ => {}
        }
    }
    walk(&user_to_json(u, &[], ""));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn user_bodies_parse_or_refuse_and_round_trip(body in user_body(), absent in any::<bool>()) {
        if let Ok(u) = user_from_json(&body, absent) {
            check_bounds(&u);
            let again = reparsed(&u, absent);
            prop_assert_eq!(&again, &u);
        }
    }

    #[test]
    fn group_bodies_never_panic(body in scim_json()) {
        let _ = group_from_json(&body);
    }

    #[test]
    fn patches_never_panic_and_yield_parseable_users(body in user_body(), ops in patch_body()) {
        let Ok(u) = user_from_json(&body, true) else { return Ok(()) };
        let before = user_to_json(&u, &[], "https://gw.example/scim/v2");
        if let Ok(p) = patch::apply(&before, &ops, ResourceKind::User) {
            match user_from_json(&p.resource, true) {
                Ok(after) => {
                    check_bounds(&after);
                    prop_assert_eq!(reparsed(&after, true), after);
                }
                Err(e) => prop_assert_eq!(e.status, 400),
            }
        }
    }

    #[test]
    fn group_patches_never_panic(members in prop::collection::vec("[a-z0-9-]{1,8}", 0..4), ops in patch_body()) {
        let group = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": "g1", "displayName": "G",
            "members": members.iter().map(|m| json!({"value": m, "type": "User"})).collect::<Vec<_>>(),
        });
        if let Ok(p) = patch::apply(&group, &ops, ResourceKind::Group) {
            if let Err(e) = group_from_json(&p.resource) {
                prop_assert_eq!(e.status, 400);
            }
        }
    }
}
