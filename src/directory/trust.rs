//! `directory::trust` decides who may vouch for whom in the directory:
//! which IdP may sign in which user, which identifiers (domains) an IdP may
//! assert, and which SCIM client may adopt a SAML JIT user as it is. It is
//! built once from the config (`[[saml.idp]]` `tenant`, `domains`,
//! `claim_unowned_users`, `asserted_groups_map_roles`; `[[scim.client]]`
//! `tenant`, `idps`) and answers with plain functions over a [`User`]: no
//! I/O, no SAML, no SCIM.
//!
//! **Who owns a user.** An IdP *owns* a directory user when
//! 1. the user was provisioned by a configured `[[scim.client]]` of its
//!    tenant and that client is *tied* to the IdP (below) — for such a user
//!    the client's tie decides, whatever IdP first signed it in; else
//! 2. the user's `idp` is this IdP (it created the user by JIT, or claimed
//!    it); else
//! 3. the user is *unowned* (no `idp`, no configured SCIM client: created
//!    by the admin API, or by a client since removed) and the IdP may claim
//!    it: it is the only IdP of its tenant, or it has
//!    `claim_unowned_users = true`. A claim is recorded (`idp` is set), so
//!    the user is then that IdP's alone.
//!
//! A user another IdP owns is refused; so is an unowned one the IdP may
//! not claim. Signing in never changes the owner of an owned user.
//!
//! **Ties.** A SCIM client is tied to the IdPs listed in its `idps`; without
//! that key, to the IdP whose `id` equals the client's `name`, and to the
//! only IdP of its tenant when the tenant has exactly one. A SCIM client
//! that adopts a JIT user of an IdP it is not tied to resets the user's
//! IdP link (see `scim::server`).
//!
//! **Domains.** An IdP with `domains` vouches only for identifiers (NameID,
//! email, the matched user's userName and email) in those domains; an IdP
//! without `domains` never for a domain routed to another IdP. Identifiers
//! without `@` (opaque NameIDs) have no domain; ownership still applies.

use std::collections::HashMap;

use super::User;
use crate::config::{Config, Problem, DEFAULT_TENANT};

/// What an IdP may do with a directory user it asserts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The IdP owns the user: sign it in, change nothing about ownership.
    Owned,
    /// Nobody owns the user and this IdP may claim it: sign it in and
    /// record the IdP as its owner.
    Claim,
    /// The user is another IdP's (its JIT user, or claimed by it).
    OtherIdp(String),
    /// The user is not this IdP's to assert; the reason is for the log.
    NotOwned(String),
}

struct IdpTrust {
    tenant: String,
    domains: Vec<String>,
    claim_unowned: bool,
    asserted_groups_map_roles: bool,
}

struct ClientTrust {
    tenant: String,
    /// `None`: the implicit tie (same name, or the tenant's only IdP).
    idps: Option<Vec<String>>,
}

/// The trust rules of one config; see the module documentation.
#[derive(Default)]
pub struct Trust {
    idps: HashMap<String, IdpTrust>,
    clients: HashMap<String, ClientTrust>,
    /// Tenant → ids of the IdPs that sign users into it.
    tenant_idps: HashMap<String, Vec<String>>,
    /// Routed domain (lowercase) → the IdP it is routed to.
    domains: HashMap<String, String>,
}

/// A configured domain the way the IdP registry compares it.
fn normalise_domain(d: &str) -> String {
    d.trim().trim_start_matches('@').to_ascii_lowercase()
}

/// The domain part of an identifier (after its last `@`), lowercased.
fn domain_of(identifier: &str) -> Option<String> {
    identifier
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
}

impl Trust {
    pub fn from_config(cfg: &Config) -> Self {
        let mut t = Self::default();
        for c in cfg.saml.iter().flat_map(|s| s.idp.iter()) {
            let tenant = c.tenant.clone().unwrap_or_else(|| DEFAULT_TENANT.into());
            let domains: Vec<String> = c.domains.iter().map(|d| normalise_domain(d)).collect();
            for d in &domains {
                t.domains.entry(d.clone()).or_insert_with(|| c.id.clone());
            }
            t.tenant_idps
                .entry(tenant.clone())
                .or_default()
                .push(c.id.clone());
            t.idps.insert(
                c.id.clone(),
                IdpTrust {
                    tenant,
                    domains,
                    claim_unowned: c.claim_unowned_users,
                    asserted_groups_map_roles: c.asserted_groups_map_roles,
                },
            );
        }
        for c in cfg.scim.iter().flat_map(|s| s.client.iter()) {
            t.clients.insert(
                c.name.clone(),
                ClientTrust {
                    tenant: c.tenant.clone(),
                    idps: c.idps.clone(),
                },
            );
        }
        t
    }

    /// Is the SCIM client `client` tied to the IdP `idp`? An unknown client
    /// is tied to nothing.
    pub fn client_tied_to(&self, client: &str, idp: &str) -> bool {
        let Some(c) = self.clients.get(client) else {
            return false;
        };
        match &c.idps {
            Some(list) => list.iter().any(|i| i == idp),
            None => {
                idp == client
                    || self
                        .tenant_idps
                        .get(&c.tenant)
                        .is_some_and(|ids| ids.len() == 1 && ids[0] == idp)
            }
        }
    }

    /// May `idp` sign in `user` (a user of the IdP's tenant)?
    pub fn sign_in(&self, idp: &str, user: &User) -> Verdict {
        let client = user.scim_client.as_deref().filter(|c| {
            self.clients
                .get(*c)
                .is_some_and(|ct| ct.tenant == user.tenant)
        });
        if let Some(c) = client {
            return if self.client_tied_to(c, idp) {
                Verdict::Owned
            } else {
                Verdict::NotOwned(format!(
                    "provisioned by SCIM client {c:?}, which is not tied to this IdP (its `idps`)"
                ))
            };
        }
        match &user.idp {
            Some(owner) if owner == idp => Verdict::Owned,
            Some(owner) => Verdict::OtherIdp(owner.clone()),
            None if self.may_claim(idp) => Verdict::Claim,
            None => Verdict::NotOwned(
                "owned by no IdP or SCIM client, and this IdP shares its tenant without \
                 `claim_unowned_users = true`"
                    .into(),
            ),
        }
    }

    /// May `idp` claim unowned users of its tenant?
    fn may_claim(&self, idp: &str) -> bool {
        let Some(i) = self.idps.get(idp) else {
            return false;
        };
        i.claim_unowned
            || self
                .tenant_idps
                .get(&i.tenant)
                .is_some_and(|ids| ids.len() == 1)
    }

    /// The domain rule: may `idp` assert `identifier`? `Err` names the
    /// reason. Identifiers without a domain pass.
    pub fn may_vouch_for(&self, idp: &str, identifier: &str) -> Result<(), String> {
        let Some(domain) = domain_of(identifier) else {
            return Ok(());
        };
        let own = self
            .idps
            .get(idp)
            .map(|i| i.domains.as_slice())
            .unwrap_or(&[]);
        if !own.is_empty() {
            return if own.contains(&domain) {
                Ok(())
            } else {
                Err(format!("{identifier} is outside the IdP's domains"))
            };
        }
        match self.domains.get(&domain) {
            Some(other) if other != idp => Err(format!(
                "{identifier} is in a domain routed to IdP {other:?}"
            )),
            _ => Ok(()),
        }
    }

    /// Do the groups `idp` asserts map to roles (`asserted_groups_map_roles`)?
    pub fn asserted_groups_map_roles(&self, idp: &str) -> bool {
        self.idps
            .get(idp)
            .is_some_and(|i| i.asserted_groups_map_roles)
    }
}

/// Config checks for the keys this module reads: every `idps` entry of a
/// `[[scim.client]]` names an IdP of the client's tenant, and IdP domains
/// are ASCII (identifiers with other domains are refused anyway).
pub fn validate_config(cfg: &Config, problems: &mut Vec<Problem>) {
    let idps: Vec<_> = cfg.saml.iter().flat_map(|s| s.idp.iter()).collect();
    for (i, c) in idps.iter().enumerate() {
        for (j, d) in c.domains.iter().enumerate() {
            if !d.is_ascii() {
                problems.push(Problem::new(
                    format!("saml.idp[{i}].domains[{j}]"),
                    format!("{d:?} is not ASCII: write the domain as its IDNA A-label (xn--...)"),
                ));
            }
        }
    }
    for (i, c) in cfg.scim.iter().flat_map(|s| s.client.iter()).enumerate() {
        for (j, id) in c.idps.iter().flatten().enumerate() {
            let key = format!("scim.client[{i}].idps[{j}]");
            match idps.iter().find(|x| x.id == *id) {
                None => problems.push(Problem::new(key, format!("no [[saml.idp]] has id {id:?}"))),
                Some(x) => {
                    let tenant = x.tenant.as_deref().unwrap_or(DEFAULT_TENANT);
                    if tenant != c.tenant {
                        problems.push(Problem::new(
                            key,
                            format!(
                                "IdP {id:?} signs users into tenant {tenant:?}, not this client's {:?}",
                                c.tenant
                            ),
                        ));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::ProvisionedVia;

    fn config(extra: &str) -> Config {
        Config::from_toml_str(&format!(
            "[server]\nlisten = \"127.0.0.1:1\"\npublic_url = \"http://127.0.0.1:1\"\n[upstream]\nurl = \"http://127.0.0.1:2\"\n{extra}"
        ))
        .unwrap()
    }

    fn trust(extra: &str) -> Trust {
        Trust::from_config(&config(extra))
    }

    #[test]
    fn check_names_untied_idps_and_non_ascii_domains() {
        let cfg = config(&format!(
            "[saml]\n{}{}[scim]\n{}",
            idp("a", "tenant = \"t\"\ndomains = [\"b\u{fc}cher.example\"]"),
            idp("b", "tenant = \"u\""),
            client("c", "tenant = \"t\"\nidps = [\"a\", \"b\", \"nope\"]"),
        ));
        let mut problems = Vec::new();
        validate_config(&cfg, &mut problems);
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "saml.idp[0].domains[0]",
                "scim.client[0].idps[1]",
                "scim.client[0].idps[2]"
            ],
            "{problems:?}"
        );
    }

    fn idp(id: &str, keys: &str) -> String {
        format!("[[saml.idp]]\nid = \"{id}\"\n{keys}\n")
    }

    fn client(name: &str, keys: &str) -> String {
        format!("[[scim.client]]\nname = \"{name}\"\ntoken_hash = \"x\"\n{keys}\n")
    }

    fn user(tenant: &str) -> User {
        User {
            tenant: tenant.into(),
            ..User::new("u@a.example")
        }
    }

    #[test]
    fn the_only_idp_of_a_tenant_claims_unowned_users_others_need_the_key() {
        let t = trust(&format!(
            "[saml]\n{}{}{}",
            idp("solo", "tenant = \"one\""),
            idp("a", "tenant = \"two\"\nclaim_unowned_users = true"),
            idp("b", "tenant = \"two\""),
        ));
        assert_eq!(t.sign_in("solo", &user("one")), Verdict::Claim);
        assert_eq!(t.sign_in("a", &user("two")), Verdict::Claim);
        assert!(matches!(t.sign_in("b", &user("two")), Verdict::NotOwned(_)));
        let claimed = User {
            idp: Some("a".into()),
            ..user("two")
        };
        assert_eq!(t.sign_in("a", &claimed), Verdict::Owned);
        assert_eq!(t.sign_in("b", &claimed), Verdict::OtherIdp("a".into()));
    }

    #[test]
    fn a_scim_user_belongs_to_the_idps_its_client_is_tied_to() {
        let t = trust(&format!(
            "[saml]\n{}{}{}[scim]\n{}{}{}",
            idp("a", "tenant = \"t\""),
            idp("b", "tenant = \"t\""),
            idp("solo", "tenant = \"s\""),
            client("a", "tenant = \"t\""),
            client("dir", "tenant = \"t\"\nidps = [\"b\"]"),
            client("other-name", "tenant = \"s\""),
        ));
        let of = |c: &str, tenant: &str, first_idp: Option<&str>| User {
            provisioned_via: ProvisionedVia::Scim,
            scim_client: Some(c.into()),
            idp: first_idp.map(str::to_string),
            ..user(tenant)
        };
        // Implicit tie by name...
        assert_eq!(t.sign_in("a", &of("a", "t", None)), Verdict::Owned);
        assert!(matches!(
            t.sign_in("b", &of("a", "t", None)),
            Verdict::NotOwned(_)
        ));
        // ...explicit `idps`, whatever IdP signed the user in first...
        assert_eq!(t.sign_in("b", &of("dir", "t", Some("a"))), Verdict::Owned);
        assert!(matches!(
            t.sign_in("a", &of("dir", "t", Some("a"))),
            Verdict::NotOwned(_)
        ));
        // ...or the tenant's only IdP.
        assert_eq!(
            t.sign_in("solo", &of("other-name", "s", None)),
            Verdict::Owned
        );
        assert!(t.client_tied_to("a", "a") && !t.client_tied_to("a", "b"));
        assert!(!t.client_tied_to("unknown", "a"));
        // A client no longer configured leaves its users unowned.
        assert_eq!(t.sign_in("solo", &of("gone", "s", None)), Verdict::Claim);
    }

    #[test]
    fn domains_are_vouched_for_by_their_idp_only() {
        let t = trust(&format!(
            "[saml]\n{}{}{}",
            idp("a", "tenant = \"t\"\ndomains = [\"A.example\"]"),
            idp("b", "tenant = \"t\"\ndomains = [\"b.example\"]"),
            idp("c", "tenant = \"t\""),
        ));
        assert!(t.may_vouch_for("a", "ceo@a.EXAMPLE").is_ok());
        assert!(t.may_vouch_for("b", "ceo@a.example").is_err());
        assert!(
            t.may_vouch_for("c", "ceo@a.example").is_err(),
            "routed to a"
        );
        assert!(t.may_vouch_for("c", "x@unrouted.example").is_ok());
        assert!(t.may_vouch_for("a", "x@unrouted.example").is_err());
        assert!(t.may_vouch_for("b", "00u1abcd").is_ok(), "no domain");
        // The last '@' is the domain, as for email routing.
        assert!(t.may_vouch_for("b", "ceo@a.example@b.example").is_ok());
    }
}
