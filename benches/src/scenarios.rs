//! The interleaved scenarios: throughput (closed loop), latency (open loop) and streaming
//! time to first byte. Each starts a fresh stack, warms every arm up, then runs rounds of
//! A B C D A B C D ... so drifts of a shared, noisy machine hit every arm alike.
//!
//! Owns: the order of runs and per-run bookkeeping (CPU deltas, peak RSS). Must not touch:
//! how a single run sends requests (`load`), how results are printed (`report`).

use crate::Result;
use crate::cli::{Arm, Plan};
use crate::load::{self, Open};
use crate::payload::{BodyGen, Payload};
use crate::procs::{ProcStats, cpu_per_1k, mib, postgres_cpu_ticks, ticks_s_per_1k};
use crate::redis_stats::RedisStats;
use crate::results::{Costs, LatencyRound, Results, ThroughputRound};
use crate::stack::{Env, MockMode, Stack};
use crate::stats::Summary;

/// The mock of the throughput runs: answers at once.
pub const ZERO_LATENCY: MockMode = MockMode {
    latency_ms: 0,
    jitter_ms: 0,
    ttft_ms: 0,
    chunks: 5,
    cadence_ms: 0,
};

/// The mock of the streaming runs: first chunk at once, then 20 chunks 1 ms apart.
pub const STREAMING: MockMode = MockMode {
    latency_ms: 0,
    jitter_ms: 0,
    ttft_ms: 0,
    chunks: 20,
    cadence_ms: 1,
};

/// The mock of the latency runs.
pub fn latency_mode(plan: &Plan) -> MockMode {
    MockMode {
        latency_ms: plan.upstream_latency_ms,
        jitter_ms: plan.upstream_jitter_ms,
        ..ZERO_LATENCY
    }
}

/// Records idle RSS figures of a fresh stack.
pub fn record_idle(results: &mut Results, idle: &[(Arm, u64)]) {
    for &(arm, rss) in idle {
        results.arm(arm).idle_rss_mib.push(mib(rss));
    }
}

/// Folds the proxies' VmHWM into the arms' peak RSS.
pub fn record_peak(results: &mut Results, stack: &Stack, arms: &[Arm]) {
    for &arm in arms {
        if let Some(stats) = stack.proc(arm).and_then(|p| p.stats().ok()) {
            let slot = &mut results.arm(arm).peak_rss_mib;
            *slot = Some(slot.map_or(mib(stats.hwm), |v| v.max(mib(stats.hwm))));
        }
    }
}

/// Closed loop at fixed concurrency against a zero-latency upstream.
pub async fn throughput(env: &mut Env, plan: &Plan, results: &mut Results) -> Result<()> {
    let (stack, idle) = Stack::start(env, ZERO_LATENCY, &plan.arms).await?;
    record_idle(results, &idle);
    let outcome = throughput_runs(&stack, plan, results).await;
    record_peak(results, &stack, &plan.arms);
    stack.stop().await;
    outcome
}

async fn throughput_runs(stack: &Stack, plan: &Plan, results: &mut Results) -> Result<()> {
    for &payload in &plan.payloads {
        let generator = BodyGen::new(payload, false);
        eprintln!("throughput {payload}: warm-up");
        for &arm in &plan.arms {
            load::closed_loop(stack.addr(arm)?, &generator, plan.concurrency, plan.warmup).await?;
        }
        for round in 1..=plan.rounds {
            for &arm in &plan.arms {
                let pid = stack.proc(arm).map(|p| p.pid);
                let (redis, postgres) = (stack.redis(arm), arm.uses_postgres());
                let before = Reading::take(pid, redis, postgres).await?;
                let run = load::closed_loop(
                    stack.addr(arm)?,
                    &generator,
                    plan.concurrency,
                    plan.duration,
                )
                .await?;
                let after = Reading::take(pid, redis, postgres).await?;
                let (cpu_s_per_1k, redis, postgres_cpu_ms_per_1k) =
                    after.costs_since(&before, run.completed);
                eprintln!(
                    "  round {round} {arm:<10} {payload:>4}: {:>8.0} req/s{}",
                    run.throughput(),
                    errors_note(run.errors)
                );
                results
                    .arm(arm)
                    .throughput
                    .entry(payload)
                    .or_default()
                    .push(ThroughputRound {
                        rps: run.throughput(),
                        completed: run.completed,
                        errors: run.errors,
                        cpu_s_per_1k,
                        redis,
                        postgres_cpu_ms_per_1k,
                    });
            }
        }
    }
    Ok(())
}

/// Open loop at a fixed rate against an upstream with fixed latency.
pub async fn latency(env: &mut Env, plan: &Plan, results: &mut Results) -> Result<()> {
    let (stack, idle) = Stack::start(env, latency_mode(plan), &plan.arms).await?;
    record_idle(results, &idle);
    let mut outcome = Ok(());
    for &payload in &plan.payloads {
        let generator = BodyGen::new(payload, false);
        let label = format!("latency {payload} @ {} req/s", plan.rate);
        match open_rounds(&stack, plan, &plan.arms, &generator, plan.rate, &label).await {
            Ok(rounds) => {
                for (arm, list) in rounds {
                    results
                        .arm(arm)
                        .latency
                        .entry(payload)
                        .or_default()
                        .extend(list);
                }
            }
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    record_peak(results, &stack, &plan.arms);
    stack.stop().await;
    outcome
}

/// Open loop of streamed completions (200 B bodies): time to first byte and total.
pub async fn stream(env: &mut Env, plan: &Plan, results: &mut Results) -> Result<()> {
    let (stack, idle) = Stack::start(env, STREAMING, &plan.arms).await?;
    record_idle(results, &idle);
    let generator = BodyGen::new(Payload::Small, true);
    let label = format!("stream 200B @ {} streams/s", plan.stream_rate);
    let outcome = open_rounds(
        &stack,
        plan,
        &plan.arms,
        &generator,
        plan.stream_rate,
        &label,
    )
    .await;
    record_peak(results, &stack, &plan.arms);
    stack.stop().await;
    for (arm, list) in outcome? {
        results.arm(arm).stream.extend(list);
    }
    Ok(())
}

/// Warm-up, then `plan.rounds` interleaved open-loop rounds over `arms` (each arm's
/// address from `stack`); returns each arm's rounds in order.
pub async fn open_rounds(
    stack: &Stack,
    plan: &Plan,
    arms: &[Arm],
    generator: &BodyGen,
    rate: f64,
    label: &str,
) -> Result<Vec<(Arm, Vec<LatencyRound>)>> {
    let targets: Vec<Target<Arm>> = arms
        .iter()
        .map(|&a| {
            stack.addr(a).map(|addr| Target {
                key: a,
                addr,
                pid: stack.proc(a).map(|p| p.pid),
                redis: stack.redis(a),
                postgres: a.uses_postgres(),
            })
        })
        .collect::<Result<_>>()?;
    open_rounds_at(&targets, plan, generator, rate, label).await
}

/// Where an open-loop arm sends, the process whose CPU is charged (none: direct), and the
/// Redis whose work is charged (none: an arm without Redis).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a, K> {
    /// The arm's name.
    pub key: K,
    /// Where its requests go.
    pub addr: std::net::SocketAddr,
    /// Its proxy process.
    pub pid: Option<u32>,
    /// The URL of the Redis it counts in.
    pub redis: Option<&'a str>,
    /// Whether its catalog and request logs are in PostgreSQL (on this machine).
    pub postgres: bool,
}

/// As [`open_rounds`] with explicit targets (the scale run names its own arms).
pub async fn open_rounds_at<K: Copy + std::fmt::Display>(
    targets: &[Target<'_, K>],
    plan: &Plan,
    generator: &BodyGen,
    rate: f64,
    label: &str,
) -> Result<Vec<(K, Vec<LatencyRound>)>> {
    eprintln!("{label}: warm-up");
    for t in targets {
        load::open_loop(t.addr, generator, rate, plan.connections, plan.warmup).await?;
    }
    let mut out: Vec<(K, Vec<LatencyRound>)> =
        targets.iter().map(|t| (t.key, Vec::new())).collect();
    for round in 1..=plan.rounds {
        for (i, t) in targets.iter().enumerate() {
            let key = t.key;
            let before = Reading::take(t.pid, t.redis, t.postgres).await?;
            let run =
                load::open_loop(t.addr, generator, rate, plan.connections, plan.duration).await?;
            let after = Reading::take(t.pid, t.redis, t.postgres).await?;
            let mut r = latency_round(run);
            (r.cpu_s_per_1k, r.redis, r.postgres_cpu_ms_per_1k) =
                after.costs_since(&before, r.latency.n as u64);
            eprintln!(
                "  round {round} {key:<14}: p50 {:>8.0} µs  p99 {:>8.0} µs  ttfb p50 {:>8.0} µs{}{}",
                r.latency.p50,
                r.latency.p99,
                r.ttfb.p50,
                errors_note(r.errors),
                late_note(r.late, r.latency.n)
            );
            if let Some((_, list)) = out.get_mut(i) {
                list.push(r);
            }
        }
    }
    Ok(out)
}

/// What is read around a round to charge its costs to an arm: its proxy process, the
/// Redis it counts in, this machine's PostgreSQL; each `None` where the arm has none.
struct Reading {
    proc: Option<ProcStats>,
    redis: Option<RedisStats>,
    postgres_ticks: Option<u64>,
}

impl Reading {
    /// Reads the process `pid`, the Redis at `redis` and, with `postgres`, every
    /// `postgres` process of this machine.
    async fn take(pid: Option<u32>, redis: Option<&str>, postgres: bool) -> Result<Reading> {
        let redis = match redis {
            Some(url) => Some(RedisStats::read(url).await?),
            None => None,
        };
        Ok(Reading {
            proc: pid.map(ProcStats::read).transpose()?,
            redis,
            postgres_ticks: postgres.then(postgres_cpu_ticks).transpose()?,
        })
    }

    /// What happened since `before`, per 1,000 of `requests`.
    fn costs_since(&self, before: &Reading, requests: u64) -> Costs {
        let proc = before.proc.zip(self.proc);
        let redis = before.redis.zip(self.redis);
        let postgres = before.postgres_ticks.zip(self.postgres_ticks);
        (
            proc.and_then(|(b, a)| cpu_per_1k(b, a, requests)),
            redis.and_then(|(b, a)| b.per_1k(a, requests)),
            postgres
                .and_then(|(b, a)| ticks_s_per_1k(b, a, requests))
                .map(|s| s * 1000.0),
        )
    }
}

fn latency_round(mut run: Open) -> LatencyRound {
    let answers = run.latency_us.len().max(1) as f64;
    LatencyRound {
        latency: Summary::of(&mut run.latency_us),
        ttfb: Summary::of(&mut run.ttfb_us),
        errors: run.errors,
        late: run.late,
        bytes_per_answer: run.bytes as f64 / answers,
        cpu_s_per_1k: None,
        redis: None,
        postgres_cpu_ms_per_1k: None,
    }
}

fn errors_note(errors: u64) -> String {
    if errors == 0 {
        String::new()
    } else {
        format!("  ({errors} errors)")
    }
}

fn late_note(late: u64, n: usize) -> String {
    if late * 100 > n as u64 {
        format!("  ({late} due while all connections were busy: rate not sustained)")
    } else {
        String::new()
    }
}
