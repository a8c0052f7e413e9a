//! llmur configuration files for the benchmark's profiles, written as YAML text.
//!
//! - **bare**: the in-memory SQLite store, no Redis (counters in memory), logging off;
//! - **full**: a fresh PostgreSQL schema (catalog and request logs), Redis counters with
//!   llmur's default leases, info logging (llmur's default); optionally early forwarding
//!   (the llmur-early arm) or leases off (the llmur-nolease arm);
//! - the parts of full on their own, to see what each costs: **pg** (full without Redis:
//!   counters in memory) and **redis** (bare with Redis counters);
//!
//! all with the catalog as code — one connection to the mock, one deployment, one
//! project, one virtual key — and generous limits on all four levels (requests and tokens
//! per minute and per day, budget per minute and per day), so the counting path runs on
//! every request but never refuses one. The scale variant adds keys and deployments.
//!
//! Owns: the YAML text. Must not touch: starting processes.

use std::fmt::Write as _;

use crate::payload::MODEL;

/// The virtual key every benchmark request carries (also to the direct and floor arms,
/// which ignore it).
pub const BENCH_KEY: &str = "sk-llmur-bench-0123456789abcdef";

/// Limits far above anything a run reaches: enforced (counted) on every request, never hit.
const LIMITS: &str = "{requests: {per_minute: 1000000000, per_day: 100000000000}, \
tokens: {per_minute: 1000000000000, per_day: 100000000000000}, \
budget: {per_minute: 1000000000.0, per_day: 100000000000.0}}";

/// Which llmur profile: what it stores in, counts in and logs.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    /// A `postgres://` URL (a fresh schema) for the catalog and request logs, or `None`
    /// for the in-memory SQLite store.
    pub database_url: Option<String>,
    /// A `redis://` URL for the counters, or `None` for counters in memory.
    pub redis_url: Option<String>,
    /// `log_level: info` (llmur's default) instead of off.
    pub info_logs: bool,
    /// Early forwarding with a headroom of 0.25.
    pub early: bool,
    /// Leases off (`rate_limits.lease_requests: 0`): a Redis reservation per request.
    pub no_lease: bool,
}

impl Profile {
    /// In-memory store and counters, logging off.
    pub fn bare() -> Self {
        Self::default()
    }
}

/// How big the catalog is beyond the benchmark's own key and deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogSize {
    /// Virtual keys in total (at least 1: the benchmark key).
    pub keys: usize,
    /// Deployments in total (at least 1: the benchmark deployment), each with its own
    /// connection to the mock.
    pub deployments: usize,
}

impl CatalogSize {
    /// One key and one deployment.
    pub const MINIMAL: CatalogSize = CatalogSize {
        keys: 1,
        deployments: 1,
    };
}

/// The configuration file for `profile` listening on `port`, forwarding to `upstream`.
pub fn render(profile: &Profile, port: u16, upstream: &str, size: CatalogSize) -> String {
    let mut y = String::with_capacity(256 + size.keys * 110 + size.deployments * 220);
    let _ = writeln!(y, "host: 127.0.0.1\nport: {port}");
    let _ = writeln!(y, "application_secret: llmur-bench-application-secret");
    let level = if profile.info_logs { "info" } else { "\"off\"" };
    let database = profile.database_url.as_deref().unwrap_or("sqlite::memory:");
    let _ = writeln!(y, "log_level: {level}\ndatabase_url: \"{database}\"");
    if let Some(redis_url) = &profile.redis_url {
        let _ = writeln!(y, "redis_url: \"{redis_url}\"");
    }
    let mut rate_limits = Vec::new();
    if profile.early {
        rate_limits.push("early_forwarding_headroom: 0.25");
    }
    if profile.no_lease {
        rate_limits.push("lease_requests: 0");
    }
    if !rate_limits.is_empty() {
        let _ = writeln!(y, "rate_limits: {{{}}}", rate_limits.join(", "));
    }
    let _ = writeln!(y, "connections:");
    for d in 0..size.deployments.max(1) {
        let _ = writeln!(
            y,
            "  - provider: openai/v1\n    name: {}\n    api_endpoint: {upstream}\n    model: {MODEL}\n    api_key: sk-mock-upstream-key",
            connection_name(d)
        );
        if d == 0 {
            let _ = writeln!(y, "    limits: {LIMITS}");
        }
    }
    let _ = writeln!(y, "deployments:");
    for d in 0..size.deployments.max(1) {
        let _ = writeln!(
            y,
            "  - name: {}\n    connections: [{}]",
            deployment_name(d),
            connection_name(d)
        );
        if d == 0 {
            let _ = writeln!(y, "    limits: {LIMITS}");
        }
    }
    let projects = if size.keys > 1 { 100 } else { 0 };
    let _ = writeln!(y, "projects:\n  - name: bench\n    limits: {LIMITS}");
    for p in 0..projects {
        let _ = writeln!(y, "  - name: scale-{p}");
    }
    let _ = writeln!(
        y,
        "virtual_keys:\n  - key: {BENCH_KEY}\n    project: bench\n    deployments: [{MODEL}]\n    limits: {LIMITS}"
    );
    for k in 1..size.keys {
        let _ = writeln!(
            y,
            "  - key: sk-llmur-scale-{k:010}\n    project: scale-{}\n    deployments: [{}]",
            k % projects.max(1),
            deployment_name(k % size.deployments.max(1))
        );
    }
    y
}

fn connection_name(d: usize) -> String {
    if d == 0 {
        "mock".to_owned()
    } else {
        format!("mock-{d}")
    }
}

fn deployment_name(d: usize) -> String {
    if d == 0 {
        MODEL.to_owned()
    } else {
        format!("scale-deployment-{d}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_valid_for_the_server() {
        let size = CatalogSize {
            keys: 50,
            deployments: 7,
        };
        let full = Profile {
            database_url: Some("postgres://u@h/db?options=-c%20search_path%3Ds".to_owned()),
            redis_url: Some("redis://127.0.0.1:6379".to_owned()),
            info_logs: true,
            early: true,
            no_lease: true,
        };
        for (profile, size) in [(Profile::bare(), size), (full, CatalogSize::MINIMAL)] {
            let yaml = render(&profile, 1, "http://127.0.0.1:2", size);
            assert_eq!(yaml.matches("limits: {requests").count(), 4);
            let config = llmur_server::Config::from_yaml(&yaml).unwrap();
            // Leases are on unless the profile turns them off.
            let leases = if profile.no_lease { 0 } else { 32 };
            assert_eq!(config.rate_limits.lease_requests, leases);
            let hasher = llmur_core::KeyHasher::new(&secrecy::SecretString::from("t"));
            let (_, counts) =
                llmur_server::catalog::snapshot_from_config(&config, &hasher).unwrap();
            assert_eq!(counts.virtual_keys, size.keys);
            assert_eq!(counts.deployments, size.deployments);
            assert_eq!(counts.connections, size.deployments);
        }
    }
}
