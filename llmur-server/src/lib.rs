//! # llmur-server
//!
//! The `llmur` binary as a library: configuration ([`config`]), the catalog declared in it
//! ([`catalog`]), the HTTP listener ([`serve`]) and telemetry set-up ([`telemetry`]).
//! `main.rs` only parses the command line and calls [`serve::start`].

#![warn(missing_docs)]

pub mod admin;
pub mod app;
pub mod catalog;
pub mod catalog_sync;
pub mod cli;
pub mod config;
pub mod counter_redis;
pub mod db;
pub mod error;
pub mod invalidation;
pub mod log_writer;
pub mod retention;
pub mod security;
pub mod serve;
pub mod telemetry;
pub mod usage;
mod workers;

pub use config::Config;
pub use error::ConfigError;
pub use serve::{RunningServer, start};
