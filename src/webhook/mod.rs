//! `webhook` owns provisioning webhooks to the app (issue #5): so far the
//! Standard Webhooks signer; events, the outbox and delivery come next.

pub mod signing;
