//! Portcullis: an identity gateway sidecar that gives a legacy web app SAML
//! single sign-on, SCIM provisioning, a signed identity header and
//! provisioning webhooks. See DESIGN.md for the architecture; each module
//! below owns one concern and says in its first paragraph what it refuses to
//! know about.

pub mod app;
pub mod clock;
pub mod config;
pub mod directory;
pub mod ephemeral;
pub mod gateway;
pub mod html;
pub mod identity;
pub mod policy;
pub mod provisioning;
pub mod saml;
pub mod scim;
pub mod secret;
pub mod session;
pub mod store;
pub mod store_error;
pub mod telemetry;
pub mod tls;
pub mod validate;
pub mod web;
pub mod webhook;
