//! Micro-benchmarks of the pieces of llmur-core every proxied request goes through.
//!
//! Covers, through the public API only:
//! - `key_lookup`: [`MemoryCatalog::authenticate`] (keyed hash + map lookup) over 10 and
//!   100,000 keys;
//! - `route`: [`Catalog::route`] then the first of [`Deployment::candidates`] over 1,000
//!   deployments;
//! - `counter`: [`MemoryCounter::reserve`] of 12 asks (4 levels × requests/tokens/cost), alone
//!   and followed by `settle`, next to the cost of one `block_on` of the runtime driving them;
//! - `sse`: [`SseScanner`] over a recorded OpenAI stream, whole, in 1,400-byte and in 7-byte
//!   pieces, and the OpenAI codec's `decode_event` over each of its events (with and without
//!   the `model` rewrite); `sse_helpers`: the byte-level helpers `decode_event` calls;
//! - `request`: [`RequestBody::parse`] and `encode` of ~200 B, ~4 KB and ~50 KB bodies, and
//!   [`RequestBody::from_bytes`] of a body forwarded unchanged.
//!
//! Run with `cargo bench -p llmur-core --bench hot_path`. Setup code fails loudly (`expect`)
//! when a fixture is broken; the measured loops never do.

#![expect(
    clippy::expect_used,
    reason = "benchmark setup should stop at once on a broken fixture"
)]

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use llmur_core::counter::{Ask, Bucket, Decision, Level, MemoryCounter, Metric, UsageCounter};
use llmur_core::provider::{EventAction, StreamState};
use llmur_core::sse::{self, SseScanner};
use llmur_core::window::Window;
use llmur_core::{
    Access, Catalog, Connection, ConnectionId, Deployment, DeploymentId, KeyHasher, MemoryCatalog,
    OpenAi, ProjectId, Provider, RequestBody, Snapshot, Strategy, VirtualKey, VirtualKeyId,
    WeightedConnection,
};
use secrecy::SecretString;

/// A recorded OpenAI chat stream: 181 events, ~47 KB, ending with usage and `[DONE]`.
const LONG_STREAM: &[u8] = include_bytes!("../../llmur-testkit/fixtures/openai-streams/long.sse");

/// The model the recorded stream names in every chunk.
const STREAM_MODEL: &str = "gpt-4o-2024-08-06";

/// A fixed instant (2025-11-25T06:40:00Z) so every reserve lands in the same windows.
const NOW_MS: i64 = 1_764_052_800_000;

/// How many distinct presented keys / model names the lookups rotate through.
const ROTATION: usize = 1024;

fn virtual_key(i: usize) -> VirtualKey {
    VirtualKey {
        id: VirtualKeyId::new_random(),
        project_id: ProjectId::new_random(),
        alias: format!("sk-llmur-…{:04}", i % 10_000),
        blocked: false,
        limits: None,
        project_limits: None,
    }
}

/// A presented virtual key of realistic length (`sk-llmur-` + 48 hex digits).
fn presented_key(i: usize) -> String {
    format!(
        "sk-llmur-{:048x}",
        (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    )
}

fn hasher() -> KeyHasher {
    KeyHasher::new(&SecretString::from("benchmark application secret"))
}

/// A catalog of `n` keys and the presented keys to look up (spread over the whole set).
fn key_catalog(n: usize) -> (MemoryCatalog, Vec<String>) {
    let hasher = hasher();
    let mut snapshot = Snapshot::new();
    for i in 0..n {
        snapshot.insert_key(hasher.hash(&presented_key(i)), virtual_key(i));
    }
    let step = (n / ROTATION).max(1);
    let presented: Vec<String> = (0..n).step_by(step).map(presented_key).collect();
    let catalog = MemoryCatalog::new(hasher, snapshot);
    assert!(
        presented.iter().all(|k| catalog.authenticate(k).is_some()),
        "every presented key is known"
    );
    (catalog, presented)
}

fn bench_key_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("key_lookup");
    for n in [10_usize, 100_000] {
        let (catalog, presented) = key_catalog(n);
        group.bench_function(BenchmarkId::new("authenticate", n), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % presented.len();
                black_box(catalog.authenticate(black_box(&presented[i])))
            });
        });
    }
    group.finish();
}

fn connection(deployment: usize, j: usize) -> WeightedConnection {
    WeightedConnection {
        connection: Arc::new(Connection::new(
            ConnectionId::new_random(),
            Arc::new(OpenAi),
            format!("https://upstream-{deployment}-{j}.example.invalid"),
            "gpt-4o-mini",
            SecretString::from(format!("sk-provider-{deployment}-{j}")),
        )),
        weight: 1,
    }
}

fn bench_route(c: &mut Criterion) {
    const DEPLOYMENTS: usize = 1_000;
    let key = virtual_key(0);
    let mut snapshot = Snapshot::new();
    for i in 0..DEPLOYMENTS {
        let deployment = Deployment::new(
            DeploymentId::new_random(),
            format!("deployment-{i:04}"),
            if i % 2 == 0 {
                Access::Private
            } else {
                Access::Public
            },
            Strategy::RoundRobin,
            (0..3).map(|j| connection(i, j)).collect(),
        );
        snapshot.link(key.id, deployment.id);
        snapshot.insert_deployment(deployment);
    }
    snapshot.insert_key(hasher().hash(&presented_key(0)), key.clone());
    let catalog = MemoryCatalog::new(hasher(), snapshot);
    let models: Vec<String> = (0..DEPLOYMENTS)
        .cycle()
        .step_by(7)
        .take(ROTATION)
        .map(|i| format!("deployment-{i:04}"))
        .collect();
    assert!(
        models.iter().all(|m| catalog.route(&key, m).is_ok()),
        "every model routes"
    );

    let mut group = c.benchmark_group("route");
    group.bench_function("route_first_candidate/1000", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % models.len();
            let deployment = catalog.route(black_box(&key), black_box(&models[i])).ok();
            black_box(deployment.and_then(|d| d.candidates().next().map(|c| c.id)))
        });
    });
    group.finish();
}

/// 4 levels × (requests per minute, tokens per day, cost per month), none near its limit.
fn asks() -> Vec<Ask> {
    let levels = [
        (Level::VirtualKey, VirtualKeyId::new_random().0),
        (Level::Project, ProjectId::new_random().0),
        (Level::Deployment, DeploymentId::new_random().0),
        (Level::Connection, ConnectionId::new_random().0),
    ];
    let metrics = [
        (Metric::Requests, Window::Minute, 1),
        (Metric::Tokens, Window::Day, 1_200),
        (Metric::CostMicros, Window::Month, 4_500),
    ];
    levels
        .iter()
        .flat_map(|&(level, id)| {
            metrics.iter().map(move |&(metric, window, amount)| Ask {
                bucket: Bucket {
                    level,
                    id,
                    metric,
                    window,
                },
                limit: u64::MAX / 2,
                amount,
            })
        })
        .collect()
}

fn bench_counter(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime builds");
    let asks = asks();
    assert_eq!(asks.len(), 12);
    // What a finished request really used, per part: fewer tokens and less cost.
    let actual: Vec<u64> = asks.iter().map(|a| a.amount * 3 / 4).collect();

    let mut group = c.benchmark_group("counter");
    // The runtime's own cost per `block_on`, to subtract from the two below.
    group.bench_function("block_on_noop", |b| {
        b.iter(|| runtime.block_on(async { black_box(0_u8) }));
    });
    group.bench_function("memory_reserve/12", |b| {
        let counter = MemoryCounter::new();
        let first = runtime.block_on(counter.reserve(&asks, NOW_MS));
        assert!(matches!(first, Ok(Decision::Admitted(_))), "room for all");
        b.iter(|| black_box(runtime.block_on(counter.reserve(black_box(&asks), NOW_MS))));
    });
    group.bench_function("memory_reserve_settle/12", |b| {
        let counter = MemoryCounter::new();
        b.iter(|| {
            runtime.block_on(async {
                if let Ok(Decision::Admitted(reservation)) =
                    counter.reserve(black_box(&asks), NOW_MS).await
                {
                    black_box(counter.settle(&reservation, black_box(&actual)).await).ok();
                }
            });
        });
    });
    group.finish();
}

/// Cuts `stream` into events, feeding it `piece` bytes at a time; returns how many.
fn scan(stream: &[u8], piece: usize) -> usize {
    let mut scanner = SseScanner::new();
    let mut events = 0;
    for chunk in stream.chunks(piece) {
        scanner.push(chunk);
        while let Some(event) = scanner.next_event() {
            black_box(event);
            events += 1;
        }
    }
    events
}

/// Runs every event through the codec as the proxy's stream relay does.
fn decode_all(provider: &dyn Provider, events: &[Bytes], deployment: &str) -> usize {
    let mut state = StreamState::new(deployment, false);
    let mut forwarded = 0;
    for event in events {
        if let EventAction::Forward(out) = provider.decode_event(event.clone(), &mut state) {
            black_box(out);
            forwarded += 1;
        }
    }
    black_box(&state);
    forwarded
}

fn bench_sse(c: &mut Criterion) {
    let events: Vec<Bytes> = {
        let mut scanner = SseScanner::new();
        scanner.push(LONG_STREAM);
        std::iter::from_fn(|| scanner.next_event()).collect()
    };
    assert_eq!(events.len(), 181, "the long fixture has 181 events");
    assert_eq!(scan(LONG_STREAM, 7), events.len());
    let provider: Arc<dyn Provider> = Arc::new(OpenAi);
    // Every event but the usage chunk (dropped: the client did not ask for it).
    assert_eq!(decode_all(provider.as_ref(), &events, "chat"), 180);

    let mut group = c.benchmark_group("sse");
    group.throughput(Throughput::Bytes(LONG_STREAM.len() as u64));
    group.bench_function("scan_whole/long", |b| {
        b.iter(|| scan(black_box(LONG_STREAM), LONG_STREAM.len()));
    });
    group.bench_function("scan_7b_pieces/long", |b| {
        b.iter(|| scan(black_box(LONG_STREAM), 7));
    });
    group.bench_function("scan_1400b_pieces/long", |b| {
        b.iter(|| scan(black_box(LONG_STREAM), 1400));
    });
    group.bench_function("decode_events_rewrite/long", |b| {
        b.iter(|| decode_all(provider.as_ref(), black_box(&events), "chat-prod"));
    });
    group.bench_function("decode_events_same_model/long", |b| {
        b.iter(|| decode_all(provider.as_ref(), black_box(&events), STREAM_MODEL));
    });
    group.finish();

    // The byte-level helpers `decode_event` calls, on one typical content chunk.
    let event = &events[events.len() / 2];
    let data = sse::event_data(event)
        .expect("a content chunk has data")
        .into_owned();
    let mut group = c.benchmark_group("sse_helpers");
    group.throughput(Throughput::Bytes(event.len() as u64));
    group.bench_function("event_data", |b| {
        b.iter(|| black_box(sse::event_data(black_box(event)).map(|d| d.len())));
    });
    // With the searchers built once, as the OpenAI codec keeps them.
    let (usage, model, arguments) = (
        sse::QuotedKey::new("usage"),
        sse::QuotedKey::new("model"),
        sse::QuotedKey::new("arguments"),
    );
    group.bench_function("has_object_value/usage", |b| {
        b.iter(|| black_box(usage.has_object_value(black_box(&data))));
    });
    group.bench_function("find_str_value/model", |b| {
        b.iter(|| black_box(model.str_value(black_box(&data))));
    });
    group.bench_function("find_str_value/arguments_absent", |b| {
        b.iter(|| black_box(arguments.str_value(black_box(&data))));
    });
    group.finish();
}

const PROSE: &str = "The proxy forwards the request to the upstream, relays the answer \
    and counts the tokens it used. Caf\u{e9} \u{2014} \"quoted\" text,\ttabs and\nnew lines.\n";

/// A chat body with `turns` user/assistant messages of `turn_len` characters each, plus
/// tools when `tools` is set.
fn chat_body(turns: usize, turn_len: usize, tools: bool, stream_options: bool) -> Vec<u8> {
    let content: String = PROSE.chars().cycle().take(turn_len).collect();
    let mut messages = vec![serde_json::json!({
        "role": "system",
        "content": "You are a helpful assistant.",
    })];
    for t in 0..turns {
        let role = if t % 2 == 0 { "user" } else { "assistant" };
        messages.push(serde_json::json!({"role": role, "content": content}));
    }
    let mut body = serde_json::json!({
        "model": "chat-prod",
        "messages": messages,
        "temperature": 0.2,
        "stream": true,
    });
    if tools {
        body["tools"] = serde_json::json!([
            {"type": "function", "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": {"type": "object", "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
                }, "required": ["city"]}
            }},
            {"type": "function", "function": {
                "name": "search_docs",
                "description": "Full-text search over the product documentation.",
                "parameters": {"type": "object", "properties": {
                    "query": {"type": "string"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 50}
                }, "required": ["query"]}
            }}
        ]);
        body["max_completion_tokens"] = 1024.into();
        body["user"] = "user-4711".into();
    }
    if stream_options {
        body["stream_options"] = serde_json::json!({"include_usage": false});
    }
    serde_json::to_vec(&body).expect("a JSON value serializes")
}

fn bench_request(c: &mut Criterion) {
    let bodies = [
        ("200B", chat_body(1, 60, false, false)),
        ("4KB", chat_body(8, 380, true, true)),
        ("50KB", chat_body(60, 820, true, true)),
    ];
    for (_, body) in &bodies {
        let parsed = RequestBody::parse(body).expect("the body parses");
        assert_eq!(parsed.model(), "chat-prod");
        assert!(!parsed.encode("gpt-4o-mini", true).is_empty());
    }

    let mut group = c.benchmark_group("request");
    for (label, body) in &bodies {
        group.throughput(Throughput::Bytes(body.len() as u64));
        let id = format!("{label}({})", body.len());
        group.bench_function(BenchmarkId::new("parse", &id), |b| {
            b.iter(|| black_box(RequestBody::parse(black_box(body)).ok()));
        });
        group.bench_function(BenchmarkId::new("parse_encode", &id), |b| {
            b.iter(|| {
                RequestBody::parse(black_box(body))
                    .ok()
                    .map(|parsed| black_box(parsed.encode(black_box("gpt-4o-mini"), true)))
            });
        });
        // As the proxy does it: the body read into `Bytes`, forwarded unchanged (the
        // connection's model is the one asked for), so nothing is copied.
        let shared = bytes::Bytes::copy_from_slice(body);
        group.bench_function(BenchmarkId::new("from_bytes_unchanged", &id), |b| {
            b.iter(|| {
                RequestBody::from_bytes(black_box(shared.clone()))
                    .ok()
                    .map(|parsed| black_box(parsed.encode(black_box("chat-prod"), false)))
            });
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_key_lookup,
    bench_route,
    bench_counter,
    bench_sse,
    bench_request
);
criterion_main!(benches);
