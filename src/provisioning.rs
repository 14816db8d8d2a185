//! Keeps signed-in users' identity in step with the directory: one place
//! composes the principal (JWT claims) from a directory user, its groups,
//! the IdP-asserted groups and the group → role mapping; SCIM calls
//! `refresh_sessions` after a change so the next request carries the new
//! identity on every replica, without re-login.
//!
//! Roles are relative to the principal's `tenant` claim: only the tenant's
//! own mappings apply (`Scim::tenant_roles`), to the tenant's own directory
//! groups, and to IdP-asserted groups only when that IdP sets
//! `asserted_groups_map_roles` (an IdP names its groups as it likes).

use crate::directory::trust::Trust;
use crate::directory::DirectoryStore;
use crate::directory::{DirectoryError, User};
use crate::ephemeral::StateStore;
use crate::identity::Principal;
use crate::scim::settings::Scim;
use crate::session::Sessions;

/// Role of users without a mapped group or an explicit role.
/// What provisioning reads and writes: the directory, and the markers of
/// users SCIM deprovisioned. Every store backend has both.
pub trait ProvisioningStore: DirectoryStore + StateStore {}
impl<T: DirectoryStore + StateStore + ?Sized> ProvisioningStore for T {}

/// The services and snapshot parts provisioning works with, borrowed for
/// one request.
pub struct Provisioning<'a> {
    pub store: &'a dyn ProvisioningStore,
    pub sessions: &'a Sessions,
    pub trust: &'a Trust,
    pub scim: Option<&'a Scim>,
}

pub const FALLBACK_ROLE: &str = "member";

/// Where a principal's facts come from besides the directory user.
pub struct Sources<'a> {
    pub directory_groups: &'a [String],
    /// Groups the IdP asserted at sign-in.
    pub asserted_groups: &'a [String],
    pub idp: Option<String>,
    /// Email when the directory user has none.
    pub fallback_email: Option<String>,
    /// Role when the user has none and no group maps to one.
    pub default_role: &'a str,
}

/// The principal for `user`: directory groups ∪ asserted groups, roles
/// from the tenant's group mapping (else the user's role).
pub fn compose(p: &Provisioning<'_>, tenant: &str, user: &User, src: Sources<'_>) -> Principal {
    let Sources {
        directory_groups,
        asserted_groups,
        idp,
        fallback_email,
        default_role,
    } = src;
    let mut groups: Vec<String> = directory_groups
        .iter()
        .chain(asserted_groups)
        .cloned()
        .collect();
    groups.sort();
    groups.dedup();
    // The tenant's directory groups map to roles; what an IdP asserts only
    // if the operator says so for that IdP.
    let role_groups: &[String] = if idp
        .as_deref()
        .is_some_and(|i| p.trust.asserted_groups_map_roles(i))
    {
        &groups
    } else {
        directory_groups
    };
    let base_role = if user.role.is_empty() {
        default_role.to_string()
    } else {
        user.role.clone()
    };
    let roles = match p.scim {
        Some(scim) => {
            scim.tenant_roles(tenant, user.scim_client.as_deref(), role_groups, &base_role)
        }
        None => vec![base_role],
    };
    Principal {
        sub: user.id.clone(),
        email: user.primary_email().map(str::to_string).or(fallback_email),
        name: user
            .display_name
            .clone()
            .or_else(|| user.name.formatted.clone()),
        given_name: user.name.given_name.clone(),
        family_name: user.name.family_name.clone(),
        groups,
        roles,
        tenant: Some(tenant.to_string()),
        idp,
    }
}

/// Re-derives the identity of every session of a directory user. Inactive
/// or deleted users are left alone (their sessions are revoked elsewhere).
pub async fn refresh_sessions(
    p: &Provisioning<'_>,
    tenant: &str,
    user_id: &str,
) -> Result<usize, String> {
    let user = p
        .store
        .get_user(tenant, user_id)
        .await
        .map_err(|e: DirectoryError| e.to_string())?;
    let Some(user) = user.filter(|u| u.active && !u.deleted) else {
        return Ok(0);
    };
    let dir_groups: Vec<String> = p
        .store
        .groups_of_user(tenant, &user.id)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|g| g.display_name)
        .collect();
    p.sessions
        .refresh_user(&user.id, |rec| {
            let asserted = rec
                .sso
                .as_ref()
                .map(|l| l.asserted_groups.clone())
                .unwrap_or_default();
            // Not the session's previous role: a role granted by a group the
            // user just left must not survive the refresh.
            let role = FALLBACK_ROLE.to_string();
            let src = Sources {
                directory_groups: &dir_groups,
                asserted_groups: &asserted,
                idp: rec.principal.idp.clone(),
                fallback_email: rec.principal.email.clone(),
                default_role: &role,
            };
            compose(p, tenant, &user, src)
        })
        .await
        .map_err(|e| e.to_string())
}

/// State namespace of "deprovisioned by SCIM" markers: a user a SCIM client
/// deleted must not come back through SAML JIT until SCIM provisions it again.
const DEPROVISIONED: &str = "deprovisioned";
/// Markers outlive any realistic IdP session (ten years).
const DEPROVISIONED_TTL: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 86_400);

fn marker_key(tenant: &str, user_name: &str) -> String {
    format!("{tenant}:{}", crate::directory::rules::fold(user_name))
}

/// Remembers that SCIM deprovisioned `user_name` in `tenant`.
pub async fn mark_deprovisioned(
    p: &Provisioning<'_>,
    tenant: &str,
    user_name: &str,
) -> Result<(), String> {
    let key = marker_key(tenant, user_name);
    // Replace any older marker: take, then put.
    p.store
        .take_state(DEPROVISIONED, &key)
        .await
        .map_err(|e| e.to_string())?;
    p.store
        .put_state_once(DEPROVISIONED, &key, b"1", DEPROVISIONED_TTL)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Clears the marker when SCIM provisions the userName again.
pub async fn clear_deprovisioned(
    p: &Provisioning<'_>,
    tenant: &str,
    user_name: &str,
) -> Result<(), String> {
    p.store
        .take_state(DEPROVISIONED, &marker_key(tenant, user_name))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Was `user_name` deprovisioned by SCIM (and not provisioned since)?
pub async fn is_deprovisioned(
    p: &Provisioning<'_>,
    tenant: &str,
    user_name: &str,
) -> Result<bool, String> {
    p.store
        .peek_state(DEPROVISIONED, &marker_key(tenant, user_name))
        .await
        .map(|v| v.is_some())
        .map_err(|e| e.to_string())
}
