//! Admission against rate limits and budgets, and the settle after the answer.
//!
//! Owns: [`Limiter`] (what to ask the [`UsageCounter`] for a request), [`Charge`] (what one
//! attempt reserved, settled exactly once with the real usage), the 429 errors and the
//! `x-ratelimit-*` headers. One counter call covers the key, its project, the deployment
//! and the first connection; a second call happens only when a connection is full or
//! failed and the next one is tried. Requests without any limit never call the counter.
//! Must not touch: the upstream call, the catalog.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use super::early::{self, Early, Sets};
use crate::counter::{
    Ask, Bucket, Decision, Level, Metric, Part, Refusal, Reservation, UsageCounter,
};
use crate::error::{Error, ErrorKind};
use crate::limits::{LimitSet, usd_to_micros};
use crate::model::{Connection, Deployment, VirtualKey};
use crate::request::RequestBody;
use crate::usage::{Endpoint, Usage};

/// Completion tokens reserved for a chat request without `max_tokens` (default).
pub const DEFAULT_COMPLETION_TOKENS: u64 = 1_024;

/// The counter and how to size reservations.
#[derive(Debug, Clone)]
pub(crate) struct Limiter {
    pub(crate) counter: Arc<dyn UsageCounter>,
    pub(crate) completion_default: u64,
    /// Early forwarding's headroom (a share of each limit), or `None` when it is off.
    pub(crate) early_headroom: Option<f64>,
}

/// The amounts one request reserves before the upstream answers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Estimate {
    prompt: u64,
    completion: u64,
}

impl Estimate {
    fn tokens(self) -> u64 {
        self.prompt.saturating_add(self.completion)
    }

    /// What a request asks for on `connection`, per metric (in [`Metric::index`] order):
    /// one request, the tokens, their cost there.
    pub(crate) fn amounts(self, connection: &Connection) -> [u64; 3] {
        [1, self.tokens(), self.cost_micros(connection)]
    }

    fn cost_micros(self, connection: &Connection) -> u64 {
        price(connection).map_or(0, |p| {
            let usage = Usage {
                prompt_tokens: self.prompt,
                completion_tokens: self.completion,
            };
            usd_to_micros(crate::pricing::cost(p, usage))
        })
    }
}

fn price(connection: &Connection) -> Option<crate::store::types::Price> {
    connection
        .price
        .or_else(|| crate::pricing::default_price(&connection.model))
}

/// The outcome of asking for room on one connection.
pub(crate) enum Admit {
    /// Reserved; carry the charge through the attempt.
    Go(Charge),
    /// The connection's own limit is reached; the client-level parts (if any were reserved
    /// before) come back for the next connection.
    ConnectionFull(Refusal, Option<Reservation>),
}

impl Limiter {
    /// Prompt (estimated from the body) plus `max_tokens`, or the default for chat.
    pub(crate) fn estimate(&self, body: &RequestBody, endpoint: Endpoint) -> Estimate {
        let completion = match endpoint {
            Endpoint::Embeddings => 0,
            _ => body.max_tokens().unwrap_or(self.completion_default),
        };
        Estimate {
            prompt: body.estimated_prompt_tokens(),
            completion,
        }
    }

    /// Counts a request about to be admitted on `connection` as sent early, if early
    /// forwarding is on and the counter's last answers left room enough (see
    /// [`Early::try_start`]). Hold it until the reserve is answered.
    pub(crate) fn early<'a>(
        &self,
        now_ms: i64,
        target: Target<'a>,
        amounts: [u64; 3],
        with_client: bool,
    ) -> Option<Early<'a>> {
        let headroom = self.early_headroom?;
        Early::try_start(target.sets(with_client), amounts, headroom, now_ms)
    }

    /// Reserves on `connection`, and on the key, project and deployment unless `client`
    /// holds their reservation already.
    pub(crate) async fn admit(
        &self,
        now_ms: i64,
        target: Target<'_>,
        amounts: [u64; 3],
        client: Option<Reservation>,
    ) -> Result<Admit, Error> {
        let sets = target.sets(client.is_none());
        let ids = target.ids();
        let rules = |set: &Option<&LimitSet>| set.map_or(0, |l| l.rules().len());
        let mut asks = Vec::with_capacity(sets.iter().map(|(_, set)| rules(set)).sum());
        for ((level, set), id) in sets.iter().zip(ids) {
            if let Some(set) = set {
                push_asks(&mut asks, *level, id, set, amounts);
            }
        }
        let mut charge = Charge {
            counter: self.counter.clone(),
            client: client.unwrap_or_default(),
            connection: Reservation::default(),
        };
        if asks.is_empty() {
            return Ok(Admit::Go(charge));
        }
        let decision = self.counter.reserve(&asks, now_ms).await.map_err(|e| {
            tracing::warn!(error = %e, "usage counter unavailable; refusing (fail-closed)");
            Error::new(
                ErrorKind::LimiterUnavailable,
                "Rate limits cannot be checked right now; please retry shortly.",
            )
            .with_code("rate_limiter_unavailable")
            .with_header(http::header::RETRY_AFTER, HeaderValue::from_static("1"))
        })?;
        if self.early_headroom.is_some() {
            match &decision {
                Decision::Admitted(reservation) => early::observe(&sets, reservation, now_ms),
                Decision::Refused(refusal) => early::refused(&sets, refusal),
            }
        }
        match decision {
            Decision::Admitted(reservation) => {
                let (connection, client) =
                    reservation.split(|p| p.bucket.level == Level::Connection);
                if charge.client.parts.is_empty() {
                    charge.client = client;
                }
                charge.connection = connection;
                Ok(Admit::Go(charge))
            }
            Decision::Refused(refusal) if refusal.bucket.level == Level::Connection => {
                let client = (!charge.client.parts.is_empty()).then_some(charge.client);
                Ok(Admit::ConnectionFull(refusal, client))
            }
            Decision::Refused(refusal) => Err(refusal_error(&refusal)),
        }
    }
}

/// Where a request is about to go: the entities whose limits it is counted on.
#[derive(Clone, Copy)]
pub(crate) struct Target<'a> {
    pub(crate) key: &'a VirtualKey,
    pub(crate) deployment: &'a Deployment,
    pub(crate) connection: &'a Connection,
}

impl<'a> Target<'a> {
    /// The limit sets asked on, in the order asked: the key, project and deployment
    /// (unless already reserved: `with_client` false), then the connection.
    fn sets(self, with_client: bool) -> Sets<'a> {
        let client = |limits: &'a Option<Arc<LimitSet>>| {
            if with_client { limits.as_deref() } else { None }
        };
        [
            (Level::VirtualKey, client(&self.key.limits)),
            (Level::Project, client(&self.key.project_limits)),
            (Level::Deployment, client(&self.deployment.limits)),
            (Level::Connection, self.connection.limits.as_deref()),
        ]
    }

    fn ids(self) -> [uuid::Uuid; 4] {
        [
            self.key.id.0,
            self.key.project_id.0,
            self.deployment.id.0,
            self.connection.id.0,
        ]
    }
}

fn push_asks(
    asks: &mut Vec<Ask>,
    level: Level,
    id: uuid::Uuid,
    limits: &LimitSet,
    amounts: [u64; 3],
) {
    for rule in limits.rules() {
        let amount = amounts[rule.metric.index()];
        asks.push(Ask {
            bucket: Bucket {
                level,
                id,
                metric: rule.metric,
                window: rule.window,
            },
            limit: rule.limit,
            amount,
        });
    }
}

/// What one attempt holds reserved; settled exactly once (on drop of the attempt's
/// record), with the real usage.
#[derive(Debug)]
pub(crate) struct Charge {
    counter: Arc<dyn UsageCounter>,
    /// Key, project and deployment parts: one per client request.
    client: Reservation,
    /// This attempt's connection parts.
    connection: Reservation,
}

impl Charge {
    /// The `x-ratelimit-*` headers: for requests and for tokens, the bucket with the least
    /// room left among everything this attempt reserved.
    pub(crate) fn headers(&self, now_ms: i64) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::with_capacity(6);
        for (metric, suffix) in [(Metric::Requests, "requests"), (Metric::Tokens, "tokens")] {
            let tightest = self
                .client
                .parts
                .iter()
                .chain(&self.connection.parts)
                .filter(|p| p.bucket.metric == metric)
                .min_by_key(|p| (p.remaining(), p.resets_at));
            if let Some(part) = tightest {
                push_ratelimit_headers(
                    &mut out,
                    suffix,
                    part.limit,
                    part.remaining(),
                    part.resets_at - now_ms,
                );
            }
        }
        out
    }

    /// Takes the client-level parts out (to carry them to the next connection after this
    /// attempt failed).
    pub(crate) fn take_client(&mut self) -> Option<Reservation> {
        let client = std::mem::take(&mut self.client);
        (!client.parts.is_empty()).then_some(client)
    }

    /// Replaces every reservation with the real amounts: the request stays counted;
    /// tokens and cost become `usage` and `cost_micros` (0 for a failed attempt).
    pub(crate) fn settle(self, usage: Usage, cost_micros: u64) {
        // Two reservations, settled apart: they may come from different counters (one
        // reserved while the shared counter was down).
        settle_spawn(
            self.counter,
            [self.client, self.connection],
            usage.total(),
            cost_micros,
        );
    }
}

/// Settles `reservation` with no tokens and no cost (the request still counts).
pub(crate) fn settle_unused(counter: Arc<dyn UsageCounter>, reservation: Reservation) {
    settle_spawn(counter, [reservation], 0, 0);
}

/// Settles every reservation that needs a correction: at once where the counter can
/// ([`UsageCounter::settle_now`]), the rest in one background task; none when nothing
/// changes.
fn settle_spawn<const N: usize>(
    counter: Arc<dyn UsageCounter>,
    reservations: [Reservation; N],
    tokens: u64,
    cost: u64,
) {
    let work: Vec<(Reservation, Vec<u64>)> = reservations
        .into_iter()
        .filter_map(|reservation| {
            let actual: Vec<u64> = reservation
                .parts
                .iter()
                .map(|p| actual_amount(p, tokens, cost))
                .collect();
            let changed = actual
                .iter()
                .zip(&reservation.parts)
                .any(|(a, p)| *a != p.amount);
            changed.then_some((reservation, actual))
        })
        .filter(|(reservation, actual)| !counter.settle_now(reservation, actual))
        .collect();
    if work.is_empty() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no runtime to settle a usage reservation; the reserved amounts stay");
        return;
    };
    runtime.spawn(async move {
        for (reservation, actual) in &work {
            if let Err(e) = counter.settle(reservation, actual).await {
                tracing::warn!(error = %e, "usage settle failed; the reserved amounts stay counted");
            }
        }
    });
}

fn actual_amount(part: &Part, tokens: u64, cost_micros: u64) -> u64 {
    match part.bucket.metric {
        Metric::Requests => part.amount,
        Metric::Tokens => tokens,
        Metric::CostMicros => cost_micros,
    }
}

fn push_ratelimit_headers(
    out: &mut Vec<(HeaderName, HeaderValue)>,
    suffix: &str,
    limit: u64,
    remaining: u64,
    reset_ms: i64,
) {
    // Names built at compile time: `HeaderName::from_static` at run time checks every byte.
    const REQUESTS: [HeaderName; 3] = [
        HeaderName::from_static("x-ratelimit-limit-requests"),
        HeaderName::from_static("x-ratelimit-remaining-requests"),
        HeaderName::from_static("x-ratelimit-reset-requests"),
    ];
    const TOKENS: [HeaderName; 3] = [
        HeaderName::from_static("x-ratelimit-limit-tokens"),
        HeaderName::from_static("x-ratelimit-remaining-tokens"),
        HeaderName::from_static("x-ratelimit-reset-tokens"),
    ];
    let [limit_name, remaining_name, reset_name] = match suffix {
        "requests" => REQUESTS,
        _ => TOKENS,
    };
    out.push((limit_name, HeaderValue::from(limit)));
    out.push((remaining_name, HeaderValue::from(remaining)));
    if let Ok(reset) = HeaderValue::try_from(format_reset(reset_ms)) {
        out.push((reset_name, reset));
    }
}

/// A duration the way OpenAI writes `x-ratelimit-reset-*`: `20ms`, `1s`, `6m0s`,
/// `1h2m3.5s`.
pub(crate) fn format_reset(ms: i64) -> String {
    // Digits pushed by hand: this runs twice per limited request, and `write!` cost
    // about 650 instructions a call.
    let ms = ms.max(0).unsigned_abs();
    let mut out = String::with_capacity(16);
    if ms < 1_000 {
        push_digits(&mut out, ms, 1);
        out.push_str("ms");
        return out;
    }
    let hours = ms / 3_600_000;
    let minutes = (ms % 3_600_000) / 60_000;
    if hours > 0 {
        push_digits(&mut out, hours, 1);
        out.push('h');
    }
    if hours > 0 || minutes > 0 {
        push_digits(&mut out, minutes, 1);
        out.push('m');
    }
    let millis = ms % 60_000;
    push_digits(&mut out, millis / 1_000, 1);
    let mut fraction = millis % 1_000;
    if fraction != 0 {
        // Three decimals without their trailing zeros: .5, .25, .125.
        let mut digits = 3;
        while fraction % 10 == 0 {
            fraction /= 10;
            digits -= 1;
        }
        out.push('.');
        push_digits(&mut out, fraction, digits);
    }
    out.push('s');
    out
}

/// Appends `n` in decimal, zero-padded to at least `width` digits (at most 20).
fn push_digits(out: &mut String, mut n: u64, width: usize) {
    // u64::MAX has 20 digits.
    let mut buf = [b'0'; 20];
    let mut at = buf.len();
    while n > 0 && at > 0 {
        at -= 1;
        if let Some(slot) = buf.get_mut(at) {
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
    }
    let start = at.min(buf.len().saturating_sub(width.max(1)));
    for &digit in buf.get(start..).unwrap_or_default() {
        out.push(char::from(digit));
    }
}

/// The 429 for a refusal: `rate_limit_exceeded` for requests and tokens,
/// `insufficient_quota` for budgets; names the level, id and window; `Retry-After`.
pub(crate) fn refusal_error(refusal: &Refusal) -> Error {
    let b = refusal.bucket;
    let wait_ms = (refusal.resets_at - refusal.now_ms).max(0);
    let retry_after = (wait_ms + 999) / 1_000;
    let reset = format_reset(wait_ms);
    let never = refusal.amount > refusal.limit;
    let (kind, code, message) = match b.metric {
        Metric::CostMicros => (
            ErrorKind::QuotaExceeded,
            "insufficient_quota",
            format!(
                "Budget exceeded for {} {} per {}: limit ${}, used ${}, this request needs up to ${}. {}",
                b.level.as_str(),
                b.id,
                b.window.as_str(),
                usd(refusal.limit),
                usd(refusal.used),
                usd(refusal.amount),
                if never {
                    "This request alone exceeds the budget; lower max_tokens.".to_owned()
                } else {
                    format!("The budget resets in {reset}.")
                }
            ),
        ),
        metric => (
            ErrorKind::RateLimited,
            "rate_limit_exceeded",
            format!(
                "Rate limit reached for {} {} on {} per {}: limit {}, used {}, requested {}. {}",
                b.level.as_str(),
                b.id,
                metric.as_str(),
                b.window.as_str(),
                refusal.limit,
                refusal.used,
                refusal.amount,
                if never {
                    "This request alone exceeds the limit; lower max_tokens or shorten the prompt."
                        .to_owned()
                } else {
                    format!("Please try again in {reset}.")
                }
            ),
        ),
    };
    let mut error = Error::new(kind, message)
        .with_code(code)
        .with_detail(serde_json::json!({
            "level": b.level,
            "id": b.id,
            "metric": b.metric,
            "window": b.window,
            "limit": refusal.limit,
            "used": refusal.used,
            "requested": refusal.amount,
            "resets_at_ms": refusal.resets_at,
        }))
        .with_header(
            http::header::RETRY_AFTER,
            HeaderValue::from(retry_after.max(1)),
        );
    let suffix = match b.metric {
        Metric::Requests => Some("requests"),
        Metric::Tokens => Some("tokens"),
        Metric::CostMicros => None,
    };
    if let Some(suffix) = suffix {
        let mut headers = Vec::new();
        push_ratelimit_headers(
            &mut headers,
            suffix,
            refusal.limit,
            refusal.limit.saturating_sub(refusal.used),
            wait_ms,
        );
        for (name, value) in headers {
            error = error.with_header(name, value);
        }
    }
    error
}

fn usd(micros: u64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::Window;

    #[test]
    fn resets_read_like_openai() {
        assert_eq!(format_reset(-5), "0ms");
        assert_eq!(format_reset(17), "17ms");
        assert_eq!(format_reset(1_000), "1s");
        assert_eq!(format_reset(8_640), "8.64s");
        assert_eq!(format_reset(360_000), "6m0s");
        assert_eq!(format_reset(3_723_500), "1h2m3.5s");
        assert_eq!(format_reset(86_400_000), "24h0m0s");
        assert_eq!(format_reset(999), "999ms");
        assert_eq!(format_reset(1_050), "1.05s");
        assert_eq!(format_reset(59_001), "59.001s");
        assert_eq!(format_reset(60_000), "1m0s");
        assert_eq!(format_reset(3_600_010), "1h0m0.01s");
        assert_eq!(format_reset(8_005), "8.005s");
        assert_eq!(format_reset(0), "0ms");
        assert_eq!(format_reset(i64::MIN), "0ms");
        assert_eq!(format_reset(i64::MAX), "2562047788015h12m55.807s");
    }

    #[test]
    fn resets_match_a_formatted_reference() {
        // The hand-written digits against `format!`, over every shape of duration.
        fn reference(ms: i64) -> String {
            let ms = ms.max(0);
            if ms < 1_000 {
                return format!("{ms}ms");
            }
            let (hours, minutes) = (ms / 3_600_000, (ms % 3_600_000) / 60_000);
            let mut out = match (hours, minutes) {
                (0, 0) => String::new(),
                (0, m) => format!("{m}m"),
                (h, m) => format!("{h}h{m}m"),
            };
            let millis = ms % 60_000;
            out += &format!("{}.{:03}", millis / 1_000, millis % 1_000);
            let out = out.trim_end_matches('0').trim_end_matches('.');
            format!("{out}s")
        }
        let mut ms = 0_i64;
        while ms < 200_000_000 {
            assert_eq!(format_reset(ms), reference(ms), "{ms}");
            ms = ms * 3 / 2 + 7;
        }
        for ms in [
            1_000, 10_000, 100_000, 3_600_000, 3_660_000, 1_001, 1_010, 1_100,
        ] {
            assert_eq!(format_reset(ms), reference(ms), "{ms}");
        }
    }

    #[test]
    fn ratelimit_values_read_right() {
        let mut out = Vec::new();
        push_ratelimit_headers(&mut out, "requests", 0, u64::MAX, 1_500);
        push_ratelimit_headers(&mut out, "tokens", 1_000_000, i64::MAX as u64, i64::MAX);
        let got: Vec<(&str, &str)> = out
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap_or("?")))
            .collect();
        assert_eq!(
            got,
            [
                ("x-ratelimit-limit-requests", "0"),
                ("x-ratelimit-remaining-requests", "18446744073709551615"),
                ("x-ratelimit-reset-requests", "1.5s"),
                ("x-ratelimit-limit-tokens", "1000000"),
                ("x-ratelimit-remaining-tokens", "9223372036854775807"),
                ("x-ratelimit-reset-tokens", "2562047788015h12m55.807s"),
            ]
        );
    }

    #[test]
    fn refusals_name_level_window_and_wait() {
        let refusal = Refusal {
            bucket: Bucket {
                level: Level::Project,
                id: uuid::Uuid::nil(),
                metric: Metric::CostMicros,
                window: Window::Month,
            },
            limit: 5_000_000,
            used: 4_999_000,
            amount: 2_000,
            resets_at: 10_500,
            now_ms: 1_000,
        };
        let e = refusal_error(&refusal);
        assert_eq!(e.status(), http::StatusCode::TOO_MANY_REQUESTS);
        let json = e.to_json();
        assert_eq!(json["error"]["type"], "insufficient_quota");
        assert_eq!(json["error"]["llmur"]["level"], "project");
        assert_eq!(json["error"]["llmur"]["window"], "month");
        let message = json["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("project") && message.contains("$5.000000"),
            "{message}"
        );
        let response = e.to_response();
        assert_eq!(response.headers()["retry-after"], "10");
        assert!(response.headers().get("x-ratelimit-limit-tokens").is_none());

        let tokens = Refusal {
            bucket: Bucket {
                metric: Metric::Tokens,
                window: Window::Minute,
                ..refusal.bucket
            },
            limit: 100,
            used: 90,
            amount: 20,
            ..refusal
        };
        let response = refusal_error(&tokens).to_response();
        assert_eq!(response.headers()["x-ratelimit-remaining-tokens"], "10");
        assert_eq!(response.headers()["x-ratelimit-reset-tokens"], "9.5s");
        let json = refusal_error(&tokens).to_json();
        assert_eq!(json["error"]["type"], "rate_limit_exceeded");
        assert_eq!(json["error"]["code"], "rate_limit_exceeded");
    }
}
