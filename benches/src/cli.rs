//! Command-line flags and the plan they resolve to (full run or `--quick` smoke run).
//!
//! Owns: flag names and defaults. Must not touch: running anything.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Serialize;

use crate::payload::Payload;

/// What a request goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum, Serialize)]
pub enum Arm {
    /// Load generator → mock upstream.
    #[value(name = "direct")]
    #[serde(rename = "direct")]
    Direct,
    /// → the bare pass-through proxy (`llmur-floor`) → mock.
    #[value(name = "floor")]
    #[serde(rename = "floor")]
    Floor,
    /// → llmur with in-memory store and counters, logging off → mock.
    #[value(name = "llmur-bare")]
    #[serde(rename = "llmur-bare")]
    Bare,
    /// → llmur with PostgreSQL, Redis and limits on every level → mock.
    #[value(name = "llmur-full")]
    #[serde(rename = "llmur-full")]
    Full,
    /// llmur full with early forwarding (headroom 0.25); not in the default arms.
    #[value(name = "llmur-early")]
    #[serde(rename = "llmur-early")]
    Early,
    /// llmur full without Redis (counters in memory): what PostgreSQL and info logging
    /// add to bare; not in the default arms.
    #[value(name = "llmur-pg")]
    #[serde(rename = "llmur-pg")]
    Pg,
    /// llmur bare with Redis counters: what Redis adds to bare; not in the default arms.
    #[value(name = "llmur-redis")]
    #[serde(rename = "llmur-redis")]
    Redis,
    /// llmur full without leases (`lease_requests: 0`): a Redis reservation per request;
    /// not in the default arms.
    #[value(name = "llmur-nolease")]
    #[serde(rename = "llmur-nolease")]
    NoLease,
}

impl Arm {
    /// The default arms, in the order rounds interleave them.
    pub const ALL: [Arm; 4] = [Arm::Direct, Arm::Floor, Arm::Bare, Arm::Full];

    /// Whether a proxy process sits in between.
    pub fn is_proxy(self) -> bool {
        self != Arm::Direct
    }

    /// Whether it counts in Redis.
    pub fn uses_redis(self) -> bool {
        matches!(self, Arm::Full | Arm::Early | Arm::Redis | Arm::NoLease)
    }

    /// Whether its catalog and request logs are in PostgreSQL.
    pub fn uses_postgres(self) -> bool {
        matches!(self, Arm::Full | Arm::Early | Arm::Pg | Arm::NoLease)
    }
}

impl fmt::Display for Arm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Arm::Direct => "direct",
            Arm::Floor => "floor",
            Arm::Bare => "llmur-bare",
            Arm::Full => "llmur-full",
            Arm::Early => "llmur-early",
            Arm::Pg => "llmur-pg",
            Arm::Redis => "llmur-redis",
            Arm::NoLease => "llmur-nolease",
        })
    }
}

/// A part of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Closed loop at fixed concurrency, zero-latency upstream: req/s, CPU per request.
    Throughput,
    /// Open loop at a fixed rate, upstream with fixed latency: p50/p90/p99/max.
    Latency,
    /// Open loop of streamed completions: time to first byte.
    Stream,
    /// Proxy memory with many concurrent open streams.
    Streams,
    /// llmur bare: spawn to first served request.
    ColdStart,
    /// llmur bare with a small and a huge catalog: added latency.
    Scale,
}

impl Scenario {
    /// Every scenario, in run order.
    pub const ALL: [Scenario; 6] = [
        Scenario::Throughput,
        Scenario::Latency,
        Scenario::Stream,
        Scenario::Streams,
        Scenario::ColdStart,
        Scenario::Scale,
    ];
}

/// Load benchmark: direct vs floor proxy vs llmur (bare, full), interleaved in one run.
///
/// Needs the workspace's `llmur` and `llmur-mock` binaries from the same target directory
/// (built automatically unless --no-build), PostgreSQL and Redis for the llmur-full arm
/// (PostgreSQL: LLMUR_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test;
/// a fresh schema is created and dropped).
#[derive(Debug, Parser)]
#[command(name = "llmur-bench", about)]
pub struct Args {
    /// Smoke run (< 1 minute): short runs, one round, the 200 B payload, smaller scale catalog.
    #[arg(long)]
    pub quick: bool,
    /// Seconds per measured run [full: 3, quick: 1].
    #[arg(long)]
    pub duration: Option<f64>,
    /// Seconds of warm-up per arm before the first round [full: 1, quick: 0.3].
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Rounds (each runs every arm once, interleaved) [full: 5, quick: 1].
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Connections of the closed-loop throughput runs.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Arrival rate of the open-loop latency runs, requests per second.
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,
    /// Arrival rate of the streaming runs, streams per second.
    #[arg(long, default_value_t = 200.0)]
    pub stream_rate: f64,
    /// Connections available to the open-loop runs.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Upstream latency of the latency runs, milliseconds.
    #[arg(long, default_value_t = 20)]
    pub upstream_latency_ms: u64,
    /// Uniform jitter around --upstream-latency-ms, milliseconds (e.g. 2 for 20 ± 2 ms;
    /// off by default: jitter widens the spread the added latency is read from).
    #[arg(long, default_value_t = 0)]
    pub upstream_jitter_ms: u64,
    /// Concurrent open streams of the memory scenario.
    #[arg(long, default_value_t = 1000)]
    pub streams: usize,
    /// Virtual keys of the large scale catalog [full: 100000, quick: 20000].
    #[arg(long)]
    pub scale_keys: Option<usize>,
    /// Deployments of the large scale catalog.
    #[arg(long, default_value_t = 1000)]
    pub scale_deployments: usize,
    /// Cold starts to take the median of [full: 7, quick: 3].
    #[arg(long)]
    pub cold_starts: Option<usize>,
    /// Arms to run (comma-separated); `direct` is always added, added latency needs it.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub arms: Option<Vec<Arm>>,
    /// Payloads (comma-separated) [full: all, quick: 200b].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub payloads: Option<Vec<Payload>>,
    /// Scenarios (comma-separated) [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub scenarios: Option<Vec<Scenario>>,
    /// Where to write the JSON results (default: `<workspace>/target/bench/latest.json`).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Redis of the llmur-full arm.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Use the binaries as they are instead of running `cargo build` for them first.
    #[arg(long)]
    pub no_build: bool,
}

/// Everything a run needs to know, defaults resolved.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Smoke run.
    pub quick: bool,
    /// Per measured run (seconds in JSON).
    #[serde(serialize_with = "as_secs")]
    pub duration: Duration,
    /// Per arm before the first round (seconds in JSON).
    #[serde(serialize_with = "as_secs")]
    pub warmup: Duration,
    /// Interleaved rounds.
    pub rounds: usize,
    /// Closed-loop connections.
    pub concurrency: usize,
    /// Open-loop rate, req/s.
    pub rate: f64,
    /// Streaming rate, streams/s.
    pub stream_rate: f64,
    /// Open-loop connections.
    pub connections: usize,
    /// Upstream latency of the latency runs, ms.
    pub upstream_latency_ms: u64,
    /// Its jitter, ms.
    pub upstream_jitter_ms: u64,
    /// Concurrent streams of the memory scenario.
    pub streams: usize,
    /// Keys of the large scale catalog.
    pub scale_keys: usize,
    /// Deployments of the large scale catalog.
    pub scale_deployments: usize,
    /// Cold starts.
    pub cold_starts: usize,
    /// Arms, `direct` first.
    pub arms: Vec<Arm>,
    /// Payloads.
    pub payloads: Vec<Payload>,
    /// Scenarios.
    pub scenarios: Vec<Scenario>,
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Plan {
    /// Resolves the defaults of `args`.
    pub fn from_args(args: &Args) -> Plan {
        let q = args.quick;
        let secs = |v: Option<f64>, full: f64, quick: f64| {
            Duration::from_secs_f64(v.unwrap_or(if q { quick } else { full }).max(0.0))
        };
        let mut arms = args.arms.clone().unwrap_or_else(|| Arm::ALL.to_vec());
        arms.push(Arm::Direct);
        arms.sort();
        arms.dedup();
        let mut payloads = args.payloads.clone().unwrap_or_else(|| {
            if q {
                vec![Payload::Small]
            } else {
                Payload::ALL.to_vec()
            }
        });
        payloads.sort();
        payloads.dedup();
        let mut scenarios = args
            .scenarios
            .clone()
            .unwrap_or_else(|| Scenario::ALL.to_vec());
        scenarios.sort();
        scenarios.dedup();
        Plan {
            quick: q,
            duration: secs(args.duration, 3.0, 1.0),
            warmup: secs(args.warmup, 1.0, 0.3),
            rounds: args.rounds.unwrap_or(if q { 1 } else { 5 }).max(1),
            concurrency: args.concurrency.max(1),
            rate: args.rate.max(1.0),
            stream_rate: args.stream_rate.max(1.0),
            connections: args.connections.max(1),
            upstream_latency_ms: args.upstream_latency_ms,
            upstream_jitter_ms: args.upstream_jitter_ms,
            streams: args.streams.max(1),
            scale_keys: args
                .scale_keys
                .unwrap_or(if q { 20_000 } else { 100_000 })
                .max(10),
            scale_deployments: args.scale_deployments.max(10),
            cold_starts: args.cold_starts.unwrap_or(if q { 3 } else { 7 }).max(1),
            arms,
            payloads,
            scenarios,
        }
    }

    /// The proxies among the arms.
    pub fn proxies(&self) -> Vec<Arm> {
        self.arms.iter().copied().filter(|a| a.is_proxy()).collect()
    }
}
