//! What a run measured, raw (every round) and derived (medians over rounds, added latency
//! against the direct arm of the same round), serialised to the JSON file.
//!
//! Owns: the result types and the derived figures. Must not touch: measuring, printing.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cli::{Arm, Plan};
use crate::payload::Payload;
use crate::redis_stats::RedisLoad;
use crate::stats::{Summary, median, median_by};

/// One closed-loop round of one arm.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ThroughputRound {
    /// Successful answers per second.
    pub rps: f64,
    /// Successful answers.
    pub completed: u64,
    /// Failures and non-2xx answers.
    pub errors: u64,
    /// Proxy CPU (user + system) seconds per 1,000 answers; none for direct.
    pub cpu_s_per_1k: Option<f64>,
    /// Redis's work per 1,000 answers; none for an arm without Redis.
    pub redis: Option<RedisLoad>,
    /// PostgreSQL's CPU milliseconds per 1,000 answers (every `postgres` process of this
    /// machine); none for an arm without PostgreSQL.
    pub postgres_cpu_ms_per_1k: Option<f64>,
}

/// What a round cost the machine per 1,000 answers: the proxy's CPU seconds, Redis's
/// work and PostgreSQL's CPU milliseconds (each `None` where not measured).
pub type Costs = (Option<f64>, Option<RedisLoad>, Option<f64>);

impl ThroughputRound {
    /// What the round cost the machine.
    pub fn costs(&self) -> Costs {
        (self.cpu_s_per_1k, self.redis, self.postgres_cpu_ms_per_1k)
    }
}

impl LatencyRound {
    /// What the round cost the machine.
    pub fn costs(&self) -> Costs {
        (self.cpu_s_per_1k, self.redis, self.postgres_cpu_ms_per_1k)
    }
}

/// One open-loop round of one arm.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LatencyRound {
    /// Full latency, µs.
    pub latency: Summary,
    /// Time to first byte, µs.
    pub ttfb: Summary,
    /// Failures and non-2xx answers.
    pub errors: u64,
    /// Requests that were due while every connection was busy.
    pub late: u64,
    /// Mean body bytes per answer.
    pub bytes_per_answer: f64,
    /// Proxy CPU (user + system) seconds per 1,000 answers; none for direct.
    pub cpu_s_per_1k: Option<f64>,
    /// Redis's work per 1,000 answers; none for an arm without Redis.
    pub redis: Option<RedisLoad>,
    /// PostgreSQL's CPU milliseconds per 1,000 answers (every `postgres` process of this
    /// machine); none for an arm without PostgreSQL.
    pub postgres_cpu_ms_per_1k: Option<f64>,
}

/// Memory with many streams open at once.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StreamsMemory {
    /// Streams asked for.
    pub streams: usize,
    /// Streams that delivered a first byte and were open when measured.
    pub open: usize,
    /// Proxy RSS just before, MiB.
    pub rss_before_mib: f64,
    /// Proxy RSS with the streams open, MiB.
    pub rss_mib: f64,
    /// (rss − rss_before) / open, KiB.
    pub per_stream_kib: f64,
}

/// Everything measured for one arm.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ArmResults {
    /// VmRSS right after start and one request, MiB (one per start).
    pub idle_rss_mib: Vec<f64>,
    /// Largest VmHWM seen over the throughput, latency and stream scenarios, MiB.
    pub peak_rss_mib: Option<f64>,
    /// Closed-loop rounds per payload.
    pub throughput: BTreeMap<Payload, Vec<ThroughputRound>>,
    /// Open-loop rounds per payload.
    pub latency: BTreeMap<Payload, Vec<LatencyRound>>,
    /// Open-loop streaming rounds.
    pub stream: Vec<LatencyRound>,
    /// Many open streams.
    pub streams_memory: Option<StreamsMemory>,
}

/// The scale comparison: llmur bare with a small and a large catalog.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Scale {
    /// (keys, deployments) of the small catalog.
    pub small: (usize, usize),
    /// (keys, deployments) of the large catalog.
    pub large: (usize, usize),
    /// Spawn to listening, ms, small and large.
    pub start_ms: (f64, f64),
    /// RSS after the runs, MiB, small and large.
    pub rss_mib: (f64, f64),
    /// Direct arm rounds.
    pub direct: Vec<LatencyRound>,
    /// Small catalog rounds.
    pub small_rounds: Vec<LatencyRound>,
    /// Large catalog rounds.
    pub large_rounds: Vec<LatencyRound>,
}

/// A performance target and whether the run met it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What is required.
    pub target: String,
    /// What was measured.
    pub measured: String,
    /// `None` when it could not be judged (the arm or scenario did not run).
    pub pass: Option<bool>,
    /// The same target judged on each round alone (rounds run every arm back to back, so
    /// a round's figures are paired): how firm the verdict on the medians is. `None` for
    /// targets measured once (memory, cold start).
    pub rounds: Option<RoundTally>,
}

/// In how many rounds a target was met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RoundTally {
    /// Rounds that met it.
    pub met: usize,
    /// Rounds that could be judged (both figures measured, a positive baseline).
    pub judged: usize,
}

impl RoundTally {
    /// Tallies per-round verdicts; `None` entries could not be judged.
    pub fn of(verdicts: impl IntoIterator<Item = Option<bool>>) -> Option<RoundTally> {
        let mut tally = RoundTally { met: 0, judged: 0 };
        for pass in verdicts.into_iter().flatten() {
            tally.judged += 1;
            tally.met += usize::from(pass);
        }
        (tally.judged > 0).then_some(tally)
    }

    /// Tallies `pass` over per-round figures, leaving out rounds that measured nothing
    /// (`NaN`).
    pub fn of_figures(figures: &[f64], pass: impl Fn(f64) -> bool) -> Option<RoundTally> {
        Self::of(figures.iter().map(|&x| x.is_finite().then(|| pass(x))))
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// The plan it ran.
    pub plan: Plan,
    /// Clock ticks per second used for CPU figures.
    pub clock_ticks: f64,
    /// Per arm.
    pub arms: BTreeMap<Arm, ArmResults>,
    /// llmur bare cold starts, ms.
    pub cold_start_ms: Vec<f64>,
    /// The scale comparison.
    pub scale: Option<Scale>,
    /// Targets, filled in at the end.
    pub checks: Vec<Check>,
    /// Warnings and errors the processes logged.
    pub notes: Vec<String>,
    /// Seconds the run took.
    pub wall_secs: f64,
}

impl Results {
    /// Empty results for `plan`.
    pub fn new(plan: Plan, clock_ticks: f64) -> Results {
        let arms = plan
            .arms
            .iter()
            .map(|&a| (a, ArmResults::default()))
            .collect();
        Results {
            plan,
            clock_ticks,
            arms,
            cold_start_ms: Vec::new(),
            scale: None,
            checks: Vec::new(),
            notes: Vec::new(),
            wall_secs: 0.0,
        }
    }

    /// The results of `arm` (created if missing).
    pub fn arm(&mut self, arm: Arm) -> &mut ArmResults {
        self.arms.entry(arm).or_default()
    }

    /// Median throughput of `arm` for `payload`.
    pub fn throughput(&self, arm: Arm, payload: Payload) -> Option<f64> {
        let rounds = self.arms.get(&arm)?.throughput.get(&payload)?;
        median_by(rounds, |r| Some(r.rps))
    }

    /// Per round, `arm`'s throughput over `base`'s of the same round, for `payload`.
    pub fn throughput_ratios(&self, arm: Arm, base: Arm, payload: Payload) -> Vec<f64> {
        let rounds = |a: Arm| {
            self.arms
                .get(&a)
                .and_then(|r| r.throughput.get(&payload))
                .map_or(&[][..], Vec::as_slice)
        };
        rounds(arm)
            .iter()
            .zip(rounds(base))
            .filter(|(_, b)| b.rps > 0.0)
            .map(|(a, b)| a.rps / b.rps)
            .collect()
    }

    /// Median proxy CPU seconds per 1,000 answers of `arm` for `payload`.
    pub fn cpu_per_1k(&self, arm: Arm, payload: Payload) -> Option<f64> {
        let rounds = self.arms.get(&arm)?.throughput.get(&payload)?;
        median_by(rounds, |r| r.cpu_s_per_1k)
    }

    /// Latency rounds of `arm` for `payload`.
    pub fn latency_rounds(&self, arm: Arm, payload: Payload) -> &[LatencyRound] {
        self.arms
            .get(&arm)
            .and_then(|a| a.latency.get(&payload))
            .map_or(&[], Vec::as_slice)
    }

    /// Streaming rounds of `arm`.
    pub fn stream_rounds(&self, arm: Arm) -> &[LatencyRound] {
        self.arms.get(&arm).map_or(&[], |a| a.stream.as_slice())
    }
}

/// Which figure of a round.
#[derive(Debug, Clone, Copy)]
pub enum Pick {
    /// Latency p50.
    P50,
    /// Latency p90.
    P90,
    /// Latency p99.
    P99,
    /// Latency max.
    Max,
    /// Time to first byte p50.
    TtfbP50,
    /// Time to first byte p99.
    TtfbP99,
    /// Proxy CPU seconds per 1,000 answers.
    Cpu,
}

impl Pick {
    /// The figure of `round`, µs.
    pub fn of(self, round: &LatencyRound) -> f64 {
        match self {
            Pick::P50 => round.latency.p50,
            Pick::P90 => round.latency.p90,
            Pick::P99 => round.latency.p99,
            Pick::Max => round.latency.max,
            Pick::TtfbP50 => round.ttfb.p50,
            Pick::TtfbP99 => round.ttfb.p99,
            Pick::Cpu => round.cpu_s_per_1k.unwrap_or(f64::NAN),
        }
    }
}

/// Median over rounds of a figure, µs.
pub fn median_of(rounds: &[LatencyRound], pick: Pick) -> Option<f64> {
    median_by(rounds, |r| (r.latency.n > 0).then(|| pick.of(r)))
}

/// Median over rounds of (arm − baseline) for a figure, rounds paired by index, µs.
pub fn added(rounds: &[LatencyRound], baseline: &[LatencyRound], pick: Pick) -> Option<f64> {
    median(&added_per_round(rounds, baseline, pick))
}

/// Per round, (arm − baseline) for a figure, rounds paired by index, µs; `NaN` for a
/// round where either measured nothing (so the indices stay those of the rounds).
pub fn added_per_round(rounds: &[LatencyRound], baseline: &[LatencyRound], pick: Pick) -> Vec<f64> {
    rounds
        .iter()
        .zip(baseline)
        .map(|(a, b)| {
            if a.latency.n > 0 && b.latency.n > 0 {
                pick.of(a) - pick.of(b)
            } else {
                f64::NAN
            }
        })
        .collect()
}
