//! `scim::patch` applies an RFC 7644 §3.5.2 PatchOp request to the SCIM JSON
//! representation of one User or Group and says what changed: the patched
//! JSON, the attributes whose value changed (for `user.updated` webhooks),
//! and, for Groups, the member ids the request adds and removes, so the
//! caller can apply membership through the directory's atomic
//! `add_members`/`remove_members` instead of rewriting the member list.
//!
//! It refuses to know about storage, HTTP, ETags or sessions: it never
//! checks that a member id exists, never bumps `meta`, never revokes
//! anything. It knows attribute characteristics only through
//! `scim::attrs`, and value filters only through `scim::filter`.
//!
//! **What real clients send, and what this module does with it** (each
//! pinned by a test named for the client):
//! - `op` names in any case (`Add`, `Replace`, Entra).
//! - Path-less `add`/`replace` whose value keys are attribute names, dotted
//!   sub-attributes (`name.givenName`), URN-qualified names, or a nested
//!   extension object (Entra, Okta). Any PATCH path is accepted as a key.
//! - `"True"`/`"False"` strings for boolean attributes (Entra).
//! - Read-only `id` or `meta` inside a value (Okta's group rename): ignored
//!   when equal to the current value, `mutability` when different.
//! - Adding a value a multi-valued attribute already holds merges into it
//!   rather than duplicating (JumpCloud repeats member adds).
//! - `remove` with path `members` and a value array removes those members
//!   (Entra, JumpCloud); `members[value eq "x"]` of an absent member, and
//!   any path that does not exist, succeed as a no-op.
//! - `add`/`replace` through a value filter that matches nothing creates
//!   the value when the filter pins it down with `eq` terms
//!   (`emails[type eq "work"].value`, as Entra sets a first work email);
//!   otherwise it is `noTarget`, as RFC 7644 §3.5.2.3 says for replace.
//! - Unknown attributes inside values, unknown extension URNs (in values
//!   and paths) and `password` (the gateway keeps no passwords) are
//!   ignored; a path naming an attribute that the core or enterprise
//!   schema lacks is `invalidPath`, because a client that targets an
//!   attribute by path expects it to be stored.
//! - `null` as a `replace` value unassigns; as an `add` value it adds
//!   nothing. `remove` without a path is `noTarget` (RFC 7644 §3.5.2.2);
//!   unassigning `userName` or a Group's `displayName` is `invalidValue`.
//! - Group membership is reported as intents (see [`MemberChanges`]), not
//!   as a diff against the snapshot the caller passed in.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::attrs::{self, AttrDef, AttrType, Mutability, ResourceKind};
use super::error::ScimError;
use super::filter::{get_ci, is_present, AttrPath, CompValue, CompareOp, Filter, PatchPath};

/// The schema URN a PATCH body must declare (RFC 7644 §3.5.2).
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Most operations accepted in one request. IdPs send a handful (Entra
/// batches members into one operation's value array); the bound keeps one
/// request's work proportional to its size.
pub const MAX_OPERATIONS: usize = 1000;

/// The three PATCH operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Replace,
    Remove,
}

/// One parsed operation. `path: None` means "the resource itself".
#[derive(Clone, Debug, PartialEq)]
pub struct PatchOperation {
    pub op: OpKind,
    pub path: Option<PatchPath>,
    /// As sent, including an explicit `null`.
    pub value: Option<Value>,
}

/// A parsed PatchOp request body.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchRequest {
    pub operations: Vec<PatchOperation>,
}

/// Membership the request asks for, as intents: `added` are ids it makes
/// members (whether or not they already were), `removed` are ids it makes
/// non-members (whether or not they were), after the last operation on each
/// id wins. Intents rather than a diff against the snapshot, so that a
/// concurrent request that changed membership in between is not undone or
/// ignored; the directory's `add_members`/`remove_members` report which ids
/// actually changed (for the `group.members_*` webhooks).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl MemberChanges {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// The outcome of a PATCH.
#[derive(Clone, Debug, PartialEq)]
pub struct Patched {
    /// The resource after every operation.
    pub resource: Value,
    /// Attributes whose value differs from before, in schema order, by
    /// canonical name (`name`, `active`, `members`); extension attributes
    /// fully qualified (`urn:...:enterprise:2.0:User:department`), since the
    /// extension object is a container rather than an attribute.
    pub changed: Vec<String>,
    /// Group membership intents; empty for Users.
    pub members: MemberChanges,
}

impl Patched {
    /// True if the request changed no attribute and stated no membership.
    /// A repeated member add is not a no-op here: it still states its
    /// intent, and the directory's `add_members` turns that into nothing.
    pub fn is_noop(&self) -> bool {
        self.changed.is_empty() && self.members.is_empty()
    }
}

/// Parses `request` and applies it to `resource` (neither is modified).
pub fn apply(resource: &Value, request: &Value, kind: ResourceKind) -> Result<Patched, ScimError> {
    PatchRequest::parse(request)?.apply(resource, kind)
}

impl PatchRequest {
    /// Checks the envelope: `schemas` names PatchOp, `Operations` is an
    /// array of `{op, path?, value?}`. Paths are parsed here, so a bad path
    /// fails before anything is applied.
    pub fn parse(body: &Value) -> Result<PatchRequest, ScimError> {
        let body = body
            .as_object()
            .ok_or_else(|| ScimError::invalid_syntax("a PATCH body is a JSON object"))?;
        let declares_patch_op = get_ci(body, "schemas")
            .and_then(Value::as_array)
            .is_some_and(|s| {
                s.iter()
                    .filter_map(Value::as_str)
                    .any(|u| u.eq_ignore_ascii_case(PATCH_OP_SCHEMA))
            });
        if !declares_patch_op {
            return Err(ScimError::invalid_syntax(format!(
                "`schemas` must include \"{PATCH_OP_SCHEMA}\""
            )));
        }
        let ops = get_ci(body, "Operations")
            .and_then(Value::as_array)
            .ok_or_else(|| ScimError::invalid_syntax("`Operations` must be an array"))?;
        if ops.len() > MAX_OPERATIONS {
            return Err(ScimError::invalid_value(format!(
                "at most {MAX_OPERATIONS} operations per request"
            )));
        }
        let operations = ops
            .iter()
            .enumerate()
            .map(|(i, op)| parse_operation(op).map_err(|e| prefix(e, i)))
            .collect::<Result<_, _>>()?;
        Ok(PatchRequest { operations })
    }

    /// Applies the operations in order; the first failure fails the whole
    /// request (RFC 7644 §3.5.2: PATCH is atomic).
    pub fn apply(&self, resource: &Value, kind: ResourceKind) -> Result<Patched, ScimError> {
        let before = resource.as_object().ok_or_else(|| {
            ScimError::new(500, None, "the resource to patch is not a JSON object")
        })?;
        let mut doc = before.clone();
        let mut cx = Cx {
            kind,
            log: MemberLog::default(),
        };
        for (i, op) in self.operations.iter().enumerate() {
            cx.operation(&mut doc, op).map_err(|e| prefix(e, i))?;
        }
        Ok(Patched {
            changed: changed_attributes(before, &doc, kind),
            members: cx.log.finish(),
            resource: Value::Object(doc),
        })
    }
}

/// Names the failing operation, so a client's log says which one.
fn prefix(mut e: ScimError, index: usize) -> ScimError {
    e.detail = format!("Operations[{index}]: {}", e.detail);
    e
}

fn parse_operation(op: &Value) -> Result<PatchOperation, ScimError> {
    let op = op
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("each operation is a JSON object"))?;
    let name = get_ci(op, "op")
        .and_then(Value::as_str)
        .ok_or_else(|| ScimError::invalid_syntax("`op` is required"))?;
    let kind = if name.eq_ignore_ascii_case("add") {
        OpKind::Add
    } else if name.eq_ignore_ascii_case("replace") {
        OpKind::Replace
    } else if name.eq_ignore_ascii_case("remove") {
        OpKind::Remove
    } else {
        return Err(ScimError::invalid_syntax(format!(
            "`op` must be add, replace or remove, not {name:?}"
        )));
    };
    let path = match get_ci(op, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(PatchPath::parse(s)?),
        Some(_) => return Err(ScimError::invalid_path("`path` must be a string")),
    };
    let value = get_ci(op, "value").cloned();
    match (kind, &path, &value) {
        (OpKind::Remove, None, _) => Err(ScimError::no_target(
            "`remove` needs a `path` (RFC 7644 §3.5.2.2)",
        )),
        (OpKind::Add | OpKind::Replace, _, None) => Err(ScimError::invalid_value(format!(
            "`{name}` needs a `value`"
        ))),
        (OpKind::Add | OpKind::Replace, None, Some(v)) if !v.is_object() => Err(
            ScimError::invalid_value("without a `path`, `value` must be an object of attributes"),
        ),
        _ => Ok(PatchOperation {
            op: kind,
            path,
            value,
        }),
    }
}

// ---------------------------------------------------------------------------
// Resolving a path against the schema
// ---------------------------------------------------------------------------

/// Where an attribute's value lives in the JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Container {
    Core,
    /// The object under this (canonical) extension URN.
    Ext(&'static str),
}

/// A resolved attribute: its definition and optional sub-attribute.
#[derive(Clone, Copy)]
struct Target {
    container: Container,
    def: &'static AttrDef,
    sub: Option<&'static AttrDef>,
}

enum Resolved {
    Attr(Target),
    /// A whole schema: the core URN or an extension URN used as a path.
    Schema(Container),
    /// Tolerated but not stored: unknown extension URN, `password`, or (in
    /// values) an unknown attribute.
    Ignore,
}

/// Where an operation's target came from: an explicit `path` (an unknown
/// attribute is an error) or a key of a path-less value (ignored).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    Path,
    ValueKey,
}

fn resolve(kind: ResourceKind, attr: &AttrPath, origin: Origin) -> Result<Resolved, ScimError> {
    let (container, table) = match attr.urn.as_deref() {
        None => (Container::Core, kind.core_attributes()),
        Some(urn) => {
            // `urn:...:enterprise:2.0:User` parses as URN `...:2.0` + name
            // `User`: the whole schema, not an attribute.
            if attr.sub.is_none() {
                let full = format!("{urn}:{}", attr.name);
                if kind.is_core_schema(&full) {
                    return Ok(Resolved::Schema(Container::Core));
                }
                if let Some((ext, _)) = kind.extension_attributes(&full) {
                    return Ok(Resolved::Schema(Container::Ext(ext)));
                }
            }
            if kind.is_core_schema(urn) {
                (Container::Core, kind.core_attributes())
            } else if let Some((ext, table)) = kind.extension_attributes(urn) {
                (Container::Ext(ext), table)
            } else if origin == Origin::Path && is_core_urn(urn) {
                // Another resource type's core schema: a client mistake,
                // not an extension to tolerate.
                return Err(ScimError::invalid_path(format!(
                    "`{attr}` is not an attribute of {kind:?}"
                )));
            } else {
                return Ok(Resolved::Ignore);
            }
        }
    };
    let unknown = || match origin {
        Origin::Path => Err(ScimError::invalid_path(format!(
            "`{attr}` is not an attribute of {kind:?}"
        ))),
        Origin::ValueKey => Ok(Resolved::Ignore),
    };
    let Some(def) = attrs::find(table, &attr.name) else {
        return unknown();
    };
    if def.mutability == Mutability::WriteOnly {
        return Ok(Resolved::Ignore);
    }
    let sub = match attr.sub.as_deref() {
        None => None,
        Some(s) => match def.sub(s) {
            Some(d) => Some(d),
            None => return unknown(),
        },
    };
    Ok(Resolved::Attr(Target {
        container,
        def,
        sub,
    }))
}

fn is_core_urn(urn: &str) -> bool {
    const CORE_PREFIX: &str = "urn:ietf:params:scim:schemas:core:";
    urn.get(..CORE_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(CORE_PREFIX))
}

// ---------------------------------------------------------------------------
// Applying operations
// ---------------------------------------------------------------------------

type Doc = Map<String, Value>;

/// What every operation of one request shares.
struct Cx {
    kind: ResourceKind,
    log: MemberLog,
}

impl Cx {
    fn operation(&mut self, doc: &mut Doc, op: &PatchOperation) -> Result<(), ScimError> {
        let value = op.value.as_ref();
        let Some(path) = &op.path else {
            return match value {
                Some(Value::Object(values)) => self.values(doc, op.op, values, Container::Core),
                _ => Err(ScimError::invalid_value("`value` must be an object")),
            };
        };
        self.at_path(doc, op.op, path, value, Origin::Path)
    }

    fn at_path(
        &mut self,
        doc: &mut Doc,
        op: OpKind,
        path: &PatchPath,
        value: Option<&Value>,
        origin: Origin,
    ) -> Result<(), ScimError> {
        match resolve(self.kind, &path.attr, origin)? {
            Resolved::Ignore => Ok(()),
            Resolved::Schema(container) => {
                if path.filter.is_some() || path.sub.is_some() {
                    return Err(ScimError::invalid_path(format!(
                        "`{path}`: a schema URN takes no value filter"
                    )));
                }
                self.schema(doc, op, container, value)
            }
            Resolved::Attr(target) => {
                if path.filter.is_some() && !target.def.multi_valued {
                    return Err(ScimError::invalid_path(format!(
                        "`{path}`: a value filter needs a multi-valued attribute"
                    )));
                }
                let after = match path.sub.as_deref() {
                    None => None,
                    Some(s) => match target.def.sub(s) {
                        Some(d) => Some(d),
                        None if origin == Origin::Path => {
                            return Err(ScimError::invalid_path(format!(
                                "`{path}`: `{}` has no sub-attribute `{s}`",
                                target.def.name
                            )))
                        }
                        None => return Ok(()),
                    },
                };
                let filter = path.filter.as_ref();
                self.at_target(doc, op, target, filter, after, value, origin)
            }
        }
    }

    /// A path-less value object: each key is a path (`active`,
    /// `name.givenName`, `urn:...:User:department`) or a schema URN whose
    /// value is an object of that schema's attributes.
    fn values(
        &mut self,
        doc: &mut Doc,
        op: OpKind,
        values: &Map<String, Value>,
        scope: Container,
    ) -> Result<(), ScimError> {
        for (key, value) in values {
            if key.eq_ignore_ascii_case("schemas") {
                continue;
            }
            if let Some((ext, _)) = self.kind.extension_attributes(key) {
                self.schema(doc, op, Container::Ext(ext), Some(value))?;
                continue;
            }
            if self.kind.is_core_schema(key) {
                self.schema(doc, op, Container::Core, Some(value))?;
                continue;
            }
            // A key that is not even a path is an attribute we do not know.
            let Ok(mut path) = PatchPath::parse(key) else {
                continue;
            };
            if let (Container::Ext(ext), None) = (scope, &path.attr.urn) {
                path.attr.urn = Some(ext.to_string());
            }
            self.at_path(doc, op, &path, Some(value), Origin::ValueKey)?;
        }
        Ok(())
    }

    /// A whole schema as the target: its attributes are the value's keys.
    fn schema(
        &mut self,
        doc: &mut Doc,
        op: OpKind,
        container: Container,
        value: Option<&Value>,
    ) -> Result<(), ScimError> {
        match (op, container, value) {
            (OpKind::Remove, Container::Ext(urn), _) => {
                take_ci(doc, urn);
                set_schema_listed(doc, urn, false);
                Ok(())
            }
            (OpKind::Remove, Container::Core, _) => Err(ScimError::invalid_path(
                "the core schema cannot be removed; name an attribute",
            )),
            (OpKind::Replace, Container::Ext(urn), Some(Value::Null)) => {
                take_ci(doc, urn);
                set_schema_listed(doc, urn, false);
                Ok(())
            }
            (_, _, None | Some(Value::Null)) => Ok(()),
            (_, _, Some(Value::Object(values))) => self.values(doc, op, values, container),
            (_, _, Some(_)) => Err(ScimError::invalid_value(
                "a schema's value must be an object of its attributes",
            )),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn at_target(
        &mut self,
        doc: &mut Doc,
        op: OpKind,
        t: Target,
        filter: Option<&Filter>,
        after: Option<&'static AttrDef>,
        value: Option<&Value>,
        origin: Origin,
    ) -> Result<(), ScimError> {
        let leaf_read_only = [Some(t.def), t.sub, after]
            .into_iter()
            .flatten()
            .any(|d| d.mutability == Mutability::ReadOnly);
        if leaf_read_only {
            return read_only(doc, op, t, filter, after, value, origin);
        }
        let members = self.kind == ResourceKind::Group
            && t.container == Container::Core
            && t.def.name == "members";
        // A whole-list add, or a remove naming its values, states every id
        // it touches; anything else (replace, clear, filters) is known only
        // by comparing the member list before and after.
        let explicit_only = filter.is_none()
            && t.sub.is_none()
            && (op == OpKind::Add || (op == OpKind::Remove && value.is_some_and(is_present)));
        let before = (members && !explicit_only).then(|| member_ids(doc));

        match (filter, t.sub) {
            (Some(f), _) => self.filtered(doc, op, t, f, after, value)?,
            (None, Some(sub)) => sub_attribute(doc, op, t, sub, value)?,
            (None, None) => whole(doc, op, t, value)?,
        }

        if members {
            self.log_members(doc, op, t, filter, value, before.as_deref())?;
        }
        Ok(())
    }

    /// Records membership intents: the change this operation made to the
    /// snapshot, plus what it asked for explicitly (an add of a member that
    /// is already there, a removal of one that is not).
    fn log_members(
        &mut self,
        doc: &Doc,
        op: OpKind,
        t: Target,
        filter: Option<&Filter>,
        value: Option<&Value>,
        before: Option<&[String]>,
    ) -> Result<(), ScimError> {
        match (op, filter, value) {
            (OpKind::Add | OpKind::Replace, None, Some(v)) if t.sub.is_none() => {
                for id in element_values(t.def, v)? {
                    self.log.record(&id, true);
                }
            }
            (OpKind::Remove, None, Some(v)) if t.sub.is_none() => {
                for id in element_values(t.def, v)? {
                    self.log.record(&id, false);
                }
            }
            (OpKind::Remove, Some(f), _) => {
                if let Some(id) = value_eq(f) {
                    self.log.record(&id, false);
                }
            }
            _ => {}
        }
        // Within one operation the explicit intents and the snapshot diff
        // never disagree on an id; explicit first keeps the client's order.
        let Some(before) = before else {
            return Ok(());
        };
        let after = member_ids(doc);
        let folded = |ids: &[String]| ids.iter().map(|i| i.to_lowercase()).collect::<HashSet<_>>();
        let (was, now) = (folded(before), folded(&after));
        for id in before.iter().filter(|i| !now.contains(&i.to_lowercase())) {
            self.log.record(id, false);
        }
        for id in after.iter().filter(|i| !was.contains(&i.to_lowercase())) {
            self.log.record(id, true);
        }
        Ok(())
    }

    /// `attr[filter]` and `attr[filter].sub`.
    fn filtered(
        &mut self,
        doc: &mut Doc,
        op: OpKind,
        t: Target,
        filter: &Filter,
        after: Option<&'static AttrDef>,
        value: Option<&Value>,
    ) -> Result<(), ScimError> {
        let def = t.def;
        let Some(map) = container_mut(doc, t.container, op != OpKind::Remove) else {
            return Ok(());
        };
        let mut items = take_values(map, def);
        let hit: Vec<bool> = items
            .iter()
            .map(|item| filter.matches_value(item, self.kind, Some(def)))
            .collect();
        let matched: Vec<usize> = hit
            .iter()
            .enumerate()
            .filter_map(|(i, &h)| h.then_some(i))
            .collect();
        // Drops the matched values (a mask, so a filter matching every
        // member of a large group stays linear).
        let without_matched = |items: Vec<Value>| -> Vec<Value> {
            items
                .into_iter()
                .zip(&hit)
                .filter(|(_, &h)| !h)
                .map(|(v, _)| v)
                .collect()
        };
        let value = value.unwrap_or(&Value::Null);
        match (op, after) {
            (OpKind::Remove, None) => items = without_matched(items),
            (OpKind::Remove, Some(sub)) => {
                for &i in &matched {
                    if let Some(Value::Object(o)) = items.get_mut(i) {
                        take_ci(o, sub.name);
                    }
                }
                items.retain(is_present);
            }
            (OpKind::Add | OpKind::Replace, Some(sub)) => {
                let new = coerce(sub, value)?;
                if matched.is_empty() {
                    let Some(mut element) = eq_template(filter, def) else {
                        return Err(no_match(def, filter));
                    };
                    let becomes_primary = sub.name == "primary" && new == Some(Value::Bool(true));
                    if let Some(v) = new {
                        element.insert(sub.name.to_string(), v);
                    }
                    check_required_subs(def, &element)?;
                    items.push(Value::Object(element));
                    if becomes_primary {
                        let last = items.len() - 1;
                        keep_one_primary(&mut items, last);
                    }
                } else {
                    for &i in &matched {
                        if let Some(Value::Object(o)) = items.get_mut(i) {
                            check_immutable(def, sub, o, new.as_ref())?;
                            put(o, sub.name, new.clone());
                        }
                    }
                    if let (true, Some(&first)) = (
                        sub.name == "primary" && new == Some(Value::Bool(true)),
                        matched.first(),
                    ) {
                        keep_one_primary(&mut items, first);
                    }
                    items.retain(is_present);
                }
            }
            (OpKind::Add, None) => {
                let new = coerce_elements(def, value)?;
                if matched.is_empty() {
                    let Some(template) = eq_template(filter, def) else {
                        return Err(no_match(def, filter));
                    };
                    let new = new
                        .into_iter()
                        .map(|n| merged(Value::Object(template.clone()), n))
                        .collect::<Vec<_>>();
                    for n in &new {
                        if let Value::Object(o) = n {
                            check_required_subs(def, o)?;
                        }
                    }
                    items = merge_elements(def, items, new);
                } else {
                    for &i in &matched {
                        for n in &new {
                            if let Some(item) = items.get_mut(i) {
                                if let Value::Object(o) = item {
                                    for sub in def.sub_attributes {
                                        check_immutable(def, sub, o, n.get(sub.name))?;
                                    }
                                }
                                *item = merged(item.take(), n.clone());
                            }
                        }
                    }
                }
            }
            (OpKind::Replace, None) => {
                let new = coerce_elements(def, value)?;
                let template = if matched.is_empty() {
                    match eq_template(filter, def) {
                        Some(t) => Some(t),
                        None => return Err(no_match(def, filter)),
                    }
                } else {
                    None
                };
                items = without_matched(items);
                let new = match template {
                    Some(t) => new
                        .into_iter()
                        .map(|n| merged(Value::Object(t.clone()), n))
                        .collect(),
                    None => new,
                };
                for n in &new {
                    if let Value::Object(o) = n {
                        check_required_subs(def, o)?;
                    }
                }
                items = merge_elements(def, items, new);
            }
        }
        put(map, def.name, Some(Value::Array(items)));
        tidy_extension(doc, t.container);
        Ok(())
    }
}

/// A read-only attribute (`id`, `meta`, `groups`, `manager.displayName`):
/// a value equal to the current one is ignored (Okta sends the group's
/// `id` with every rename); anything else is `mutability`. In a path-less
/// value a read-only attribute the resource does not carry is ignored too,
/// since the caller may not have rendered it.
fn read_only(
    doc: &Doc,
    op: OpKind,
    t: Target,
    filter: Option<&Filter>,
    after: Option<&'static AttrDef>,
    value: Option<&Value>,
    origin: Origin,
) -> Result<(), ScimError> {
    let name = match t.sub.or(after) {
        Some(sub) => format!("{}.{}", t.def.name, sub.name),
        None => t.def.name.to_string(),
    };
    let refuse = || Err(ScimError::mutability(format!("`{name}` is read-only")));
    if op == OpKind::Remove {
        return refuse();
    }
    let given = value.unwrap_or(&Value::Null);
    if !is_present(given) {
        return Ok(());
    }
    if filter.is_some() || after.is_some() {
        return if origin == Origin::Path {
            refuse()
        } else {
            Ok(())
        };
    }
    let current = container(doc, t.container).and_then(|m| get_ci(m, t.def.name));
    let (current, def) = match t.sub {
        Some(sub) => (
            current
                .and_then(|c| c.as_object())
                .and_then(|o| get_ci(o, sub.name)),
            sub,
        ),
        None => (current, t.def),
    };
    match current.filter(|c| is_present(c)) {
        Some(cur) if same_value(def, given, cur) => Ok(()),
        Some(_) => Err(ScimError::mutability(format!(
            "`{name}` is read-only and the value sent differs from the current one"
        ))),
        None if origin == Origin::ValueKey => Ok(()),
        None => refuse(),
    }
}

/// Whether a client-sent read-only value agrees with the current one:
/// every sub-attribute it sends matches (it may send fewer), strings
/// compare per caseExact, dateTimes as instants.
fn same_value(def: &AttrDef, given: &Value, current: &Value) -> bool {
    match (given, current) {
        (Value::Object(g), Value::Object(c)) => {
            g.iter()
                .filter(|(_, v)| is_present(v))
                .all(|(k, gv)| match def.sub(k) {
                    Some(sub) => get_ci(c, k).is_some_and(|cv| same_value(sub, gv, cv)),
                    None => true,
                })
        }
        (Value::Array(g), Value::Array(c)) => {
            g.len() == c.len()
                && g.iter()
                    .all(|gv| c.iter().any(|cv| same_value(def, gv, cv)))
        }
        (Value::String(g), Value::String(c)) => {
            if def.ty == AttrType::DateTime {
                if let (Ok(a), Ok(b)) = (
                    chrono::DateTime::parse_from_rfc3339(g),
                    chrono::DateTime::parse_from_rfc3339(c),
                ) {
                    return a == b;
                }
            }
            if def.case_exact {
                g == c
            } else {
                g.to_lowercase() == c.to_lowercase()
            }
        }
        (g, c) => g == c,
    }
}

/// `add`/`replace`/`remove` on a whole attribute (no filter, no sub).
fn whole(doc: &mut Doc, op: OpKind, t: Target, value: Option<&Value>) -> Result<(), ScimError> {
    let def = t.def;
    let given = value.unwrap_or(&Value::Null);
    match op {
        OpKind::Remove if def.multi_valued && is_present(given) => {
            // Entra / JumpCloud: `remove` `members` with `[{"value": id}]`
            // removes just those values.
            let gone = coerce_elements(def, given)?;
            if let Some(map) = container_mut(doc, t.container, false) {
                let items = take_values(map, def)
                    .into_iter()
                    .filter(|item| !gone.iter().any(|g| same_element(def, item, g)))
                    .collect();
                put(map, def.name, Some(Value::Array(items)));
            }
        }
        OpKind::Remove => {
            if def.required {
                return Err(required(def));
            }
            if let Some(map) = container_mut(doc, t.container, false) {
                take_ci(map, def.name);
            }
        }
        OpKind::Add if given.is_null() => {}
        OpKind::Add | OpKind::Replace if def.multi_valued => {
            let new = coerce_elements(def, given)?;
            for n in &new {
                if let Value::Object(o) = n {
                    check_required_subs(def, o)?;
                }
            }
            let Some(map) = container_mut(doc, t.container, true) else {
                return Ok(());
            };
            let old = if op == OpKind::Add {
                take_values(map, def)
            } else {
                Vec::new()
            };
            put(
                map,
                def.name,
                Some(Value::Array(merge_elements(def, old, new))),
            );
        }
        OpKind::Add | OpKind::Replace if def.is_complex() => {
            // Both merge sub-attributes: RFC 7644 §3.5.2.1 and §3.5.2.3 say
            // sub-attributes not in the value are left unchanged.
            let new = coerce(def, given)?;
            let Some(map) = container_mut(doc, t.container, true) else {
                return Ok(());
            };
            match new {
                None => {
                    take_ci(map, def.name);
                }
                Some(new) => {
                    let old = take_ci(map, def.name).unwrap_or(Value::Null);
                    put(map, def.name, Some(merged(old, new)));
                }
            }
        }
        OpKind::Add | OpKind::Replace => {
            let new = coerce(def, given)?;
            if def.required && !new.as_ref().is_some_and(is_present) {
                return Err(required(def));
            }
            let Some(map) = container_mut(doc, t.container, true) else {
                return Ok(());
            };
            put(map, def.name, new);
        }
    }
    tidy_extension(doc, t.container);
    Ok(())
}

/// `name.givenName`, or `emails.value` without a filter, which means the
/// primary (else the first) email: clients that send it mean "the email".
fn sub_attribute(
    doc: &mut Doc,
    op: OpKind,
    t: Target,
    sub: &'static AttrDef,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let def = t.def;
    let given = value.unwrap_or(&Value::Null);
    if op == OpKind::Add && given.is_null() {
        return Ok(());
    }
    let new = if op == OpKind::Remove {
        None
    } else {
        coerce(sub, given)?
    };
    let Some(map) = container_mut(doc, t.container, op != OpKind::Remove) else {
        return Ok(());
    };
    if def.multi_valued {
        let mut items = take_values(map, def);
        if op == OpKind::Remove {
            for item in items.iter_mut() {
                if let Value::Object(o) = item {
                    take_ci(o, sub.name);
                }
            }
        } else {
            let at = items.iter().position(is_primary).unwrap_or(0);
            match items.get_mut(at) {
                Some(Value::Object(o)) => {
                    check_immutable(def, sub, o, new.as_ref())?;
                    put(o, sub.name, new);
                }
                _ => {
                    let mut o = Map::new();
                    put(&mut o, sub.name, new);
                    check_required_subs(def, &o)?;
                    items.push(Value::Object(o));
                }
            }
        }
        items.retain(is_present);
        put(map, def.name, Some(Value::Array(items)));
    } else {
        let mut object = match take_ci(map, def.name) {
            Some(Value::Object(o)) => o,
            _ => Map::new(),
        };
        put(&mut object, sub.name, new);
        put(map, def.name, Some(Value::Object(object)));
    }
    tidy_extension(doc, t.container);
    Ok(())
}

fn required(def: &AttrDef) -> ScimError {
    ScimError::invalid_value(format!(
        "`{}` is required and cannot be unassigned",
        def.name
    ))
}

fn no_match(def: &AttrDef, filter: &Filter) -> ScimError {
    ScimError::no_target(format!("no value of `{}` matches [{filter}]", def.name))
}

/// An immutable sub-attribute (a member's `value`) may be set where it is
/// absent but never changed.
fn check_immutable(
    def: &AttrDef,
    sub: &AttrDef,
    element: &Map<String, Value>,
    new: Option<&Value>,
) -> Result<(), ScimError> {
    if sub.mutability != Mutability::Immutable {
        return Ok(());
    }
    let Some(current) = get_ci(element, sub.name).filter(|c| is_present(c)) else {
        return Ok(());
    };
    match new {
        Some(n) if !is_present(n) || same_value(sub, n, current) => Ok(()),
        None => Ok(()),
        Some(_) => Err(ScimError::mutability(format!(
            "`{}.{}` is immutable",
            def.name, sub.name
        ))),
    }
}

fn check_required_subs(def: &AttrDef, element: &Map<String, Value>) -> Result<(), ScimError> {
    for sub in def.sub_attributes.iter().filter(|s| s.required) {
        if !get_ci(element, sub.name).is_some_and(is_present) {
            return Err(ScimError::invalid_value(format!(
                "each `{}` value needs `{}`",
                def.name, sub.name
            )));
        }
    }
    Ok(())
}

/// The value a filter made of `eq` terms describes (`type eq "work"` →
/// `{"type": "work"}`), for creating the value a filter did not find.
/// `None` if the filter says anything else.
fn eq_template(filter: &Filter, def: &AttrDef) -> Option<Map<String, Value>> {
    match filter {
        Filter::Compare(path, CompareOp::Eq, lit) if path.urn.is_none() && path.sub.is_none() => {
            let sub = def.sub(&path.name)?;
            let v = match lit {
                CompValue::Str(s) => Value::String(s.clone()),
                CompValue::Bool(b) => Value::Bool(*b),
                CompValue::Num(n) => Value::Number(n.clone()),
                CompValue::Null => return None,
            };
            let mut m = Map::new();
            m.insert(sub.name.to_string(), coerce(sub, &v).ok()??);
            Some(m)
        }
        Filter::And(items) => {
            let mut m = Map::new();
            for item in items {
                m.extend(eq_template(item, def)?);
            }
            Some(m)
        }
        _ => None,
    }
}

/// `value eq "x"` (alone or as a conjunct): the member a filtered remove
/// names even when the snapshot does not hold it.
fn value_eq(filter: &Filter) -> Option<String> {
    match filter {
        Filter::Compare(p, CompareOp::Eq, CompValue::Str(v))
            if p.urn.is_none() && p.sub.is_none() && p.name.eq_ignore_ascii_case("value") =>
        {
            Some(v.clone())
        }
        Filter::And(items) => items.iter().find_map(value_eq),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Values: coercion to the schema's types, and multi-valued merging
// ---------------------------------------------------------------------------

/// One value of `def`'s type, in canonical form: `None` for null or
/// nothing-present; booleans from `"True"`/`"False"` (Entra); a number for
/// a string attribute is `invalidValue`, never converted; a bare string
/// as `{"value": s}` for complex attributes with a `value` (Entra's
/// `manager`, a member id); complex values keep only known, writable
/// sub-attributes under their canonical names.
fn coerce(def: &AttrDef, v: &Value) -> Result<Option<Value>, ScimError> {
    let bad = |what: &str| {
        Err(ScimError::invalid_value(format!(
            "`{}` must be {what}, not {v}",
            def.name
        )))
    };
    let out = match (def.ty, v) {
        (_, Value::Null) => return Ok(None),
        (AttrType::Boolean, Value::Bool(b)) => Value::Bool(*b),
        (AttrType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("true") => {
            Value::Bool(true)
        }
        (AttrType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("false") => {
            Value::Bool(false)
        }
        (AttrType::Boolean, _) => return bad("a boolean"),
        (AttrType::Complex, Value::Object(o)) => {
            let mut out = Map::new();
            for (k, sv) in o {
                let Some(sub) = def.sub(k) else { continue };
                if sub.mutability == Mutability::ReadOnly {
                    continue;
                }
                if let Some(c) = coerce(sub, sv)? {
                    out.insert(sub.name.to_string(), c);
                }
            }
            // A value that held only read-only or unknown sub-attributes
            // (`{"display": "who?"}` as a member) still lacks what it needs.
            if def.multi_valued && !o.is_empty() {
                check_required_subs(def, &out)?;
            }
            Value::Object(out)
        }
        (AttrType::Complex, Value::String(_)) if def.sub("value").is_some() => {
            let mut out = Map::new();
            if let Some(sub) = def.sub("value") {
                if let Some(c) = coerce(sub, v)? {
                    out.insert(sub.name.to_string(), c);
                }
            }
            Value::Object(out)
        }
        (AttrType::Complex, _) => return bad("an object"),
        (_, Value::String(s)) => Value::String(s.clone()),
        // A number is not converted: a client sending one for a string
        // attribute has mapped the wrong source attribute.
        (_, _) => return bad("a string"),
    };
    Ok(Some(out).filter(is_present))
}

/// The values of a multi-valued attribute: an array, or one value.
fn coerce_elements(def: &AttrDef, v: &Value) -> Result<Vec<Value>, ScimError> {
    match v {
        Value::Array(items) => items
            .iter()
            .filter_map(|i| coerce(def, i).transpose())
            .collect(),
        other => Ok(coerce(def, other)?.into_iter().collect()),
    }
}

/// The `value` of each element a client sent (member ids).
fn element_values(def: &AttrDef, v: &Value) -> Result<Vec<String>, ScimError> {
    Ok(coerce_elements(def, v)?
        .iter()
        .filter_map(|e| field(e, "value").and_then(Value::as_str))
        .map(str::to_string)
        .collect())
}

/// The identity of a multi-valued element for de-duplication: its
/// `value`, folded unless caseExact. Elements without one compare whole.
fn element_key(def: &AttrDef, element: &Value) -> Option<String> {
    let v = field(element, "value")?.as_str()?;
    let exact = def.sub("value").is_some_and(|s| s.case_exact);
    Some(if exact {
        v.to_string()
    } else {
        v.to_lowercase()
    })
}

fn same_element(def: &AttrDef, a: &Value, b: &Value) -> bool {
    match (element_key(def, a), element_key(def, b)) {
        (Some(x), Some(y)) => x == y,
        (None, None) => a == b,
        _ => false,
    }
}

/// Adds `new` to `old`: an element equal to an existing one merges into it
/// (so a repeated member add changes nothing), others are appended. A new
/// `primary: true` clears `primary` on the rest (RFC 7643 §2.4).
fn merge_elements(def: &AttrDef, old: Vec<Value>, new: Vec<Value>) -> Vec<Value> {
    let mut out = old;
    let mut index: HashMap<String, usize> = out
        .iter()
        .enumerate()
        .filter_map(|(i, e)| element_key(def, e).map(|k| (k, i)))
        .collect();
    let mut primary = None;
    for n in new {
        let new_primary = is_primary(&n);
        let at = match element_key(def, &n) {
            Some(k) => index.get(&k).copied().or_else(|| {
                index.insert(k, out.len());
                None
            }),
            None => out.iter().position(|e| *e == n),
        };
        let at = match at {
            Some(i) => {
                // The value already held keeps its spelling (it is the
                // value's identity); the rest of what was sent is merged.
                let mut n = n;
                if let Value::Object(o) = &mut n {
                    take_ci(o, "value");
                }
                if let Some(slot) = out.get_mut(i) {
                    *slot = merged(slot.take(), n);
                }
                i
            }
            None => {
                out.push(n);
                out.len() - 1
            }
        };
        if new_primary {
            primary = Some(at);
        }
    }
    if let Some(p) = primary {
        keep_one_primary(&mut out, p);
    }
    out
}

fn is_primary(element: &Value) -> bool {
    field(element, "primary") == Some(&Value::Bool(true))
}

/// Only `keep` stays primary (RFC 7643 §2.4: at most one primary value).
fn keep_one_primary(items: &mut [Value], keep: usize) {
    for (i, item) in items.iter_mut().enumerate() {
        if i == keep || !is_primary(item) {
            continue;
        }
        if let Value::Object(o) = item {
            put(o, "primary", Some(Value::Bool(false)));
        }
    }
}

/// An object member by name, ignoring case.
fn field<'v>(v: &'v Value, name: &str) -> Option<&'v Value> {
    v.as_object().and_then(|o| get_ci(o, name))
}

/// `new`'s members written over `old`'s (objects); otherwise `new`.
fn merged(old: Value, new: Value) -> Value {
    match (old, new) {
        (Value::Object(mut o), Value::Object(n)) => {
            for (k, v) in n {
                put(&mut o, &k, Some(v));
            }
            Value::Object(o)
        }
        (_, n) => n,
    }
}

// ---------------------------------------------------------------------------
// JSON plumbing: case-insensitive keys, canonical names, extensions
// ---------------------------------------------------------------------------

/// Removes every key equal to `name` ignoring case; returns the first value.
fn take_ci(map: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let keys: Vec<String> = map
        .keys()
        .filter(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .collect();
    let mut first = None;
    for k in keys {
        let v = map.remove(&k);
        if first.is_none() {
            first = v;
        }
    }
    first
}

/// Sets `name` (canonical spelling, replacing any other spelling), or
/// removes it when the value is absent, null, empty (RFC 7643 §2.5).
fn put(map: &mut Map<String, Value>, name: &str, value: Option<Value>) {
    take_ci(map, name);
    if let Some(v) = value.filter(is_present) {
        map.insert(name.to_string(), v);
    }
}

/// A multi-valued attribute's current elements (a lone value counts as one).
fn take_values(map: &mut Map<String, Value>, def: &AttrDef) -> Vec<Value> {
    match take_ci(map, def.name) {
        Some(Value::Array(items)) => items,
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![other],
    }
}

fn container(doc: &Doc, c: Container) -> Option<&Doc> {
    match c {
        Container::Core => Some(doc),
        Container::Ext(urn) => get_ci(doc, urn).and_then(Value::as_object),
    }
}

/// The object holding the target's attributes; an extension's is created
/// (and listed in `schemas`) when `create` is set.
fn container_mut(doc: &mut Doc, c: Container, create: bool) -> Option<&mut Doc> {
    let Container::Ext(urn) = c else {
        return Some(doc);
    };
    let existing = doc
        .keys()
        .find(|k| k.eq_ignore_ascii_case(urn))
        .cloned()
        .filter(|k| doc.get(k).is_some_and(Value::is_object));
    let key = match existing {
        Some(k) => k,
        None if create => {
            take_ci(doc, urn);
            doc.insert(urn.to_string(), Value::Object(Map::new()));
            set_schema_listed(doc, urn, true);
            urn.to_string()
        }
        None => return None,
    };
    doc.get_mut(&key).and_then(Value::as_object_mut)
}

/// An extension left with nothing present disappears, with its `schemas`
/// entry, so the resource does not claim an empty extension.
fn tidy_extension(doc: &mut Doc, c: Container) {
    if let Container::Ext(urn) = c {
        if !get_ci(doc, urn).is_some_and(is_present) {
            take_ci(doc, urn);
            set_schema_listed(doc, urn, false);
        }
    }
}

/// Adds or removes `urn` in `schemas`, if the resource has a `schemas` array.
fn set_schema_listed(doc: &mut Doc, urn: &str, listed: bool) {
    let Some(Value::Array(schemas)) = doc.get_mut("schemas") else {
        return;
    };
    let present = schemas
        .iter()
        .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(urn)));
    if listed && !present {
        schemas.push(Value::String(urn.to_string()));
    } else if !listed {
        schemas.retain(|s| !s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(urn)));
    }
}

/// Ids in `members`, in order.
fn member_ids(doc: &Doc) -> Vec<String> {
    get_ci(doc, "members")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| field(m, "value").and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

/// Attributes whose present value differs between `before` and `after`.
fn changed_attributes(before: &Doc, after: &Doc, kind: ResourceKind) -> Vec<String> {
    let differs = |a: Option<&Value>, b: Option<&Value>| match (a, b) {
        (Some(a), Some(b)) => !same_present(a, b),
        (Some(v), None) | (None, Some(v)) => is_present(v),
        (None, None) => false,
    };
    let mut out: Vec<String> = kind
        .core_attributes()
        .iter()
        .filter(|d| differs(get_ci(before, d.name), get_ci(after, d.name)))
        .map(|d| d.name.to_string())
        .collect();
    for urn in kind.extensions() {
        let Some((urn, table)) = kind.extension_attributes(urn) else {
            continue;
        };
        let b = container(before, Container::Ext(urn));
        let a = container(after, Container::Ext(urn));
        for d in table {
            if differs(
                b.and_then(|m| get_ci(m, d.name)),
                a.and_then(|m| get_ci(m, d.name)),
            ) {
                out.push(format!("{urn}:{}", d.name));
            }
        }
    }
    out
}

/// Equality that ignores members which are not present (null, "", []),
/// so normalising a value the client did not change is not a change.
fn same_present(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let covered = |p: &Map<String, Value>, q: &Map<String, Value>| {
                p.iter()
                    .filter(|(_, v)| is_present(v))
                    .all(|(k, v)| get_ci(q, k).is_some_and(|w| same_present(v, w)))
            };
            covered(x, y) && covered(y, x)
        }
        (Value::Array(x), Value::Array(y)) => {
            let x: Vec<_> = x.iter().filter(|v| is_present(v)).collect();
            let y: Vec<_> = y.iter().filter(|v| is_present(v)).collect();
            x.len() == y.len() && x.iter().zip(&y).all(|(v, w)| same_present(v, w))
        }
        (x, y) if !is_present(x) && !is_present(y) => true,
        (x, y) => x == y,
    }
}

/// Membership intents in first-mention order; the last intent per id wins.
#[derive(Default)]
struct MemberLog {
    entries: Vec<(String, bool)>,
    index: HashMap<String, usize>,
}

impl MemberLog {
    fn record(&mut self, id: &str, add: bool) {
        let key = id.to_lowercase();
        match self.index.get(&key) {
            Some(&i) => {
                if let Some(entry) = self.entries.get_mut(i) {
                    entry.1 = add;
                }
            }
            None => {
                self.index.insert(key, self.entries.len());
                self.entries.push((id.to_string(), add));
            }
        }
    }

    fn finish(self) -> MemberChanges {
        let (added, removed): (Vec<_>, Vec<_>) =
            self.entries.into_iter().partition(|(_, add)| *add);
        MemberChanges {
            added: added.into_iter().map(|(id, _)| id).collect(),
            removed: removed.into_iter().map(|(id, _)| id).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use ResourceKind::{Group, User};

    const ENTERPRISE: &str = attrs::ENTERPRISE_USER_SCHEMA;

    fn user() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": "u-1",
            "externalId": "00ujl29u0le5T6Aj10h7",
            "userName": "jdoe@example.com",
            "name": {"givenName": "John", "familyName": "Doe"},
            "displayName": "John Doe",
            "active": true,
            "emails": [{"value": "jdoe@example.com", "type": "work", "primary": true}],
            "meta": {
                "resourceType": "User",
                "created": "2024-01-02T03:04:05Z",
                "lastModified": "2024-01-02T03:04:05Z",
                "version": "W/\"1\""
            }
        })
    }

    fn group(members: &[&str]) -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": "g-1",
            "displayName": "Engineering",
            "members": members.iter().map(|m| json!({"value": m, "type": "User"})).collect::<Vec<_>>(),
            "meta": {"resourceType": "Group", "version": "W/\"4\""}
        })
    }

    fn body(ops: Value) -> Value {
        json!({"schemas": [PATCH_OP_SCHEMA], "Operations": ops})
    }

    fn ok(resource: &Value, ops: Value, kind: ResourceKind) -> Patched {
        match apply(resource, &body(ops), kind) {
            Ok(p) => p,
            Err(e) => panic!("patch should apply: {e}"),
        }
    }

    fn err(resource: &Value, ops: Value, kind: ResourceKind) -> ScimError {
        match apply(resource, &body(ops), kind) {
            Ok(p) => panic!("patch should fail, got {}", p.resource),
            Err(e) => e,
        }
    }

    fn ids(members: &Value) -> Vec<&str> {
        members["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["value"].as_str())
            .collect()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    // ---- envelope ------------------------------------------------------

    #[test]
    fn refuses_a_body_without_the_patch_op_schema() {
        for bad in [
            json!({"Operations": []}),
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "Operations": []}),
            json!({"schemas": PATCH_OP_SCHEMA, "Operations": []}),
            json!([{"op": "add"}]),
        ] {
            let e = match PatchRequest::parse(&bad) {
                Ok(r) => panic!("{bad} should be refused, got {r:?}"),
                Err(e) => e,
            };
            assert_eq!(e.scim_type, Some("invalidSyntax"), "{bad}");
        }
    }

    #[test]
    fn refuses_missing_or_malformed_operations() {
        let cases = [
            (json!({"schemas": [PATCH_OP_SCHEMA]}), "invalidSyntax"),
            (
                json!({"schemas": [PATCH_OP_SCHEMA], "Operations": {"op": "add"}}),
                "invalidSyntax",
            ),
            (body(json!(["add"])), "invalidSyntax"),
            (
                body(json!([{"path": "title", "value": "x"}])),
                "invalidSyntax",
            ),
            (
                body(json!([{"op": "merge", "path": "title", "value": "x"}])),
                "invalidSyntax",
            ),
            (
                body(json!([{"op": "add", "path": 5, "value": "x"}])),
                "invalidPath",
            ),
            (
                body(json!([{"op": "add", "path": "name..givenName", "value": "x"}])),
                "invalidPath",
            ),
            (body(json!([{"op": "remove"}])), "noTarget"),
            (
                body(json!([{"op": "add", "path": "title"}])),
                "invalidValue",
            ),
            (
                body(json!([{"op": "replace", "value": "x"}])),
                "invalidValue",
            ),
        ];
        for (bad, scim_type) in cases {
            let e = match PatchRequest::parse(&bad) {
                Ok(r) => panic!("{bad} should be refused, got {r:?}"),
                Err(e) => e,
            };
            assert_eq!(e.scim_type, Some(scim_type), "{bad}: {e}");
        }
    }

    #[test]
    fn errors_name_the_failing_operation() {
        let e = err(
            &user(),
            json!([{"op": "replace", "path": "title", "value": "x"}, {"op": "replace", "path": "nope", "value": 1}]),
            User,
        );
        assert_eq!(e.scim_type, Some("invalidPath"));
        assert!(e.detail.starts_with("Operations[1]:"), "{}", e.detail);
    }

    #[test]
    fn refuses_more_operations_than_the_limit() {
        let ops: Vec<Value> = (0..=MAX_OPERATIONS)
            .map(|_| json!({"op": "replace", "path": "title", "value": "x"}))
            .collect();
        assert_eq!(
            PatchRequest::parse(&body(json!(ops)))
                .map(|_| ())
                .err()
                .and_then(|e| e.scim_type),
            Some("invalidValue")
        );
    }

    #[test]
    fn an_empty_operations_array_changes_nothing() {
        let p = ok(&user(), json!([]), User);
        assert_eq!(p.resource, user());
        assert!(p.is_noop());
    }

    #[test]
    fn the_input_resource_is_left_untouched() {
        let before = user();
        let copy = before.clone();
        let p = ok(
            &before,
            json!([{"op": "replace", "path": "active", "value": false}]),
            User,
        );
        assert_eq!(before, copy);
        assert_eq!(p.resource["active"], false);
    }

    // ---- users: what the IdPs send ---------------------------------------

    #[test]
    fn jumpcloud_replaces_user_fields_one_path_at_a_time() {
        let p = ok(
            &user(),
            json!([
                {"op": "replace", "path": "name.givenName", "value": "Johnny"},
                {"op": "replace", "path": "name.familyName", "value": "Doe-Smith"},
                {"op": "replace", "path": "active", "value": false}
            ]),
            User,
        );
        assert_eq!(
            p.resource["name"],
            json!({"givenName": "Johnny", "familyName": "Doe-Smith"})
        );
        assert_eq!(p.resource["active"], false);
        assert_eq!(p.changed, strings(&["name", "active"]));
        assert!(p.members.is_empty());
    }

    #[test]
    fn okta_pathless_replace_deactivates_and_reactivates() {
        let p = ok(
            &user(),
            json!([{"op": "replace", "value": {"active": false}}]),
            User,
        );
        assert_eq!(p.resource["active"], false);
        assert_eq!(p.changed, strings(&["active"]));
        let again = ok(
            &p.resource,
            json!([{"op": "replace", "value": {"active": true}}]),
            User,
        );
        assert_eq!(again.resource["active"], true);
    }

    #[test]
    fn op_names_are_case_insensitive() {
        let p = ok(
            &user(),
            json!([
                {"op": "Replace", "path": "displayName", "value": "J"},
                {"op": "ADD", "path": "title", "value": "CTO"},
                {"op": "Remove", "path": "name.familyName"}
            ]),
            User,
        );
        assert_eq!(p.resource["displayName"], "J");
        assert_eq!(p.resource["title"], "CTO");
        assert_eq!(p.resource["name"], json!({"givenName": "John"}));
    }

    #[test]
    fn entra_string_booleans_are_accepted() {
        let p = ok(
            &user(),
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
            User,
        );
        assert_eq!(p.resource["active"], json!(false));
        let p = ok(
            &p.resource,
            json!([{"op": "Replace", "value": {"active": "TRUE"}}]),
            User,
        );
        assert_eq!(p.resource["active"], json!(true));
        let p = ok(
            &user(),
            json!([{"op": "Add", "path": "emails", "value": [{"value": "j@home.example", "type": "home", "primary": "True"}]}]),
            User,
        );
        assert_eq!(p.resource["emails"][1]["primary"], json!(true));
        // ... and the old primary stops being primary.
        assert_eq!(p.resource["emails"][0]["primary"], json!(false));
    }

    #[test]
    fn values_of_the_wrong_type_are_invalid_value() {
        for (path, value) in [
            ("active", json!("yes")),
            ("active", json!(1)),
            ("userName", json!(true)),
            ("name", json!(5)),
            ("emails", json!([true])),
            ("name.givenName", json!({"x": 1})),
        ] {
            let e = err(
                &user(),
                json!([{"op": "replace", "path": path, "value": value}]),
                User,
            );
            assert_eq!(e.scim_type, Some("invalidValue"), "{path} = {value}");
        }
    }

    #[test]
    fn entra_pathless_replace_resolves_dotted_and_urn_keys() {
        let p = ok(
            &user(),
            json!([{"op": "replace", "value": {
                "displayName": "Bjfe",
                "name.givenName": "Kkom",
                "name.familyName": "Unua",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "Aklq"
            }}]),
            User,
        );
        assert_eq!(p.resource["displayName"], "Bjfe");
        assert_eq!(
            p.resource["name"],
            json!({"givenName": "Kkom", "familyName": "Unua"})
        );
        assert_eq!(p.resource[ENTERPRISE], json!({"employeeNumber": "Aklq"}));
        // The new extension is declared in `schemas`.
        assert!(p.resource["schemas"]
            .as_array()
            .is_some_and(|s| s.contains(&json!(ENTERPRISE))));
        assert_eq!(
            p.changed,
            strings(&[
                "name",
                "displayName",
                &format!("{ENTERPRISE}:employeeNumber")
            ])
        );
    }

    #[test]
    fn pathless_value_accepts_a_nested_extension_object() {
        let p = ok(
            &user(),
            json!([{"op": "add", "value": {
                ENTERPRISE: {"department": "Sales", "manager": {"value": "u-9", "displayName": "Ann Manager"}},
            }}]),
            User,
        );
        assert_eq!(
            p.resource[ENTERPRISE],
            json!({"department": "Sales", "manager": {"value": "u-9", "displayName": "Ann Manager"}})
        );
        // A path that is the extension URN itself works too.
        let p = ok(
            &p.resource,
            json!([{"op": "replace", "path": ENTERPRISE, "value": {"costCenter": "42"}}]),
            User,
        );
        assert_eq!(p.resource[ENTERPRISE]["costCenter"], "42");
        assert_eq!(p.resource[ENTERPRISE]["department"], "Sales");
        let p = ok(
            &p.resource,
            json!([{"op": "remove", "path": ENTERPRISE}]),
            User,
        );
        assert!(p.resource.get(ENTERPRISE).is_none());
        assert!(!p.resource["schemas"]
            .as_array()
            .is_some_and(|s| s.contains(&json!(ENTERPRISE))));
    }

    #[test]
    fn entra_manager_sent_as_a_bare_id_becomes_its_value() {
        let path = format!("{ENTERPRISE}:manager");
        let p = ok(
            &user(),
            json!([{"op": "Add", "path": path, "value": "u-42"}]),
            User,
        );
        assert_eq!(p.resource[ENTERPRISE]["manager"], json!({"value": "u-42"}));
        let p = ok(&p.resource, json!([{"op": "Remove", "path": path}]), User);
        // Removing the extension's last attribute removes the extension.
        assert!(p.resource.get(ENTERPRISE).is_none());
        assert_eq!(p.changed, strings(&[&path]));
    }

    #[test]
    fn numbers_are_refused_for_string_attributes() {
        // `PATCH replace userName 5` must not rename the user to "5".
        for ops in [
            json!([{"op": "replace", "value": {format!("{ENTERPRISE}:employeeNumber"): 701984}}]),
            json!([{"op": "replace", "path": "userName", "value": 5}]),
            json!([{"op": "add", "path": "emails", "value": [{"value": 7}]}]),
        ] {
            let e = err(&user(), ops.clone(), User);
            assert_eq!(e.scim_type, Some("invalidValue"), "{ops}");
        }
        let e = err(
            &group(&[]),
            json!([{"op": "add", "path": "members", "value": [{"value": 9}]}]),
            Group,
        );
        assert_eq!(e.scim_type, Some("invalidValue"));
    }

    #[test]
    fn attribute_names_are_case_insensitive_and_written_canonically() {
        let p = ok(
            &user(),
            json!([
                {"op": "replace", "path": "NAME.GIVENNAME", "value": "Jo"},
                {"op": "replace", "value": {"DisplayName": "Jo D", "ACTIVE": false}},
                {"op": "add", "path": "urn:ietf:params:scim:schemas:core:2.0:user:Title", "value": "Eng"}
            ]),
            User,
        );
        assert_eq!(p.resource["name"]["givenName"], "Jo");
        assert_eq!(p.resource["displayName"], "Jo D");
        assert_eq!(p.resource["active"], false);
        assert_eq!(p.resource["title"], "Eng");
        let keys: Vec<&String> = p
            .resource
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys())
            .collect();
        assert!(
            !keys
                .iter()
                .any(|k| ["DisplayName", "ACTIVE", "Title"].contains(&k.as_str())),
            "{keys:?}"
        );
    }

    #[test]
    fn replace_of_a_complex_attribute_merges_sub_attributes() {
        let p = ok(
            &user(),
            json!([{"op": "replace", "path": "name", "value": {"givenName": "Jack"}}]),
            User,
        );
        assert_eq!(
            p.resource["name"],
            json!({"givenName": "Jack", "familyName": "Doe"})
        );
        let p = ok(
            &user(),
            json!([{"op": "replace", "value": {"name": {"middleName": "Q"}}}]),
            User,
        );
        assert_eq!(
            p.resource["name"],
            json!({"givenName": "John", "familyName": "Doe", "middleName": "Q"})
        );
    }

    #[test]
    fn replace_with_null_unassigns_and_add_with_null_adds_nothing() {
        let p = ok(
            &user(),
            json!([{"op": "replace", "path": "displayName", "value": null}]),
            User,
        );
        assert!(p.resource.get("displayName").is_none());
        assert_eq!(p.changed, strings(&["displayName"]));
        let p = ok(
            &user(),
            json!([{"op": "add", "path": "displayName", "value": null}]),
            User,
        );
        assert_eq!(p.resource, user());
    }

    #[test]
    fn okta_read_only_id_equal_to_the_current_one_is_ignored() {
        let p = ok(
            &user(),
            json!([{"op": "replace", "value": {"id": "u-1", "displayName": "X"}}]),
            User,
        );
        assert_eq!(p.resource["id"], "u-1");
        assert_eq!(p.changed, strings(&["displayName"]));
        let e = err(
            &user(),
            json!([{"op": "replace", "value": {"id": "u-2", "displayName": "X"}}]),
            User,
        );
        assert_eq!(e.scim_type, Some("mutability"));
        // The id is case-exact: a different case is a different id.
        let e = err(
            &user(),
            json!([{"op": "replace", "path": "id", "value": "U-1"}]),
            User,
        );
        assert_eq!(e.scim_type, Some("mutability"));
        let e = err(&user(), json!([{"op": "remove", "path": "id"}]), User);
        assert_eq!(e.scim_type, Some("mutability"));
    }

    #[test]
    fn read_only_meta_is_ignored_when_it_agrees_and_refused_when_it_does_not() {
        let agreeing = json!({"resourceType": "User", "lastModified": "2024-01-02T04:04:05+01:00"});
        let p = ok(
            &user(),
            json!([{"op": "replace", "value": {"meta": agreeing, "title": "T"}}]),
            User,
        );
        assert_eq!(p.resource["meta"], user()["meta"]);
        let e = err(
            &user(),
            json!([{"op": "replace", "value": {"meta": {"version": "W/\"9\""}}}]),
            User,
        );
        assert_eq!(e.scim_type, Some("mutability"));
        let e = err(
            &user(),
            json!([{"op": "replace", "path": "meta.version", "value": "W/\"9\""}]),
            User,
        );
        assert_eq!(e.scim_type, Some("mutability"));
    }

    #[test]
    fn read_only_groups_cannot_be_patched_on_a_user() {
        let e = err(
            &user(),
            json!([{"op": "add", "path": "groups", "value": [{"value": "g-1"}]}]),
            User,
        );
        assert_eq!(e.scim_type, Some("mutability"));
        // Okta's `groups: []` extra in a value asserts nothing.
        let p = ok(
            &user(),
            json!([{"op": "replace", "value": {"groups": [], "title": "T"}}]),
            User,
        );
        assert!(p.resource.get("groups").is_none());
    }

    #[test]
    fn unknown_attributes_in_values_are_ignored() {
        let p = ok(
            &user(),
            json!([{"op": "replace", "value": {
                "favouriteColour": "blue",
                "password": "1mz050nq",
                "name": {"givenName": "J", "nickname?": "x"},
                "urn:example:custom:1.0:User": {"shoeSize": 44},
                "urn:example:custom:1.0:User:hatSize": 7,
                "emails": [{"value": "j@x.example", "label": "ignored"}],
                "schemas": ["whatever"]
            }}]),
            User,
        );
        let r = p.resource.as_object().cloned().unwrap_or_default();
        for absent in ["favouriteColour", "password", "urn:example:custom:1.0:User"] {
            assert!(!r.contains_key(absent), "{absent} should be dropped");
        }
        assert_eq!(
            p.resource["name"],
            json!({"givenName": "J", "familyName": "Doe"})
        );
        assert_eq!(p.resource["emails"], json!([{"value": "j@x.example"}]));
        assert_eq!(p.resource["schemas"], user()["schemas"]);
        assert_eq!(p.changed, strings(&["name", "emails"]));
    }

    #[test]
    fn jumpcloud_password_sync_is_accepted_and_dropped() {
        let p = ok(
            &user(),
            json!([{"op": "replace", "path": "password", "value": "s3cret"}]),
            User,
        );
        assert!(p.resource.get("password").is_none());
        assert!(p.is_noop());
    }

    #[test]
    fn unknown_attribute_in_a_path_is_invalid_path() {
        for path in [
            "favouriteColour",
            "name.nickname",
            "emails[type eq \"work\"].label",
            "userName.x",
            "members",
            "urn:ietf:params:scim:schemas:core:2.0:Group:displayName",
        ] {
            let e = err(
                &user(),
                json!([{"op": "replace", "path": path, "value": "x"}]),
                User,
            );
            assert_eq!(e.scim_type, Some("invalidPath"), "{path}");
        }
        // ... but an extension this gateway does not know is tolerated.
        let p = ok(
            &user(),
            json!([{"op": "replace", "path": "urn:example:custom:1.0:User:shoeSize", "value": 44}]),
            User,
        );
        assert!(p.is_noop());
    }

    #[test]
    fn removing_what_does_not_exist_succeeds() {
        for path in [
            "title",
            "name.middleName",
            "phoneNumbers",
            "emails[type eq \"home\"]",
            "emails[type eq \"home\"].value",
        ] {
            let p = ok(&user(), json!([{"op": "remove", "path": path}]), User);
            assert_eq!(p.resource, user(), "{path}");
            assert!(p.is_noop());
        }
        let p = ok(
            &user(),
            json!([{"op": "remove", "path": format!("{ENTERPRISE}:department")}]),
            User,
        );
        assert!(p.resource.get(ENTERPRISE).is_none());
    }

    #[test]
    fn required_attributes_cannot_be_unassigned() {
        for ops in [
            json!([{"op": "remove", "path": "userName"}]),
            json!([{"op": "replace", "path": "userName", "value": ""}]),
            json!([{"op": "replace", "value": {"userName": null}}]),
        ] {
            assert_eq!(err(&user(), ops, User).scim_type, Some("invalidValue"));
        }
        let e = err(
            &group(&[]),
            json!([{"op": "remove", "path": "displayName"}]),
            Group,
        );
        assert_eq!(e.scim_type, Some("invalidValue"));
    }

    #[test]
    fn same_value_replace_reports_no_change() {
        let p = ok(
            &user(),
            json!([
                {"op": "replace", "path": "userName", "value": "jdoe@example.com"},
                {"op": "replace", "value": {"name": {"givenName": "John"}, "active": "true"}},
                {"op": "add", "path": "emails", "value": [{"value": "JDOE@example.com", "type": "work"}]}
            ]),
            User,
        );
        assert!(p.changed.is_empty(), "{:?}", p.changed);
    }

    // ---- multi-valued attributes and value filters ------------------------

    #[test]
    fn add_to_a_multi_valued_attribute_appends_new_values() {
        let p = ok(
            &user(),
            json!([{"op": "add", "path": "phoneNumbers", "value": [{"value": "+1 555", "type": "work"}]},
                   {"op": "add", "path": "emails", "value": {"value": "j@home.example", "type": "home"}}]),
            User,
        );
        assert_eq!(
            p.resource["phoneNumbers"],
            json!([{"value": "+1 555", "type": "work"}])
        );
        assert_eq!(p.resource["emails"].as_array().map(Vec::len), Some(2));
        assert_eq!(p.changed, strings(&["emails", "phoneNumbers"]));
    }

    #[test]
    fn adding_an_existing_value_merges_instead_of_duplicating() {
        let p = ok(
            &user(),
            json!([{"op": "add", "path": "emails", "value": [{"value": "JDOE@EXAMPLE.COM", "display": "John"}]}]),
            User,
        );
        assert_eq!(
            p.resource["emails"],
            json!([{"value": "jdoe@example.com", "type": "work", "primary": true, "display": "John"}])
        );
    }

    #[test]
    fn replace_of_a_multi_valued_attribute_replaces_every_value() {
        let p = ok(
            &user(),
            json!([{"op": "replace", "path": "emails", "value": [{"value": "new@x.example"}]}]),
            User,
        );
        assert_eq!(p.resource["emails"], json!([{"value": "new@x.example"}]));
        let p = ok(
            &user(),
            json!([{"op": "replace", "path": "emails", "value": []}]),
            User,
        );
        assert!(p.resource.get("emails").is_none());
    }

    #[test]
    fn entra_replaces_the_work_email_through_a_value_filter() {
        let p = ok(
            &user(),
            json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "john@new.example"}]),
            User,
        );
        assert_eq!(
            p.resource["emails"],
            json!([{"value": "john@new.example", "type": "work", "primary": true}])
        );
        assert_eq!(p.changed, strings(&["emails"]));
    }

    #[test]
    fn entra_creates_a_missing_value_its_filter_describes() {
        let p = ok(
            &user(),
            json!([{"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+44 7700"},
                   {"op": "Replace", "path": "addresses[type eq \"work\"].locality", "value": "Leeds"}]),
            User,
        );
        assert_eq!(
            p.resource["phoneNumbers"],
            json!([{"type": "mobile", "value": "+44 7700"}])
        );
        assert_eq!(
            p.resource["addresses"],
            json!([{"type": "work", "locality": "Leeds"}])
        );
    }

    #[test]
    fn replace_through_a_filter_that_matches_nothing_and_describes_nothing_is_no_target() {
        let e = err(
            &user(),
            json!([{"op": "replace", "path": "emails[value co \"@nowhere\"].type", "value": "home"}]),
            User,
        );
        assert_eq!(e.scim_type, Some("noTarget"));
        let e = err(
            &user(),
            json!([{"op": "replace", "path": "emails[type eq \"x\" or type eq \"y\"]", "value": {"value": "a@b"}}]),
            User,
        );
        assert_eq!(e.scim_type, Some("noTarget"));
    }

    #[test]
    fn value_filter_selects_only_matching_values() {
        let two = ok(
            &user(),
            json!([{"op": "add", "path": "emails", "value": [{"value": "j@home.example", "type": "home"}]}]),
            User,
        )
        .resource;
        let p = ok(
            &two,
            json!([{"op": "remove", "path": "emails[type eq \"HOME\"]"}]),
            User,
        );
        assert_eq!(p.resource["emails"], user()["emails"]);
        let p = ok(
            &two,
            json!([{"op": "remove", "path": "emails[type eq \"work\"].primary"}]),
            User,
        );
        assert_eq!(
            p.resource["emails"][0],
            json!({"value": "jdoe@example.com", "type": "work"})
        );
        assert_eq!(p.resource["emails"][1], two["emails"][1]);
        let p = ok(
            &two,
            json!([{"op": "replace", "path": "emails[type eq \"home\"]", "value": {"value": "h@x", "type": "other"}}]),
            User,
        );
        assert_eq!(
            p.resource["emails"][1],
            json!({"value": "h@x", "type": "other"})
        );
    }

    #[test]
    fn setting_primary_through_a_filter_clears_the_other_primary() {
        let two = ok(
            &user(),
            json!([{"op": "add", "path": "emails", "value": [{"value": "j@home.example", "type": "home"}]}]),
            User,
        )
        .resource;
        let p = ok(
            &two,
            json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": true}]),
            User,
        );
        assert_eq!(p.resource["emails"][0]["primary"], false);
        assert_eq!(p.resource["emails"][1]["primary"], true);
    }

    #[test]
    fn sub_attribute_of_a_multi_valued_attribute_without_filter_means_the_primary_value() {
        let p = ok(
            &user(),
            json!([{"op": "replace", "path": "emails.value", "value": "jd@new.example"}]),
            User,
        );
        assert_eq!(p.resource["emails"][0]["value"], "jd@new.example");
        let bare = json!({"userName": "x"});
        let p = ok(
            &bare,
            json!([{"op": "add", "path": "emails.value", "value": "x@y"}]),
            User,
        );
        assert_eq!(p.resource["emails"], json!([{"value": "x@y"}]));
        let p = ok(
            &user(),
            json!([{"op": "remove", "path": "emails.type"}]),
            User,
        );
        assert_eq!(
            p.resource["emails"],
            json!([{"value": "jdoe@example.com", "primary": true}])
        );
    }

    #[test]
    fn value_filter_on_a_single_valued_attribute_is_invalid_path() {
        let e = err(
            &user(),
            json!([{"op": "remove", "path": "name[givenName eq \"John\"]"}]),
            User,
        );
        assert_eq!(e.scim_type, Some("invalidPath"));
    }

    // ---- groups --------------------------------------------------------

    #[test]
    fn jumpcloud_adds_members_with_value_only_objects() {
        let p = ok(
            &group(&["u1"]),
            json!([{"op": "add", "path": "members", "value": [{"value": "u2"}, {"value": "u3"}]}]),
            Group,
        );
        assert_eq!(ids(&p.resource), ["u1", "u2", "u3"]);
        assert_eq!(p.members.added, strings(&["u2", "u3"]));
        assert!(p.members.removed.is_empty());
        assert_eq!(p.changed, strings(&["members"]));
    }

    #[test]
    fn jumpcloud_repeated_member_add_is_idempotent() {
        let ops = json!([{"op": "add", "path": "members", "value": [{"value": "u2"}]}]);
        let first = ok(&group(&["u1"]), ops.clone(), Group);
        let second = ok(&first.resource, ops, Group);
        assert_eq!(second.resource, first.resource);
        assert_eq!(ids(&second.resource), ["u1", "u2"]);
        assert!(second.changed.is_empty());
        // The intent is still reported; the directory's add is a no-op.
        assert_eq!(second.members.added, strings(&["u2"]));
        // The same id twice in one request is one member.
        let p = ok(
            &group(&[]),
            json!([{"op": "add", "path": "members", "value": [{"value": "u9"}, {"value": "u9"}]}]),
            Group,
        );
        assert_eq!(ids(&p.resource), ["u9"]);
        assert_eq!(p.members.added, strings(&["u9"]));
    }

    #[test]
    fn jumpcloud_removes_a_member_with_a_value_array() {
        let p = ok(
            &group(&["u1", "u2", "u3"]),
            json!([{"op": "remove", "path": "members", "value": [{"value": "u2"}]}]),
            Group,
        );
        assert_eq!(ids(&p.resource), ["u1", "u3"]);
        assert_eq!(p.members.removed, strings(&["u2"]));
        assert!(p.members.added.is_empty());
    }

    #[test]
    fn okta_removes_a_member_by_value_filter() {
        let p = ok(
            &group(&["u1", "u2"]),
            json!([{"op": "remove", "path": "members[value eq \"u1\"]"}]),
            Group,
        );
        assert_eq!(ids(&p.resource), ["u2"]);
        assert_eq!(p.members.removed, strings(&["u1"]));
    }

    #[test]
    fn removing_an_absent_member_succeeds_and_still_states_the_intent() {
        for ops in [
            json!([{"op": "remove", "path": "members[value eq \"ghost\"]"}]),
            json!([{"op": "Remove", "path": "members", "value": [{"value": "ghost"}]}]),
        ] {
            let p = ok(&group(&["u1"]), ops, Group);
            assert_eq!(ids(&p.resource), ["u1"]);
            assert!(p.changed.is_empty());
            // Intent, so a concurrent add of "ghost" is undone as the client asked.
            assert_eq!(p.members.removed, strings(&["ghost"]));
        }
    }

    #[test]
    fn okta_membership_patch_removes_and_adds_in_one_request() {
        let p = ok(
            &group(&["89bb1940", "u2"]),
            json!([
                {"op": "remove", "path": "members[value eq \"89bb1940\"]"},
                {"op": "add", "path": "members", "value": [{"value": "23a35c27", "display": "test.user@okta.local"}]}
            ]),
            Group,
        );
        assert_eq!(ids(&p.resource), ["u2", "23a35c27"]);
        // `display` is the server's (the member's own label), not taken.
        assert!(p.resource["members"][1].get("display").is_none());
        assert_eq!(p.members.added, strings(&["23a35c27"]));
        assert_eq!(p.members.removed, strings(&["89bb1940"]));
    }

    #[test]
    fn entra_adds_members_with_a_null_ref() {
        let p = ok(
            &group(&[]),
            json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": "f648"}]}]),
            Group,
        );
        assert_eq!(p.resource["members"], json!([{"value": "f648"}]));
        assert_eq!(p.members.added, strings(&["f648"]));
    }

    #[test]
    fn the_last_membership_operation_on_an_id_wins() {
        let p = ok(
            &group(&[]),
            json!([
                {"op": "add", "path": "members", "value": [{"value": "u1"}, {"value": "u2"}]},
                {"op": "remove", "path": "members[value eq \"u1\"]"},
                {"op": "remove", "path": "members", "value": [{"value": "u2"}]},
                {"op": "add", "path": "members", "value": [{"value": "u2"}]}
            ]),
            Group,
        );
        assert_eq!(ids(&p.resource), ["u2"]);
        assert_eq!(p.members.added, strings(&["u2"]));
        assert_eq!(p.members.removed, strings(&["u1"]));
    }

    #[test]
    fn replace_members_states_the_whole_new_membership() {
        let p = ok(
            &group(&["u1", "u2"]),
            json!([{"op": "replace", "path": "members", "value": [{"value": "u2"}, {"value": "u3"}]}]),
            Group,
        );
        assert_eq!(ids(&p.resource), ["u2", "u3"]);
        assert_eq!(p.members.removed, strings(&["u1"]));
        assert_eq!(p.members.added, strings(&["u2", "u3"]));
        // Path-less replace of members behaves the same.
        let q = ok(
            &group(&["u1", "u2"]),
            json!([{"op": "replace", "value": {"members": [{"value": "u2"}, {"value": "u3"}]}}]),
            Group,
        );
        assert_eq!(q.members, p.members);
    }

    #[test]
    fn remove_members_without_value_or_filter_clears_the_group() {
        let p = ok(
            &group(&["u1", "u2"]),
            json!([{"op": "remove", "path": "members"}]),
            Group,
        );
        assert!(p.resource.get("members").is_none());
        assert_eq!(p.members.removed, strings(&["u1", "u2"]));
    }

    #[test]
    fn a_member_needs_a_value_and_its_value_is_immutable() {
        let e = err(
            &group(&[]),
            json!([{"op": "add", "path": "members", "value": [{"display": "who?"}]}]),
            Group,
        );
        assert_eq!(e.scim_type, Some("invalidValue"));
        let e = err(
            &group(&["u1"]),
            json!([{"op": "replace", "path": "members[value eq \"u1\"].value", "value": "u2"}]),
            Group,
        );
        assert_eq!(e.scim_type, Some("mutability"));
    }

    #[test]
    fn okta_group_rename_with_its_id_in_the_value() {
        let p = ok(
            &group(&["u1"]),
            json!([{"op": "replace", "value": {"id": "g-1", "displayName": "Eng (renamed)"}}]),
            Group,
        );
        assert_eq!(p.resource["displayName"], "Eng (renamed)");
        assert_eq!(p.changed, strings(&["displayName"]));
        assert!(p.members.is_empty());
        let e = err(
            &group(&[]),
            json!([{"op": "replace", "value": {"id": "g-2", "displayName": "x"}}]),
            Group,
        );
        assert_eq!(e.scim_type, Some("mutability"));
    }

    #[test]
    fn jumpcloud_renames_a_group_by_path() {
        let p = ok(
            &group(&["u1"]),
            json!([{"op": "replace", "path": "displayName", "value": "Platform"}]),
            Group,
        );
        assert_eq!(p.resource["displayName"], "Platform");
        assert_eq!(ids(&p.resource), ["u1"]);
        assert!(p.members.is_empty());
    }

    #[test]
    fn a_failing_operation_fails_the_whole_request() {
        let e = err(
            &group(&["u1"]),
            json!([{"op": "add", "path": "members", "value": [{"value": "u2"}]}, {"op": "replace", "path": "id", "value": "other"}]),
            Group,
        );
        assert_eq!(e.scim_type, Some("mutability"));
    }

    // ---- fuzzing -------------------------------------------------------

    #[test]
    fn random_operations_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3552);
        let ops = ["add", "Replace", "remove", "bogus"];
        let paths = [
            None,
            Some("members"),
            Some("members[value eq \"u1\"]"),
            Some("emails[type eq \"work\"].value"),
            Some("emails"),
            Some("name.givenName"),
            Some("name"),
            Some("active"),
            Some("id"),
            Some("meta.version"),
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"),
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"),
            Some("emails[type eq \"work\"]"),
            Some("displayName"),
            Some("x[["),
        ];
        let values = [
            json!(null),
            json!("False"),
            json!(true),
            json!(3),
            json!("u1"),
            json!([{"value": "u1"}, {"value": "u2", "primary": "true"}]),
            json!({"value": "v", "type": "work"}),
            json!({"active": "True", "name.givenName": "G", "id": "u-1", "members": [{"value": "u3"}]}),
            json!({"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "D"}}),
            json!([]),
            json!({}),
        ];
        for i in 0..5000 {
            let n = rng.random_range(1..4);
            let body_ops: Vec<Value> = (0..n)
                .map(|_| {
                    let mut op = Map::new();
                    op.insert("op".into(), json!(ops[rng.random_range(0..ops.len())]));
                    if let Some(p) = paths[rng.random_range(0..paths.len())] {
                        op.insert("path".into(), json!(p));
                    }
                    if rng.random_bool(0.8) {
                        op.insert(
                            "value".into(),
                            values[rng.random_range(0..values.len())].clone(),
                        );
                    }
                    Value::Object(op)
                })
                .collect();
            let (resource, kind) = if i % 2 == 0 {
                (user(), User)
            } else {
                (group(&["u1", "u2"]), Group)
            };
            match apply(&resource, &body(json!(body_ops)), kind) {
                Ok(p) => {
                    // A patched resource can be patched again (it stays well-formed).
                    let again = apply(
                        &p.resource,
                        &body(json!([{"op": "replace", "value": {}}])),
                        kind,
                    );
                    assert!(again.is_ok(), "{body_ops:?}");
                }
                Err(e) => assert!(
                    e.scim_type.is_some() && e.status == 400,
                    "{body_ops:?}: {e}"
                ),
            }
        }
    }
}
