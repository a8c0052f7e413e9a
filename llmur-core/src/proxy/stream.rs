//! Relaying an upstream SSE stream to the client, event by event, with accounting.
//!
//! Owns: [`SseRelay`]. Each upstream chunk is cut into complete events, each event goes
//! through the provider codec (model rewrite, usage read, unrequested usage chunk dropped)
//! and is sent on as soon as it is complete — nothing waits for the end. The attempt's
//! [`RequestLog`] is emitted exactly once: at the end of the stream, on an upstream
//! failure (after an error event reached the client), or on drop when the client hangs up
//! (dropping the upstream body cancels the upstream request).

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::provider::{EventAction, Provider, StreamState};
use crate::sse::SseScanner;
use crate::usage::{Usage, UsageSource};

use super::client::ByteStream;
use super::forward::Attempt;

/// The streaming half of a response: upstream bytes in, client events out.
pub struct SseRelay {
    upstream: ByteStream,
    scanner: SseScanner,
    state: StreamState,
    provider: Arc<dyn Provider>,
    attempt: Option<Attempt>,
    finished: bool,
}

impl fmt::Debug for SseRelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseRelay")
            .field("state", &self.state)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl SseRelay {
    pub(crate) fn new(
        upstream: ByteStream,
        state: StreamState,
        provider: Arc<dyn Provider>,
        attempt: Attempt,
    ) -> Self {
        Self {
            upstream,
            scanner: SseScanner::new(),
            state,
            provider,
            attempt: Some(attempt),
            finished: false,
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    /// The next bytes for the client, `None` at the end.
    pub(crate) fn poll_next_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        loop {
            if self.finished {
                return Poll::Ready(None);
            }
            match self.upstream.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    self.scanner.push(&chunk);
                    if let Some(out) = self.drain_events() {
                        return Poll::Ready(Some(out));
                    }
                }
                Poll::Ready(Some(Err(err))) => {
                    self.finished = true;
                    let message = format!("the upstream stream failed: {err}");
                    tracing::warn!(error = %err, "upstream stream failed mid-response");
                    self.finish(Some(message.clone()), false);
                    return Poll::Ready(Some(error_event(&message)));
                }
                Poll::Ready(None) => {
                    self.finished = true;
                    let rest = self.scanner.take_rest();
                    let error = (!self.state.done)
                        .then(|| "the upstream stream ended without [DONE]".to_owned());
                    self.finish(error, false);
                    return Poll::Ready(rest);
                }
            }
        }
    }

    /// Runs every complete buffered event through the codec; `None` when nothing is to
    /// be sent yet.
    fn drain_events(&mut self) -> Option<Bytes> {
        let mut first: Option<Bytes> = None;
        let mut more: Option<BytesMut> = None;
        while let Some(event) = self.scanner.next_event() {
            let EventAction::Forward(bytes) = self.provider.decode_event(event, &mut self.state)
            else {
                continue;
            };
            match (&mut first, &mut more) {
                (None, _) => first = Some(bytes),
                (Some(f), None) => {
                    let mut buf = BytesMut::with_capacity(f.len() + bytes.len());
                    buf.extend_from_slice(f);
                    buf.extend_from_slice(&bytes);
                    more = Some(buf);
                }
                (Some(_), Some(buf)) => buf.extend_from_slice(&bytes),
            }
        }
        more.map(BytesMut::freeze).or(first)
    }

    fn finish(&mut self, error: Option<String>, client_disconnected: bool) {
        let Some(attempt) = self.attempt.take() else {
            return;
        };
        let (usage, source) = match self.state.usage {
            Some(usage) => (usage, UsageSource::Reported),
            None => (
                Usage {
                    prompt_tokens: attempt.estimated_prompt_tokens,
                    completion_tokens: self.state.content_events,
                },
                UsageSource::Estimated,
            ),
        };
        attempt.finish(usage, source, error, client_disconnected);
    }
}

impl Drop for SseRelay {
    fn drop(&mut self) {
        if self.attempt.is_some() {
            tracing::debug!("client went away mid-stream; upstream request cancelled");
            self.finish(Some("the client disconnected".to_owned()), true);
        }
    }
}

/// The event that tells a client its stream failed after the headers were sent.
fn error_event(message: &str) -> Bytes {
    let body = serde_json::json!({
        "error": {
            "message": message,
            "type": "api_error",
            "param": null,
            "code": "upstream_stream_error",
        }
    });
    Bytes::from(format!("data: {body}\n\n"))
}
