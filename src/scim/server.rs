//! The SCIM HTTP surface under `[scim] base_path`: authentication, routing,
//! and the provisioning semantics (adoption of SAML JIT users, tombstones,
//! deactivation that revokes sessions, idempotent membership). Handlers take
//! a `LocalRequest` and return a `LocalResponse`; filters, PATCH and the
//! JSON mapping are the pure cores in the sibling modules.

#[cfg(test)]
use serde_json::json;
use serde_json::Value;

use super::attrs::ResourceKind;
use super::auth::Client;
use super::filter::{Filter, Indexed};
use super::resource::{self, group_from_json, group_to_json, user_from_json, user_to_json};
use super::schemas;
pub use super::settings::Scim;
use super::ScimError;
use crate::app::Snapshot;
use crate::clock::now_ms;
use crate::directory::{rules, DirectoryError, Group, Member, ProvisionedVia, User};
use crate::web::{LocalRequest, LocalResponse};
use crate::webhook::event::{EventType, Source};
use crate::webhook::outbox::{Emit, OutboxEvent};

fn respond(status: u16, body: &Value) -> LocalResponse {
    LocalResponse::new(status, "application/scim+json", body.to_string())
}

fn error(e: &ScimError) -> LocalResponse {
    respond(e.status, &e.to_json())
}

fn dir_error(e: DirectoryError) -> ScimError {
    match e {
        DirectoryError::NotFound { what } => ScimError::not_found(format!("{what} not found")),
        DirectoryError::Conflict { what } => {
            ScimError::uniqueness(format!("{what} is already taken"))
        }
        DirectoryError::VersionMismatch { .. } => ScimError::new(
            412,
            None,
            "the resource changed since the version given in If-Match",
        ),
        DirectoryError::Invalid(m) => ScimError::invalid_value(m),
        DirectoryError::Store(s) => ScimError::new(503, None, format!("store unavailable: {s}")),
    }
}

/// Handles one request under the SCIM base path.
/// Every request, answered or refused, goes to the provisioning log.
pub async fn handle(app: &Snapshot, scim: &Scim, req: &LocalRequest) -> LocalResponse {
    let started = std::time::Instant::now();
    let (resp, client, err) = serve(app, scim, req).await;
    let resource_id = {
        let sub = req.path[scim.base_path.len()..].trim_matches('/');
        let mut segs = sub.split('/').filter(|s| !s.is_empty());
        match (segs.next(), segs.next()) {
            (Some("Users" | "Groups"), Some(id)) if id != ".search" => Some(id.to_string()),
            (Some("Users" | "Groups"), None) if resp.status == 201 => {
                serde_json::from_slice::<Value>(&resp.body)
                    .ok()
                    .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string))
            }
            _ => None,
        }
    };
    let entry = super::log::LogEntry {
        time_ms: crate::clock::now_ms(),
        client,
        method: req.method.to_string(),
        path: log_target(&req.path, req.query.as_deref()),
        resource_id,
        status: resp.status,
        latency_ms: started.elapsed().as_millis() as u64,
        error: err,
    };
    // Unauthenticated requests are traced only: anyone could flood the
    // bounded log with them and push real entries out.
    if entry.status == 401 {
        return resp;
    }
    if let Ok(bytes) = serde_json::to_vec(&entry) {
        if let Err(e) = app
            .rt
            .store
            .append_scim_log(&bytes, scim.log_retention)
            .await
        {
            tracing::warn!(error = %e, "could not write the provisioning log");
        }
    }
    resp
}

/// Serves one SCIM request; also returns the client name and the refusal
/// reason for the provisioning log.
async fn serve(
    app: &Snapshot,
    scim: &Scim,
    req: &LocalRequest,
) -> (LocalResponse, String, Option<String>) {
    let token = crate::secret::bearer_token(req.headers.get(http::header::AUTHORIZATION));
    let Some(client) = token.and_then(|t| scim.clients.authenticate(t)) else {
        tracing::info!(path = %req.path, "SCIM request refused: missing or unknown bearer token");
        let resp = error(&ScimError::new(
            401,
            None,
            "a valid bearer token is required",
        ))
        .with_header(http::header::WWW_AUTHENTICATE, "Bearer realm=\"scim\"");
        return (
            resp,
            "-".into(),
            Some("unauthorized: missing or unknown bearer token".into()),
        );
    };
    let name = client.cfg.name.clone();
    if let Some(limit) = &client.limit {
        // Shared by every replica on Redis (else N replicas would allow N
        // times the budget); in-process on the embedded store (one process).
        let key = format!("scim-rate:{}", client.cfg.name);
        let verdict = match app.rt.store.window_hit(&key, limit.window()).await {
            Ok(Some((hits, reset))) if hits > u64::from(limit.limit()) => {
                Err(reset.max(std::time::Duration::from_secs(1)))
            }
            Ok(Some(_)) => Ok(()),
            Ok(None) => limit.take(),
            Err(e) => {
                tracing::warn!(client = %client.cfg.name, error = %e, "shared SCIM rate limit unavailable; counting in this process");
                limit.take()
            }
        };
        if let Err(wait) = verdict {
            let resp = error(&ScimError::new(
                429,
                None,
                "rate limit exceeded for this SCIM client",
            ))
            .with_header(http::header::RETRY_AFTER, wait.as_secs().to_string());
            return (resp, name, Some("rate limit exceeded".into()));
        }
    }
    let target_len = req.path.len() + req.query.as_ref().map_or(0, |q| q.len() + 1);
    if target_len > MAX_URL_LEN {
        let e = ScimError::new(
            414,
            None,
            format!("the request URL is longer than {MAX_URL_LEN} bytes"),
        );
        return (error(&e), name, Some(e.detail));
    }
    let sub = req.path[scim.base_path.len()..].trim_end_matches('/');
    let segs: Vec<&str> = sub.split('/').filter(|s| !s.is_empty()).collect();
    let ctx = Ctx {
        app,
        client,
        base: format!("{}{}", app.cfg.server.public_url.origin(), scim.base_path),
    };
    let result = route(&ctx, req, &segs).await;
    match result {
        Ok(r) => (r, name, None),
        Err(e) => {
            if e.status >= 500 {
                tracing::error!(client = %client.cfg.name, path = %req.path, error = %e, "SCIM request failed");
            } else {
                tracing::info!(client = %client.cfg.name, method = %req.method, path = %req.path, status = e.status, scim_type = e.scim_type.unwrap_or("-"), detail = %e.detail, "SCIM request refused");
            }
            let reason = match e.scim_type {
                Some(t) => format!("{t}: {}", e.detail),
                None => e.detail.clone(),
            };
            (error(&e), name, Some(reason))
        }
    }
}

/// Longest request target kept in a provisioning log entry, in bytes.
const MAX_LOGGED_TARGET: usize = 1024;

/// The path and query for the provisioning log, cut at
/// [`MAX_LOGGED_TARGET`] (on a character boundary) so one request cannot
/// write an entry of any size.
fn log_target(path: &str, query: Option<&str>) -> String {
    let mut t = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    if t.len() > MAX_LOGGED_TARGET {
        let mut cut = MAX_LOGGED_TARGET;
        while !t.is_char_boundary(cut) {
            cut -= 1;
        }
        t.truncate(cut);
        t.push_str("...");
    }
    t
}

/// Dispatches one authenticated request to its handler.
async fn route(
    ctx: &Ctx<'_>,
    req: &LocalRequest,
    segs: &[&str],
) -> Result<LocalResponse, ScimError> {
    match (req.method.as_str(), segs) {
        ("GET", ["ServiceProviderConfig"]) => {
            Ok(respond(200, &schemas::service_provider_config(&ctx.base)))
        }
        ("GET", ["ResourceTypes"]) => {
            let all = schemas::resource_types(&ctx.base);
            let n = all.len();
            Ok(respond(200, &resource::list_response(all, n, 1)))
        }
        ("GET", ["ResourceTypes", id]) => schemas::resource_types(&ctx.base)
            .into_iter()
            .find(|r| r["id"] == *id)
            .map(|r| respond(200, &r))
            .ok_or_else(|| ScimError::not_found("no such resource type")),
        ("GET", ["Schemas"]) => {
            let all = schemas::all_schemas();
            let n = all.len();
            Ok(respond(200, &resource::list_response(all, n, 1)))
        }
        ("GET", ["Schemas", id]) => schemas::all_schemas()
            .into_iter()
            .find(|s| s["id"] == *id)
            .map(|s| respond(200, &s))
            .ok_or_else(|| ScimError::not_found("no such schema")),
        ("GET", []) => {
            ctx.list(&ALL_KINDS, &Query::from_query(req.query.as_deref())?)
                .await
        }
        ("POST", [".search"]) => {
            let b = parse_body(req)?;
            ctx.list(&ALL_KINDS, &Query::from_search(&b)?).await
        }
        ("GET", ["Users"]) => {
            ctx.list(
                &[ResourceKind::User],
                &Query::from_query(req.query.as_deref())?,
            )
            .await
        }
        ("POST", ["Users", ".search"]) => {
            let b = parse_body(req)?;
            ctx.list(&[ResourceKind::User], &Query::from_search(&b)?)
                .await
        }
        ("POST", ["Users"]) => {
            let b = parse_body(req)?;
            ctx.create_user(&b).await
        }
        ("GET", ["Users", id]) => {
            ctx.get_user(id, &Query::from_query(req.query.as_deref())?)
                .await
        }
        ("PUT", ["Users", id]) => {
            let b = parse_body(req)?;
            ctx.put_user(id, &b, if_match(req)).await
        }
        ("PATCH", ["Users", id]) => {
            let b = parse_body(req)?;
            ctx.patch_user(id, &b, if_match(req)).await
        }
        ("DELETE", ["Users", id]) => ctx.delete_user(id).await,
        ("GET", ["Groups"]) => {
            ctx.list(
                &[ResourceKind::Group],
                &Query::from_query(req.query.as_deref())?,
            )
            .await
        }
        ("POST", ["Groups", ".search"]) => {
            let b = parse_body(req)?;
            ctx.list(&[ResourceKind::Group], &Query::from_search(&b)?)
                .await
        }
        ("POST", ["Groups"]) => {
            let b = parse_body(req)?;
            ctx.create_group(&b).await
        }
        ("GET", ["Groups", id]) => {
            ctx.get_group(id, &Query::from_query(req.query.as_deref())?)
                .await
        }
        ("PUT", ["Groups", id]) => {
            let b = parse_body(req)?;
            ctx.put_group(id, &b, if_match(req)).await
        }
        ("PATCH", ["Groups", id]) => {
            let b = parse_body(req)?;
            ctx.patch_group(id, &b, if_match(req)).await
        }
        ("DELETE", ["Groups", id]) => ctx.delete_group(id).await,
        (
            _,
            []
            | [".search"]
            | ["Users" | "Groups" | "Schemas" | "ResourceTypes" | "ServiceProviderConfig", ..],
        ) => Err(ScimError::new(
            405,
            None,
            "method not allowed on this endpoint",
        )),
        _ => Err(ScimError::not_found("no such SCIM endpoint")),
    }
}

fn parse_body(req: &LocalRequest) -> Result<Value, ScimError> {
    let ct = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/scim+json")
        .to_ascii_lowercase();
    if !(ct.starts_with("application/scim+json") || ct.starts_with("application/json")) {
        return Err(ScimError::new(
            415,
            None,
            "send application/scim+json or application/json",
        ));
    }
    super::json::parse(&req.body)
        .map_err(|e| ScimError::invalid_syntax(format!("body is not JSON: {e}")))
}

/// `If-Match: W/"<version>"` → the version a write must find.
fn if_match(req: &LocalRequest) -> Option<u64> {
    let v = req.headers.get(http::header::IF_MATCH)?.to_str().ok()?;
    v.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .ok()
}

/// The schema of a `.search` request body (RFC 7644 §3.4.3).
pub const SEARCH_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// List parameters (RFC 7644 §3.4.2), from a query string or a `.search` body.
#[derive(Default)]
struct Query {
    filter: Option<String>,
    start_index: Option<i64>,
    count: Option<i64>,
    attributes: Vec<String>,
    excluded: Vec<String>,
    sort_by: Option<String>,
    descending: bool,
}

fn csv(s: &str) -> Vec<String> {
    s.split(',')
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect()
}

/// `startIndex`/`count` must be integers: a value that is not one is
/// refused rather than read as the default (RFC 7644 §3.4.2.4 only lets
/// the server treat out-of-range integers as 1 and 0).
fn integer(key: &str, v: &str) -> Result<i64, ScimError> {
    v.trim()
        .parse()
        .map_err(|_| ScimError::invalid_value(format!("{key} must be an integer, not {v:?}")))
}

fn sort_order(v: &str) -> Result<bool, ScimError> {
    if v.eq_ignore_ascii_case("descending") {
        Ok(true)
    } else if v.eq_ignore_ascii_case("ascending") {
        Ok(false)
    } else {
        Err(ScimError::invalid_value(format!(
            "sortOrder must be \"ascending\" or \"descending\", not {v:?}"
        )))
    }
}

impl Query {
    /// From a query string. Unknown parameters are ignored (other
    /// parameters may ride along, e.g. a cache-buster); known ones must
    /// parse.
    fn from_query(q: Option<&str>) -> Result<Self, ScimError> {
        let mut out = Self::default();
        for (k, v) in url::form_urlencoded::parse(q.unwrap_or_default().as_bytes()) {
            match k.to_ascii_lowercase().as_str() {
                "filter" => out.filter = Some(v.into_owned()),
                "startindex" => out.start_index = Some(integer("startIndex", &v)?),
                "count" => out.count = Some(integer("count", &v)?),
                "attributes" => out.attributes = csv(&v),
                "excludedattributes" => out.excluded = csv(&v),
                "sortby" => out.sort_by = Some(v.into_owned()),
                "sortorder" => out.descending = sort_order(&v)?,
                _ => {}
            }
        }
        Ok(out)
    }

    /// From a `.search` body. Every member must be one RFC 7644 §3.4.3
    /// defines, with its type: a misspelled `filter` must not turn a
    /// search into a listing of the whole directory.
    fn from_search(b: &Value) -> Result<Self, ScimError> {
        let Value::Object(o) = b else {
            return Err(ScimError::invalid_syntax(
                "a SearchRequest must be a JSON object",
            ));
        };
        let string = |k: &str, v: &Value| match v {
            Value::String(s) => Ok(s.clone()),
            _ => Err(ScimError::invalid_value(format!("{k} must be a string"))),
        };
        let list = |k: &str, v: &Value| match v {
            Value::Array(a) => a
                .iter()
                .map(|v| string(k, v))
                .collect::<Result<Vec<_>, _>>(),
            Value::String(s) => Ok(csv(s)),
            _ => Err(ScimError::invalid_value(format!(
                "{k} must be an array of attribute names"
            ))),
        };
        let int = |k: &str, v: &Value| {
            v.as_i64()
                .ok_or_else(|| ScimError::invalid_value(format!("{k} must be an integer")))
        };
        let mut out = Self::default();
        for (k, v) in o {
            if v.is_null() {
                continue;
            }
            match k.to_ascii_lowercase().as_str() {
                "schemas" => {
                    let listed = matches!(v, Value::Array(a) if a.iter().any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(SEARCH_REQUEST_SCHEMA))));
                    if !listed {
                        return Err(ScimError::invalid_syntax(format!(
                            "schemas must be [\"{SEARCH_REQUEST_SCHEMA}\"]"
                        )));
                    }
                }
                "filter" => {
                    let f = string(k, v).map_err(|_| {
                        ScimError::invalid_filter("filter must be a string (RFC 7644 §3.4.2.2)")
                    })?;
                    out.filter = Some(f);
                }
                "startindex" => out.start_index = Some(int(k, v)?),
                "count" => out.count = Some(int(k, v)?),
                "attributes" => out.attributes = list(k, v)?,
                "excludedattributes" => out.excluded = list(k, v)?,
                "sortby" => out.sort_by = Some(string(k, v)?),
                "sortorder" => out.descending = sort_order(&string(k, v)?)?,
                _ => {
                    return Err(ScimError::invalid_value(format!(
                        "{k:?} is not a SearchRequest attribute (RFC 7644 §3.4.3: schemas, \
                         attributes, excludedAttributes, filter, sortBy, sortOrder, startIndex, count)"
                    )))
                }
            }
        }
        if !out.attributes.is_empty() && !out.excluded.is_empty() {
            return Err(ScimError::invalid_value(
                "attributes and excludedAttributes cannot both be given",
            ));
        }
        Ok(out)
    }
}

/// What a search at the SCIM root covers.
const ALL_KINDS: [ResourceKind; 2] = [ResourceKind::User, ResourceKind::Group];

struct Ctx<'a> {
    app: &'a Snapshot,
    client: &'a Client,
    base: String,
}

/// Dotted attribute value for sorting (`name.familyName`, `emails.value` → first).
fn sort_key(v: &Value, path: &str) -> String {
    let mut cur = v;
    for part in path.split('.') {
        let next = match cur {
            Value::Object(m) => m
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(part))
                .map(|(_, v)| v),
            Value::Array(a) => a.first().and_then(|x| x.as_object()).and_then(|m| {
                m.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(part))
                    .map(|(_, v)| v)
            }),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.to_lowercase(),
        Value::Array(a) => a
            .first()
            .map(|x| x.to_string().to_lowercase())
            .unwrap_or_default(),
        other => other.to_string(),
    }
}

/// A list's 1-based startIndex (below 1 counts as 1) and the page size
/// (negative counts as 0; absent or above the cap is `MAX_RESULTS`).
fn page_bounds(q: &Query) -> (usize, usize) {
    let start = q.start_index.unwrap_or(1).max(1) as usize;
    let count = q
        .count
        .map(|c| c.max(0) as usize)
        .unwrap_or(schemas::MAX_RESULTS)
        .min(schemas::MAX_RESULTS);
    (start, count)
}

impl Ctx<'_> {
    fn tenant(&self) -> &str {
        &self.client.cfg.tenant
    }

    /// A webhook event of this client's tenant, made by this client.
    fn event(&self, kind: EventType) -> OutboxEvent {
        OutboxEvent::new(kind, self.tenant(), Source::Scim, &self.client.cfg.name)
    }

    /// Asks sync webhook targets about the change (a refusal becomes this
    /// request's error and nothing is written) and returns the outbox
    /// entries the write must append.
    async fn outbox(&self, events: Vec<OutboxEvent>) -> Result<Emit, ScimError> {
        let Some(hooks) = &self.app.webhooks else {
            return Ok(Emit::none());
        };
        hooks.prepare(self.app.rt.store.as_ref(), events).await.map_err(|r| {
            tracing::warn!(client = %self.client.cfg.name, target = %r.target, reason = %r.reason, "a sync webhook target refused a SCIM change; nothing was written");
            ScimError::new(r.scim_status(), None, r.to_string())
        })
    }

    async fn user_json(&self, u: &User) -> Result<Value, ScimError> {
        let groups = self
            .app
            .rt
            .store
            .groups_of_user(self.tenant(), &u.id)
            .await
            .map_err(dir_error)?;
        Ok(user_to_json(u, &groups, &self.base))
    }

    async fn live_user(&self, id: &str) -> Result<User, ScimError> {
        match self
            .app
            .rt
            .store
            .get_user(self.tenant(), id)
            .await
            .map_err(dir_error)?
        {
            Some(u) if !u.deleted => Ok(u),
            _ => Err(ScimError::not_found(format!("User {id} not found"))),
        }
    }

    fn resource_response(
        &self,
        status: u16,
        v: &Value,
        version: u64,
        location: Option<String>,
    ) -> LocalResponse {
        let mut r = respond(status, v).with_header(http::header::ETAG, format!("W/\"{version}\""));
        if let Some(l) = location {
            r = r.with_header(http::header::LOCATION, l);
        }
        r
    }

    /// A list or search over `kinds` (one resource type, or both for a
    /// search at the SCIM root, RFC 7644 §3.4.3: users, then groups).
    async fn list(&self, kinds: &[ResourceKind], q: &Query) -> Result<LocalResponse, ScimError> {
        let filter = q
            .filter
            .as_deref()
            .filter(|f| !f.trim().is_empty())
            .map(Filter::parse)
            .transpose()?;
        if filter.is_none() && q.sort_by.is_none() {
            return self.list_all(kinds, q).await;
        }
        // A filter or a sort: the matches are gathered, then sorted and
        // paged here. An indexed `eq` (see `matching`) reads only its
        // matches; any other filter, and any sort, reads the whole tenant
        // (`list_users` / `list_groups`): a documented limit.
        // (resource JSON, complete with computed attributes, id)
        let mut items: Vec<(Value, bool, String)> = Vec::new();
        for kind in kinds {
            self.matching(*kind, q, filter.as_ref(), &mut items).await?;
        }
        self.page(items, q).await
    }

    /// Appends the resources of `kind` that `filter` matches to `items`.
    async fn matching(
        &self,
        kind: ResourceKind,
        q: &Query,
        filter: Option<&Filter>,
        items: &mut Vec<(Value, bool, String)>,
    ) -> Result<(), ScimError> {
        let dir = &self.app.rt.store;
        let t = self.tenant();
        match kind {
            ResourceKind::User => {
                let users: Vec<User> = match filter.and_then(|f| f.indexed_eq(kind)) {
                    Some((Indexed::UserName, v)) => dir
                        .user_by_user_name(t, &v)
                        .await
                        .map_err(dir_error)?
                        .into_iter()
                        .collect(),
                    Some((Indexed::ExternalId, v)) => dir
                        .user_by_external_id(t, &v)
                        .await
                        .map_err(dir_error)?
                        .into_iter()
                        .collect(),
                    Some((Indexed::Email, v)) => {
                        dir.users_by_email(t, &v).await.map_err(dir_error)?
                    }
                    _ => dir.list_users(t).await.map_err(dir_error)?,
                };
                // A user's groups cost a lookup each: compute them before
                // filtering only when the filter or sort looks at them,
                // otherwise only for the page returned.
                let needs_groups = q
                    .filter
                    .as_deref()
                    .is_some_and(|f| f.to_ascii_lowercase().contains("groups"))
                    || q.sort_by
                        .as_deref()
                        .is_some_and(|f| f.to_ascii_lowercase().contains("groups"));
                for u in users.iter().filter(|u| !u.deleted) {
                    let v = if needs_groups {
                        self.user_json(u).await?
                    } else {
                        user_to_json(u, &[], &self.base)
                    };
                    if filter.is_none_or(|f| f.matches(&v, kind)) {
                        items.push((v, needs_groups, u.id.clone()));
                    }
                }
            }
            ResourceKind::Group => {
                let groups: Vec<Group> = match filter.and_then(|f| f.indexed_eq(kind)) {
                    Some((Indexed::DisplayName, v)) => dir
                        .group_by_display_name(t, &v)
                        .await
                        .map_err(dir_error)?
                        .into_iter()
                        .collect(),
                    Some((Indexed::ExternalId, v)) => dir
                        .group_by_external_id(t, &v)
                        .await
                        .map_err(dir_error)?
                        .into_iter()
                        .collect(),
                    _ => dir.list_groups(t).await.map_err(dir_error)?,
                };
                for g in &groups {
                    let v = group_to_json(g, &self.base);
                    if filter.is_none_or(|f| f.matches(&v, kind)) {
                        items.push((v, true, g.id.clone()));
                    }
                }
            }
        }
        Ok(())
    }

    /// A list with neither filter nor sort: every live resource of `kinds`
    /// in listing order ((created, id); users before groups at the root).
    /// Only the page asked for is read, through the stores' ordered
    /// indexes and counts (`users_page`, `groups_page`), so a Test
    /// Connection (`startIndex=1&count=1`) or a page from the middle costs
    /// the page, not the tenant. Same response as `page` over the full
    /// lists: same order, totalResults, startIndex/count rules and cap.
    async fn list_all(
        &self,
        kinds: &[ResourceKind],
        q: &Query,
    ) -> Result<LocalResponse, ScimError> {
        let (start, count) = page_bounds(q);
        let dir = &self.app.rt.store;
        let t = self.tenant();
        // Resources to skip and to take in the kinds still ahead.
        let (mut skip, mut want) = (start - 1, count);
        let mut total = 0usize;
        let mut items: Vec<(Value, bool, String)> = Vec::new();
        for kind in kinds {
            let (n, got) = match kind {
                ResourceKind::User => {
                    let p = dir.users_page(t, skip, want).await.map_err(dir_error)?;
                    let got: Vec<_> = p
                        .items
                        .iter()
                        .filter(|u| !u.deleted)
                        .map(|u| (user_to_json(u, &[], &self.base), false, u.id.clone()))
                        .collect();
                    (p.total, got)
                }
                ResourceKind::Group => {
                    let p = dir.groups_page(t, skip, want).await.map_err(dir_error)?;
                    let got: Vec<_> = p
                        .items
                        .iter()
                        .map(|g| (group_to_json(g, &self.base), true, g.id.clone()))
                        .collect();
                    (p.total, got)
                }
            };
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            total = total.saturating_add(n);
            skip = skip.saturating_sub(n);
            want = want.saturating_sub(got.len());
            items.extend(got);
        }
        self.respond_page(items, total, start, q).await
    }

    /// Sorts, pages and projects the matches into a ListResponse.
    async fn page(
        &self,
        mut items: Vec<(Value, bool, String)>,
        q: &Query,
    ) -> Result<LocalResponse, ScimError> {
        if let Some(by) = &q.sort_by {
            items.sort_by_cached_key(|(v, _, _)| sort_key(v, by));
            if q.descending {
                items.reverse();
            }
        }
        let total = items.len();
        let (start, count) = page_bounds(q);
        let items = items.into_iter().skip(start - 1).take(count).collect();
        self.respond_page(items, total, start, q).await
    }

    /// The ListResponse for one page of items: users' groups computed where
    /// the item lacks them, then projected.
    async fn respond_page(
        &self,
        items: Vec<(Value, bool, String)>,
        total: usize,
        start: usize,
        q: &Query,
    ) -> Result<LocalResponse, ScimError> {
        let mut page: Vec<Value> = Vec::new();
        for (mut v, complete, id) in items {
            if !complete {
                let groups = self
                    .app
                    .rt
                    .store
                    .groups_of_user(self.tenant(), &id)
                    .await
                    .map_err(dir_error)?;
                if !groups.is_empty() {
                    v["groups"] = resource::groups_json(&groups, &self.base);
                }
            }
            page.push(resource::project(&v, &q.attributes, &q.excluded));
        }
        Ok(respond(200, &resource::list_response(page, total, start)))
    }

    async fn get_user(&self, id: &str, q: &Query) -> Result<LocalResponse, ScimError> {
        let u = self.live_user(id).await?;
        let v = resource::project(&self.user_json(&u).await?, &q.attributes, &q.excluded);
        Ok(self.resource_response(200, &v, u.meta.version, None))
    }

    async fn create_user(&self, body: &Value) -> Result<LocalResponse, ScimError> {
        let cfg = &self.client.cfg;
        let mut u = user_from_json(body, cfg.auto_activate)?;
        let dir = &self.app.rt.store;
        if let Some(existing) = dir
            .user_by_user_name(self.tenant(), &u.user_name)
            .await
            .map_err(dir_error)?
        {
            if existing.provisioned_via != ProvisionedVia::SamlJit {
                return Err(ScimError::uniqueness(format!(
                    "userName {:?} already exists",
                    u.user_name
                )));
            }
            // A user created by SAML JIT in this tenant: SCIM adopts it.
            let mut adopted = self.merge(&existing, u, true);
            let reset = self.adopt(&existing, &mut adopted);
            let deactivated = existing.active && !adopted.active;
            let after = rules::replacement_user(
                &existing,
                adopted.clone(),
                Some(existing.meta.version),
                now_ms(),
            )
            .map_err(dir_error)?;
            let events =
                crate::webhook::user_event(Some(&existing), &after, Source::Scim, &cfg.name);
            let emit = self.outbox(events.into_iter().collect()).await?;
            let saved = dir
                .replace_user_emit(self.tenant(), adopted, Some(existing.meta.version), emit)
                .await
                .map_err(dir_error)?;
            tracing::info!(client = %cfg.name, user = %saved.id, "SCIM adopted a SAML JIT user");
            if deactivated {
                self.revoke(&saved.id, &saved.user_name, "deactivated")
                    .await;
            } else if reset {
                self.revoke(&saved.id, &saved.user_name, "adopted from an untied IdP")
                    .await;
            } else {
                self.refresh(std::slice::from_ref(&saved.id)).await;
            }
            let v = self.user_json(&saved).await?;
            return Ok(self.resource_response(
                201,
                &v,
                saved.meta.version,
                Some(format!("{}/Users/{}", self.base, saved.id)),
            ));
        }
        u.provisioned_via = ProvisionedVia::Scim;
        u.scim_client = Some(cfg.name.clone());
        u.role = cfg.default_role.clone();
        // The id is fixed now so a sync webhook target sees the final one.
        u.id = rules::new_id();
        // Validated before anything is written: a refused userName must not
        // clear the marker of the one it folds onto.
        let after = rules::new_user(self.tenant(), u.clone(), now_ms()).map_err(dir_error)?;
        crate::provisioning::clear_deprovisioned(
            &self.app.provisioning(),
            self.tenant(),
            &u.user_name,
        )
        .await
        .map_err(|e| ScimError::new(503, None, format!("store unavailable: {e}")))?;
        let emit = self
            .outbox(vec![self.event(EventType::UserCreated).with_user(&after)])
            .await?;
        let saved = dir
            .create_user_emit(self.tenant(), u, emit)
            .await
            .map_err(dir_error)?;
        tracing::info!(client = %cfg.name, user = %saved.id, user_name = %saved.user_name, "SCIM created user");
        let v = self.user_json(&saved).await?;
        Ok(self.resource_response(
            201,
            &v,
            saved.meta.version,
            Some(format!("{}/Users/{}", self.base, saved.id)),
        ))
    }

    /// `incoming` applied onto `current`, keeping what the client may not change.
    fn merge(&self, current: &User, incoming: User, adopt: bool) -> User {
        let cfg = &self.client.cfg;
        let mut next = if cfg.sync_attributes || adopt {
            User {
                id: current.id.clone(),
                tenant: current.tenant.clone(),
                role: current.role.clone(),
                provisioned_via: current.provisioned_via,
                scim_client: current.scim_client.clone(),
                idp: current.idp.clone(),
                name_id: current.name_id.clone(),
                deleted: false,
                meta: current.meta.clone(),
                ..incoming.clone()
            }
        } else {
            User {
                active: incoming.active,
                active_unset: incoming.active_unset,
                ..current.clone()
            }
        };
        // An absent `active` never turns a deactivated user back on: only
        // an explicit `active: true` reactivates (fail closed).
        if next.active_unset && !current.active {
            next.active = false;
        }
        if current.active && !next.active && !cfg.allow_deactivation {
            tracing::warn!(client = %cfg.name, user = %current.id, "deactivation ignored: allow_deactivation = false");
            next.active = true;
            next.active_unset = current.active_unset;
        }
        next
    }

    /// Makes `next` (the adopted `current`, a SAML JIT user) this client's.
    /// A JIT user of an IdP the client is not tied to (`directory::trust`)
    /// loses that IdP, its NameID and the role the IdP gave it: the IdP
    /// created it before the client provisioned the real person, so neither
    /// its future sign-ins nor its sessions may keep it. Returns true when
    /// it did so (the caller then ends the user's sessions).
    fn adopt(&self, current: &User, next: &mut User) -> bool {
        let cfg = &self.client.cfg;
        next.provisioned_via = ProvisionedVia::Scim;
        next.scim_client = Some(cfg.name.clone());
        let untied = current
            .idp
            .as_deref()
            .is_some_and(|idp| !self.app.trust.client_tied_to(&cfg.name, idp));
        if untied {
            tracing::warn!(client = %cfg.name, user = %current.id, idp = current.idp.as_deref().unwrap_or("-"), "SCIM adopted a JIT user of an IdP this client is not tied to: its IdP link is dropped and its sessions end");
            next.idp = None;
            next.name_id = None;
            next.role = cfg.default_role.clone();
        }
        untied
    }

    /// A SAML JIT user no SCIM client has adopted yet: the first SCIM write
    /// to it (POST of its userName, or PUT/PATCH after finding it with a
    /// filter, as Okta links users) adopts it.
    fn unadopted(u: &User) -> bool {
        u.provisioned_via == ProvisionedVia::SamlJit && u.scim_client.is_none()
    }

    async fn save_user(
        &self,
        current: User,
        incoming: User,
        expected: Option<u64>,
    ) -> Result<LocalResponse, ScimError> {
        let mut next = self.merge(&current, incoming, false);
        let reset = Self::unadopted(&current) && self.adopt(&current, &mut next);
        let deactivated = current.active && !next.active;
        let version = Some(expected.unwrap_or(current.meta.version));
        let after = rules::replacement_user(&current, next.clone(), version, now_ms())
            .map_err(dir_error)?;
        let events =
            crate::webhook::user_event(Some(&current), &after, Source::Scim, &self.client.cfg.name);
        let emit = self.outbox(events.into_iter().collect()).await?;
        let saved = self
            .app
            .rt
            .store
            .replace_user_emit(self.tenant(), next, version, emit)
            .await
            .map_err(dir_error)?;
        if deactivated {
            self.revoke(&saved.id, &saved.user_name, "deactivated")
                .await;
        } else if reset {
            self.revoke(&saved.id, &saved.user_name, "adopted from an untied IdP")
                .await;
        } else {
            self.refresh(std::slice::from_ref(&saved.id)).await;
        }
        let v = self.user_json(&saved).await?;
        Ok(self.resource_response(200, &v, saved.meta.version, None))
    }

    /// Signed-in members of a change get their new identity on their next request.
    async fn refresh(&self, user_ids: &[String]) {
        for id in user_ids {
            match crate::provisioning::refresh_sessions(&self.app.provisioning(), self.tenant(), id)
                .await
            {
                Ok(0) => {}
                Ok(n) => {
                    tracing::debug!(user = %id, sessions = n, "identity refreshed after a directory change")
                }
                Err(e) => {
                    tracing::warn!(user = %id, error = %e, "could not refresh the identity of signed-in sessions")
                }
            }
        }
    }

    async fn revoke(&self, user_id: &str, user_name: &str, why: &str) {
        match self.app.rt.sessions.revoke_user(user_id).await {
            Ok(n) => {
                tracing::info!(client = %self.client.cfg.name, user = %user_id, revoked = n, why, "SCIM ended the user's sessions");
                if let (Some(hooks), true) = (&self.app.webhooks, n > 0) {
                    let revoked = crate::webhook::ops::Revoked {
                        tenant: self.tenant(),
                        user_id,
                        user_name: Some(user_name),
                        sessions: n,
                        reason: why,
                        actor: &self.client.cfg.name,
                        source: Source::Scim,
                    };
                    crate::webhook::ops::session_revoked(
                        hooks,
                        self.app.rt.store.as_ref(),
                        revoked,
                    )
                    .await;
                }
            }
            Err(e) => {
                tracing::error!(user = %user_id, error = %e, "could not revoke sessions of a deprovisioned user")
            }
        }
    }

    async fn put_user(
        &self,
        id: &str,
        body: &Value,
        expected: Option<u64>,
    ) -> Result<LocalResponse, ScimError> {
        let current = self.live_user(id).await?;
        check_id(body, id)?;
        let incoming = user_from_json(body, self.client.cfg.auto_activate)?;
        self.save_user(current, incoming, expected).await
    }

    async fn patch_user(
        &self,
        id: &str,
        body: &Value,
        expected: Option<u64>,
    ) -> Result<LocalResponse, ScimError> {
        let current = self.live_user(id).await?;
        let before = self.user_json(&current).await?;
        let patched = super::patch::apply(&before, body, ResourceKind::User)?;
        let incoming = resource::patched_user_from_json(
            &patched.resource,
            &before,
            self.client.cfg.auto_activate,
        )?;
        self.save_user(current, incoming, expected).await
    }

    async fn delete_user(&self, id: &str) -> Result<LocalResponse, ScimError> {
        let current = self.live_user(id).await?;
        let dir = &self.app.rt.store;
        let gone = rules::as_deleted(&current);
        let emit = self
            .outbox(vec![self.event(EventType::UserDeleted).with_user(&gone)])
            .await?;
        if self.client.cfg.allow_deletion {
            dir.delete_user_emit(self.tenant(), &current.id, emit)
                .await
                .map_err(dir_error)?;
            tracing::info!(client = %self.client.cfg.name, user = %current.id, "SCIM deleted user");
        } else {
            dir.tombstone_user_emit(self.tenant(), &current.id, emit)
                .await
                .map_err(dir_error)?;
            tracing::info!(client = %self.client.cfg.name, user = %current.id, "SCIM delete kept as a deactivated tombstone (allow_deletion = false)");
        }
        self.revoke(&current.id, &current.user_name, "deleted")
            .await;
        if let Err(e) = crate::provisioning::mark_deprovisioned(
            &self.app.provisioning(),
            self.tenant(),
            &current.user_name,
        )
        .await
        {
            tracing::error!(user = %current.id, error = %e, "could not record the deprovisioning; SAML JIT could recreate the user");
        }
        Ok(LocalResponse::new(204, "application/scim+json", ""))
    }

    async fn live_group(&self, id: &str) -> Result<Group, ScimError> {
        self.app
            .rt
            .store
            .get_group(self.tenant(), id)
            .await
            .map_err(dir_error)?
            .ok_or_else(|| ScimError::not_found(format!("Group {id} not found")))
    }

    async fn get_group(&self, id: &str, q: &Query) -> Result<LocalResponse, ScimError> {
        let g = self.live_group(id).await?;
        let v = resource::project(&group_to_json(&g, &self.base), &q.attributes, &q.excluded);
        Ok(self.resource_response(200, &v, g.meta.version, None))
    }

    /// Checks every member id names a live user or group of the tenant, and
    /// returns them as member entries.
    async fn check_members(&self, ids: &[String]) -> Result<Vec<Member>, ScimError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let user = self
                .app
                .rt
                .store
                .get_user(self.tenant(), id)
                .await
                .map_err(dir_error)?;
            let member = match user {
                Some(u) if !u.deleted => Some(Member::user(&u)),
                Some(_) => None,
                None => self
                    .app
                    .rt
                    .store
                    .get_group(self.tenant(), id)
                    .await
                    .map_err(dir_error)?
                    .map(|g| Member::group(&g)),
            };
            match member {
                Some(m) => out.push(m),
                None => {
                    return Err(ScimError::invalid_value(format!(
                        "member {id} is not a user or group of this tenant"
                    )))
                }
            }
        }
        Ok(out)
    }

    async fn create_group(&self, body: &Value) -> Result<LocalResponse, ScimError> {
        let (mut group, members) = group_from_json(body)?;
        group.members = self.check_members(&members).await?;
        group.id = rules::new_id();
        let dir = &self.app.rt.store;
        let mut after =
            rules::new_group(self.tenant(), group.clone(), now_ms()).map_err(dir_error)?;
        after.members.sort_by(|a, b| a.value.cmp(&b.value));
        let emit = self
            .outbox(vec![self.event(EventType::GroupCreated).with_group(&after)])
            .await?;
        let saved = dir
            .create_group_emit(self.tenant(), group, emit)
            .await
            .map_err(dir_error)?;
        if !members.is_empty() {
            self.refresh(&members).await;
        }
        let g = self.live_group(&saved.id).await?;
        tracing::info!(client = %self.client.cfg.name, group = %g.id, name = %g.display_name, members = g.members.len(), "SCIM created group");
        Ok(self.resource_response(
            201,
            &group_to_json(&g, &self.base),
            g.meta.version,
            Some(format!("{}/Groups/{}", self.base, g.id)),
        ))
    }

    /// Applies a new name/externalId and member set to a group.
    async fn update_group(
        &self,
        current: Group,
        display_name: String,
        external_id: Option<String>,
        add: Vec<String>,
        remove: Vec<String>,
        expected: Option<u64>,
    ) -> Result<LocalResponse, ScimError> {
        let dir = &self.app.rt.store;
        let t = self.tenant();
        self.check_members(&add).await?;
        let renamed = display_name != current.display_name;
        let mut affected: Vec<String> = add.iter().chain(remove.iter()).cloned().collect();
        if renamed {
            affected.extend(current.members.iter().map(|m| m.value.clone()));
        }
        let retitled = renamed || external_id != current.external_id;
        let replacement = Group {
            display_name,
            external_id,
            ..current.clone()
        };
        // Every event of this request, predicted, so a sync target sees them
        // all before anything is written; the store re-derives what it writes.
        let mut planned = Vec::new();
        if retitled {
            let mut after = replacement.clone();
            after.meta = rules::next_meta(&current.meta, now_ms());
            planned.push(self.event(EventType::GroupUpdated).with_group(&after));
        }
        let have: std::collections::HashSet<&str> =
            current.members.iter().map(|m| m.value.as_str()).collect();
        let bare = Group {
            members: Vec::new(),
            ..replacement.clone()
        };
        let added: Vec<String> = add
            .iter()
            .filter(|a| !have.contains(a.as_str()))
            .cloned()
            .collect();
        if !added.is_empty() {
            let mut e = self.event(EventType::GroupMembersAdded).with_group(&bare);
            e.members = added;
            planned.push(e);
        }
        let removed: Vec<String> = remove
            .iter()
            .filter(|r| have.contains(r.as_str()))
            .cloned()
            .collect();
        if !removed.is_empty() {
            let mut e = self.event(EventType::GroupMembersRemoved).with_group(&bare);
            e.members = removed;
            planned.push(e);
        }
        let mut emit = self.outbox(planned).await?;
        let mut take = |kind: EventType| Emit {
            events: {
                let (mine, rest): (Vec<_>, Vec<_>) =
                    emit.events.drain(..).partition(|p| p.event.kind == kind);
                emit.events = rest;
                mine
            },
        };
        let (on_update, on_add, on_remove) = (
            take(EventType::GroupUpdated),
            take(EventType::GroupMembersAdded),
            take(EventType::GroupMembersRemoved),
        );
        if retitled {
            dir.replace_group_emit(
                t,
                replacement,
                Some(expected.unwrap_or(current.meta.version)),
                on_update,
            )
            .await
            .map_err(dir_error)?;
        } else if let Some(v) = expected {
            if v != current.meta.version {
                return Err(dir_error(DirectoryError::VersionMismatch {
                    expected: v,
                    current: current.meta.version,
                }));
            }
        }
        if !add.is_empty() {
            dir.add_members_emit(t, &current.id, &add, on_add)
                .await
                .map_err(dir_error)?;
        }
        if !remove.is_empty() {
            dir.remove_members_emit(t, &current.id, &remove, on_remove)
                .await
                .map_err(dir_error)?;
        }
        affected.sort();
        affected.dedup();
        self.refresh(&affected).await;
        let g = self.live_group(&current.id).await?;
        Ok(self.resource_response(200, &group_to_json(&g, &self.base), g.meta.version, None))
    }

    async fn put_group(
        &self,
        id: &str,
        body: &Value,
        expected: Option<u64>,
    ) -> Result<LocalResponse, ScimError> {
        let current = self.live_group(id).await?;
        check_id(body, id)?;
        let (incoming, wanted) = group_from_json(body)?;
        let have: Vec<String> = current.members.iter().map(|m| m.value.clone()).collect();
        let add = wanted
            .iter()
            .filter(|w| !have.contains(w))
            .cloned()
            .collect();
        let remove = have
            .iter()
            .filter(|h| !wanted.contains(h))
            .cloned()
            .collect();
        self.update_group(
            current,
            incoming.display_name,
            incoming.external_id,
            add,
            remove,
            expected,
        )
        .await
    }

    async fn patch_group(
        &self,
        id: &str,
        body: &Value,
        expected: Option<u64>,
    ) -> Result<LocalResponse, ScimError> {
        let current = self.live_group(id).await?;
        let before = group_to_json(&current, &self.base);
        let patched = super::patch::apply(&before, body, ResourceKind::Group)?;
        let (incoming, _) = resource::patched_group_from_json(&patched.resource, &before)?;
        self.update_group(
            current,
            incoming.display_name,
            incoming.external_id,
            patched.members.added,
            patched.members.removed,
            expected,
        )
        .await
    }

    async fn delete_group(&self, id: &str) -> Result<LocalResponse, ScimError> {
        let current = self.live_group(id).await?;
        let emit = self
            .outbox(vec![self
                .event(EventType::GroupDeleted)
                .with_group(&current)])
            .await?;
        self.app
            .rt
            .store
            .delete_group_emit(self.tenant(), &current.id, emit)
            .await
            .map_err(dir_error)?;
        let members: Vec<String> = current.members.iter().map(|m| m.value.clone()).collect();
        self.refresh(&members).await;
        tracing::info!(client = %self.client.cfg.name, group = %current.id, "SCIM deleted group");
        Ok(LocalResponse::new(204, "application/scim+json", ""))
    }
}

/// A body's `id`, when present, must be the one in the URL (read-only).
fn check_id(body: &Value, id: &str) -> Result<(), ScimError> {
    match body.get("id").and_then(|v| v.as_str()) {
        Some(b) if b != id => Err(ScimError::mutability(
            "id is read-only and differs from the URL",
        )),
        _ => Ok(()),
    }
}

/// Body too large for a SCIM endpoint, in SCIM error form.
pub fn too_large(limit: usize) -> LocalResponse {
    error(&ScimError::new(
        413,
        None,
        format!("request body larger than {limit} bytes"),
    ))
}

/// A request under the SCIM base path refused before it reached the SCIM
/// router (a path the normaliser refuses, a body that cannot be read), in
/// SCIM error form: SCIM clients parse every error body (RFC 7644 §3.12).
pub fn refused(status: u16, detail: &str, reference: &str) -> LocalResponse {
    error(&ScimError::new(
        status,
        None,
        format!("{detail} (reference {reference})"),
    ))
}

/// Longest request target (path and query) the SCIM router reads, in
/// bytes; SCIM clients send short URLs (a filter is a few hundred bytes).
pub const MAX_URL_LEN: usize = 8 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ScimConfig;
    use std::collections::BTreeMap;

    #[test]
    fn group_roles_map_case_insensitively_with_a_default() {
        let cfg: ScimConfig = serde_json::from_value(json!({
            "group_roles": {"CRA Admins": "admin"},
            "client": []
        }))
        .unwrap();
        let s = Scim::from_config(&cfg).unwrap();
        let mut client = BTreeMap::new();
        client.insert("Viewers".to_string(), "viewer".to_string());
        assert_eq!(
            s.roles_for(None, &["cra admins".into()], "member"),
            vec!["admin"]
        );
        assert_eq!(
            s.roles_for(Some(&client), &["Viewers".into(), "Other".into()], "member"),
            vec!["viewer"]
        );
        assert_eq!(
            s.roles_for(None, &["Other".into()], "member"),
            vec!["member"]
        );
    }

    #[test]
    fn role_mappings_apply_to_their_own_tenant_only() {
        let hash = crate::secret::TokenHash::of("t").to_string();
        let client = |name: &str, tenant: &str, roles: Value| json!({"name": name, "token_hash": hash, "tenant": tenant, "group_roles": roles});
        let cfg: ScimConfig = serde_json::from_value(json!({
            "group_roles": {"CRA Admins": "admin"},
            "client": [
                client("jc", "acme", json!({"Viewers": "viewer"})),
                client("okta", "globex", json!({"Auditors": "auditor"})),
                client("jc2", "acme", json!({"Viewers": "reader", "Ops": "ops"})),
            ]
        }))
        .unwrap();
        let s = Scim::from_config(&cfg).unwrap();
        let roles = |tenant: &str, client: Option<&str>, groups: &[&str]| {
            let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
            s.tenant_roles(tenant, client, &groups, "member")
        };
        // The user's own client first, then the tenant's other clients.
        assert_eq!(roles("acme", Some("jc"), &["Viewers"]), ["viewer"]);
        assert_eq!(roles("acme", Some("jc2"), &["viewers"]), ["reader"]);
        assert_eq!(roles("acme", None, &["Ops", "Viewers"]), ["ops", "viewer"]);
        // Another tenant's mapping never applies, whatever the group's name.
        assert_eq!(roles("acme", Some("jc"), &["Auditors"]), ["member"]);
        assert_eq!(roles("globex", Some("okta"), &["Viewers"]), ["member"]);
        assert_eq!(roles("globex", Some("okta"), &["Auditors"]), ["auditor"]);
        // `[scim.group_roles]` is every tenant's, for its own groups.
        assert_eq!(roles("globex", None, &["CRA Admins"]), ["admin"]);
    }

    #[test]
    fn logged_targets_are_bounded_on_a_character_boundary() {
        assert_eq!(
            log_target("/scim/v2/Users", Some("count=1")),
            "/scim/v2/Users?count=1"
        );
        let long = format!("filter={}", "é".repeat(5000));
        let t = log_target("/scim/v2/Users", Some(&long));
        assert!(
            t.len() <= MAX_LOGGED_TARGET + 3 && t.ends_with("..."),
            "{}",
            t.len()
        );
    }

    #[test]
    fn owns_the_base_path_only() {
        let s = Scim::from_config(&serde_json::from_value(json!({"client": []})).unwrap()).unwrap();
        assert!(s.owns("/scim/v2/Users"));
        assert!(s.owns("/scim/v2"));
        assert!(!s.owns("/scim/v20/Users"));
    }
}
