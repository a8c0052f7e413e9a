//! Runs the proxy on its own against the testkit's mock OpenAI and streams a completion
//! through it, printing each chunk as it arrives and the usage the proxy recorded.
//!
//! Run: `cargo run -p llmur-examples --example against_testkit`

#![expect(
    clippy::print_stdout,
    reason = "an example shows its results on stdout"
)]

use std::sync::Arc;
use std::time::Duration;

use llmur_core::{MemoryUsageSink, Proxy};
use llmur_examples::{VIRTUAL_KEY, example_catalog, serve};
use llmur_testkit::{Flavor, MockServer, Script};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let upstream = MockServer::start(Flavor::OpenAi).await?;
    upstream.set_script(
        Script::new()
            .content("one two three four five")
            .chunks(5)
            .cadence(Duration::from_millis(50)),
    );

    let usage = MemoryUsageSink::new();
    let proxy = Proxy::builder(example_catalog(&upstream.base_url()))
        .usage_sink(Arc::new(usage.clone()))
        .build()?;
    let addr = serve(proxy).await?;
    println!(
        "llmur on http://{addr} -> mock OpenAI on {}",
        upstream.base_url()
    );

    let mut response = reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(VIRTUAL_KEY)
        .json(&serde_json::json!({
            "model": "chat",
            "stream": true,
            "messages": [{"role": "user", "content": "count to five"}]
        }))
        .send()
        .await?
        .error_for_status()?;
    while let Some(chunk) = response.chunk().await? {
        print!("{}", String::from_utf8_lossy(&chunk));
    }

    let logs = usage.wait_for(1, Duration::from_secs(5)).await;
    let log = logs.first().ok_or("no request log recorded")?;
    println!(
        "recorded: deployment {} status {} prompt {} completion {} ({:?})",
        log.deployment,
        log.status,
        log.usage.prompt_tokens,
        log.usage.completion_tokens,
        log.usage_source
    );
    Ok(())
}
