//! Background work of `serve`, beside the HTTP workers: the webhook dispatcher, the
//! analytics rollups and the retention pruning.

pub mod analytics;
pub mod retention;
pub mod webhooks;
