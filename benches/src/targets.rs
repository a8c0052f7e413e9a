//! The performance targets of the issue, judged on a run's results. Reported, never
//! asserted: a miss is a FAIL line, not an error.
//!
//! Owns: the target list and its thresholds. Must not touch: measuring, printing.

use crate::cli::Arm;
use crate::payload::Payload;
use crate::results::{Check, Pick, Results, added, median_of};
use crate::stats::median;

/// A rate counts as one the floor "sustains comfortably" up to this share of the floor's
/// closed-loop throughput.
const COMFORTABLE_SHARE: f64 = 0.5;

/// Every target the run has the data for (others are listed as not judged).
pub fn check(r: &Results) -> Vec<Check> {
    let mut out = Vec::new();
    for &payload in &r.plan.payloads {
        added_vs_floor(r, payload, Pick::P50, 1.5, &mut out);
        added_vs_floor(r, payload, Pick::P99, 2.0, &mut out);
    }
    let no_lease = r.plan.arms.contains(&Arm::NoLease).then_some(Arm::NoLease);
    for (&payload, arm) in r.plan.payloads.iter().flat_map(|p| {
        std::iter::once(Arm::Full)
            .chain(no_lease)
            .map(move |a| (p, a))
    }) {
        let floor = r.throughput(Arm::Floor, payload);
        let full = r.throughput(arm, payload);
        out.push(judge(
            format!("{arm} throughput ≥ 70% of floor's ({payload})"),
            full.zip(floor).map(|(f, fl)| {
                let share = f / fl.max(1e-9);
                (
                    format!("{:.0}% ({f:.0} vs {fl:.0} req/s)", share * 100.0),
                    share >= 0.7,
                )
            }),
        ));
    }
    for &payload in &r.plan.payloads {
        let direct = r.latency_rounds(Arm::Direct, payload);
        let full = r.latency_rounds(Arm::Full, payload);
        let floor_rps = r.throughput(Arm::Floor, payload);
        let verdict = added(full, direct, Pick::P99).map(|a| {
            let comfortable = floor_rps.is_none_or(|t| r.plan.rate <= t * COMFORTABLE_SHARE);
            let share = floor_rps.map_or(String::from("floor throughput not measured"), |t| {
                format!(
                    "rate = {:.0}% of floor's throughput",
                    r.plan.rate / t * 100.0
                )
            });
            (format!("{a:.0} µs ({share})"), a < 1000.0 && comfortable)
        });
        out.push(judge(
            format!(
                "llmur-full added p99 < 1 ms @ {} req/s, floor at ease ({payload})",
                r.plan.rate
            ),
            verdict,
        ));
    }
    let optional = [Arm::Early, Arm::NoLease]
        .into_iter()
        .filter(|arm| r.plan.arms.contains(arm));
    for arm in [Arm::Bare, Arm::Full].into_iter().chain(optional) {
        let direct = r.stream_rounds(Arm::Direct);
        let a = added(r.stream_rounds(arm), direct, Pick::TtfbP50);
        out.push(judge(
            format!("{arm} streaming TTFB added p50 < 200 µs"),
            a.map(|a| (format!("{a:.0} µs"), a < 200.0)),
        ));
    }
    for arm in [Arm::Bare, Arm::Full] {
        let idle = r.arms.get(&arm).and_then(|a| median(&a.idle_rss_mib));
        out.push(judge(
            format!("{arm} idle RSS < 30 MiB"),
            idle.map(|m| (format!("{m:.1} MiB"), m < 30.0)),
        ));
    }
    for arm in [Arm::Bare, Arm::Full] {
        let held = r.arms.get(&arm).and_then(|a| a.streams_memory);
        out.push(judge(
            format!("{arm} with {} concurrent streams < 100 MiB", r.plan.streams),
            held.map(|h| {
                (
                    format!(
                        "{:.1} MiB ({} open, {:.1} KiB/stream)",
                        h.rss_mib, h.open, h.per_stream_kib
                    ),
                    h.rss_mib < 100.0 && h.open == h.streams,
                )
            }),
        ));
    }
    let scale = r.scale.as_ref().map(|s| {
        let small = added(&s.small_rounds, &s.direct, Pick::P50);
        let large = added(&s.large_rounds, &s.direct, Pick::P50);
        (small, large, s.large.0)
    });
    out.push(judge(
        format!(
            "{}-key catalog added p50 within 10% of the 10-key one",
            scale.map_or(r.plan.scale_keys, |s| s.2)
        ),
        scale.and_then(|(small, large, _)| {
            let (small, large) = (small?, large?);
            Some((
                format!("{large:.0} vs {small:.0} µs"),
                large <= small.max(small * 1.1),
            ))
        }),
    ));
    let cold = median(&r.cold_start_ms);
    out.push(judge(
        "llmur-bare cold start < 100 ms (median)".to_owned(),
        cold.map(|c| (format!("{c:.1} ms"), c < 100.0)),
    ));
    out
}

fn added_vs_floor(r: &Results, payload: Payload, pick: Pick, factor: f64, out: &mut Vec<Check>) {
    let direct = r.latency_rounds(Arm::Direct, payload);
    let floor = added(r.latency_rounds(Arm::Floor, payload), direct, pick);
    let bare = added(r.latency_rounds(Arm::Bare, payload), direct, pick);
    let name = match pick {
        Pick::P99 => "p99",
        _ => "p50",
    };
    let target = format!("llmur-bare added {name} ≤ {factor}× floor's ({payload})");
    out.push(match bare.zip(floor) {
        // The floor's added latency vanished in this run's noise: no ratio to judge.
        Some((b, f)) if f <= 0.0 => Check {
            target,
            measured: format!("{b:.0} vs {f:.0} µs: floor's added ≤ 0 (noise; more --rounds)"),
            pass: None,
        },
        verdict => judge(
            target,
            verdict.map(|(b, f)| {
                (
                    format!("{b:.0} vs {f:.0} µs = {:.2}×", b / f),
                    b <= factor * f,
                )
            }),
        ),
    });
}

fn judge(target: String, verdict: Option<(String, bool)>) -> Check {
    match verdict {
        Some((measured, pass)) => Check {
            target,
            measured,
            pass: Some(pass),
        },
        None => Check {
            target,
            measured: "not measured".to_owned(),
            pass: None,
        },
    }
}

/// The median latency figure of `arm` for `payload` (for the table).
pub fn figure(r: &Results, arm: Arm, payload: Payload, pick: Pick) -> Option<f64> {
    median_of(r.latency_rounds(arm, payload), pick)
}
