//! Integration tests: the real server over HTTP, each test on a fresh database, every test
//! on SQLite and on PostgreSQL (`sqlite::…` and `postgres::…`).

mod helpers;

mod analytics;
mod audit;
mod cli;
mod consents;
mod console;
mod errors;
mod feed;
mod gpc;
mod isolation;
mod limits;
mod linking;
mod lists;
mod management;
mod operations;
mod opt_outs;
mod presentation;
mod public;
mod receipts;
mod replica;
mod retention;
mod rights;
mod service_core;
mod status_rules;
mod token_checks;
mod tokens;
mod webhooks;
