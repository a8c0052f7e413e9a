//! Incremental server-sent-events framing, byte-exact.
//!
//! Owns: [`SseScanner`], which cuts a byte stream into complete events at any split of the
//! input (inside a line, inside a UTF-8 character), and small helpers that look into an
//! event's `data` without parsing the JSON ([`QuotedKey`] keeps a key's searcher for the
//! keys a codec looks for in every event). An event is handed out as the exact bytes the
//! upstream wrote, terminator included, so unchanged events are forwarded unchanged.
//! Must not touch: what an event means (that is the provider codec's job).

use bytes::{Bytes, BytesMut};
use memchr::memchr_iter;

/// Cuts a stream of byte chunks into complete SSE events.
#[derive(Debug, Default)]
pub struct SseScanner {
    buf: BytesMut,
    /// How far `buf` has been searched for a terminator already.
    scanned: usize,
}

impl SseScanner {
    /// An empty scanner.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a chunk as received from the upstream.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Whether bytes of an incomplete event are buffered.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The next complete event (its raw bytes, terminator included), if one is buffered.
    pub fn next_event(&mut self) -> Option<Bytes> {
        let start = self.scanned.saturating_sub(2);
        let found = memchr_iter(b'\n', &self.buf[start..])
            .map(|i| i + start)
            .find_map(|i| match self.buf.get(i + 1) {
                Some(b'\n') => Some(i + 2),
                Some(b'\r') if self.buf.get(i + 2) == Some(&b'\n') => Some(i + 3),
                _ => None,
            });
        match found {
            Some(end) => {
                self.scanned = 0;
                Some(self.buf.split_to(end).freeze())
            }
            None => {
                self.scanned = self.buf.len();
                None
            }
        }
    }

    /// Whatever is left when the stream ends without a final blank line.
    pub fn take_rest(&mut self) -> Option<Bytes> {
        self.scanned = 0;
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }
}

/// The `data` payload of one event: its `data:` lines joined by `\n`, or `None` for an
/// event without data (a comment such as `: keep-alive`).
pub fn event_data(event: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    let mut lines = lines(event)
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter_map(|l| l.strip_prefix(b"data:"))
        .map(|l| l.strip_prefix(b" ").unwrap_or(l));
    let first = lines.next()?;
    match lines.next() {
        None => Some(std::borrow::Cow::Borrowed(first)),
        Some(second) => {
            let mut joined = first.to_vec();
            joined.push(b'\n');
            joined.extend_from_slice(second);
            for l in lines {
                joined.push(b'\n');
                joined.extend_from_slice(l);
            }
            Some(std::borrow::Cow::Owned(joined))
        }
    }
}

/// Finds the string value of the first `"key":"..."` in JSON text (whitespace allowed
/// around the colon) and returns the byte range of the value *between* the quotes.
/// Only structural keys can match: inside a JSON string every quote is escaped.
pub fn find_str_value(json: &[u8], key: &str) -> Option<std::ops::Range<usize>> {
    QuotedKey::new(key).str_value(json)
}

/// Whether JSON text has a non-null object value for `"key"` (e.g. a `usage` object).
pub fn has_object_value(json: &[u8], key: &str) -> bool {
    QuotedKey::new(key).has_object_value(json)
}

/// A key to look for in JSON text as `"key"`, its searcher built once: the stream relay
/// looks for the same few keys in every event, and building a `memmem::Finder` per key per
/// event cost more than the search. Keep one in a `static` (a `LazyLock`).
#[derive(Debug)]
pub struct QuotedKey {
    finder: memchr::memmem::Finder<'static>,
}

impl QuotedKey {
    /// A searcher for `"key"` (the quotes added here).
    pub fn new(key: &str) -> Self {
        let needle = format!("\"{key}\"").into_bytes();
        Self {
            finder: memchr::memmem::FinderBuilder::new()
                .build_forward_with_ranker_owned(JsonRank, needle),
        }
    }

    /// Where each `"key"` ends in `json` (the index after its closing quote).
    fn ends<'a>(&'a self, json: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
        let len = self.finder.needle().len();
        self.finder.find_iter(json).map(move |at| at + len)
    }

    /// See [`find_str_value`].
    pub fn str_value(&self, json: &[u8]) -> Option<std::ops::Range<usize>> {
        for after in self.ends(json) {
            let i = skip_whitespace(json, after);
            if json.get(i) != Some(&b':') {
                continue;
            }
            let i = skip_whitespace(json, i + 1);
            if json.get(i) != Some(&b'"') {
                return None;
            }
            let start = i + 1;
            return string_end(json, start).map(|end| start..end);
        }
        None
    }

    /// See [`has_object_value`].
    pub fn has_object_value(&self, json: &[u8]) -> bool {
        self.ends(json).any(|after| {
            json[after..]
                .iter()
                .filter(|b| !b.is_ascii_whitespace())
                .take(2)
                .eq(b":{".iter())
        })
    }
}

/// How common a byte is in JSON text, for the searcher to pick the needle's two rarest
/// bytes to look for first. memchr's default table is for text at large, where a quote is
/// rare: it picked the quotes at both ends of `"usage"`, and in JSON nearly every quote
/// pair that far apart was a candidate to check (about 350 instructions a search on an
/// event of 240 bytes).
#[derive(Debug, Clone, Copy)]
struct JsonRank;

impl memchr::arch::all::packedpair::HeuristicFrequencyRank for JsonRank {
    fn rank(&self, byte: u8) -> u8 {
        match byte {
            b'"' | b':' | b',' | b'{' | b'}' | b'[' | b']' | b' ' => 255,
            b'e' | b't' | b'a' | b'o' | b'i' | b'n' | b's' | b'r' => 250,
            b'0'..=b'9' => 245,
            b'h' | b'l' | b'd' | b'c' | b'u' | b'm' => 240,
            b'f' | b'p' | b'g' | b'w' | b'y' | b'b' | b'_' | b'-' => 225,
            b'a'..=b'z' => 200,
            b'A'..=b'Z' => 150,
            _ => 100,
        }
    }
}

/// Where the value of the top-level member `key` of a JSON object starts (after its colon
/// and any whitespace), found in one pass over the text without parsing or validating it:
/// strings are skipped whole (so a key inside a string is never found) and members of
/// nested objects are not top-level. Keys are compared as written, so one spelled with
/// escapes is not found. `None` when the text is not an object or has no such member.
pub fn top_level_member(json: &[u8], key: &str) -> Option<usize> {
    let key = key.as_bytes();
    let mut i = json.iter().position(|b| !b.is_ascii_whitespace())?;
    if json[i] != b'{' {
        return None;
    }
    i += 1;
    let mut depth = 1usize;
    let mut expect_key = true;
    while let Some(&b) = json.get(i) {
        match b {
            b'"' => {
                let start = i + 1;
                let end = string_end(json, start)?;
                i = end + 1;
                if depth == 1 && expect_key {
                    expect_key = false;
                    if &json[start..end] == key {
                        let mut j = skip_whitespace(json, i);
                        if json.get(j) != Some(&b':') {
                            return None;
                        }
                        j = skip_whitespace(json, j + 1);
                        return (j < json.len()).then_some(j);
                    }
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return None;
                }
            }
            b',' if depth == 1 => expect_key = true,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The lines of `event` split at every `\n` (as `split` would, a trailing empty one
/// included), found with `memchr` rather than byte by byte: this runs for every event of
/// every stream.
fn lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(event);
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr::memchr(b'\n', r) {
            Some(i) => {
                rest = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// The index of the quote that ends the JSON string whose text starts at `from`.
fn string_end(json: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let at = from + memchr::memchr2(b'"', b'\\', json.get(from..)?)?;
        if json[at] == b'"' {
            return Some(at);
        }
        from = at + 2;
    }
}

fn skip_whitespace(json: &[u8], mut i: usize) -> usize {
    while json.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_member_finds_only_the_objects_own_keys() {
        fn at(json: &str) -> Option<&str> {
            top_level_member(json.as_bytes(), "usage").map(|i| &json[i..])
        }
        assert_eq!(
            at(r#"{"id":"x","usage":{"prompt_tokens":1}}"#),
            Some(r#"{"prompt_tokens":1}}"#)
        );
        assert_eq!(at(" {\n \"usage\" :\t null }"), Some("null }"));
        // Nested members, keys inside strings, escaped quotes: not top-level keys.
        let tricky = r#"{"choices":[{"usage":1,"message":{"content":"\"usage\": 2, \\"}}],"note":"usage","usage":3}"#;
        assert_eq!(at(tricky), Some("3}"));
        assert_eq!(at(r#"{"a":{"usage":1},"b":[{"usage":2}]}"#), None);
        assert_eq!(at(r#"{"a":"usage","b":"\"usage\":1"}"#), None);
        // Values that look like keys are not keys.
        assert_eq!(at(r#"{"a":"usage"}"#), None);
        // Not an object, cut short, empty.
        assert_eq!(at(r#"["usage",1]"#), None);
        assert_eq!(at(r#"{"usage""#), None);
        assert_eq!(at(r#"{"usage":"#), None);
        assert_eq!(at(r#"{"a":"unterminated"#), None);
        assert_eq!(at(""), None);
        assert_eq!(at("}"), None);
    }

    fn events_of(pieces: &[&[u8]]) -> Vec<Bytes> {
        let mut s = SseScanner::new();
        let mut out = Vec::new();
        for p in pieces {
            s.push(p);
            while let Some(e) = s.next_event() {
                out.push(e);
            }
        }
        out.extend(s.take_rest());
        out
    }

    #[test]
    fn survives_every_split_point() {
        let stream = "data: {\"a\":\"h\u{e9}llo \u{1F600}\"}\n\n: keep-alive\n\ndata: x\r\n\r\ndata: [DONE]\n\n";
        let bytes = stream.as_bytes();
        let whole = events_of(&[bytes]);
        assert_eq!(whole.len(), 4);
        for cut in 0..bytes.len() {
            assert_eq!(
                events_of(&[&bytes[..cut], &bytes[cut..]]),
                whole,
                "cut at {cut}"
            );
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(events_of(&singles), whole);
        let joined: Vec<u8> = whole.iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(joined, bytes);
    }

    #[test]
    fn quoted_keys_find_what_a_plain_search_finds_in_quote_dense_json() {
        let event = br#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":"fp","choices":[{"index":0,"delta":{"content":"\"usage\": \"model\""},"logprobs":null,"finish_reason":null}],"usage":{"prompt_tokens":1}}"#;
        for key in [
            "usage",
            "model",
            "content",
            "refusal",
            "arguments",
            "id",
            "\"",
            "u",
        ] {
            let needle = format!("\"{key}\"");
            let plain: Vec<usize> = (0..event.len())
                .filter(|&i| event[i..].starts_with(needle.as_bytes()))
                .map(|i| i + needle.len())
                .collect();
            let found: Vec<usize> = QuotedKey::new(key).ends(event).collect();
            assert_eq!(found, plain, "{key}");
        }
    }

    #[test]
    fn quoted_keys_end_after_their_closing_quote() {
        let texts: [&[u8]; 7] = [
            br#"{"id":"x","model":"m","choices":[{"delta":{"content":"model"}}],"model":"n"}"#,
            br#"{"a":"\"model\":\"no\"","model" : "gpt-4o","model""model"}"#,
            br#""model""#,
            br#"model""model"#,
            br#"{"models":"x","mode":"y","Model":"z"}"#,
            b"",
            br#"""""""#,
        ];
        for text in texts {
            for key in ["model", "content", "", "x"] {
                let needle = format!("\"{key}\"");
                let reference: Vec<usize> = memchr::memmem::find_iter(text, needle.as_bytes())
                    .map(|at| at + needle.len())
                    .collect();
                let found: Vec<usize> = QuotedKey::new(key).ends(text).collect();
                assert_eq!(
                    found,
                    reference,
                    "{key:?} in {:?}",
                    String::from_utf8_lossy(text)
                );
            }
        }
        for e in [&b"a\nb\n\n"[..], b"", b"\n", b"data: x", b"\n\nx"] {
            let split: Vec<&[u8]> = e.split(|b| *b == b'\n').collect();
            assert_eq!(lines(e).collect::<Vec<_>>(), split);
        }
    }

    #[test]
    fn data_and_values() {
        assert_eq!(event_data(b": keep-alive\n\n"), None);
        assert_eq!(
            event_data(b"data: [DONE]\n\n").as_deref(),
            Some(&b"[DONE]"[..])
        );
        assert_eq!(
            event_data(b"data:a\ndata: b\n\n").as_deref(),
            Some(&b"a\nb"[..])
        );
        let j = br#"{"id":"x","content":"\"model\":\"no\"","model" : "gpt-4o"}"#;
        let r = find_str_value(j, "model");
        assert_eq!(r.map(|r| &j[r]), Some(&b"gpt-4o"[..]));
        assert!(has_object_value(br#"{"usage": {"a":1}}"#, "usage"));
        assert!(!has_object_value(br#"{"usage":null}"#, "usage"));
    }
}
