//! The discovery documents (RFC 7644 §4, RFC 7643 §5–7): what this server
//! supports, its resource types, and the full attribute definitions of the
//! User, enterprise User and Group schemas. They declare honestly what the
//! server does: PATCH, filter, sort and ETags yes; bulk and password change no.

use serde_json::{json, Value};

use super::attrs::{
    enterprise_attributes, AttrDef, AttrType, Mutability, ResourceKind, Returned, Uniqueness,
    COMMON_ATTRIBUTES,
};
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

/// Attributes accepted but not published: the gateway keeps no password,
/// so `password` is ignored on writes rather than advertised.
const UNPUBLISHED: &[&str] = &["password"];

/// One attribute definition as RFC 7643 §7 publishes it, rendered from the
/// table the cores act on (`scim::attrs`), so what `/Schemas` says about
/// mutability, returned, uniqueness and caseExact is what the server does.
fn render(a: &AttrDef) -> Value {
    let ty = match a.ty {
        AttrType::String => "string",
        AttrType::Boolean => "boolean",
        AttrType::DateTime => "dateTime",
        AttrType::Reference => "reference",
        AttrType::Binary => "binary",
        AttrType::Complex => "complex",
    };
    let mutability = match a.mutability {
        Mutability::ReadOnly => "readOnly",
        Mutability::ReadWrite => "readWrite",
        Mutability::Immutable => "immutable",
        Mutability::WriteOnly => "writeOnly",
    };
    let returned = match a.returned {
        Returned::Always => "always",
        Returned::Default => "default",
        Returned::Never => "never",
    };
    let uniqueness = match a.uniqueness {
        Uniqueness::None => "none",
        Uniqueness::Server => "server",
    };
    let mut v = json!({
        "name": a.name,
        "type": ty,
        "multiValued": a.multi_valued,
        "description": if a.description.is_empty() { a.name } else { a.description },
        "required": a.required,
        "caseExact": a.case_exact,
        "mutability": mutability,
        "returned": returned,
        "uniqueness": uniqueness,
    });
    if a.ty == AttrType::Reference {
        v["referenceTypes"] = json!(a.reference_types);
    }
    if !a.canonical_values.is_empty() {
        v["canonicalValues"] = json!(a.canonical_values);
    }
    if !a.sub_attributes.is_empty() {
        v["subAttributes"] = Value::Array(a.sub_attributes.iter().map(render).collect());
    }
    v
}

fn schema(id: &str, name: &str, description: &str, attrs: &[AttrDef]) -> Value {
    let attributes: Vec<Value> = attrs
        .iter()
        .filter(|a| !COMMON_ATTRIBUTES.contains(&a.name) && !UNPUBLISHED.contains(&a.name))
        .map(render)
        .collect();
    json!({
        "id": id, "name": name, "description": description,
        "attributes": attributes,
        "meta": {"resourceType": "Schema", "location": format!("/Schemas/{id}")}
    })
}

pub fn user_schema() -> Value {
    schema(
        USER_SCHEMA,
        "User",
        "User Account",
        ResourceKind::User.core_attributes(),
    )
}

pub fn enterprise_schema() -> Value {
    schema(
        ENTERPRISE_SCHEMA,
        "EnterpriseUser",
        "Enterprise User",
        enterprise_attributes(),
    )
}

pub fn group_schema() -> Value {
    schema(
        GROUP_SCHEMA,
        "Group",
        "Group",
        ResourceKind::Group.core_attributes(),
    )
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
