//! Routing, authentication and the endpoint implementations.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;

use crate::azure;
use crate::openai::{self, CompletionMeta, EmbeddingVector, Usage};
use crate::record::{RecordedRequest, query_param};
use crate::script::{Script, content_pieces};
use crate::server::{Flavor, Shared};
use crate::sse::{self, ChatStream, RespBody};

/// Largest accepted `dimensions` for embeddings.
const MAX_DIMENSIONS: u64 = 8192;
/// Largest accepted `n` for chat completions.
const MAX_CHOICES: u64 = 128;

const NO_KEY: &str = "You didn't provide an API key. You need to provide your API key in an \
Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password \
field (with blank username) if you're accessing the API from your browser and are prompted for a \
username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.";

const BAD_JSON: &str = "We could not parse the JSON body of your request. (HINT: This likely \
means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but \
what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact \
us through our help center at help.openai.com.)";

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Chat,
    Embeddings,
    Models,
}

/// An early JSON reply (wrong route, failed auth).
#[derive(Debug)]
struct Reject {
    status: StatusCode,
    body: Vec<u8>,
}

impl Reject {
    fn new(status: StatusCode, body: Vec<u8>) -> Self {
        Self { status, body }
    }

    fn into_response(self) -> Response<RespBody> {
        json_response(self.status, self.body)
    }
}

#[derive(Debug)]
struct Route {
    endpoint: Endpoint,
    /// Azure deployment name from the path, if the deployments form was used.
    deployment: Option<String>,
}

/// Entry point for every request.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<RespBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            tracing::debug!(error = %e, "failed to read request body");
            Bytes::new()
        }
    };
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    shared.record(RecordedRequest {
        method: parts.method.clone(),
        path: path.clone(),
        query: query.clone(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    let mut resp = respond(
        &shared,
        &parts.method,
        &path,
        query.as_deref(),
        &parts.headers,
        &body,
    )
    .await;
    if let Ok(v) = HeaderValue::from_str(&format!("req_mock{}", shared.next_request_id())) {
        resp.headers_mut().insert("x-request-id", v);
    }
    Ok(resp)
}

async fn respond(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response<RespBody> {
    let flavor = shared.flavor;
    let route = match route(flavor, method, path, query) {
        Ok(r) => r,
        Err(reject) => return reject.into_response(),
    };
    if let Err(reject) = check_auth(flavor, shared.api_key().as_deref(), headers) {
        return reject.into_response();
    }
    let request = if route.endpoint == Endpoint::Models {
        Value::Null
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(v) if v.is_object() => v,
            _ => return bad_request(flavor, BAD_JSON, None),
        }
    };

    let script = shared.next_script();
    let delay = script.latency.sample();
    if !delay.is_zero() {
        crate::precise::sleep(delay).await;
    }
    if let Some((status, error_body)) = &script.error {
        let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = json_response(status, serde_json::to_vec(error_body).unwrap_or_default());
        if let Some(secs) = script.retry_after {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        return resp;
    }
    match route.endpoint {
        Endpoint::Chat => chat(shared, &script, &route, &request, body.len()),
        Endpoint::Embeddings => embeddings(flavor, &script, &route, &request, body.len()),
        Endpoint::Models => json_response(StatusCode::OK, openai::models(flavor == Flavor::Azure)),
    }
}

fn route(
    flavor: Flavor,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Result<Route, Reject> {
    let plain = |endpoint| {
        Ok(Route {
            endpoint,
            deployment: None,
        })
    };
    match flavor {
        Flavor::OpenAi => match (method, path) {
            (&Method::POST, "/v1/chat/completions") => plain(Endpoint::Chat),
            (&Method::POST, "/v1/embeddings") => plain(Endpoint::Embeddings),
            (&Method::GET, "/v1/models") => plain(Endpoint::Models),
            _ => Err(Reject::new(
                StatusCode::NOT_FOUND,
                openai::error(
                    &format!("Invalid URL ({method} {path})"),
                    "invalid_request_error",
                    None,
                    Some("unknown_url"),
                ),
            )),
        },
        Flavor::Azure => {
            let not_found = || Reject::new(StatusCode::NOT_FOUND, azure::not_found());
            match (method, path) {
                (&Method::POST, "/openai/v1/chat/completions") => return plain(Endpoint::Chat),
                (&Method::POST, "/openai/v1/embeddings") => return plain(Endpoint::Embeddings),
                (&Method::GET, "/openai/v1/models") => return plain(Endpoint::Models),
                _ => {}
            }
            let Some(rest) = path.strip_prefix("/openai/deployments/") else {
                return Err(not_found());
            };
            let (deployment, endpoint) = if let Some(d) = rest.strip_suffix("/chat/completions") {
                (d, Endpoint::Chat)
            } else if let Some(d) = rest.strip_suffix("/embeddings") {
                (d, Endpoint::Embeddings)
            } else {
                return Err(not_found());
            };
            let has_version = query_param(query, "api-version").is_some_and(|v| !v.is_empty());
            if method != Method::POST
                || deployment.is_empty()
                || deployment.contains('/')
                || !has_version
            {
                return Err(not_found());
            }
            Ok(Route {
                endpoint,
                deployment: Some(deployment.to_owned()),
            })
        }
    }
}

fn check_auth(flavor: Flavor, key: Option<&str>, headers: &HeaderMap) -> Result<(), Reject> {
    let Some(key) = key else {
        return Ok(());
    };
    match flavor {
        Flavor::OpenAi => {
            let given = headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            match given {
                Some(k) if k == key => Ok(()),
                Some(k) if !k.is_empty() => {
                    let message = format!(
                        "Incorrect API key provided: {}. You can find your API key at \
                         https://platform.openai.com/account/api-keys.",
                        mask_key(k)
                    );
                    Err(Reject::new(
                        StatusCode::UNAUTHORIZED,
                        openai::error(
                            &message,
                            "invalid_request_error",
                            None,
                            Some("invalid_api_key"),
                        ),
                    ))
                }
                _ => Err(Reject::new(
                    StatusCode::UNAUTHORIZED,
                    openai::error(NO_KEY, "invalid_request_error", None, None),
                )),
            }
        }
        Flavor::Azure => {
            let given = headers.get("api-key").and_then(|v| v.to_str().ok());
            if given == Some(key) {
                Ok(())
            } else {
                Err(Reject::new(
                    StatusCode::UNAUTHORIZED,
                    azure::access_denied(),
                ))
            }
        }
    }
}

/// `sk-abc...wxyz` style masking, as OpenAI does in its error message.
fn mask_key(k: &str) -> String {
    let chars: Vec<char> = k.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

fn chat(
    shared: &Shared,
    script: &Script,
    route: &Route,
    req: &Value,
    body_len: usize,
) -> Response<RespBody> {
    let azure = shared.flavor == Flavor::Azure;
    let model = model_name(route, req, "gpt-4o-mini");
    let choices = req
        .get("n")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .clamp(1, MAX_CHOICES);
    let choices = u32::try_from(choices).unwrap_or(1);
    let stream = req.get("stream").and_then(Value::as_bool) == Some(true);
    let include_usage = req
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let meta = CompletionMeta {
        id: format!("chatcmpl-mock{}", shared.next_completion_id()),
        created: unix_now(),
        model,
        azure,
    };
    let usage = match script.usage {
        Some((p, c)) => Usage::new(p, c),
        None => Usage::new(
            default_prompt_tokens(body_len),
            (script.chunks as u64).saturating_mul(u64::from(choices)),
        ),
    };
    if !stream {
        let body = openai::chat_completion(&meta, &script.content, choices, usage);
        return json_response(StatusCode::OK, body);
    }
    let events = match &script.replay {
        Some(raw) => sse::parse_events(raw),
        None => {
            let pieces = content_pieces(&script.content, script.chunks);
            sse::chat_events(&ChatStream {
                meta: &meta,
                choices,
                include_usage,
                usage,
                pieces: &pieces,
            })
        }
    };
    let mut resp = Response::new(sse::stream_body(
        events,
        script,
        Arc::clone(&shared.counters),
    ));
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

fn embeddings(
    flavor: Flavor,
    script: &Script,
    route: &Route,
    req: &Value,
    body_len: usize,
) -> Response<RespBody> {
    let Some(input) = req.get("input") else {
        return bad_request(flavor, "'input' is a required property", Some("input"));
    };
    let items: Vec<&Value> = match input {
        Value::String(_) => vec![input],
        Value::Array(a) if a.is_empty() => {
            return bad_request(
                flavor,
                "'$.input' is invalid: it must not be empty",
                Some("input"),
            );
        }
        Value::Array(a) if a.iter().all(Value::is_u64) => vec![input],
        Value::Array(a)
            if a.iter().all(Value::is_string)
                || a.iter().all(|x| {
                    x.as_array()
                        .is_some_and(|t| !t.is_empty() && t.iter().all(Value::is_u64))
                }) =>
        {
            a.iter().collect()
        }
        _ => return bad_request(flavor, "'$.input' is invalid", Some("input")),
    };
    let dims = match req.get("dimensions") {
        None | Some(Value::Null) => 8,
        Some(v) => match v.as_u64() {
            Some(d) if (1..=MAX_DIMENSIONS).contains(&d) => d,
            _ => return bad_request(flavor, "'dimensions' is invalid", Some("dimensions")),
        },
    };
    let base64 = match req
        .get("encoding_format")
        .and_then(|v| if v.is_null() { None } else { Some(v.as_str()) })
    {
        None | Some(Some("float")) => false,
        Some(Some("base64")) => true,
        Some(_) => {
            return bad_request(
                flavor,
                "'encoding_format' must be 'float' or 'base64'",
                Some("encoding_format"),
            );
        }
    };
    let vectors = items
        .into_iter()
        .map(|item| {
            let v = embedding_vector(item, dims);
            if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                EmbeddingVector::Base64(openai::base64(&bytes))
            } else {
                EmbeddingVector::Float(v)
            }
        })
        .collect();
    let prompt = script
        .usage
        .map_or_else(|| default_prompt_tokens(body_len), |(p, _)| p);
    let model = model_name(route, req, "text-embedding-3-small");
    json_response(
        StatusCode::OK,
        openai::embeddings(flavor == Flavor::Azure, &model, vectors, prompt),
    )
}

/// A deterministic unit vector derived from the input item.
pub(crate) fn embedding_vector(item: &Value, dims: u64) -> Vec<f32> {
    let text = serde_json::to_string(item).unwrap_or_default();
    // FNV-1a seed, then xorshift64*.
    let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    if state == 0 {
        state = 1;
    }
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let r = state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40; // 24 bits
            (r as f32 / 8_388_608.0) - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

fn model_name(route: &Route, req: &Value, fallback: &str) -> String {
    route
        .deployment
        .clone()
        .or_else(|| req.get("model").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| fallback.to_owned())
}

fn default_prompt_tokens(body_len: usize) -> u64 {
    (body_len as u64 / 4).max(1)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn bad_request(flavor: Flavor, message: &str, param: Option<&str>) -> Response<RespBody> {
    let body = match flavor {
        Flavor::OpenAi => openai::error(message, "invalid_request_error", param, None),
        Flavor::Azure => azure::error("400", message),
    };
    json_response(StatusCode::BAD_REQUEST, body)
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<RespBody> {
    let mut resp = Response::new(sse::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keys_like_openai() {
        assert_eq!(
            mask_key("sk-abcdefghijwxyz"),
            format!("sk-{}wxyz", "*".repeat(10))
        );
        assert_eq!(mask_key("short"), "*****");
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embedding_vector(&Value::from("hi"), 8);
        let b = embedding_vector(&Value::from("hi"), 8);
        let c = embedding_vector(&Value::from("ho"), 8);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let norm: f32 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
    }
}
