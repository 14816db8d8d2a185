//! `webhook` owns provisioning webhooks to the app (issue #5). Landed so
//! far: the event model (`event`) and the Standard Webhooks signer
//! (`signing`); the outbox and delivery come next.

pub mod event;
pub mod signing;
