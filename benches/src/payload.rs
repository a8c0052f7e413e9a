//! Request bodies: OpenAI chat completions of a chosen size, unique per request.
//!
//! Owns: the body sizes and their layout. Must not touch: sending.

use std::fmt;

use bytes::Bytes;
use clap::ValueEnum;
use serde::Serialize;

/// The deployment (and upstream model) every body names.
pub const MODEL: &str = "gpt-4o-mini";

/// A request body size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
pub enum Payload {
    /// About 200 bytes.
    #[value(name = "200b")]
    #[serde(rename = "200B")]
    Small,
    /// About 4 KB.
    #[value(name = "4kb")]
    #[serde(rename = "4KB")]
    Medium,
    /// About 50 KB.
    #[value(name = "50kb")]
    #[serde(rename = "50KB")]
    Large,
}

impl Payload {
    /// Every size, smallest first.
    pub const ALL: [Payload; 3] = [Payload::Small, Payload::Medium, Payload::Large];

    /// The body size aimed at, in bytes.
    pub fn target_bytes(self) -> usize {
        match self {
            Payload::Small => 200,
            Payload::Medium => 4 * 1024,
            Payload::Large => 50 * 1024,
        }
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Payload::Small => "200B",
            Payload::Medium => "4KB",
            Payload::Large => "50KB",
        })
    }
}

/// Makes bodies of one size; every body starts its message with its own number, so no two
/// are alike and nothing along the way can cache one.
#[derive(Debug, Clone)]
pub struct BodyGen {
    head: String,
    filler: String,
}

impl BodyGen {
    /// Bodies of `payload`'s size, streaming (`"stream": true`) or not.
    pub fn new(payload: Payload, stream: bool) -> BodyGen {
        let stream = if stream { r#""stream":true,"# } else { "" };
        let head = format!(
            r##"{{"model":"{MODEL}",{stream}"max_tokens":64,"messages":[{{"role":"user","content":"#"##
        );
        // head, then the number ("NNNNNNNNNN "), the filler and the closing `"}]}`.
        let fixed = head.len() + 11 + 4;
        let words = "the quick brown fox jumps over the lazy dog ";
        let len = payload.target_bytes().saturating_sub(fixed).max(1);
        let filler: String = words.chars().cycle().take(len).collect();
        BodyGen { head, filler }
    }

    /// Body number `n`.
    pub fn body(&self, n: u64) -> Bytes {
        let mut out = String::with_capacity(self.head.len() + self.filler.len() + 16);
        out.push_str(&self.head);
        out.push_str(&format!("{n:010} "));
        out.push_str(&self.filler);
        out.push_str(r#""}]}"#);
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_size_and_are_unique_json() {
        for payload in Payload::ALL {
            let generator = BodyGen::new(payload, true);
            let a = generator.body(1);
            let b = generator.body(2);
            assert_ne!(a, b);
            let size = a.len() as f64 / payload.target_bytes() as f64;
            assert!((0.95..1.05).contains(&size), "{payload}: {}", a.len());
            let v: serde_json::Value = serde_json::from_slice(&a).unwrap();
            assert_eq!(v["model"], MODEL);
            assert_eq!(v["stream"], true);
        }
    }
}
