//! `llmur-floor`: the benchmark's *floor* — the cheapest proxy one extra hop can be.
//!
//! A bare hyper 1 / hyper-util server (HTTP/1.1 and h2c, like llmur's listener) that hands
//! every request to the same kind of HTTP client llmur uses (hyper-util's pooled client,
//! `TCP_NODELAY`, the same pool settings; without TLS, as the mock speaks plain HTTP) and
//! the same allocator (mimalloc) and streams the answer back. No authentication, no
//! parsing, no limits, no logging: the request body and the response body are streamed
//! through untouched, only hop-by-hop headers are dropped.
//!
//! Owns: its listener and its client. Must not touch: anything of llmur — it is the yardstick
//! llmur's added latency is compared with, so it must stay minimal.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

// The allocator llmur's binary uses, set up the same way (mimalloc in place of malloc,
// Rust's default allocator on top), so the floor differs from llmur only in llmur's work.
use mimalloc as _;

/// A pass-through HTTP proxy to one upstream.
#[derive(Debug, Parser)]
#[command(name = "llmur-floor", about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8098")]
    listen: SocketAddr,
    /// Upstream base URL, e.g. `http://127.0.0.1:8099` (no trailing slash).
    #[arg(long)]
    upstream: String,
}

type FloorBody = Either<Incoming, Full<Bytes>>;

/// Headers that belong to one hop and are never forwarded.
const HOP_BY_HOP: [header::HeaderName; 6] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

#[derive(Debug)]
struct Floor {
    client: Client<HttpConnector, Incoming>,
    upstream: String,
}

impl Floor {
    async fn forward(&self, req: Request<Incoming>) -> Response<FloorBody> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let uri = format!("{}{path}", self.upstream);
        let mut headers = parts.headers;
        strip_hop_by_hop(&mut headers);
        headers.remove(header::HOST);
        let mut upstream = Request::new(body);
        *upstream.method_mut() = parts.method;
        *upstream.headers_mut() = headers;
        let sent = match uri.parse() {
            Ok(uri) => {
                *upstream.uri_mut() = uri;
                self.client
                    .request(upstream)
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        match sent {
            Ok(mut answer) => {
                strip_hop_by_hop(answer.headers_mut());
                answer.map(Either::Left)
            }
            Err(e) => {
                let mut response = Response::new(Either::Right(Full::new(Bytes::from(format!(
                    "floor: upstream failed: {e}\n"
                )))));
                *response.status_mut() = StatusCode::BAD_GATEWAY;
                response
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    http.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(http);
    let floor = Arc::new(Floor {
        client,
        upstream: args.upstream.trim_end_matches('/').to_owned(),
    });
    let listener = TcpListener::bind(args.listen).await?;
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Without it Nagle's algorithm meets the client's delayed ACK (~40 ms stalls).
        let _ = stream.set_nodelay(true);
        let floor = Arc::clone(&floor);
        let service = service_fn(move |req| {
            let floor = Arc::clone(&floor);
            async move { Ok::<_, Infallible>(floor.forward(req).await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}
