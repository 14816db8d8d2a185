//! `scim` is the SCIM 2.0 service provider (RFC 7643/7644) that JumpCloud,
//! Okta and Entra ID provision into. Its cores are pure: `filter` parses
//! and evaluates filters, `patch` applies PATCH operations, both on the
//! SCIM JSON representation; the directory (storage, indexes) is separate.

pub mod attrs;
pub mod auth;
pub mod error;
pub mod filter;
pub mod json;
pub mod log;
pub mod patch;
#[cfg(test)]
mod properties;
pub mod resource;
pub mod schemas;
pub mod server;
pub mod settings;

pub use error::ScimError;

/// Config validation for `[scim]`.
pub fn validate_config(
    _cfg: &crate::config::Config,
    scim: &crate::config::ScimConfig,
    problems: &mut Vec<crate::config::Problem>,
) {
    if let Err((key, msg)) = server::Scim::from_config(scim) {
        problems.push(crate::config::Problem::new(key, msg));
    }
}
