//! `config` owns the one TOML file an operator writes: it reads it (figment,
//! with `PORTCULLIS_SECTION__KEY` environment overrides), deserializes it into
//! typed sections that refuse unknown keys, and validates the whole so a bad
//! file is refused before anything listens. It knows nothing about requests:
//! other modules turn these sections into their compiled runtime forms.

mod types;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub use types::{AbsUrl, HumanDuration, ListenAddr};

/// Environment variable naming the default config file.
pub const CONFIG_ENV: &str = "PORTCULLIS_CONFIG";

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    pub upstream: UpstreamConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub session: SessionConfig,
    #[serde(default)]
    pub identity: IdentityConfig,
    #[serde(default)]
    pub policy: Vec<PolicyRuleConfig>,
    #[serde(default)]
    pub log: LogConfig,
    /// SAML 2.0 single sign-on; absent = no sign-in configured.
    pub saml: Option<SamlConfig>,
    /// SCIM 2.0 provisioning server; absent = not served.
    pub scim: Option<ScimConfig>,
    /// Provisioning webhook targets (`[[webhook]]`); none = no outbox.
    #[serde(default)]
    pub webhook: Vec<WebhookConfig>,
}

/// Whether a SCIM request waits for the target (`sync`) or not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookMode {
    /// Delivered from the outbox after the change committed.
    #[default]
    Async,
    /// A SCIM change commits only after this target acknowledged its event.
    Sync,
}

/// One `[[webhook]]` target.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Names the target's queue (lanes, retries, dead letters) in the store
    /// and in `portcullis webhooks`: letters, digits, `-` and `_`.
    pub name: String,
    pub url: AbsUrl,
    /// `whsec_<base64>` secrets; every one signs each request (rotation).
    #[serde(default)]
    pub secrets: Vec<String>,
    /// A file with one `whsec_` secret per line, read at start (k8s secret).
    pub secrets_file: Option<PathBuf>,
    /// Event type filters: `"user.created"`, `"user.*"`, `"*"`.
    #[serde(default = "default_webhook_events")]
    pub events: Vec<String>,
    /// Only events of this tenant; absent = every tenant.
    pub tenant: Option<String>,
    #[serde(default)]
    pub mode: WebhookMode,
    /// Per attempt, connect to last byte.
    #[serde(default = "default_webhook_timeout")]
    pub timeout: HumanDuration,
    /// How long an event is retried (from its first failed attempt) before
    /// it becomes a dead letter.
    #[serde(default = "default_webhook_max_age")]
    pub max_age: HumanDuration,
    /// First retry delay; doubles per attempt (with jitter) up to `retry_max`.
    #[serde(default = "default_retry_initial")]
    pub retry_initial: HumanDuration,
    #[serde(default = "default_retry_max")]
    pub retry_max: HumanDuration,
    /// Deliveries in flight at once per replica (distinct users/groups).
    #[serde(default = "default_webhook_concurrency")]
    pub concurrency: usize,
    /// A replica silent for this long loses its claimed deliveries to
    /// another replica (Redis); default: twice `timeout` plus 30 s.
    pub reclaim_after: Option<HumanDuration>,
}

fn default_webhook_events() -> Vec<String> {
    vec!["user.*".into(), "group.*".into()]
}
fn default_webhook_timeout() -> HumanDuration {
    HumanDuration::secs(10)
}
fn default_webhook_max_age() -> HumanDuration {
    HumanDuration::secs(24 * 3600)
}
fn default_retry_initial() -> HumanDuration {
    HumanDuration::secs(1)
}
fn default_retry_max() -> HumanDuration {
    HumanDuration::secs(600)
}
fn default_webhook_concurrency() -> usize {
    8
}

impl WebhookConfig {
    pub fn reclaim_after(&self) -> std::time::Duration {
        self.reclaim_after
            .map(HumanDuration::get)
            .unwrap_or(self.timeout.get() * 2 + std::time::Duration::from_secs(30))
    }

    /// Every configured secret: `secrets` then the lines of `secrets_file`.
    pub fn all_secrets(&self) -> Result<Vec<String>, String> {
        let mut out: Vec<String> = self.secrets.clone();
        if let Some(f) = &self.secrets_file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("cannot read {}: {e}", f.display()))?;
            out.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_string),
            );
        }
        Ok(out)
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScimConfig {
    /// Where the SCIM endpoints live (answered by the gateway, never proxied).
    #[serde(default = "default_scim_base")]
    pub base_path: String,
    /// Group displayName → gateway role, applied to each tenant's own
    /// directory groups (and to IdP-asserted groups only where the IdP sets
    /// `asserted_groups_map_roles`). Clients add mappings for their tenant.
    #[serde(default)]
    pub group_roles: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub client: Vec<ScimClientConfig>,
    /// How many recent SCIM requests the provisioning log keeps.
    #[serde(default = "default_scim_log")]
    pub log_retention: usize,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScimClientConfig {
    /// Name in logs and in `scim_client` of the users it provisions.
    pub name: String,
    /// `sha256:<hex>` printed by `portcullis scim-token create`.
    pub token_hash: String,
    /// A second accepted token during rotation.
    pub previous_token_hash: Option<String>,
    /// Tenant this client provisions into (it sees nothing else).
    #[serde(default = "default_tenant")]
    pub tenant: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Gateway role of users no group maps to a role.
    #[serde(default = "default_role")]
    pub default_role: String,
    /// What an absent `active` means (true: may sign in). A value the
    /// client sends always wins.
    #[serde(default = "yes")]
    pub auto_activate: bool,
    /// Apply attribute updates (PUT/PATCH of names, emails, ...). When false
    /// only `active` and group membership are applied.
    #[serde(default = "yes")]
    pub sync_attributes: bool,
    /// Allow `active: false` to deactivate users.
    #[serde(default = "yes")]
    pub allow_deactivation: bool,
    /// Really delete on DELETE (default: keep a deactivated tombstone).
    #[serde(default)]
    pub allow_deletion: bool,
    /// Requests per window, e.g. `"1000/h"`, `"50/s"`; absent = unlimited.
    pub rate_limit: Option<String>,
    /// Extra group → role mappings for this client's tenant (every user of
    /// the tenant; this client's own users see them first).
    #[serde(default)]
    pub group_roles: std::collections::BTreeMap<String, String>,
    /// The `[[saml.idp]]` ids this client is tied to: they sign in its users,
    /// and it adopts their JIT users as they are (a JIT user of another IdP
    /// loses its IdP link on adoption). Absent: the IdP whose id is this
    /// client's `name`, and the tenant's only IdP if it has one. `[]`: none.
    pub idps: Option<Vec<String>>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SsoMode {
    /// No session, no app (except public paths and `bypass`).
    #[default]
    Enforce,
    /// Requests without a session reach the app without identity headers.
    Optional,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SamlConfig {
    /// SP entity id (default: server.public_url).
    pub entity_id: Option<String>,
    /// Tolerated clock difference with IdPs.
    #[serde(default = "default_skew")]
    pub clock_skew: HumanDuration,
    #[serde(default)]
    pub mode: SsoMode,
    /// Paths that skip SSO entirely (emergency bypass, e.g. the app's own admin login).
    #[serde(default)]
    pub bypass: Vec<String>,
    /// Log full SAML messages and failure details (also `SAML_DEBUG=true`).
    #[serde(default)]
    pub debug: bool,
    /// Accept SHA-1 signatures and digests (legacy IdPs only).
    #[serde(default)]
    pub allow_sha1: bool,
    /// Largest ACS POST body accepted.
    #[serde(default = "default_saml_body")]
    pub max_response_bytes: usize,
    /// How long a sign-in may take between the redirect to the IdP and the ACS.
    #[serde(default = "default_request_ttl")]
    pub request_ttl: HumanDuration,
    /// Bind each AuthnRequest to the browser that started it with a
    /// `SameSite=None; Secure` cookie (needs https, or localhost).
    #[serde(default = "yes")]
    pub bind_to_browser: bool,
    /// SP private key (PEM): signs AuthnRequests and LogoutRequests, decrypts EncryptedAssertion.
    pub sp_key: Option<PathBuf>,
    /// SP certificate (PEM) published in the metadata with `sp_key`.
    pub sp_cert: Option<PathBuf>,
    /// Where fetched IdP metadata is cached (default: `<store.path>/saml-metadata`).
    pub metadata_cache_dir: Option<PathBuf>,
    /// Test rigs only: accept `metadata_url = "http://127.0.0.1…"` (or
    /// localhost/[::1]). Metadata carries the signing certificate, so it is
    /// fetched over https everywhere else.
    #[serde(default)]
    pub insecure_loopback_metadata_for_tests: bool,
    #[serde(default)]
    pub idp: Vec<IdpConfig>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureRequirement {
    /// The Response must be signed.
    Response,
    /// The Assertion must be signed.
    Assertion,
    /// Either, as long as the assertion is covered by a valid signature.
    #[default]
    Either,
}

/// One PEM path or several (certificate rollover).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

impl OneOrMany {
    pub fn paths(&self) -> Vec<PathBuf> {
        match self {
            Self::One(p) => vec![p.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdpConfig {
    /// Short id used in URLs (`?idp=`), logs and the `idp` claim.
    pub id: String,
    /// Name shown on the login page.
    pub display_name: Option<String>,
    /// IdP metadata XML file (entity id, SSO/SLO URLs, signing certificates).
    pub metadata_file: Option<PathBuf>,
    /// IdP metadata URL: fetched at start and every `metadata_refresh`; the
    /// last good copy is kept (and cached on disk) when a fetch fails.
    pub metadata_url: Option<String>,
    #[serde(default = "default_md_refresh")]
    pub metadata_refresh: HumanDuration,
    /// Manual alternative to metadata: the IdP entity id...
    pub entity_id: Option<String>,
    /// ...its SSO URL (HTTP-Redirect binding)...
    pub sso_url: Option<String>,
    /// ...its single-logout URL (optional)...
    pub slo_url: Option<String>,
    /// ...and its signing certificate(s), PEM.
    pub certificate: Option<OneOrMany>,
    /// Email domains routed to this IdP on the login page (case-insensitive).
    #[serde(default)]
    pub domains: Vec<String>,
    /// Tenant of users signing in through this IdP.
    pub tenant: Option<String>,
    /// Accept IdP-initiated sign-in (no AuthnRequest), as JumpCloud's user
    /// portal does. Off by default: an unsolicited response auto-POSTed by
    /// another site signs the victim into the attacker's account (login CSRF).
    #[serde(default)]
    pub allow_idp_initiated: bool,
    /// With `allow_idp_initiated`: show a "continue as …" page that must be
    /// confirmed from this browser (same-origin POST, SameSite=Strict
    /// cookie) before an unsolicited response signs anyone in, so a
    /// response auto-POSTed by another site cannot (login CSRF). One click
    /// more for portal launches; false signs in directly.
    #[serde(default = "yes")]
    pub idp_initiated_confirm: bool,
    #[serde(default)]
    pub require_signature: SignatureRequirement,
    #[serde(default)]
    pub attributes: AttributeMapping,
    #[serde(default)]
    pub jit: JitConfig,
    /// Sign in (and so claim: record this IdP as owner) users of the tenant
    /// that no IdP or SCIM client owns. Not needed by a tenant's only IdP.
    #[serde(default)]
    pub claim_unowned_users: bool,
    /// Map the groups this IdP asserts to roles through the tenant's
    /// `group_roles` (default: only directory groups map to roles).
    #[serde(default)]
    pub asserted_groups_map_roles: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeMapping {
    #[serde(default = "a_email")]
    pub email: String,
    #[serde(default = "a_given")]
    pub given_name: String,
    #[serde(default = "a_family")]
    pub family_name: String,
    #[serde(default = "a_display")]
    pub display_name: String,
    #[serde(default = "a_groups")]
    pub groups: String,
}

impl Default for AttributeMapping {
    fn default() -> Self {
        Self {
            email: a_email(),
            given_name: a_given(),
            family_name: a_family(),
            display_name: a_display(),
            groups: a_groups(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JitConfig {
    /// Create unknown users at first sign-in.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Gateway role of users created at sign-in.
    #[serde(default = "default_role")]
    pub default_role: String,
    /// Refresh name and email from the assertion at every sign-in.
    #[serde(default = "yes")]
    pub update_on_login: bool,
}

impl Default for JitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            default_role: default_role(),
            update_on_login: true,
        }
    }
}

fn default_scim_log() -> usize {
    10_000
}
fn default_scim_base() -> String {
    "/scim/v2".into()
}
/// Tenant of SCIM clients and IdPs that name none.
pub const DEFAULT_TENANT: &str = "default";

fn default_tenant() -> String {
    DEFAULT_TENANT.into()
}
fn default_skew() -> HumanDuration {
    HumanDuration::secs(120)
}
fn default_md_refresh() -> HumanDuration {
    HumanDuration::secs(3600)
}
fn default_saml_body() -> usize {
    256 * 1024
}
fn default_request_ttl() -> HumanDuration {
    HumanDuration::secs(600)
}
fn default_role() -> String {
    "member".into()
}
fn a_email() -> String {
    "email".into()
}
fn a_given() -> String {
    "firstName".into()
}
fn a_family() -> String {
    "lastName".into()
}
fn a_display() -> String {
    "displayName".into()
}
fn a_groups() -> String {
    "memberOf".into()
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the gateway listens on (HTTPS when `[server.tls]` is set).
    #[serde(default = "default_listen")]
    pub listen: ListenAddr,
    /// The URL browsers use to reach the gateway; origin of cookies, redirects
    /// and the default JWT issuer.
    pub public_url: AbsUrl,
    pub tls: Option<TlsConfig>,
    /// Accept HTTP/2 with prior knowledge (h2c) on a plaintext listener.
    #[serde(default = "yes")]
    pub http2_cleartext: bool,
    /// Worker threads for the proxy (0 = one per CPU).
    #[serde(default)]
    pub threads: usize,
    /// Prefix of the gateway's own endpoints.
    #[serde(default = "default_prefix")]
    pub reserved_prefix: String,
    /// Keep and append to inbound X-Forwarded-* (only behind a trusted load balancer).
    #[serde(default)]
    pub trust_forwarded_headers: bool,
    /// How long SIGTERM waits for in-flight requests before stopping.
    #[serde(default = "default_grace")]
    pub grace_period: HumanDuration,
    /// Directory for the pid file and upgrade socket (default: a per-port temp dir).
    pub runtime_dir: Option<PathBuf>,
    /// Match `[[policy]]` paths case-insensitively (apps on case-insensitive
    /// servers such as IIS).
    #[serde(default)]
    pub case_insensitive_paths: bool,
    /// Largest request body the gateway reads itself (login forms, SCIM, admin).
    #[serde(default = "default_body_limit")]
    pub max_body_bytes: usize,
    /// Reload the configuration when this file's contents change (checked
    /// every 2 s), as SIGHUP and `portcullis reload` do.
    #[serde(default)]
    pub watch_config: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_admin_listen")]
    pub listen: ListenAddr,
    /// `sha256:<hex>` of the admin bearer token (`portcullis admin-token create`);
    /// without it the admin API answers 404 and only /metrics is served.
    pub token_hash: Option<String>,
    /// Allow `POST /admin/sessions` to mint a session for any identity.
    /// For break-glass and integration tests only; every use is logged.
    #[serde(default)]
    pub allow_impersonation: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: default_admin_listen(),
            token_hash: None,
            allow_impersonation: false,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The protected application, `http://` or `https://`.
    pub url: AbsUrl,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    #[serde(default = "default_io_timeout")]
    pub read_timeout: HumanDuration,
    #[serde(default = "default_io_timeout")]
    pub write_timeout: HumanDuration,
    /// How long an idle pooled upstream connection is kept.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: HumanDuration,
    /// Verify the upstream's certificate and host name (https only).
    #[serde(default = "yes")]
    pub tls_verify: bool,
    /// PEM bundle of CAs trusted for an https upstream (default: system roots).
    pub ca_file: Option<PathBuf>,
    /// Send the client's Host header (true) or the upstream's host (false).
    #[serde(default = "yes")]
    pub preserve_host: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    #[default]
    Embedded,
    Redis,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default)]
    pub kind: StoreKind,
    /// Directory of the embedded store (created if missing).
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
    /// Redis URL (`redis://` or `rediss://`) when `kind = "redis"`.
    pub url: Option<String>,
    /// Prefix of every Redis key and channel, so several gateways can share one Redis.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Page cache of the embedded store, in MiB: the most of the file kept
    /// in memory (the rest is read from disk, through the kernel's cache).
    #[serde(default = "default_store_cache_mb")]
    pub cache_mb: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::Embedded,
            path: default_store_path(),
            url: None,
            key_prefix: default_key_prefix(),
            cache_mb: default_store_cache_mb(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    #[serde(default = "default_idle")]
    pub idle_timeout: HumanDuration,
    #[serde(default = "default_lifetime")]
    pub max_lifetime: HumanDuration,
    /// Cookie name; gets the `__Host-` prefix when the public URL is https.
    #[serde(default = "default_cookie")]
    pub cookie_name: String,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout: default_idle(),
            max_lifetime: default_lifetime(),
            cookie_name: default_cookie(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub enum JwtAlgorithm {
    ES256,
    RS256,
    EdDSA,
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
            Self::EdDSA => "EdDSA",
        })
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// PEM private key that signs identity JWTs.
    #[serde(default = "default_signing_key")]
    pub signing_key: PathBuf,
    /// More keys published in the JWKS (rotation: add the next key here first).
    #[serde(default)]
    pub additional_keys: Vec<PathBuf>,
    /// Expected algorithm; also the type generated when `generate_if_missing`.
    pub algorithm: Option<JwtAlgorithm>,
    /// Create and persist `signing_key` if the file does not exist (demo mode).
    #[serde(default)]
    pub generate_if_missing: bool,
    /// `iss` claim (default: server.public_url).
    pub issuer: Option<String>,
    /// `aud` claim (default: server.public_url).
    pub audience: Option<String>,
    #[serde(default = "default_jwt_ttl")]
    pub ttl: HumanDuration,
    /// Header carrying the JWT to the app.
    #[serde(default = "default_jwt_header")]
    pub header: String,
    #[serde(default)]
    pub headers: PlainHeadersConfig,
    /// Inbound headers removed before forwarding, besides every `X-Portcullis-*`.
    #[serde(default)]
    pub strip_headers: Vec<String>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            signing_key: default_signing_key(),
            additional_keys: Vec::new(),
            algorithm: None,
            generate_if_missing: false,
            issuer: None,
            audience: None,
            ttl: default_jwt_ttl(),
            header: default_jwt_header(),
            headers: PlainHeadersConfig::default(),
            strip_headers: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlainHeadersConfig {
    /// Also send unsigned convenience headers (only safe when the app is
    /// reachable through the gateway alone).
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "h_user")]
    pub user: String,
    #[serde(default = "h_email")]
    pub email: String,
    #[serde(default = "h_groups")]
    pub groups: String,
    #[serde(default = "h_name")]
    pub name: String,
}

impl Default for PlainHeadersConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            user: h_user(),
            email: h_email(),
            groups: h_groups(),
            name: h_name(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRuleConfig {
    /// `/exact`, `/dir/*` (the directory and everything below it), `*` for one segment.
    pub path: String,
    /// HTTP methods this rule applies to (default: all).
    #[serde(default)]
    pub methods: Vec<String>,
    /// `"public"`, `"authenticated"` or `"deny"`.
    pub allow: Option<String>,
    /// Signed-in users in at least one of these groups.
    pub groups: Option<Vec<String>>,
    /// With `groups`: only users of this tenant (group names are chosen by
    /// each tenant's IdP and SCIM client, so a bare name may collide).
    pub tenant: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// tracing filter, e.g. `"info"` or `"portcullis=debug,info"` (`RUST_LOG` wins).
    #[serde(default = "default_log_level")]
    pub level: String,
    #[serde(default)]
    pub format: LogFormat,
    /// One line per proxied request (target `portcullis::access`).
    #[serde(default = "yes")]
    pub access: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: default_log_level(),
            format: LogFormat::Text,
            access: true,
        }
    }
}

fn yes() -> bool {
    true
}
fn default_listen() -> ListenAddr {
    ListenAddr("0.0.0.0:8080".parse().expect("constant address"))
}
fn default_admin_listen() -> ListenAddr {
    ListenAddr("127.0.0.1:9090".parse().expect("constant address"))
}
fn default_prefix() -> String {
    "/.portcullis".into()
}
fn default_grace() -> HumanDuration {
    HumanDuration::secs(10)
}
fn default_body_limit() -> usize {
    1024 * 1024
}
fn default_connect_timeout() -> HumanDuration {
    HumanDuration::secs(5)
}
fn default_io_timeout() -> HumanDuration {
    HumanDuration::secs(60)
}
fn default_idle_timeout() -> HumanDuration {
    HumanDuration::secs(60)
}
fn default_store_path() -> PathBuf {
    "/var/lib/portcullis".into()
}
fn default_store_cache_mb() -> usize {
    64
}
fn default_key_prefix() -> String {
    "portcullis:".into()
}
fn default_idle() -> HumanDuration {
    HumanDuration::secs(8 * 3600)
}
fn default_lifetime() -> HumanDuration {
    HumanDuration::secs(24 * 3600)
}
fn default_cookie() -> String {
    "portcullis_session".into()
}
fn default_signing_key() -> PathBuf {
    "/etc/portcullis/signing.pem".into()
}
fn default_jwt_ttl() -> HumanDuration {
    HumanDuration::secs(300)
}
fn default_jwt_header() -> String {
    "X-Portcullis-Jwt-Assertion".into()
}
fn h_user() -> String {
    "X-Portcullis-User".into()
}
fn h_email() -> String {
    "X-Portcullis-Email".into()
}
fn h_groups() -> String {
    "X-Portcullis-Groups".into()
}
fn h_name() -> String {
    "X-Portcullis-Name".into()
}
fn default_log_level() -> String {
    "info".into()
}

/// One thing wrong with a config, tied to the key it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found in a config file; `Display` lists them one per line.
#[derive(Debug)]
pub struct ConfigError(pub Vec<Problem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// `admin.listen` of a config file that may not validate (or parse) as a
/// whole: what `portcullis reload` needs to reach a gateway whose new file
/// is the one being refused. The environment override counts, as in `load`.
pub fn admin_listen_leniently(path: &Path) -> Option<std::net::SocketAddr> {
    if let Ok(v) = std::env::var("PORTCULLIS_ADMIN__LISTEN") {
        return v.parse().ok();
    }
    Figment::from(Toml::file_exact(path))
        .extract_inner::<ListenAddr>("admin.listen")
        .ok()
        .map(|l| l.0)
}

impl Config {
    /// Reads `path` plus environment overrides and deserializes it.
    /// Structural errors (syntax, unknown keys, bad types or values) come back
    /// with their key path; semantic checks are in [`crate::validate::validate`].
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        if !path.is_file() {
            return Err(ConfigError(vec![Problem::new(
                "config",
                format!("{} does not exist or is not a file", path.display()),
            )]));
        }
        Self::from_figment(Figment::from(Toml::file_exact(path)))
    }

    /// Parses a config given as TOML text (plus environment overrides).
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(text)))
    }

    fn from_figment(base: Figment) -> Result<Self, ConfigError> {
        let env = Env::prefixed("PORTCULLIS_")
            // Not config keys: the config file path and the CLI's admin token.
            .ignore(&["CONFIG", "ADMIN_TOKEN"])
            .split("__")
            .map(|k| k.as_str().to_ascii_lowercase().into());
        base.merge(env)
            .extract::<Config>()
            .map_err(|e| ConfigError(e.into_iter().map(figment_problem).collect()))
    }

    /// Validation of the sections `config` owns (server, upstream, store,
    /// session, identity, log). The feature sections are validated by their
    /// own modules; [`crate::validate::validate`] runs all of them.
    pub fn validate_sections(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        self.validate_server(&mut p);
        self.validate_upstream(&mut p);
        self.validate_store(&mut p);
        self.validate_session(&mut p);
        self.validate_identity(&mut p);
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            p.push(Problem::new("log.level", format!("invalid filter: {e}")));
        }
        p
    }

    fn validate_server(&self, p: &mut Vec<Problem>) {
        let s = &self.server;
        if !matches!(s.public_url.0.scheme(), "http" | "https") {
            p.push(Problem::new(
                "server.public_url",
                "must be an http:// or https:// URL",
            ));
        }
        if s.public_url.0.path() != "/" || s.public_url.0.query().is_some() {
            p.push(Problem::new(
                "server.public_url",
                "must be an origin only (no path or query): the gateway serves the whole host",
            ));
        }
        let prefix = &s.reserved_prefix;
        if !prefix.starts_with('/')
            || prefix.len() < 2
            || prefix.ends_with('/')
            || prefix.contains("//")
        {
            p.push(Problem::new(
                "server.reserved_prefix",
                "must start with '/' and not end with '/', e.g. \"/.portcullis\"",
            ));
        }
        if self.admin.enabled && self.admin.listen.0 == s.listen.0 {
            p.push(Problem::new(
                "admin.listen",
                format!("collides with server.listen ({})", s.listen),
            ));
        }
        if self.admin.enabled
            && self.admin.listen.0.port() == s.listen.0.port()
            && (self.admin.listen.0.ip().is_unspecified() || s.listen.0.ip().is_unspecified())
        {
            p.push(Problem::new(
                "admin.listen",
                format!("port {} is also used by server.listen", s.listen.0.port()),
            ));
        }
        if let Some(h) = &self.admin.token_hash {
            if crate::secret::TokenHash::parse(h).is_err() {
                p.push(Problem::new(
                    "admin.token_hash",
                    "must be \"sha256:<64 hex digits>\" as printed by `portcullis admin-token create`",
                ));
            }
        }
        if self.admin.allow_impersonation && self.admin.token_hash.is_none() {
            p.push(Problem::new(
                "admin.allow_impersonation",
                "needs admin.token_hash: the session API is never open without a token",
            ));
        }
        if s.max_body_bytes < 1024 {
            p.push(Problem::new(
                "server.max_body_bytes",
                "must be at least 1024",
            ));
        }
        if s.grace_period.get().as_secs() > 300 {
            p.push(Problem::new("server.grace_period", "must be at most 5m"));
        }
    }

    fn validate_upstream(&self, p: &mut Vec<Problem>) {
        let u = &self.upstream;
        if !matches!(u.url.0.scheme(), "http" | "https") {
            p.push(Problem::new(
                "upstream.url",
                "must be an http:// or https:// URL",
            ));
        }
        if u.url.0.path() != "/" {
            p.push(Problem::new(
                "upstream.url",
                "must not have a path: requests keep their own path",
            ));
        }
        if let Some(ca) = &u.ca_file {
            use rustls::pki_types::{pem::PemObject, CertificateDer};
            match std::fs::read(ca) {
                Err(e) => p.push(Problem::new(
                    "upstream.ca_file",
                    format!("cannot read {}: {e}", ca.display()),
                )),
                Ok(bytes) => {
                    let n = CertificateDer::pem_slice_iter(&bytes)
                        .filter(|c| c.is_ok())
                        .count();
                    if n == 0 {
                        p.push(Problem::new(
                            "upstream.ca_file",
                            format!("{} holds no PEM certificate", ca.display()),
                        ));
                    }
                }
            }
        }
        for (key, d) in [
            ("upstream.connect_timeout", u.connect_timeout),
            ("upstream.read_timeout", u.read_timeout),
            ("upstream.write_timeout", u.write_timeout),
            ("upstream.idle_timeout", u.idle_timeout),
        ] {
            if d.get().is_zero() {
                p.push(Problem::new(key, "must be greater than zero"));
            }
        }
    }

    fn validate_store(&self, p: &mut Vec<Problem>) {
        let st = &self.store;
        if !(1..=65536).contains(&st.cache_mb) {
            p.push(Problem::new(
                "store.cache_mb",
                "must be between 1 and 65536 (MiB)",
            ));
        }
        match st.kind {
            StoreKind::Embedded => {
                if st.path.exists() && !st.path.is_dir() {
                    p.push(Problem::new("store.path", "exists but is not a directory"));
                } else if !st.path.exists() {
                    let parent = st.path.parent().filter(|x| !x.as_os_str().is_empty());
                    if parent.is_some_and(|x| !x.exists()) {
                        p.push(Problem::new(
                            "store.path",
                            format!("parent directory of {} does not exist", st.path.display()),
                        ));
                    }
                }
            }
            StoreKind::Redis => match &st.url {
                None => p.push(Problem::new(
                    "store.url",
                    "required when store.kind = \"redis\"",
                )),
                Some(u) => match url::Url::parse(u) {
                    Ok(url)
                        if matches!(url.scheme(), "redis" | "rediss" | "redis+unix" | "unix") => {}
                    Ok(_) => p.push(Problem::new(
                        "store.url",
                        "must be a redis:// or rediss:// URL",
                    )),
                    Err(e) => p.push(Problem::new("store.url", format!("invalid URL: {e}"))),
                },
            },
        }
        if st.key_prefix.is_empty() || st.key_prefix.contains(char::is_whitespace) {
            p.push(Problem::new(
                "store.key_prefix",
                "must be non-empty without spaces",
            ));
        }
    }

    fn validate_session(&self, p: &mut Vec<Problem>) {
        let s = &self.session;
        if s.idle_timeout.get().as_secs() < 1 {
            p.push(Problem::new("session.idle_timeout", "must be at least 1s"));
        }
        if s.max_lifetime.get() < s.idle_timeout.get() {
            p.push(Problem::new(
                "session.max_lifetime",
                "must not be shorter than session.idle_timeout",
            ));
        }
        let valid_cookie = !s.cookie_name.is_empty()
            && s.cookie_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            && !s.cookie_name.starts_with("__");
        if !valid_cookie {
            p.push(Problem::new(
                "session.cookie_name",
                "letters, digits, '_' and '-' only, without a '__' prefix (added automatically)",
            ));
        }
    }

    fn validate_identity(&self, p: &mut Vec<Problem>) {
        let id = &self.identity;
        let ttl = id.ttl.get().as_secs();
        if !(60..=3600).contains(&ttl) {
            p.push(Problem::new("identity.ttl", "must be between 1m and 1h"));
        }
        let mut names = BTreeSet::new();
        let mut check_header = |key: &str, name: &str| {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                p.push(Problem::new(
                    key,
                    format!("{name:?} is not a valid header name"),
                ));
            } else if !names.insert(name.to_ascii_lowercase()) {
                p.push(Problem::new(key, format!("header {name:?} is used twice")));
            }
        };
        check_header("identity.header", &id.header);
        if id.headers.enabled {
            check_header("identity.headers.user", &id.headers.user);
            check_header("identity.headers.email", &id.headers.email);
            check_header("identity.headers.groups", &id.headers.groups);
            check_header("identity.headers.name", &id.headers.name);
        }
        for (i, h) in id.strip_headers.iter().enumerate() {
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                p.push(Problem::new(
                    format!("identity.strip_headers[{i}]"),
                    format!("{h:?} is not a valid header name"),
                ));
            }
        }
    }

    /// True when browsers reach the gateway over https (directly or through a
    /// TLS-terminating load balancer): cookies get `Secure` and `__Host-`.
    pub fn is_https(&self) -> bool {
        self.server.tls.is_some() || self.server.public_url.0.scheme() == "https"
    }

    /// One-screen summary printed by `portcullis check`.
    pub fn summary(&self) -> String {
        let s = &self.server;
        let store = match self.store.kind {
            StoreKind::Embedded => format!("embedded ({})", self.store.path.display()),
            StoreKind::Redis => format!(
                "redis ({}, prefix {:?})",
                redact_url(self.store.url.as_deref().unwrap_or("")),
                self.store.key_prefix
            ),
        };
        let mut out = String::new();
        out.push_str(&format!(
            "listen      {} ({}{})\n",
            s.listen,
            if s.tls.is_some() { "https, h2" } else { "http" },
            if s.tls.is_none() && s.http2_cleartext {
                ", h2c"
            } else {
                ""
            }
        ));
        out.push_str(&format!("public url  {}\n", s.public_url.as_str()));
        out.push_str(&format!("upstream    {}\n", self.upstream.url.as_str()));
        if self.admin.enabled {
            out.push_str(&format!(
                "admin       {} (admin API {})\n",
                self.admin.listen,
                if self.admin.token_hash.is_some() {
                    "on"
                } else {
                    "off"
                }
            ));
        }
        out.push_str(&format!("store       {store}\n"));
        out.push_str(&format!(
            "sessions    idle {}, max {}\n",
            self.session.idle_timeout, self.session.max_lifetime
        ));
        out.push_str(&format!(
            "identity    header {}, ttl {}, {} extra key(s)\n",
            self.identity.header,
            self.identity.ttl,
            self.identity.additional_keys.len()
        ));
        out.push_str(&format!(
            "policy      {} rule(s), default authenticated\n",
            self.policy.len()
        ));
        for w in &self.webhook {
            out.push_str(&format!(
                "webhook     {} -> {} ({}, events {})\n",
                w.name,
                w.url.as_str(),
                if w.mode == WebhookMode::Sync {
                    "sync"
                } else {
                    "async"
                },
                w.events.join(",")
            ));
        }
        out
    }
}

/// Hides the password of a `redis://user:pass@host` URL for logs.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("****"));
            }
            u.to_string()
        }
        Err(_) => "<invalid url>".into(),
    }
}

/// figment sometimes includes the offending field in the path, sometimes not.
fn join_key(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else if path == field || path.ends_with(&format!(".{field}")) {
        path.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn figment_problem(e: figment::Error) -> Problem {
    use figment::error::Kind;
    // Array indexes as `webhook[0].mode`, the way `validate` names them.
    let mut path = String::new();
    for part in &e.path {
        if part.bytes().all(|b| b.is_ascii_digit()) && !path.is_empty() {
            path.push_str(&format!("[{part}]"));
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(part);
        }
    }
    let message = match &e.kind {
        Kind::UnknownField(field, expected) => {
            path = join_key(&path, field);
            if expected.is_empty() {
                "unknown key".to_string()
            } else {
                format!("unknown key (expected one of: {})", expected.join(", "))
            }
        }
        Kind::MissingField(field) => {
            path = join_key(&path, field);
            "required key is missing".to_string()
        }
        other => other.to_string(),
    };
    let key = if path.is_empty() {
        "config".to_string()
    } else {
        path
    };
    Problem::new(key, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[server]
listen = "127.0.0.1:18080"
public_url = "http://127.0.0.1:18080"
[upstream]
url = "http://127.0.0.1:3000"
"#;

    #[test]
    fn minimal_config_takes_documented_defaults() {
        let c = Config::from_toml_str(MINIMAL).unwrap();
        assert_eq!(c.session.idle_timeout.get().as_secs(), 8 * 3600);
        assert_eq!(c.identity.ttl.get().as_secs(), 300);
        assert_eq!(c.server.reserved_prefix, "/.portcullis");
        assert_eq!(c.admin.listen.to_string(), "127.0.0.1:9090");
        assert_eq!(c.store.kind, StoreKind::Embedded);
    }

    #[test]
    fn unknown_key_names_its_path() {
        let err = Config::from_toml_str(&format!("{MINIMAL}\n[session]\nidle_timout = \"1h\"\n"))
            .unwrap_err();
        assert_eq!(err.0[0].key, "session.idle_timout", "{err}");
    }

    #[test]
    fn bad_duration_names_its_path() {
        let err = Config::from_toml_str(&format!(
            "{MINIMAL}\n[session]\nidle_timeout = \"eight hours\"\n"
        ))
        .unwrap_err();
        assert_eq!(err.0[0].key, "session.idle_timeout", "{err}");
        assert!(err.0[0].message.contains("invalid duration"), "{err}");
    }

    #[test]
    fn bad_url_names_its_path() {
        let err = Config::from_toml_str(&MINIMAL.replace("http://127.0.0.1:3000", "not a url"))
            .unwrap_err();
        assert_eq!(err.0[0].key, "upstream.url", "{err}");
    }

    #[test]
    fn missing_required_key_names_its_path() {
        let err = Config::from_toml_str("[server]\npublic_url = \"http://x\"\n").unwrap_err();
        assert_eq!(err.0[0].key, "upstream", "{err}");
    }

    #[test]
    fn validation_lists_every_problem() {
        let text = format!(
            "{}\n[admin]\nlisten = \"127.0.0.1:18080\"\n[session]\nidle_timeout = \"0s\"\nmax_lifetime = \"2h\"\n[server.tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n[identity]\nsigning_key = \"/nonexistent/key.pem\"\n[[policy]]\npath = \"no-slash\"\nallow = \"public\"\n",
            MINIMAL
        );
        let c = Config::from_toml_str(&text).unwrap();
        let keys: Vec<String> = crate::validate::validate(&c)
            .into_iter()
            .map(|p| p.key)
            .collect();
        for want in [
            "admin.listen",
            "session.idle_timeout",
            "server.tls.cert",
            "identity.signing_key",
            "policy[0]",
        ] {
            assert!(keys.iter().any(|k| k == want), "missing {want} in {keys:?}");
        }
    }
}
