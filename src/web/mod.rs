//! What web handlers share: the plain request/response values and the page
//! templates. Below `gateway` (which adapts pingora to these values) and
//! above the services the handlers call.

pub mod pages;
pub mod response;

pub use response::*;
