//! The performance targets of the issue, judged on a run's results. Reported, never
//! asserted: a miss is a FAIL line, not an error.
//!
//! Owns: the target list and its thresholds. Must not touch: measuring, printing.

use crate::cli::Arm;
use crate::payload::Payload;
use crate::results::{Check, Pick, Results, RoundTally, added_per_round, median_of};
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
        let ratios = r.throughput_ratios(arm, Arm::Floor, payload);
        let spread = spread(&ratios, 100.0, "%");
        out.push(judge(
            format!("{arm} throughput ≥ 70% of floor's ({payload})"),
            full.zip(floor).map(|(f, fl)| {
                let share = f / fl.max(1e-9);
                (
                    format!("{:.0}% ({f:.0} vs {fl:.0} req/s){spread}", share * 100.0),
                    share >= 0.7,
                )
            }),
            RoundTally::of_figures(&ratios, |x| x >= 0.7),
        ));
    }
    for &payload in &r.plan.payloads {
        let direct = r.latency_rounds(Arm::Direct, payload);
        let full = r.latency_rounds(Arm::Full, payload);
        let floor_rps = r.throughput(Arm::Floor, payload);
        let comfortable = floor_rps.is_none_or(|t| r.plan.rate <= t * COMFORTABLE_SHARE);
        let per_round = added_per_round(full, direct, Pick::P99);
        let verdict = median(&per_round).map(|a| {
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
            RoundTally::of_figures(&per_round, |a| a < 1000.0 && comfortable),
        ));
    }
    let optional = [Arm::Early, Arm::NoLease]
        .into_iter()
        .filter(|arm| r.plan.arms.contains(arm));
    for arm in [Arm::Bare, Arm::Full].into_iter().chain(optional) {
        let direct = r.stream_rounds(Arm::Direct);
        let per_round = added_per_round(r.stream_rounds(arm), direct, Pick::TtfbP50);
        let spread = spread(&per_round, 1.0, " µs");
        out.push(judge(
            format!("{arm} streaming TTFB added p50 < 200 µs"),
            median(&per_round).map(|a| (format!("{a:.0} µs{spread}"), a < 200.0)),
            RoundTally::of_figures(&per_round, |a| a < 200.0),
        ));
    }
    for arm in [Arm::Bare, Arm::Full] {
        let idle = r.arms.get(&arm).and_then(|a| median(&a.idle_rss_mib));
        out.push(judge(
            format!("{arm} idle RSS < 30 MiB"),
            idle.map(|m| (format!("{m:.1} MiB"), m < 30.0)),
            None,
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
            None,
        ));
    }
    // Added p50 per round, small catalog then large.
    let scale = r.scale.as_ref().map(|s| {
        (
            added_per_round(&s.small_rounds, &s.direct, Pick::P50),
            added_per_round(&s.large_rounds, &s.direct, Pick::P50),
        )
    });
    let within = |small: f64, large: f64| large <= small.max(small * 1.1);
    out.push(judge(
        format!(
            "{}-key catalog added p50 within 10% of the 10-key one",
            r.scale.as_ref().map_or(r.plan.scale_keys, |s| s.large.0)
        ),
        scale.as_ref().and_then(|(small, large)| {
            let (small, large) = (median(small)?, median(large)?);
            Some((format!("{large:.0} vs {small:.0} µs"), within(small, large)))
        }),
        scale.as_ref().and_then(|(small, large)| {
            RoundTally::of(small.iter().zip(large).map(|(&small, &large)| {
                finite(small)
                    .zip(finite(large))
                    .map(|(small, large)| within(small, large))
            }))
        }),
    ));
    let cold = median(&r.cold_start_ms);
    out.push(judge(
        "llmur-bare cold start < 100 ms (median)".to_owned(),
        cold.map(|c| (format!("{c:.1} ms"), c < 100.0)),
        None,
    ));
    out
}

fn added_vs_floor(r: &Results, payload: Payload, pick: Pick, factor: f64, out: &mut Vec<Check>) {
    let direct = r.latency_rounds(Arm::Direct, payload);
    let floor_rounds = added_per_round(r.latency_rounds(Arm::Floor, payload), direct, pick);
    let bare_rounds = added_per_round(r.latency_rounds(Arm::Bare, payload), direct, pick);
    let (floor, bare) = (median(&floor_rounds), median(&bare_rounds));
    let name = match pick {
        Pick::P99 => "p99",
        _ => "p50",
    };
    let target = format!("llmur-bare added {name} ≤ {factor}× floor's ({payload})");
    // A round whose floor added nothing (its noise) has no ratio to judge.
    let rounds = RoundTally::of(bare_rounds.iter().zip(&floor_rounds).map(|(&b, &f)| {
        finite(b)
            .zip(finite(f))
            .and_then(|(b, f)| (f > 0.0).then_some(b <= factor * f))
    }));
    out.push(match bare.zip(floor) {
        // The floor's added latency vanished in this run's noise: no ratio to judge.
        Some((b, f)) if f <= 0.0 => Check {
            target,
            measured: format!("{b:.0} vs {f:.0} µs: floor's added ≤ 0 (noise; more --rounds)"),
            pass: None,
            rounds,
        },
        verdict => judge(
            target,
            verdict.map(|(b, f)| {
                (
                    format!("{b:.0} vs {f:.0} µs = {:.2}×", b / f),
                    b <= factor * f,
                )
            }),
            rounds,
        ),
    });
}

fn judge(target: String, verdict: Option<(String, bool)>, rounds: Option<RoundTally>) -> Check {
    match verdict {
        Some((measured, pass)) => Check {
            target,
            measured,
            pass: Some(pass),
            rounds,
        },
        None => Check {
            target,
            measured: "not measured".to_owned(),
            pass: None,
            rounds: None,
        },
    }
}

/// `x` unless it is `NaN` (a round that measured nothing).
fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// `"; rounds lo–hi<unit>"` over the rounds' figures (scaled), or nothing for fewer than two.
fn spread(values: &[f64], scale: f64, unit: &str) -> String {
    let finite: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let lo = finite.iter().copied().reduce(f64::min);
    let hi = finite.iter().copied().reduce(f64::max);
    match lo.zip(hi) {
        Some((lo, hi)) if finite.len() > 1 => {
            format!("; rounds {:.0}–{:.0}{unit}", lo * scale, hi * scale)
        }
        _ => String::new(),
    }
}

/// The median latency figure of `arm` for `payload` (for the table).
pub fn figure(r: &Results, arm: Arm, payload: Payload, pick: Pick) -> Option<f64> {
    median_of(r.latency_rounds(arm, payload), pick)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Args, Plan};
    use crate::results::{LatencyRound, ThroughputRound};
    use crate::stats::Summary;

    fn results() -> Results {
        let args = Args::parse_from(["llmur-bench", "--rounds", "3", "--payloads", "200b"]);
        Results::new(Plan::from_args(&args), 100.0)
    }

    fn throughput(rps: f64) -> ThroughputRound {
        ThroughputRound {
            rps,
            completed: 1,
            errors: 0,
            cpu_s_per_1k: None,
            redis: None,
            postgres_cpu_ms_per_1k: None,
        }
    }

    /// A round whose p50, p99 and time to first byte p50 are all `us`.
    fn latency(us: f64) -> LatencyRound {
        let summary = Summary {
            n: 100,
            p50: us,
            p90: us,
            p99: us,
            max: us,
        };
        LatencyRound {
            latency: summary,
            ttfb: summary,
            errors: 0,
            late: 0,
            bytes_per_answer: 0.0,
            cpu_s_per_1k: None,
            redis: None,
            postgres_cpu_ms_per_1k: None,
        }
    }

    fn throughputs(rps: &[f64]) -> Vec<ThroughputRound> {
        rps.iter().copied().map(throughput).collect()
    }

    fn latencies(us: &[f64]) -> Vec<LatencyRound> {
        us.iter().copied().map(latency).collect()
    }

    fn find<'a>(checks: &'a [Check], target: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.target.starts_with(target))
            .unwrap_or_else(|| panic!("no check {target}"))
    }

    #[test]
    fn throughput_is_judged_on_medians_and_tallied_per_round() {
        let mut r = results();
        let floor = throughputs(&[100.0, 200.0, 100.0]);
        r.arm(Arm::Floor).throughput.insert(Payload::Small, floor);
        // Paired with the floor's rounds: 0.75, 0.325, 0.8.
        let full = throughputs(&[75.0, 65.0, 80.0]);
        r.arm(Arm::Full).throughput.insert(Payload::Small, full);
        let checks = check(&r);
        let c = find(&checks, "llmur-full throughput");
        // Medians: 75 against 100.
        assert_eq!(c.pass, Some(true));
        assert!(
            c.measured.starts_with("75% (75 vs 100 req/s)"),
            "{}",
            c.measured
        );
        assert!(c.measured.ends_with("; rounds 32–80%"), "{}", c.measured);
        assert_eq!(c.rounds, Some(RoundTally { met: 2, judged: 3 }));
    }

    #[test]
    fn stream_ttfb_is_tallied_per_round() {
        let mut r = results();
        r.arm(Arm::Direct).stream = latencies(&[100.0, 100.0, 150.0]);
        // Added: 150, 190, 210.
        r.arm(Arm::Bare).stream = latencies(&[250.0, 290.0, 360.0]);
        let checks = check(&r);
        let c = find(&checks, "llmur-bare streaming TTFB");
        assert_eq!(c.pass, Some(true));
        assert_eq!(c.measured, "190 µs; rounds 150–210 µs");
        assert_eq!(c.rounds, Some(RoundTally { met: 2, judged: 3 }));
        // Full did not run: not judged, no tally.
        let c = find(&checks, "llmur-full streaming TTFB");
        assert_eq!((c.pass, c.rounds), (None, None));
    }

    #[test]
    fn a_round_where_the_floor_added_nothing_is_not_judged() {
        let mut r = results();
        for (arm, us) in [
            (Arm::Direct, [100.0, 100.0, 100.0]),
            // Floor added 100, 0 (noise), 50; bare 140, 40, 120.
            (Arm::Floor, [200.0, 100.0, 150.0]),
            (Arm::Bare, [240.0, 140.0, 220.0]),
        ] {
            r.arm(arm).latency.insert(Payload::Small, latencies(&us));
        }
        let checks = check(&r);
        let c = find(&checks, "llmur-bare added p50");
        // Medians: 120 against 50 = 2.4×.
        assert_eq!(c.pass, Some(false));
        assert_eq!(c.rounds, Some(RoundTally { met: 1, judged: 2 }));
    }

    #[test]
    fn a_round_that_measured_nothing_is_left_out() {
        assert_eq!(
            RoundTally::of([Some(true), None, Some(false)]),
            Some(RoundTally { met: 1, judged: 2 })
        );
        assert_eq!(RoundTally::of([None, None]), None);
        assert_eq!(spread(&[f64::NAN, 0.5], 100.0, "%"), "");
        assert_eq!(
            spread(&[0.64, f64::NAN, 0.8], 100.0, "%"),
            "; rounds 64–80%"
        );
    }
}
