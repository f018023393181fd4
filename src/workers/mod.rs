//! Background work of `serve`, beside the HTTP workers: the webhook dispatcher.

pub mod webhooks;
