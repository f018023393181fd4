//! Consentry: a consent and cookie preference-centre backend.
//!
//! Requests flow one way: [`routes`] → [`ledger`] / [`domain`] → [`db`]. The domain holds the
//! rules and touches neither HTTP nor SQL. [`workers`] run beside the HTTP server (webhook
//! delivery).

pub mod apply;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod extract;
pub mod ledger;
pub mod limits;
pub mod metrics;
pub mod receipts;
pub mod routes;
pub mod secrets;
pub mod service;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod wire;
pub mod workers;
