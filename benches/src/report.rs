//! The human-readable report: one table per scenario, then the targets.
//!
//! Owns: the layout. Must not touch: the figures (`results`, `targets`).

use std::fmt::Write as _;

use crate::cli::{Arm, Scenario};
use crate::results::{Costs, LatencyRound, Pick, Results, ThroughputRound, added, median_of};
use crate::stats::{median, median_by};
use crate::targets::figure;

/// `value` with `digits` decimals, or `-`.
fn num(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

/// The whole report.
pub fn render(r: &Results) -> String {
    let mut o = String::new();
    let p = &r.plan;
    let _ = writeln!(
        o,
        "\nllmur-bench — {} round(s) of {:.1} s per arm, interleaved; medians over rounds{}",
        p.rounds,
        p.duration.as_secs_f64(),
        if p.quick { " (--quick)" } else { "" }
    );
    if p.scenarios.contains(&Scenario::Throughput) {
        throughput(r, &mut o);
    }
    if p.scenarios.contains(&Scenario::Latency) {
        latency(r, &mut o);
    }
    if p.scenarios.contains(&Scenario::Stream) {
        stream(r, &mut o);
    }
    costs(r, &mut o);
    memory(r, &mut o);
    if !r.cold_start_ms.is_empty() {
        let runs: Vec<String> = r.cold_start_ms.iter().map(|v| format!("{v:.1}")).collect();
        let _ = writeln!(
            o,
            "\n== Cold start, llmur bare (spawn → first GET /v1/models answered): median {} ms (runs: {})",
            num(median(&r.cold_start_ms), 1),
            runs.join(", ")
        );
    }
    scale(r, &mut o);
    let _ = writeln!(o, "\n== Targets");
    for c in &r.checks {
        let verdict = match c.pass {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "n/a ",
        };
        // With one round the tally only repeats the verdict.
        let tally = c.rounds.filter(|_| r.plan.rounds > 1);
        let rounds = tally.map_or(String::new(), |t| {
            format!("  [met in {} of {} rounds]", t.met, t.judged)
        });
        let _ = writeln!(o, "{verdict}  {:<66} {}{rounds}", c.target, c.measured);
    }
    if !r.notes.is_empty() {
        let _ = writeln!(o, "\n== Notes: the processes logged warnings or errors");
        for note in &r.notes {
            let _ = writeln!(o, "- {note}");
        }
    }
    let _ = writeln!(o, "\n(run took {:.0} s)", r.wall_secs);
    o
}

fn throughput(r: &Results, o: &mut String) {
    let p = &r.plan;
    let _ = writeln!(
        o,
        "\n== Throughput: closed loop, {} connections, zero-latency upstream (req/s; proxy CPU s per 1,000 requests)",
        p.concurrency
    );
    let _ = write!(o, "{:<8}", "payload");
    for arm in &p.arms {
        let _ = write!(o, "{:>12}", arm.to_string());
    }
    for arm in p.proxies() {
        let _ = write!(o, "{:>16}", format!("cpu {arm}"));
    }
    let _ = writeln!(o, "{:>12}{:>12}", "bare/floor", "full/floor");
    for &payload in &p.payloads {
        let _ = write!(o, "{:<8}", payload.to_string());
        for &arm in &p.arms {
            let _ = write!(o, "{:>12}", num(r.throughput(arm, payload), 0));
        }
        for arm in p.proxies() {
            let _ = write!(o, "{:>16}", num(r.cpu_per_1k(arm, payload), 3));
        }
        let floor = r.throughput(Arm::Floor, payload);
        let ratio = |arm| r.throughput(arm, payload).zip(floor).map(|(a, f)| a / f);
        let _ = writeln!(
            o,
            "{:>12}{:>12}",
            num(ratio(Arm::Bare), 2),
            num(ratio(Arm::Full), 2)
        );
    }
}

fn latency(r: &Results, o: &mut String) {
    let p = &r.plan;
    let _ = writeln!(
        o,
        "\n== Latency: open loop at {} req/s, upstream {} ± {} ms (µs; added = arm − direct, same round; ×floor = added / floor's added; cpu/1k = proxy CPU s per 1,000 requests)",
        p.rate, p.upstream_latency_ms, p.upstream_jitter_ms
    );
    let _ = writeln!(
        o,
        "{:<8}{:<12}{:>9}{:>9}{:>9}{:>9}{:>11}{:>11}{:>12}{:>12}{:>8}",
        "payload",
        "arm",
        "p50",
        "p90",
        "p99",
        "max",
        "added p50",
        "added p99",
        "×floor p50",
        "×floor p99",
        "cpu/1k"
    );
    for &payload in &p.payloads {
        let direct = r.latency_rounds(Arm::Direct, payload);
        let floor = r.latency_rounds(Arm::Floor, payload);
        for &arm in &p.arms {
            let rounds = r.latency_rounds(arm, payload);
            let add = |pick| {
                (arm != Arm::Direct)
                    .then(|| added(rounds, direct, pick))
                    .flatten()
            };
            let times_floor = |pick| {
                let floor_added = added(floor, direct, pick).filter(|f| *f > 0.0)?;
                Some(add(pick)? / floor_added)
            };
            let _ = writeln!(
                o,
                "{:<8}{:<12}{:>9}{:>9}{:>9}{:>9}{:>11}{:>11}{:>12}{:>12}{:>8}",
                payload.to_string(),
                arm.to_string(),
                num(figure(r, arm, payload, Pick::P50), 0),
                num(figure(r, arm, payload, Pick::P90), 0),
                num(figure(r, arm, payload, Pick::P99), 0),
                num(figure(r, arm, payload, Pick::Max), 0),
                num(add(Pick::P50), 0),
                num(add(Pick::P99), 0),
                num(times_floor(Pick::P50), 2),
                num(times_floor(Pick::P99), 2),
                num(median_of(rounds, Pick::Cpu), 3),
            );
        }
    }
}

fn stream(r: &Results, o: &mut String) {
    let p = &r.plan;
    let _ = writeln!(
        o,
        "\n== Streaming: open loop at {} streams/s, 200 B bodies, upstream first chunk at once then 20 chunks 1 ms apart (µs)",
        p.stream_rate
    );
    let _ = writeln!(
        o,
        "{:<12}{:>10}{:>10}{:>16}{:>11}{:>17}{:>8}",
        "arm", "ttfb p50", "ttfb p99", "added ttfb p50", "total p50", "added total p50", "bytes"
    );
    let direct = r.stream_rounds(Arm::Direct);
    for &arm in &p.arms {
        let rounds = r.stream_rounds(arm);
        let add = |pick| {
            (arm != Arm::Direct)
                .then(|| added(rounds, direct, pick))
                .flatten()
        };
        let bytes = median(
            &rounds
                .iter()
                .map(|x| x.bytes_per_answer)
                .collect::<Vec<_>>(),
        );
        let _ = writeln!(
            o,
            "{:<12}{:>10}{:>10}{:>16}{:>11}{:>17}{:>8}",
            arm.to_string(),
            num(median_of(rounds, Pick::TtfbP50), 0),
            num(median_of(rounds, Pick::TtfbP99), 0),
            num(add(Pick::TtfbP50), 0),
            num(median_of(rounds, Pick::P50), 0),
            num(add(Pick::P50), 0),
            num(bytes, 0),
        );
    }
}

/// What each proxy arm costs the machine per 1,000 requests: its own CPU, and Redis's and
/// PostgreSQL's work for the arms that use them.
fn costs(r: &Results, o: &mut String) {
    let p = &r.plan;
    let mut rows: Vec<(String, Arm, Vec<Costs>)> = Vec::new();
    let open = |rounds: &[LatencyRound]| rounds.iter().map(LatencyRound::costs).collect();
    for arm in p.proxies() {
        if p.scenarios.contains(&Scenario::Throughput) {
            for &payload in &p.payloads {
                let load = format!("{} connections, {payload}", p.concurrency);
                let rounds = r.arms.get(&arm).and_then(|a| a.throughput.get(&payload));
                let list = rounds
                    .map_or_else(Vec::new, |t| t.iter().map(ThroughputRound::costs).collect());
                rows.push((load, arm, list));
            }
        }
        if p.scenarios.contains(&Scenario::Latency) {
            for &payload in &p.payloads {
                let load = format!("{} req/s, {payload}", p.rate);
                rows.push((load, arm, open(r.latency_rounds(arm, payload))));
            }
        }
        if p.scenarios.contains(&Scenario::Stream) {
            let load = format!("{} streams/s", p.stream_rate);
            rows.push((load, arm, open(r.stream_rounds(arm))));
        }
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "\n== What each arm costs the machine per 1,000 requests (CPU ms of the proxy, Redis and PostgreSQL; Redis script calls; medians over rounds)"
    );
    let _ = writeln!(
        o,
        "{:<24}{:<16}{:>10}{:>10}{:>10}{:>15}",
        "load", "arm", "proxy", "redis", "postgres", "redis scripts"
    );
    for (load, arm, rounds) in rows {
        let _ = writeln!(
            o,
            "{:<24}{:<16}{:>10}{:>10}{:>10}{:>15}",
            load,
            arm.to_string(),
            num(median_by(&rounds, |x| x.0.map(|s| s * 1000.0)), 1),
            num(median_by(&rounds, |x| x.1.map(|l| l.cpu_ms_per_1k)), 1),
            num(median_by(&rounds, |x| x.2), 1),
            num(median_by(&rounds, |x| x.1.map(|l| l.scripts_per_1k)), 1),
        );
    }
}

fn memory(r: &Results, o: &mut String) {
    let p = &r.plan;
    let _ = writeln!(
        o,
        "\n== Proxy memory (MiB): idle = VmRSS after start + one request; peak = VmHWM over the load runs"
    );
    let _ = writeln!(
        o,
        "{:<12}{:>10}{:>10}{:>24}{:>16}",
        "arm",
        "idle",
        "peak",
        format!("{} streams open", p.streams),
        "KiB per stream"
    );
    for arm in p.proxies() {
        let Some(a) = r.arms.get(&arm) else {
            continue;
        };
        let held = a.streams_memory;
        let _ = writeln!(
            o,
            "{:<12}{:>10}{:>10}{:>24}{:>16}",
            arm.to_string(),
            num(median(&a.idle_rss_mib), 1),
            num(a.peak_rss_mib, 1),
            held.map_or_else(
                || "-".to_owned(),
                |h| format!("{:.1} ({} open)", h.rss_mib, h.open)
            ),
            num(held.map(|h| h.per_stream_kib), 1),
        );
    }
}

fn scale(r: &Results, o: &mut String) {
    let Some(s) = &r.scale else {
        return;
    };
    let _ = writeln!(
        o,
        "\n== Scale: llmur bare, open loop at {} req/s, 200 B (µs; added = arm − direct, same round; start = spawn → listening)",
        r.plan.rate
    );
    let _ = writeln!(
        o,
        "{:<34}{:>9}{:>9}{:>11}{:>11}{:>8}{:>10}{:>9}",
        "catalog", "p50", "p99", "added p50", "added p99", "cpu/1k", "start ms", "RSS MiB"
    );
    let rows = [
        ("direct".to_owned(), &s.direct, None, None),
        (
            format!("{} keys / {} deployments", s.small.0, s.small.1),
            &s.small_rounds,
            Some(s.start_ms.0),
            Some(s.rss_mib.0),
        ),
        (
            format!("{} keys / {} deployments", s.large.0, s.large.1),
            &s.large_rounds,
            Some(s.start_ms.1),
            Some(s.rss_mib.1),
        ),
    ];
    for (i, (name, rounds, start, rss)) in rows.iter().enumerate() {
        let add = |pick| (i > 0).then(|| added(rounds, &s.direct, pick)).flatten();
        let _ = writeln!(
            o,
            "{:<34}{:>9}{:>9}{:>11}{:>11}{:>8}{:>10}{:>9}",
            name,
            num(median_of(rounds, Pick::P50), 0),
            num(median_of(rounds, Pick::P99), 0),
            num(add(Pick::P50), 0),
            num(add(Pick::P99), 0),
            num(median_of(rounds, Pick::Cpu), 3),
            num(*start, 0),
            num(*rss, 1),
        );
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Args, Plan};
    use crate::redis_stats::RedisLoad;
    use crate::results::{Check, RoundTally};

    fn rendered(rounds: &str) -> String {
        let args = Args::parse_from(["llmur-bench", "--rounds", rounds]);
        let mut r = Results::new(Plan::from_args(&args), 100.0);
        r.checks.push(Check {
            target: "a target".to_owned(),
            measured: "1 µs".to_owned(),
            pass: Some(true),
            rounds: Some(RoundTally { met: 1, judged: 1 }),
        });
        render(&r)
    }

    #[test]
    fn the_tally_is_printed_when_there_are_rounds_to_tally() {
        assert!(rendered("3").contains("1 µs  [met in 1 of 1 rounds]"));
        assert!(!rendered("1").contains("[met in"));
    }

    #[test]
    fn each_arms_cost_to_the_machine_is_printed() {
        let args = Args::parse_from(["llmur-bench", "--scenarios", "stream", "--rounds", "3"]);
        let mut r = Results::new(Plan::from_args(&args), 100.0);
        let round = |calls: Option<f64>| LatencyRound {
            latency: Default::default(),
            ttfb: Default::default(),
            errors: 0,
            late: 0,
            bytes_per_answer: 0.0,
            cpu_s_per_1k: Some(0.05),
            redis: calls.map(|c| RedisLoad {
                scripts_per_1k: c,
                cpu_ms_per_1k: c / 10.0,
            }),
            postgres_cpu_ms_per_1k: calls.map(|c| c / 100.0),
        };
        r.arm(Arm::Full).stream = [300.0, 100.0, 200.0].map(|c| round(Some(c))).to_vec();
        r.arm(Arm::Bare).stream = vec![round(None); 3];
        let text = render(&r);
        let section = text
            .split("== What each arm costs")
            .nth(1)
            .and_then(|s| s.split("\n\n").next())
            .unwrap_or_default();
        let line = |arm: &str| {
            section
                .lines()
                .find(|l| l.contains(arm))
                .unwrap_or_default()
        };
        assert!(line("llmur-full").contains("streams/s"), "{section}");
        assert!(
            line("llmur-full").ends_with("50.0      20.0       2.0          200.0"),
            "{section}"
        );
        // Bare uses neither Redis nor PostgreSQL.
        assert!(
            line("llmur-bare").ends_with("50.0         -         -              -"),
            "{section}"
        );
    }
}
