//! Micro-benchmark of the Redis counter's reserve: one request's 24 buckets (4 levels ×
//! requests/tokens/cost × minute/day), back to back, on a real Redis.
//!
//! - `reserve/in_use/12`: the window hashes hold only this request's 12 fields per window;
//! - `reserve/in_use/480`: they also hold 468 other buckets' fields (a busy tenancy), which
//!   must not make a reserve slower (the script keeps every hash a hash table);
//! - `reserve_tagged`: the same with a ticket, as the server reserves (a call that times
//!   out is taken back by its ticket), which the script records for 60 s.
//!
//! Each iteration is one client round trip (`EVALSHA`), so the figure is Redis's script
//! time plus loopback and the client's own work. Needs the Redis of the tests
//! (`LLMUR_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`); keys go under a fresh prefix
//! and expire on their own. Run with `cargo bench -p llmur-server --bench redis_counter`.

#![expect(
    clippy::expect_used,
    reason = "benchmark setup should stop at once when Redis is not there"
)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use llmur_core::counter::{Ask, Bucket, Level, Metric, UsageCounter};
use llmur_core::window::Window;
use llmur_server::counter_redis::{RedisCounter, RedisCounterOptions};
use uuid::Uuid;

/// One request's asks: every level, metric and window kind the full setup limits.
fn request_asks() -> Vec<Ask> {
    let mut asks = Vec::with_capacity(24);
    for level in [
        Level::VirtualKey,
        Level::Project,
        Level::Deployment,
        Level::Connection,
    ] {
        let id = Uuid::new_v4();
        for metric in [Metric::Requests, Metric::Tokens, Metric::CostMicros] {
            for window in [Window::Minute, Window::Day] {
                asks.push(Ask {
                    bucket: Bucket {
                        level,
                        id,
                        metric,
                        window,
                    },
                    limit: 1 << 50,
                    amount: 10,
                });
            }
        }
    }
    asks
}

fn counter(runtime: &tokio::runtime::Runtime) -> RedisCounter {
    let url = std::env::var("LLMUR_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let _guard = runtime.enter();
    RedisCounter::connect_with(
        &url,
        RedisCounterOptions {
            prefix: format!("llmur:bench:{}", Uuid::new_v4()),
            // Short-lived keys: a benchmark leaves nothing behind for long.
            grace: Duration::from_secs(5),
            ..RedisCounterOptions::default()
        },
    )
    .expect("a Redis counter")
}

fn reserve(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("reserve");
    for in_use in [12_usize, 480] {
        let counter = counter(&runtime);
        let asks = request_asks();
        // Other buckets in the same window hashes.
        for _ in 0..(in_use - 12) / 12 {
            runtime
                .block_on(counter.reserve(&request_asks(), 0))
                .expect("Redis at LLMUR_TEST_REDIS_URL");
        }
        group.bench_with_input(BenchmarkId::new("in_use", in_use), &asks, |b, asks| {
            b.iter(|| runtime.block_on(counter.reserve(asks, 0)).expect("reserve"));
        });
    }
    group.finish();

    // As the server calls it: with a ticket, so a call that times out can be taken back.
    let counter = counter(&runtime);
    let asks = request_asks();
    c.bench_function("reserve_tagged", |b| {
        b.iter(|| {
            runtime
                .block_on(counter.reserve_tagged(&asks, 0, Uuid::new_v4()))
                .expect("reserve")
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4));
    targets = reserve
}
criterion_main!(benches);
