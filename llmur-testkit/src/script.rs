//! Typed, builder-style description of how the mock answers a request.

use std::time::Duration;

use bytes::Bytes;
use rand::Rng;

/// Default assistant content produced by [`Script::new`].
pub(crate) const DEFAULT_CONTENT: &str = "Hello from the mock";
/// Default number of streamed content chunks.
pub(crate) const DEFAULT_CHUNKS: usize = 5;

/// Delay applied before the response head is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Latency {
    /// Answer immediately.
    #[default]
    None,
    /// Always wait exactly this long.
    Fixed(Duration),
    /// Wait a uniformly random time in `base ± jitter` (never below zero).
    Jitter {
        /// Centre of the distribution.
        base: Duration,
        /// Maximum deviation from `base` in either direction.
        jitter: Duration,
    },
}

impl Latency {
    /// Picks the concrete delay for one request.
    pub(crate) fn sample(self) -> Duration {
        match self {
            Self::None => Duration::ZERO,
            Self::Fixed(d) => d,
            Self::Jitter { base, jitter } => {
                if jitter.is_zero() {
                    return base;
                }
                let lo = base.saturating_sub(jitter);
                let hi = base.saturating_add(jitter);
                let lo_ns = u64::try_from(lo.as_nanos()).unwrap_or(u64::MAX);
                let hi_ns = u64::try_from(hi.as_nanos()).unwrap_or(u64::MAX);
                Duration::from_nanos(rand::rng().random_range(lo_ns..=hi_ns))
            }
        }
    }
}

/// How the bytes of a streamed body are cut into individual writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Split {
    /// One write per SSE event.
    #[default]
    Events,
    /// The whole stream written in pieces of this many bytes, regardless of event, line or
    /// UTF-8 boundaries (`0` is treated as `1`).
    EveryBytes(usize),
    /// Every event is cut after its first byte (mid-line), inside its first multi-byte UTF-8
    /// character if it has one, and between the two newlines that terminate it.
    /// Deterministic.
    Awkward,
}

/// What goes wrong in a stream after a number of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Abort the body with an error after this many data events.
    Cut(usize),
    /// Never write anything again after this many data events.
    Stall(usize),
}

/// Typed, builder-style scripting of the mock's behaviour for a request.
///
/// There are no magic model names: what a request gets is decided only by the script that is
/// active on the server (see [`crate::MockServer::set_script`] and
/// [`crate::MockServer::push_script`]).
///
/// `Script::default()` is the same as [`Script::new`].
#[derive(Debug, Clone)]
pub struct Script {
    pub(crate) latency: Latency,
    pub(crate) ttft: Duration,
    pub(crate) chunks: usize,
    pub(crate) cadence: Duration,
    pub(crate) content: String,
    pub(crate) usage: Option<(u64, u64)>,
    pub(crate) error: Option<(u16, serde_json::Value)>,
    pub(crate) retry_after: Option<u64>,
    pub(crate) fault: Option<Fault>,
    pub(crate) split: Split,
    pub(crate) replay: Option<Bytes>,
    pub(crate) keep_alive_comments: bool,
}

impl Default for Script {
    fn default() -> Self {
        Self::new()
    }
}

impl Script {
    /// A successful reply with no latency, 5 stream chunks and the content
    /// `"Hello from the mock"`.
    pub fn new() -> Self {
        Self {
            latency: Latency::None,
            ttft: Duration::ZERO,
            chunks: DEFAULT_CHUNKS,
            cadence: Duration::ZERO,
            content: DEFAULT_CONTENT.to_owned(),
            usage: None,
            error: None,
            retry_after: None,
            fault: None,
            split: Split::Events,
            replay: None,
            keep_alive_comments: false,
        }
    }

    /// Delay before the response head (applies to every kind of reply, errors included).
    #[must_use]
    pub fn latency(mut self, l: Latency) -> Self {
        self.latency = l;
        self
    }

    /// Streaming: delay after the response head before the first byte of the body.
    #[must_use]
    pub fn ttft(mut self, d: Duration) -> Self {
        self.ttft = d;
        self
    }

    /// Streaming: number of content chunks (per choice).
    #[must_use]
    pub fn chunks(mut self, n: usize) -> Self {
        self.chunks = n;
        self
    }

    /// Streaming: delay between consecutive SSE data events.
    #[must_use]
    pub fn cadence(mut self, d: Duration) -> Self {
        self.cadence = d;
        self
    }

    /// Assistant content.
    ///
    /// Non-streaming replies carry it verbatim. Streams split it over the content chunks:
    /// by words when there are at least as many words as chunks, otherwise words are cut
    /// further (so the chunks still concatenate to exactly this text); only when there are
    /// more chunks than characters is the text repeated.
    #[must_use]
    pub fn content(mut self, text: impl Into<String>) -> Self {
        self.content = text.into();
        self
    }

    /// Reported usage. Default: prompt tokens = request body bytes / 4 (at least 1),
    /// completion tokens = number of content chunks times the number of choices.
    #[must_use]
    pub fn usage(mut self, prompt_tokens: u64, completion_tokens: u64) -> Self {
        self.usage = Some((prompt_tokens, completion_tokens));
        self
    }

    /// Reply with this status and exactly this JSON body (use the provider's shape).
    /// A status that is not a valid HTTP status code is replaced by 500.
    #[must_use]
    pub fn error(mut self, status: u16, body: serde_json::Value) -> Self {
        self.error = Some((status, body));
        self
    }

    /// Adds a `retry-after: SECS` header to scripted [`Script::error`] replies.
    #[must_use]
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Streaming: after `n_events` SSE data events, abort the body abruptly (no `[DONE]`,
    /// the chunked encoding is never terminated so the client sees an incomplete body).
    /// Keep-alive comments do not count. If the stream has fewer events, the abort happens
    /// after the last one. Replaces any earlier [`Script::stall_after`].
    #[must_use]
    pub fn cut_after(mut self, n_events: usize) -> Self {
        self.fault = Some(Fault::Cut(n_events));
        self
    }

    /// Streaming: after `n_events` SSE data events, hang forever (until the client goes away).
    /// Keep-alive comments do not count. If the stream has fewer events, the hang happens
    /// after the last one. Replaces any earlier [`Script::cut_after`].
    #[must_use]
    pub fn stall_after(mut self, n_events: usize) -> Self {
        self.fault = Some(Fault::Stall(n_events));
        self
    }

    /// Streaming: how the body bytes are cut into writes.
    #[must_use]
    pub fn split(mut self, s: Split) -> Self {
        self.split = s;
        self
    }

    /// Streaming: write exactly these bytes as the body (events are the `\n\n`-terminated
    /// blocks; split, ttft, cadence, cut, stall and keep-alive comments still apply).
    /// Ignored for non-streaming requests.
    #[must_use]
    pub fn replay(mut self, sse: Bytes) -> Self {
        self.replay = Some(sse);
        self
    }

    /// Streaming: interleave `: keep-alive\n\n` comment events between data events.
    #[must_use]
    pub fn keep_alive_comments(mut self, yes: bool) -> Self {
        self.keep_alive_comments = yes;
        self
    }
}

/// Splits `content` into exactly `chunks` pieces (see [`Script::content`]).
pub(crate) fn content_pieces(content: &str, chunks: usize) -> Vec<String> {
    if chunks == 0 {
        return Vec::new();
    }
    let words = split_words(content);
    if words.is_empty() {
        return vec![String::new(); chunks];
    }
    if chunks <= words.len() {
        let base = words.len() / chunks;
        let extra = words.len() % chunks;
        let mut out = Vec::with_capacity(chunks);
        let mut it = words.into_iter();
        for i in 0..chunks {
            let take = base + usize::from(i < extra);
            out.push(it.by_ref().take(take).collect::<String>());
        }
        return out;
    }
    let chars: Vec<char> = content.chars().collect();
    if chunks <= chars.len() {
        let mut pieces = words;
        while pieces.len() < chunks {
            let (idx, _) = pieces.iter().enumerate().fold((0, 0), |(bi, bn), (i, p)| {
                let n = p.chars().count();
                if n > bn { (i, n) } else { (bi, bn) }
            });
            let piece = pieces.remove(idx);
            let half = piece.chars().count() / 2;
            let cut = piece
                .char_indices()
                .nth(half)
                .map_or(piece.len(), |(b, _)| b);
            let (a, b) = piece.split_at(cut);
            pieces.insert(idx, b.to_owned());
            pieces.insert(idx, a.to_owned());
        }
        return pieces;
    }
    (0..chunks)
        .map(|i| {
            chars
                .get(i % chars.len())
                .map(char::to_string)
                .unwrap_or_default()
        })
        .collect()
}

/// Cuts text into words, each carrying the whitespace that precedes it.
fn split_words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut prev_ws = false;
    let mut seen_word = false;
    for (i, c) in text.char_indices() {
        let ws = c.is_whitespace();
        if ws && !prev_ws && seen_word {
            out.push(text[start..i].to_owned());
            start = i;
        }
        if !ws {
            seen_word = true;
        }
        prev_ws = ws;
    }
    if start < text.len() {
        let rest = &text[start..];
        match out.last_mut() {
            Some(last) if rest.trim().is_empty() => last.push_str(rest),
            _ => out.push(rest.to_owned()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_leading_space() {
        assert_eq!(
            split_words("Hello from the mock"),
            ["Hello", " from", " the", " mock"]
        );
        assert_eq!(split_words("  a b "), ["  a", " b "]);
    }

    #[test]
    fn pieces_concatenate_to_content() {
        for n in 1..=19 {
            let p = content_pieces(DEFAULT_CONTENT, n);
            assert_eq!(p.len(), n);
            assert_eq!(p.concat(), DEFAULT_CONTENT, "n = {n}");
        }
        assert_eq!(content_pieces("ab", 4), ["a", "b", "a", "b"]);
        assert_eq!(content_pieces("", 2), ["", ""]);
        assert!(content_pieces("x", 0).is_empty());
        assert_eq!(content_pieces("héllo wörld", 11).concat(), "héllo wörld");
    }

    #[test]
    fn jitter_stays_in_range() {
        let l = Latency::Jitter {
            base: Duration::from_millis(10),
            jitter: Duration::from_millis(20),
        };
        for _ in 0..100 {
            assert!(l.sample() <= Duration::from_millis(30));
        }
    }
}
