//! The scenarios that are not a plain A B C D rotation: memory with many open streams,
//! cold start, and the catalog scale comparison.
//!
//! Owns: their process line-ups and bookkeeping. Must not touch: single-run mechanics
//! (`load`), printing (`report`).

use std::time::{Duration, Instant};

use crate::Result;
use crate::cli::{Arm, Plan};
use crate::llmur_config::{CatalogSize, Profile};
use crate::load;
use crate::payload::{BodyGen, Payload};
use crate::procs::mib;
use crate::results::{Results, Scale, StreamsMemory};
use crate::scenarios::{Target, ZERO_LATENCY, latency_mode, open_rounds_at, record_idle};
use crate::stack::{Env, MockMode, Stack, check_serves, spawn_llmur, start_llmur};

/// The mock of the memory scenario: a chunk every 500 ms for a minute, so streams stay
/// open while they are counted.
const SLOW_STREAMS: MockMode = MockMode {
    latency_ms: 0,
    jitter_ms: 0,
    ttft_ms: 0,
    chunks: 120,
    cadence_ms: 500,
};

/// Each proxy in turn holds `plan.streams` streams open; its RSS is read meanwhile.
pub async fn streams(env: &mut Env, plan: &Plan, results: &mut Results) -> Result<()> {
    let (stack, idle) = Stack::start(env, SLOW_STREAMS, &plan.arms).await?;
    record_idle(results, &idle);
    let outcome = hold_each(&stack, plan, results).await;
    stack.stop().await;
    outcome
}

async fn hold_each(stack: &Stack, plan: &Plan, results: &mut Results) -> Result<()> {
    let generator = BodyGen::new(Payload::Small, true);
    for arm in plan.proxies() {
        let Some(proc) = stack.proc(arm) else {
            continue;
        };
        let before = proc.stats()?.rss;
        let held = load::hold_streams(
            stack.addr(arm)?,
            &generator,
            plan.streams,
            Duration::from_secs(30),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let with = proc.stats()?.rss;
        let open = held.open;
        held.release().await;
        let per_stream_kib = (with.saturating_sub(before) as f64 / 1024.0) / (open.max(1) as f64);
        eprintln!(
            "streams {arm}: {open}/{} open, RSS {:.1} → {:.1} MiB ({per_stream_kib:.1} KiB/stream)",
            plan.streams,
            mib(before),
            mib(with)
        );
        results.arm(arm).streams_memory = Some(StreamsMemory {
            streams: plan.streams,
            open,
            rss_before_mib: mib(before),
            rss_mib: mib(with),
            per_stream_kib,
        });
        // Let the proxy notice the hang-ups and the mock end its streams.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// llmur bare, spawned again and again: spawn to the first `GET /v1/models` answered.
pub async fn cold_start(env: &mut Env, plan: &Plan, results: &mut Results) -> Result<()> {
    let (stack, _) = Stack::start(env, ZERO_LATENCY, &[Arm::Direct]).await?;
    let upstream = format!("http://{}", stack.mock.addr);
    let mut outcome = Ok(());
    for i in 1..=plan.cold_starts {
        match one_cold_start(env, &upstream).await {
            Ok(ms) => {
                eprintln!("cold start {i}: {ms:.1} ms");
                results.cold_start_ms.push(ms);
            }
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    stack.stop().await;
    outcome
}

async fn one_cold_start(env: &mut Env, upstream: &str) -> Result<f64> {
    let mut proc = spawn_llmur(
        env,
        "llmur-cold",
        &Profile::bare(),
        upstream,
        CatalogSize::MINIMAL,
    )?;
    let addr = proc.addr;
    let limit = Duration::from_secs(30);
    loop {
        // Poll the port from a thread with a fine sleep: the runtime's timer has a 1 ms grain.
        let listening = tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(50) {
                if std::net::TcpStream::connect(addr).is_ok() {
                    return true;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            false
        })
        .await?;
        if listening && load::get_ok(addr, "/v1/models").await {
            let ms = proc.spawned.elapsed().as_secs_f64() * 1000.0;
            proc.stop().await;
            return Ok(ms);
        }
        if let Some(status) = proc.exited() {
            return Err(proc.failure(&format!("exited ({status})")).into());
        }
        if proc.spawned.elapsed() > limit {
            return Err(proc.failure("never answered").into());
        }
    }
}

/// llmur bare with a small and a large catalog side by side (and direct), same rate.
pub async fn scale(env: &mut Env, plan: &Plan, results: &mut Results) -> Result<()> {
    let (stack, _) = Stack::start(env, latency_mode(plan), &[Arm::Direct]).await?;
    let upstream = format!("http://{}", stack.mock.addr);
    let small = CatalogSize {
        keys: 10,
        deployments: 10,
    };
    let large = CatalogSize {
        keys: plan.scale_keys,
        deployments: plan.scale_deployments,
    };
    eprintln!(
        "scale: starting llmur bare with {} keys / {} deployments and {} / {}",
        small.keys, small.deployments, large.keys, large.deployments
    );
    let (small_proc, small_took) =
        start_llmur(env, "llmur-bare-small", &Profile::bare(), &upstream, small).await?;
    let (large_proc, large_took) =
        start_llmur(env, "llmur-bare-large", &Profile::bare(), &upstream, large).await?;
    let target = |key, p: &crate::procs::Proc| Target {
        key,
        addr: p.addr,
        pid: Some(p.pid),
        redis: None,
        postgres: false,
    };
    let targets = [
        Target {
            key: "direct",
            addr: stack.mock.addr,
            pid: None,
            redis: None,
            postgres: false,
        },
        target("bare-small", &small_proc),
        target("bare-large", &large_proc),
    ];
    let mut outcome = Ok(());
    for t in &targets {
        if let Err(e) = check_serves(t.addr, t.key).await {
            outcome = Err(e);
        }
    }
    if outcome.is_ok() {
        let generator = BodyGen::new(Payload::Small, false);
        let label = format!("scale 200B @ {} req/s", plan.rate);
        match open_rounds_at(&targets, plan, &generator, plan.rate, &label).await {
            Ok(mut rounds) => {
                let mut take = |i: usize| {
                    rounds
                        .get_mut(i)
                        .map(|(_, list)| std::mem::take(list))
                        .unwrap_or_default()
                };
                let rss = |p: &crate::procs::Proc| p.stats().map(|s| mib(s.rss)).unwrap_or(0.0);
                results.scale = Some(Scale {
                    small: (small.keys, small.deployments),
                    large: (large.keys, large.deployments),
                    start_ms: (ms(small_took), ms(large_took)),
                    rss_mib: (rss(&small_proc), rss(&large_proc)),
                    direct: take(0),
                    small_rounds: take(1),
                    large_rounds: take(2),
                });
            }
            Err(e) => outcome = Err(e),
        }
    }
    small_proc.stop().await;
    large_proc.stop().await;
    stack.stop().await;
    outcome
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
