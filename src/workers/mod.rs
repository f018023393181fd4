//! Background work of `serve`, beside the HTTP workers: the webhook dispatcher and the
//! analytics rollups.

pub mod analytics;
pub mod webhooks;
