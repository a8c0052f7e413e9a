//! Which headers cross the proxy, in each direction.
//!
//! Owns: the request-id rule and the two header filters. Credentials (`authorization`,
//! `api-key`, cookies, OpenAI organization/project headers that name the *client's*
//! account) and hop-by-hop headers never reach the upstream; hop-by-hop headers, lengths
//! and cookies of the upstream never reach the client.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The request-id header, accepted from the client or generated, always returned.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The upstream's own request id, returned under this name.
/// Milliseconds spent in llmur for the request, excluding the wait for the upstream.
pub static OVERHEAD_MS: HeaderName = HeaderName::from_static("x-llmur-overhead-ms");
/// The upstream's own request id, passed back to the client.
pub static UPSTREAM_REQUEST_ID: HeaderName = HeaderName::from_static("x-upstream-request-id");

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

const NEVER_UPSTREAM: &[&str] = &[
    "authorization",
    "api-key",
    "host",
    "content-length",
    "content-type",
    "accept-encoding",
    "cookie",
    "expect",
    "openai-organization",
    "openai-project",
    "x-request-id",
];

const NEVER_DOWNSTREAM: &[&str] = &["content-length", "content-encoding", "set-cookie"];

/// The client's request id if it is a sane one (1–128 visible ASCII characters), else a
/// new UUID.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(&REQUEST_ID)
        .filter(|v| {
            let b = v.as_bytes();
            !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(|| {
            let id = uuid::Uuid::new_v4().to_string();
            HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
        })
}

/// The client headers that may be forwarded upstream.
pub fn upstream_headers(client: &HeaderMap) -> HeaderMap {
    let listed = connection_listed(client);
    let mut out = HeaderMap::with_capacity(client.len());
    for (name, value) in client {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n)
            || NEVER_UPSTREAM.contains(&n)
            || n.starts_with("x-llmur-")
            || listed.iter().any(|l| l == n)
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// The upstream response headers that may be returned to the client.
pub fn downstream_headers(upstream: &HeaderMap) -> HeaderMap {
    let listed = connection_listed(upstream);
    // Room for what llmur adds (request id, overhead, six x-ratelimit-*) without a regrow.
    let mut out = HeaderMap::with_capacity(upstream.len() + 12);
    for (name, value) in upstream {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || NEVER_DOWNSTREAM.contains(&n) || listed.iter().any(|l| l == n)
        {
            continue;
        }
        if name == REQUEST_ID {
            out.append(UPSTREAM_REQUEST_ID.clone(), value.clone());
        } else {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Header names listed in `Connection:` (hop-by-hop by declaration).
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_hop_by_hop_stay_behind() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer sk-virtual"),
            ("api-key", "x"),
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("openai-organization", "org-client"),
            ("x-llmur-debug", "1"),
            ("user-agent", "OpenAI/Python 1.0"),
            ("x-stainless-lang", "python"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let out = upstream_headers(&h);
        let names: Vec<_> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["user-agent", "x-stainless-lang"]);
    }

    #[test]
    fn request_id_is_kept_when_sane() {
        let mut h = HeaderMap::new();
        h.insert(&REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(&REQUEST_ID, HeaderValue::from_static("has space"));
        assert_ne!(request_id(&h), "has space");
    }
}
