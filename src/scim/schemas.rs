//! The discovery documents (RFC 7644 §4, RFC 7643 §5–7): what this server
//! supports, its resource types, and the full attribute definitions of the
//! User, enterprise User and Group schemas. They declare honestly what the
//! server does: PATCH, filter, sort and ETags yes; bulk and password change no.

use serde_json::{json, Value};

use super::resource::{ENTERPRISE_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};

/// Largest page returned for a list or filter.
pub const MAX_RESULTS: usize = 200;

pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "A per-client bearer token (portcullis scim-token create)",
            "primary": true
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")}
    })
}

pub fn resource_types(base: &str) -> Vec<Value> {
    vec![
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "User", "name": "User", "endpoint": "/Users",
            "description": "User Account", "schema": USER_SCHEMA,
            "schemaExtensions": [{"schema": ENTERPRISE_SCHEMA, "required": false}],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")}
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "Group", "name": "Group", "endpoint": "/Groups",
            "description": "Group", "schema": GROUP_SCHEMA,
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group")}
        }),
    ]
}

/// One attribute definition. `flags`: r = required, x = caseExact,
/// m = multiValued; `mutability`, `returned`, `uniqueness` as in RFC 7643.
fn attr(
    name: &str,
    kind: &str,
    flags: &str,
    mutability: &str,
    returned: &str,
    uniqueness: &str,
    sub: Vec<Value>,
) -> Value {
    let mut a = json!({
        "name": name,
        "type": kind,
        "multiValued": flags.contains('m'),
        "description": name,
        "required": flags.contains('r'),
        "caseExact": flags.contains('x'),
        "mutability": mutability,
        "returned": returned,
        "uniqueness": uniqueness,
    });
    if !sub.is_empty() {
        a["subAttributes"] = Value::Array(sub);
    }
    if kind == "reference" {
        a["referenceTypes"] = json!(["User", "Group", "external"]);
    }
    a
}

fn s(name: &str) -> Value {
    attr(name, "string", "", "readWrite", "default", "none", vec![])
}

fn multi(name: &str) -> Value {
    attr(
        name,
        "complex",
        "m",
        "readWrite",
        "default",
        "none",
        vec![
            s("value"),
            s("display"),
            s("type"),
            attr(
                "primary",
                "boolean",
                "",
                "readWrite",
                "default",
                "none",
                vec![],
            ),
        ],
    )
}

pub fn user_schema() -> Value {
    let name = attr(
        "name",
        "complex",
        "",
        "readWrite",
        "default",
        "none",
        vec![
            s("formatted"),
            s("familyName"),
            s("givenName"),
            s("middleName"),
            s("honorificPrefix"),
            s("honorificSuffix"),
        ],
    );
    let addresses = attr(
        "addresses",
        "complex",
        "m",
        "readWrite",
        "default",
        "none",
        vec![
            s("formatted"),
            s("streetAddress"),
            s("locality"),
            s("region"),
            s("postalCode"),
            s("country"),
            s("type"),
            attr(
                "primary",
                "boolean",
                "",
                "readWrite",
                "default",
                "none",
                vec![],
            ),
        ],
    );
    let groups = attr(
        "groups",
        "complex",
        "m",
        "readOnly",
        "default",
        "none",
        vec![
            attr("value", "string", "", "readOnly", "default", "none", vec![]),
            attr(
                "$ref",
                "reference",
                "",
                "readOnly",
                "default",
                "none",
                vec![],
            ),
            attr(
                "display",
                "string",
                "",
                "readOnly",
                "default",
                "none",
                vec![],
            ),
        ],
    );
    json!({
        "id": USER_SCHEMA, "name": "User", "description": "User Account",
        "attributes": [
            attr("userName", "string", "r", "readWrite", "default", "server", vec![]),
            name,
            s("displayName"), s("nickName"),
            attr("profileUrl", "reference", "", "readWrite", "default", "none", vec![]),
            s("title"), s("userType"), s("preferredLanguage"), s("locale"), s("timezone"),
            attr("active", "boolean", "", "readWrite", "default", "none", vec![]),
            multi("emails"), multi("phoneNumbers"), addresses, groups, multi("roles"),
        ],
        "meta": {"resourceType": "Schema", "location": format!("/Schemas/{USER_SCHEMA}")}
    })
}

pub fn enterprise_schema() -> Value {
    let manager = attr(
        "manager",
        "complex",
        "",
        "readWrite",
        "default",
        "none",
        vec![
            s("value"),
            attr(
                "$ref",
                "reference",
                "",
                "readWrite",
                "default",
                "none",
                vec![],
            ),
            attr(
                "displayName",
                "string",
                "",
                "readOnly",
                "default",
                "none",
                vec![],
            ),
        ],
    );
    json!({
        "id": ENTERPRISE_SCHEMA, "name": "EnterpriseUser", "description": "Enterprise User",
        "attributes": [s("employeeNumber"), s("costCenter"), s("organization"), s("division"), s("department"), manager],
        "meta": {"resourceType": "Schema", "location": format!("/Schemas/{ENTERPRISE_SCHEMA}")}
    })
}

pub fn group_schema() -> Value {
    let members = attr(
        "members",
        "complex",
        "m",
        "readWrite",
        "default",
        "none",
        vec![
            attr(
                "value",
                "string",
                "x",
                "immutable",
                "default",
                "none",
                vec![],
            ),
            attr(
                "$ref",
                "reference",
                "",
                "immutable",
                "default",
                "none",
                vec![],
            ),
            attr("type", "string", "", "immutable", "default", "none", vec![]),
            attr(
                "display",
                "string",
                "",
                "readOnly",
                "default",
                "none",
                vec![],
            ),
        ],
    );
    json!({
        "id": GROUP_SCHEMA, "name": "Group", "description": "Group",
        "attributes": [attr("displayName", "string", "r", "readWrite", "default", "server", vec![]), members],
        "meta": {"resourceType": "Schema", "location": format!("/Schemas/{GROUP_SCHEMA}")}
    })
}

/// Every schema, each with the common `schemas` attribute set.
pub fn all_schemas() -> Vec<Value> {
    [user_schema(), enterprise_schema(), group_schema()]
        .into_iter()
        .map(|mut s| {
            s["schemas"] = json!(["urn:ietf:params:scim:schemas:core:2.0:Schema"]);
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_name_is_required_unique_and_case_insensitive() {
        let u = user_schema();
        let un = u["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "userName")
            .unwrap();
        assert_eq!(un["required"], true);
        assert_eq!(un["uniqueness"], "server");
        assert_eq!(un["caseExact"], false);
    }

    #[test]
    fn groups_on_users_are_read_only() {
        let u = user_schema();
        let g = u["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "groups")
            .unwrap();
        assert_eq!(g["mutability"], "readOnly");
    }

    #[test]
    fn service_provider_config_declares_what_is_supported() {
        let c = service_provider_config("https://gw/scim/v2");
        assert_eq!(c["patch"]["supported"], true);
        assert_eq!(c["bulk"]["supported"], false);
        assert_eq!(c["filter"]["maxResults"], MAX_RESULTS);
        assert_eq!(all_schemas().len(), 3);
        assert_eq!(
            resource_types("x")[0]["schemaExtensions"][0]["schema"],
            ENTERPRISE_SCHEMA
        );
    }
}
