//! Embeds llmur as a tower layer in front of an application's own service: `/v1/*` is
//! answered by the proxy, every other path by the application.
//!
//! Run: `cargo run -p llmur-examples --example embed_as_layer`

#![expect(
    clippy::print_stdout,
    reason = "an example shows its results on stdout"
)]

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use llmur_core::Proxy;
use llmur_examples::{VIRTUAL_KEY, example_catalog, serve};
use llmur_testkit::{Flavor, MockServer};
use tower::{Layer, service_fn};

/// The application's own handler.
async fn app(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let text = format!("hello from the app at {}", request.uri().path());
    Ok(Response::new(Full::new(Bytes::from(text))))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A mock OpenAI stands in for the real one.
    let upstream = MockServer::start(Flavor::OpenAi).await?;

    let proxy = Proxy::builder(example_catalog(&upstream.base_url())).build()?;
    let service = proxy.layer().layer(service_fn(app));
    let addr = serve(service).await?;

    let http = reqwest::Client::new();
    let own = http
        .get(format!("http://{addr}/status"))
        .send()
        .await?
        .text()
        .await?;
    println!("GET /status -> {own}");

    let answer: serde_json::Value = http
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(VIRTUAL_KEY)
        .json(
            &serde_json::json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    println!(
        "POST /v1/chat/completions -> model {} says {}",
        answer["model"], answer["choices"][0]["message"]["content"]
    );
    assert_eq!(answer["model"], "chat");
    assert_eq!(own, "hello from the app at /status");
    Ok(())
}
