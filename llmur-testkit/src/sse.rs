//! Building and writing server-sent event streams.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream;
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::sync::Notify;

use crate::openai::{self, CompletionMeta, Delta, Usage};
use crate::script::{Fault, Script, Split};

/// Body type of every mock response.
pub(crate) type RespBody = UnsyncBoxBody<Bytes, io::Error>;

/// A complete, in-memory body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> RespBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Counts how streams ended.
#[derive(Debug, Default)]
pub(crate) struct StreamCounters {
    pub cancelled: AtomicUsize,
    pub completed: AtomicUsize,
    pub notify: Notify,
}

/// One SSE event (a `\n\n`-terminated block), or a comment.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    bytes: Bytes,
    /// `false` for comment-only events (`: keep-alive`).
    data: bool,
}

impl Event {
    fn data(json: &[u8]) -> Self {
        let mut b = BytesMut::with_capacity(json.len() + 8);
        b.extend_from_slice(b"data: ");
        b.extend_from_slice(json);
        b.extend_from_slice(b"\n\n");
        Self {
            bytes: b.freeze(),
            data: true,
        }
    }

    fn keep_alive() -> Self {
        Self {
            bytes: Bytes::from_static(b": keep-alive\n\n"),
            data: false,
        }
    }
}

/// Parameters of a generated chat stream.
#[derive(Debug)]
pub(crate) struct ChatStream<'a> {
    pub meta: &'a CompletionMeta,
    pub choices: u32,
    pub include_usage: bool,
    pub usage: Usage,
    pub pieces: &'a [String],
}

/// The events of a generated chat completion stream, `[DONE]` included.
pub(crate) fn chat_events(s: &ChatStream<'_>) -> Vec<Event> {
    let mut events = Vec::with_capacity((s.pieces.len() + 2) * s.choices as usize + 3);
    if s.meta.azure {
        events.push(Event::data(&crate::azure::prompt_filter_chunk()));
    }
    let chunk = |index, delta, finish| {
        Event::data(&openai::chat_chunk(
            s.meta,
            index,
            delta,
            finish,
            s.include_usage,
        ))
    };
    for i in 0..s.choices {
        events.push(chunk(i, Delta::role(), None));
    }
    for piece in s.pieces {
        for i in 0..s.choices {
            let delta = Delta {
                content: Some(piece),
                ..Delta::default()
            };
            events.push(chunk(i, delta, None));
        }
    }
    for i in 0..s.choices {
        events.push(chunk(i, Delta::default(), Some("stop")));
    }
    if s.include_usage {
        events.push(Event::data(&openai::usage_chunk(s.meta, s.usage)));
    }
    events.push(Event::data(b"[DONE]"));
    events
}

/// Cuts raw SSE bytes into events at every blank line (`\n\n`); a trailing unterminated
/// remainder is the last event.
pub(crate) fn parse_events(raw: &Bytes) -> Vec<Event> {
    let mut events = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < raw.len() {
        if raw[i] == b'\n' && raw[i + 1] == b'\n' {
            events.push(raw_event(raw.slice(start..i + 2)));
            start = i + 2;
            i = start;
        } else {
            i += 1;
        }
    }
    if start < raw.len() {
        events.push(raw_event(raw.slice(start..)));
    }
    events
}

fn raw_event(bytes: Bytes) -> Event {
    let data = bytes
        .split(|&b| b == b'\n')
        .find(|line| !line.is_empty() && *line != b"\r")
        .is_some_and(|line| !line.starts_with(b":"));
    Event { bytes, data }
}

/// How the body ends once every planned write is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Clean,
    Cut,
    Stall,
}

/// Writes (each preceded by a delay) and the ending.
#[derive(Debug)]
struct Plan {
    writes: Vec<(Duration, Bytes)>,
    ending: Ending,
}

fn plan(mut events: Vec<Event>, script: &Script) -> Plan {
    if script.keep_alive_comments && events.len() > 1 {
        let mut with = Vec::with_capacity(events.len() * 2);
        let last = events.len() - 1;
        for (i, e) in events.into_iter().enumerate() {
            with.push(e);
            if i < last {
                with.push(Event::keep_alive());
            }
        }
        events = with;
    }

    let ending = match script.fault {
        None => Ending::Clean,
        Some(Fault::Cut(n) | Fault::Stall(n)) => {
            let mut seen = 0;
            let keep = events
                .iter()
                .position(|e| {
                    if seen == n {
                        return true;
                    }
                    seen += usize::from(e.data);
                    false
                })
                .unwrap_or(events.len());
            events.truncate(keep);
            if matches!(script.fault, Some(Fault::Cut(_))) {
                Ending::Cut
            } else {
                Ending::Stall
            }
        }
    };

    // Timing index: data events before this one. Comments share the index of the data event
    // that follows them, so cadence is spent between data events only.
    let mut tidx = Vec::with_capacity(events.len());
    let mut data_before = 0usize;
    for e in &events {
        tidx.push(data_before);
        data_before += usize::from(e.data);
    }

    // (timing index, bytes) per write.
    let mut pieces: Vec<(usize, Bytes)> = Vec::new();
    match script.split {
        Split::Events => {
            pieces.extend(events.iter().zip(&tidx).map(|(e, &t)| (t, e.bytes.clone())));
        }
        Split::Awkward => {
            for (e, &t) in events.iter().zip(&tidx) {
                let mut prev = 0;
                for cut in awkward_cuts(&e.bytes) {
                    pieces.push((t, e.bytes.slice(prev..cut)));
                    prev = cut;
                }
                pieces.push((t, e.bytes.slice(prev..)));
            }
        }
        Split::EveryBytes(size) => {
            let size = size.max(1);
            let mut all = BytesMut::new();
            let mut starts = Vec::with_capacity(events.len());
            for e in &events {
                starts.push(all.len());
                all.extend_from_slice(&e.bytes);
            }
            let all = all.freeze();
            let mut off = 0;
            while off < all.len() {
                let end = (off + size).min(all.len());
                let ev = starts.partition_point(|&s| s <= off).saturating_sub(1);
                pieces.push((tidx.get(ev).copied().unwrap_or(0), all.slice(off..end)));
                off = end;
            }
        }
    }

    let cadence = |steps: usize| {
        script
            .cadence
            .saturating_mul(u32::try_from(steps).unwrap_or(u32::MAX))
    };
    let mut writes = Vec::with_capacity(pieces.len());
    let mut prev_t = 0;
    for (i, (t, bytes)) in pieces.into_iter().enumerate() {
        let delay = if i == 0 {
            script.ttft.saturating_add(cadence(t))
        } else {
            cadence(t.saturating_sub(prev_t))
        };
        prev_t = t;
        writes.push((delay, bytes));
    }
    Plan { writes, ending }
}

/// Cut offsets for [`Split::Awkward`]: after the first byte, inside the first multi-byte
/// UTF-8 character, and between the two terminating newlines.
fn awkward_cuts(b: &[u8]) -> Vec<usize> {
    let len = b.len();
    let mut cuts = vec![1];
    if let Some(lead) = b.iter().position(|&x| x >= 0xC0) {
        cuts.push(lead + 1);
    }
    if b.ends_with(b"\n\n") {
        cuts.push(len - 1);
    }
    cuts.retain(|&c| c > 0 && c < len);
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// Counts the stream as completed or cancelled exactly once.
#[derive(Debug)]
struct StreamGuard {
    counters: Arc<StreamCounters>,
    armed: bool,
}

impl StreamGuard {
    fn complete(&mut self) {
        if self.armed {
            self.armed = false;
            self.counters.completed.fetch_add(1, Ordering::SeqCst);
            self.counters.notify.notify_waiters();
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.armed {
            self.counters.cancelled.fetch_add(1, Ordering::SeqCst);
            self.counters.notify.notify_waiters();
        }
    }
}

#[derive(Debug)]
struct BodyState {
    writes: std::vec::IntoIter<(Duration, Bytes)>,
    ending: Ending,
    guard: StreamGuard,
    started: bool,
    finished: bool,
}

/// A streaming body writing `events` as scripted.
pub(crate) fn stream_body(
    events: Vec<Event>,
    script: &Script,
    counters: Arc<StreamCounters>,
) -> RespBody {
    let Plan { writes, ending } = plan(events, script);
    let state = BodyState {
        writes: writes.into_iter(),
        ending,
        guard: StreamGuard {
            counters,
            armed: true,
        },
        started: false,
        finished: false,
    };
    let frames = stream::unfold(state, |mut st| async move {
        if st.finished {
            return None;
        }
        if let Some((delay, bytes)) = st.writes.next() {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            } else if st.started {
                // Let the connection flush the previous write on its own, so the pieces
                // reach the socket as separate writes instead of being coalesced.
                tokio::task::yield_now().await;
            }
            st.started = true;
            return Some((Ok(Frame::data(bytes)), st));
        }
        st.finished = true;
        match st.ending {
            Ending::Clean => {
                st.guard.complete();
                None
            }
            Ending::Cut => {
                st.guard.armed = false;
                // Let the last write reach the socket before the connection is torn down.
                tokio::task::yield_now().await;
                let err = io::Error::new(io::ErrorKind::ConnectionAborted, "scripted cut");
                Some((Err(err), st))
            }
            Ending::Stall => {
                futures_util::future::pending::<()>().await;
                None
            }
        }
    });
    StreamBody::new(frames).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| Event::data(format!("{i}").as_bytes()))
            .collect()
    }

    fn joined(p: &Plan) -> Vec<u8> {
        p.writes.iter().flat_map(|(_, b)| b.to_vec()).collect()
    }

    #[test]
    fn parse_splits_on_blank_lines() {
        let raw = Bytes::from_static(b"data: a\n\n: c\n\ndata: b\n\ntail");
        let ev = parse_events(&raw);
        let kinds: Vec<bool> = ev.iter().map(|e| e.data).collect();
        assert_eq!(kinds, [true, false, true, true]);
        let all: Vec<u8> = ev.iter().flat_map(|e| e.bytes.to_vec()).collect();
        assert_eq!(all, raw.to_vec());
    }

    #[test]
    fn cut_keeps_n_data_events_and_skips_comments() {
        let script = Script::new().keep_alive_comments(true).cut_after(2);
        let p = plan(events(5), &script);
        assert_eq!(p.ending, Ending::Cut);
        assert_eq!(joined(&p), b"data: 0\n\n: keep-alive\n\ndata: 1\n\n");
    }

    #[test]
    fn cadence_is_between_data_events() {
        let ms = Duration::from_millis;
        let script = Script::new()
            .ttft(ms(100))
            .cadence(ms(10))
            .keep_alive_comments(true);
        let p = plan(events(3), &script);
        let delays: Vec<Duration> = p.writes.iter().map(|(d, _)| *d).collect();
        assert_eq!(delays, [ms(100), ms(10), ms(0), ms(10), ms(0)]);

        let script = Script::new().cadence(ms(10)).split(Split::EveryBytes(1000));
        let p = plan(events(3), &script);
        assert_eq!(p.writes.len(), 1);
        assert_eq!(p.writes[0].0, ms(0));
    }

    #[test]
    fn awkward_cuts_inside_utf8_and_between_newlines() {
        let e = "data: {\"c\":\"é\"}\n\n".as_bytes();
        let cuts = awkward_cuts(e);
        let lead = e.iter().position(|&b| b >= 0xC0).unwrap_or(0);
        assert_eq!(cuts, [1, lead + 1, e.len() - 1]);
        assert!(std::str::from_utf8(&e[..lead + 1]).is_err());
    }
}
