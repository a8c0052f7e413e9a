//! Parsing a `/v1` request body once, and writing it back for the upstream.
//!
//! Owns: [`RequestBody`], which keeps the body's bytes and where each top-level field's
//! raw JSON text lies in them, in their original order, reads the few fields the proxy
//! needs (`model`, `stream`, `stream_options`, token limits) and re-emits the body with
//! only `model` and `stream_options` changed. Nested values are never re-serialized, so
//! tools, `response_format`, `logprobs` and fields OpenAI adds tomorrow pass through byte
//! for byte. When nothing needs changing (the upstream model is the requested one, and
//! usage is not to be forced or already asked for), the body goes upstream as received,
//! without a copy.
//! Must not touch: routing or HTTP.

use std::fmt;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::{Error, ErrorKind};

/// A parsed `/v1/chat/completions` or `/v1/embeddings` body.
#[derive(Debug)]
pub struct RequestBody {
    /// The body as received.
    bytes: Bytes,
    /// Each top-level field: its name and where its value's raw JSON lies in `bytes`.
    fields: Vec<(String, Range<usize>)>,
    model: String,
    stream: bool,
    include_usage: Option<bool>,
    max_tokens: Option<u64>,
    /// `model` and `stream_options` each appear at most once (so the body as received
    /// says exactly what `model` and `include_usage` say).
    unambiguous: bool,
}

impl RequestBody {
    /// Parses a JSON object body. Fails with a 400 on malformed JSON, a non-object body,
    /// or a missing or non-string `model`.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        Self::from_bytes(Bytes::copy_from_slice(bytes))
    }

    /// [`parse`](Self::parse), keeping `bytes` rather than copying them.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, Error> {
        let fields = parse_fields(&bytes)?;
        let mut model = None;
        let mut stream = false;
        let mut include_usage = None;
        let mut max_tokens = None;
        let (mut models, mut options) = (0u32, 0u32);
        for (name, range) in &fields {
            let raw = &bytes[range.clone()];
            match name.as_str() {
                "model" => {
                    models += 1;
                    model = Some(serde_json::from_slice::<String>(raw).map_err(|_| {
                        bad_field("model", "`model` must be a string naming a deployment")
                    })?);
                }
                "stream" => {
                    stream = serde_json::from_slice::<Option<bool>>(raw)
                        .map_err(|_| bad_field("stream", "`stream` must be a boolean"))?
                        .unwrap_or(false);
                }
                "stream_options" => {
                    options += 1;
                    let opts: Option<StreamOptions> =
                        serde_json::from_slice(raw).map_err(|_| {
                            bad_field("stream_options", "`stream_options` must be an object")
                        })?;
                    include_usage = opts.and_then(|o| o.include_usage);
                }
                "max_tokens" | "max_completion_tokens" => {
                    max_tokens = serde_json::from_slice::<Option<u64>>(raw).map_err(|_| {
                        bad_field("max_tokens", "token limits must be non-negative integers")
                    })?;
                }
                _ => {}
            }
        }
        let model = model.ok_or_else(|| {
            bad_field("model", "you must provide a model parameter").with_code("missing_model")
        })?;
        Ok(Self {
            bytes,
            fields,
            model,
            stream,
            include_usage,
            max_tokens,
            unambiguous: models == 1 && options <= 1,
        })
    }

    /// The requested model, i.e. the deployment name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Whether the client asked for a stream.
    pub fn stream(&self) -> bool {
        self.stream
    }

    /// `stream_options.include_usage` as the client sent it (`None` when absent).
    pub fn include_usage(&self) -> Option<bool> {
        self.include_usage
    }

    /// `max_completion_tokens` or `max_tokens`, whichever came last.
    pub fn max_tokens(&self) -> Option<u64> {
        self.max_tokens
    }

    /// Whether the client wants to see the usage chunk of a stream.
    pub fn client_wants_usage(&self) -> bool {
        self.include_usage == Some(true)
    }

    /// Whether the upstream should be asked for usage on a stream: always, so tokens are
    /// counted exactly whatever the client asked; the usage chunk reaches the client only
    /// when it asked for it ([`client_wants_usage`](Self::client_wants_usage)).
    pub fn force_usage(&self) -> bool {
        self.stream
    }

    /// A rough count of prompt tokens (about four bytes a token), used only when the
    /// upstream never reports usage.
    pub fn estimated_prompt_tokens(&self) -> u64 {
        let bytes: usize = self
            .fields
            .iter()
            .filter(|(k, _)| matches!(k.as_str(), "messages" | "input" | "prompt" | "tools"))
            .map(|(_, v)| v.len())
            .sum();
        (bytes as u64).div_ceil(4)
    }

    /// The body for the upstream: `model` replaced by `upstream_model` and, when
    /// `force_usage` is set, `stream_options.include_usage` set to `true`. Every other
    /// field is written back exactly as received. When neither changes anything, this is
    /// the body as received (without a copy).
    pub fn encode(&self, upstream_model: &str, force_usage: bool) -> Bytes {
        let usage_as_asked = !force_usage || self.include_usage == Some(true);
        if self.unambiguous && usage_as_asked && self.model == upstream_model {
            return self.bytes.clone();
        }
        let size: usize = self.fields.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
        let mut out = BytesMut::with_capacity(size + upstream_model.len() + 48);
        out.put_u8(b'{');
        let mut first = true;
        let mut wrote_options = false;
        for (name, range) in &self.fields {
            let raw = &self.bytes[range.clone()];
            if !first {
                out.put_u8(b',');
            }
            first = false;
            put_json_str(&mut out, name);
            out.put_u8(b':');
            match name.as_str() {
                "model" => put_json_str(&mut out, upstream_model),
                "stream_options" if force_usage => {
                    put_stream_options(&mut out, raw);
                    wrote_options = true;
                }
                _ => out.put_slice(raw),
            }
        }
        if force_usage && !wrote_options {
            if !first {
                out.put_u8(b',');
            }
            out.put_slice(br#""stream_options":{"include_usage":true}"#);
        }
        out.put_u8(b'}');
        out.freeze()
    }
}

#[derive(serde::Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

fn bad_field(param: &'static str, message: &'static str) -> Error {
    Error::new(ErrorKind::BadRequest, message).with_param(param)
}

/// Writes `stream_options` with `include_usage: true`, keeping its other members.
fn put_stream_options(out: &mut BytesMut, raw: &[u8]) {
    let mut map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(raw).unwrap_or_default();
    map.insert("include_usage".to_owned(), serde_json::Value::Bool(true));
    let value = serde_json::Value::Object(map).to_string();
    out.put_slice(value.as_bytes());
}

fn put_json_str(out: &mut BytesMut, s: &str) {
    // Serializing a &str into a Vec cannot fail.
    let mut writer = out.writer();
    let _ = serde_json::to_writer(&mut writer, s);
}

fn parse_fields(bytes: &[u8]) -> Result<Vec<(String, Range<usize>)>, Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let base = bytes.as_ptr() as usize;
    let fields = de
        .deserialize_map(FieldsVisitor { base })
        .and_then(|fields| de.end().map(|()| fields))
        .map_err(|e| {
            let message = if e.is_data() && e.line() == 1 && e.column() <= 1 {
                "the request body must be a JSON object".to_owned()
            } else {
                format!("we could not parse the JSON body of your request: {e}")
            };
            Error::new(ErrorKind::BadRequest, message)
        })?;
    Ok(fields)
}

/// Collects each top-level field's name and where its raw value lies in the body, whose
/// first byte is at address `base` (a borrowed `RawValue` points into the body).
struct FieldsVisitor {
    base: usize,
}

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Vec<(String, Range<usize>)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(key) = map.next_key::<String>()? {
            let value: &'de RawValue = map.next_value()?;
            let start = (value.get().as_ptr() as usize)
                .checked_sub(self.base)
                .ok_or_else(|| serde::de::Error::custom("a value outside the body"))?;
            fields.push((key, start..start + value.get().len()));
        }
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(b: &Bytes) -> serde_json::Value {
        serde_json::from_slice(b).unwrap_or_default()
    }

    #[test]
    fn keeps_unknown_fields_and_order_verbatim() {
        let src = br#"{"model":"dep","messages":[{"role":"user","content":"h\u00e9"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"b":1,"a":2}}}],"new_thing":{"x":1.50}}"#;
        let body = RequestBody::parse(src)
            .ok()
            .unwrap_or_else(|| unreachable!());
        let out = body.encode("gpt-4o", false);
        let expected = String::from_utf8_lossy(src).replace("\"dep\"", "\"gpt-4o\"");
        assert_eq!(String::from_utf8_lossy(&out), expected);
    }

    #[test]
    fn a_body_that_needs_no_change_goes_upstream_as_received() {
        let src = Bytes::from_static(
            b"{ \"model\" : \"gpt-4o\",\n  \"messages\":[{\"role\":\"user\",\"content\":\"hi\"}] }",
        );
        let body = RequestBody::from_bytes(src.clone()).unwrap_or_else(|e| panic!("{e}"));
        let out = body.encode("gpt-4o", false);
        assert_eq!(out, src);
        assert_eq!(out.as_ptr(), src.as_ptr(), "not copied");
        // Another upstream model: rewritten, everything else kept.
        let out = body.encode("gpt-4o-2024-08-06", false);
        assert_eq!(json(&out)["model"], "gpt-4o-2024-08-06");
        assert_eq!(json(&out)["messages"], json(&src)["messages"]);
        // A stream that asked for usage needs no change either; one that did not does.
        let asked = Bytes::from_static(
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#,
        );
        let body = RequestBody::from_bytes(asked.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            body.encode("m", body.force_usage()).as_ptr(),
            asked.as_ptr()
        );
        let body =
            RequestBody::parse(br#"{"model":"m","stream":true}"#).unwrap_or_else(|e| panic!("{e}"));
        let out = body.encode("m", body.force_usage());
        assert_eq!(json(&out)["stream_options"]["include_usage"], true);
    }

    #[test]
    fn a_repeated_model_or_stream_options_is_always_rewritten() {
        // An upstream might read the first of two `model`s; llmur routed by the last.
        let body = RequestBody::parse(br#"{"model":"other","model":"m"}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body.model(), "m");
        assert_eq!(
            String::from_utf8_lossy(&body.encode("m", false)),
            r#"{"model":"m","model":"m"}"#
        );
        let body = RequestBody::parse(
            br#"{"model":"m","stream":true,"stream_options":{},"stream_options":{"include_usage":true}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            String::from_utf8_lossy(&body.encode("m", body.force_usage())),
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"stream_options":{"include_usage":true}}"#
        );
    }

    #[test]
    fn forces_usage_on_streams_even_when_the_client_said_false() {
        let b = RequestBody::parse(br#"{"model":"d","stream":true}"#).ok();
        let b = b.unwrap_or_else(|| unreachable!());
        assert!(b.force_usage() && !b.client_wants_usage());
        assert_eq!(
            json(&b.encode("m", true))["stream_options"]["include_usage"],
            true
        );

        let b = RequestBody::parse(
            br#"{"model":"d","stream":true,"stream_options":{"include_usage":false,"x":1}}"#,
        )
        .ok()
        .unwrap_or_else(|| unreachable!());
        assert!(b.force_usage() && !b.client_wants_usage());
        let v = json(&b.encode("m", b.force_usage()));
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["stream_options"]["x"], 1);

        let b = RequestBody::parse(br#"{"model":"d","stream":true,"stream_options":{"x":1}}"#)
            .ok()
            .unwrap_or_else(|| unreachable!());
        let v = json(&b.encode("m", b.force_usage()));
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["stream_options"]["x"], 1);
    }

    #[test]
    fn rejects_bad_bodies_with_400() {
        for bad in [
            &b"{"[..],
            b"[]",
            b"nope",
            b"{\"messages\":[]}",
            b"{\"model\":1}",
            b"{\"model\":\"a\",\"stream\":\"yes\"}",
            b"{\"model\":\"a\"} trailing",
        ] {
            let err = RequestBody::parse(bad).err();
            assert_eq!(err.map(|e| e.status().as_u16()), Some(400), "{bad:?}");
        }
    }
}
