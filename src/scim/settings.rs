//! The compiled `[scim]` section: base path, clients and their tokens, and
//! the group → role maps, a plain value in the configuration snapshot that
//! the SCIM handlers and provisioning read.

use std::collections::BTreeMap;

use super::auth::{Client, Clients};
use crate::config::ScimConfig;

/// The compiled `[scim]` section.
pub struct Scim {
    pub base_path: String,
    pub log_retention: usize,
    pub clients: Clients,
    pub group_roles: BTreeMap<String, String>,
}

impl Scim {
    pub fn from_config(cfg: &ScimConfig) -> Result<Self, (String, String)> {
        let base = cfg.base_path.trim_end_matches('/').to_string();
        if !base.starts_with('/') || base.len() < 2 || base.contains("//") {
            return Err((
                "scim.base_path".into(),
                "must be an absolute path such as \"/scim/v2\"".into(),
            ));
        }
        if cfg.log_retention == 0 || cfg.log_retention > 1_000_000 {
            return Err((
                "scim.log_retention".into(),
                "must be between 1 and 1000000".into(),
            ));
        }
        Ok(Self {
            base_path: base,
            log_retention: cfg.log_retention,
            clients: Clients::from_config(cfg)?,
            group_roles: cfg.group_roles.clone(),
        })
    }

    /// Is `path` (normalized) a SCIM endpoint?
    pub fn owns(&self, path: &str) -> bool {
        path == self.base_path
            || (path.starts_with(&self.base_path)
                && path.as_bytes().get(self.base_path.len()) == Some(&b'/'))
    }

    /// Roles for a user in `groups`: every mapped group's role, else `default`.
    pub fn roles_for(
        &self,
        client_roles: Option<&BTreeMap<String, String>>,
        groups: &[String],
        default: &str,
    ) -> Vec<String> {
        let maps = client_roles
            .into_iter()
            .chain(std::iter::once(&self.group_roles));
        roles_from(maps, groups, default)
    }

    /// Roles for a user of `tenant` (provisioned by `client`, if any) in
    /// `groups`, which must be groups of that tenant. The mappings that
    /// apply are the tenant's own, first match wins: the user's client's
    /// `group_roles`, then those of the tenant's other clients, then
    /// `[scim.group_roles]`. A client of another tenant never maps a role
    /// here, whatever its groups are called.
    pub fn tenant_roles(
        &self,
        tenant: &str,
        client: Option<&str>,
        groups: &[String],
        default: &str,
    ) -> Vec<String> {
        let of_tenant = |c: &&Client| c.cfg.tenant == tenant;
        let own = self
            .clients
            .0
            .iter()
            .filter(of_tenant)
            .filter(|c| Some(c.cfg.name.as_str()) == client);
        let others = self
            .clients
            .0
            .iter()
            .filter(of_tenant)
            .filter(|c| Some(c.cfg.name.as_str()) != client);
        let maps = own
            .chain(others)
            .map(|c| &c.cfg.group_roles)
            .chain(std::iter::once(&self.group_roles));
        roles_from(maps, groups, default)
    }
}

/// Every group's role from the first map in `maps` that names the group
/// (case-insensitively), sorted and deduplicated; `default` when none maps.
pub(crate) fn roles_from<'a>(
    maps: impl Iterator<Item = &'a BTreeMap<String, String>> + Clone,
    groups: &[String],
    default: &str,
) -> Vec<String> {
    let mut roles: Vec<String> = groups
        .iter()
        .filter_map(|g| {
            maps.clone()
                .find_map(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(g)))
                .map(|(_, r)| r.clone())
        })
        .collect();
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        roles.push(default.to_string());
    }
    roles
}
