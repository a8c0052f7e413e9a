//! Sending a routed call upstream and turning the answer into the client's response.
//!
//! Owns: the attempt loop over a deployment's connections (the next connection is tried
//! only when the upstream could not be reached, i.e. before any byte was received), the
//! shared HTTP client with its timeouts, and one [`RequestLog`] per attempt. An attempt
//! is sent after the counter admitted it, or while it decides when early forwarding allows
//! (`early.rs`); either way nothing of its answer is used before admission.
//! Must not touch: authentication or parsing (done before), the catalog.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, header};
use tokio::time::Instant;

use super::body::ProxyBody;
use super::client::{HttpClient, UpstreamResponse, timeout_error};
use super::early::{self, Sending};
use super::headers::downstream_headers;
use super::limits::{Admit, Charge, Limiter, Target, refusal_error, settle_unused};
use super::stream::SseRelay;
use crate::error::{Error, ErrorKind};
use crate::model::{Connection, Deployment, VirtualKey};
use crate::provider::{Call, StreamState};
use crate::request::RequestBody;
use crate::usage::{Clock, Endpoint, RequestLog, Usage, UsageSink, UsageSource};

/// The shared upstream HTTP client and its time limits.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    pub(crate) client: HttpClient,
    /// Whether `client` was built here (and so may be rebuilt by `Proxy::fork`).
    pub(crate) own_client: bool,
    /// The connect timeout `client` was built with.
    pub(crate) connect_timeout: Duration,
    /// Until the response head (and, for non-streams, the whole body).
    pub(crate) timeout: Duration,
}

impl Upstream {
    async fn send(&self, request: http::Request<Bytes>) -> Result<UpstreamResponse, Error> {
        match tokio::time::timeout(self.timeout, self.client.send(request)).await {
            Err(_) => Err(timeout_error()),
            Ok(sent) => sent,
        }
    }
}

/// What the forwarder needs from the proxy.
pub(crate) struct Context<'a> {
    pub(crate) upstream: &'a Upstream,
    pub(crate) sink: &'a Arc<dyn UsageSink>,
    pub(crate) clock: &'a Arc<dyn Clock>,
    pub(crate) limiter: &'a Limiter,
    pub(crate) early: &'a crate::metrics::EarlyForwards,
    /// Time spent waiting for upstreams, added up over attempts (nanoseconds).
    pub(crate) upstream_nanos: &'a std::sync::atomic::AtomicU64,
    pub(crate) request_id: &'a HeaderValue,
    pub(crate) key: &'a VirtualKey,
    pub(crate) endpoint: Endpoint,
}

impl Context<'_> {
    fn add_upstream_time(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.upstream_nanos
            .fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Tries the deployment's connections in round-robin order, each after reserving room on
/// every limit the request touches (the key, project and deployment once; each
/// connection as it is tried).
pub(crate) async fn forward(
    cx: &Context<'_>,
    deployment: &Deployment,
    body: &RequestBody,
    headers: &HeaderMap,
) -> Result<Response<ProxyBody>, Error> {
    let mut last = None;
    let mut refused = None;
    let mut client = None;
    let estimate = cx.limiter.estimate(body, cx.endpoint);
    for connection in deployment.candidates() {
        let now_ms = crate::store::types::Millis::from_system(cx.clock.now()).0;
        let amounts = estimate.amounts(connection);
        let target = Target {
            key: cx.key,
            deployment,
            connection,
        };
        let call = Call {
            endpoint: cx.endpoint,
            body,
            connection,
            headers,
        };
        let early = cx
            .limiter
            .early(now_ms, target, amounts, client.is_none())
            .and_then(|early| Some((early, connection.provider.encode(&call).ok()?)));
        let admit = cx.limiter.admit(now_ms, target, amounts, client.take());
        let (admitted, sending) = match early {
            None => (admit.await, None),
            Some((early, request)) => {
                let started = Instant::now();
                let (admitted, sending) =
                    early::admit_while_sending(admit, cx.upstream.send(request)).await;
                drop(early);
                // A refusal drops `sending` with this iteration: the upstream call ends.
                cx.early.record(matches!(admitted, Ok(Admit::Go(_))));
                (admitted, Some((sending, started)))
            }
        };
        let charge = match admitted {
            Ok(Admit::Go(charge)) => charge,
            Ok(Admit::ConnectionFull(refusal, back)) => {
                client = back;
                refused = Some(refusal);
                continue;
            }
            Err(e) => {
                release(cx, client);
                return Err(e);
            }
        };
        let limit_headers = charge.headers(now_ms);
        let mut attempt = Attempt::start(cx, deployment, connection, body, charge);
        let (sent, upstream_time) = match sending {
            Some((Sending::Done(sent, at), started)) => {
                attempt.started = started;
                (sent, at - started)
            }
            Some((Sending::Pending(send), started)) => {
                attempt.started = started;
                (send.await, started.elapsed())
            }
            None => {
                let request = match connection.provider.encode(&call) {
                    Ok(request) => request,
                    Err(e) => {
                        attempt.fail(&e);
                        return Err(e);
                    }
                };
                let waited = Instant::now();
                let sent = cx.upstream.send(request).await;
                (sent, waited.elapsed())
            }
        };
        cx.add_upstream_time(upstream_time);
        match sent {
            Ok(response) => {
                let mut response =
                    respond(cx, deployment, connection, body, response, attempt).await?;
                for (name, value) in limit_headers {
                    response.headers_mut().insert(name, value);
                }
                return Ok(response);
            }
            Err(e) => {
                tracing::warn!(connection = %connection.id, error = %e, "upstream attempt failed");
                let retry = e.is_retryable();
                if retry {
                    client = attempt.take_client();
                }
                attempt.fail(&e);
                if !retry {
                    return Err(e);
                }
                last = Some(e);
            }
        }
    }
    release(cx, client);
    Err(match (last, refused) {
        (Some(e), _) => e,
        (None, Some(refusal)) => refusal_error(&refusal),
        (None, None) => Error::new(
            ErrorKind::NoConnection,
            format!(
                "the deployment `{}` has no connection to serve it",
                deployment.name
            ),
        )
        .with_code("no_connection"),
    })
}

/// Settles client-level parts no attempt carried to the end: the request counts, no
/// tokens or cost.
fn release(cx: &Context<'_>, client: Option<crate::counter::Reservation>) {
    if let Some(client) = client {
        settle_unused(cx.limiter.counter.clone(), client);
    }
}

async fn respond(
    cx: &Context<'_>,
    deployment: &Deployment,
    connection: &Connection,
    body: &RequestBody,
    response: UpstreamResponse,
    mut attempt: Attempt,
) -> Result<Response<ProxyBody>, Error> {
    let status = response.status;
    attempt.status = status.as_u16();
    attempt.time_to_first_byte = Some(attempt.started.elapsed());
    let headers = downstream_headers(&response.headers);
    let is_sse = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let provider = connection.provider.clone();
    let state = StreamState::new(&deployment.name, body.client_wants_usage());

    let out = if status.is_success() && body.stream() && is_sse {
        let relay = SseRelay::new(response.into_stream(), state, provider, attempt);
        ProxyBody::stream(relay)
    } else {
        let remaining = cx
            .upstream
            .timeout
            .saturating_sub(attempt.started.elapsed());
        let waited = Instant::now();
        let read = tokio::time::timeout(remaining, response.bytes()).await;
        cx.add_upstream_time(waited.elapsed());
        let bytes = match read {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => {
                attempt.fail(&e);
                return Err(e);
            }
            Err(_) => {
                let e = timeout_error();
                attempt.fail(&e);
                return Err(e);
            }
        };
        if status.is_success() {
            let decoded = provider.decode_response(bytes, &state);
            let (usage, source) = match decoded.usage {
                Some(u) => (u, UsageSource::Reported),
                None => (Usage::default(), UsageSource::None),
            };
            attempt.finish(usage, source, None, false);
            ProxyBody::full(decoded.body)
        } else {
            let body = provider.decode_error(status, bytes);
            let message = format!("upstream answered {status}");
            attempt.finish(Usage::default(), UsageSource::None, Some(message), false);
            ProxyBody::full(body)
        }
    };
    let mut response = Response::new(out);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    if !status.is_success() || !body.stream() {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    Ok(response)
}

/// One attempt in flight; becomes a [`RequestLog`] exactly once.
pub(crate) struct Attempt {
    log: RequestLog,
    sink: Arc<dyn UsageSink>,
    started: Instant,
    status: u16,
    time_to_first_byte: Option<Duration>,
    price: Option<crate::store::types::Price>,
    charge: Option<Charge>,
    pub(crate) estimated_prompt_tokens: u64,
}

impl Attempt {
    fn start(
        cx: &Context<'_>,
        deployment: &Deployment,
        connection: &Connection,
        body: &RequestBody,
        charge: Charge,
    ) -> Self {
        let log = RequestLog {
            id: uuid::Uuid::new_v4(),
            request_id: cx.request_id.to_str().unwrap_or_default().to_owned(),
            virtual_key_id: cx.key.id,
            project_id: cx.key.project_id,
            deployment_id: deployment.id,
            // Not `to_string`: on an `Arc<str>` that goes through `Display`.
            deployment: String::from(&*deployment.name),
            connection_id: connection.id,
            upstream_model: connection.model.clone(),
            endpoint: cx.endpoint,
            stream: body.stream(),
            status: 0,
            usage: Usage::default(),
            usage_source: UsageSource::None,
            cost_usd: None,
            started_at: cx.clock.now(),
            time_to_first_byte: None,
            duration: Duration::ZERO,
            client_disconnected: false,
            error: None,
        };
        Self {
            log,
            sink: cx.sink.clone(),
            started: Instant::now(),
            status: 0,
            time_to_first_byte: None,
            price: connection
                .price
                .or_else(|| crate::pricing::default_price(&connection.model)),
            charge: Some(charge),
            estimated_prompt_tokens: body.estimated_prompt_tokens(),
        }
    }

    /// The key, project and deployment reservation, to carry to the next connection.
    fn take_client(&mut self) -> Option<crate::counter::Reservation> {
        self.charge.as_mut().and_then(Charge::take_client)
    }

    fn fail(self, error: &Error) {
        self.finish(
            Usage::default(),
            UsageSource::None,
            Some(error.to_string()),
            false,
        );
    }

    pub(crate) fn finish(
        mut self,
        usage: Usage,
        usage_source: UsageSource,
        error: Option<String>,
        client_disconnected: bool,
    ) {
        self.log.status = self.status;
        self.log.usage = usage;
        self.log.usage_source = usage_source;
        self.log.cost_usd = self.price.map(|p| crate::pricing::cost(p, usage));
        if let Some(charge) = self.charge.take() {
            let cost_micros = self.log.cost_usd.map_or(0, crate::limits::usd_to_micros);
            charge.settle(usage, cost_micros);
        }
        self.log.error = error;
        self.log.client_disconnected = client_disconnected;
        self.log.time_to_first_byte = self.time_to_first_byte;
        self.log.duration = self.started.elapsed();
        self.sink.record(self.log);
    }
}

impl std::fmt::Debug for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attempt")
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}
