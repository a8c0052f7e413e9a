//! `llmur-mock`: a standalone mock OpenAI / Azure OpenAI server for manual testing.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use llmur_testkit::{Flavor, Latency, MockServer, Script};

/// Which API to imitate.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum FlavorArg {
    /// OpenAI (`/v1/...`).
    Openai,
    /// Azure OpenAI (`/openai/deployments/...`, `/openai/v1/...`).
    Azure,
}

/// Mock OpenAI-compatible server.
#[derive(Debug, Parser)]
#[command(name = "llmur-mock", version, about)]
struct Args {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to bind (0 picks a free one).
    #[arg(long, default_value_t = 8099)]
    port: u16,
    /// API flavor.
    #[arg(long, value_enum, default_value = "openai")]
    flavor: FlavorArg,
    /// Require this API key (Bearer for OpenAI, `api-key` header for Azure).
    #[arg(long)]
    api_key: Option<String>,
    /// Delay before the response head, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Uniform jitter around --latency-ms, in milliseconds.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Streaming: delay before the first chunk, in milliseconds.
    #[arg(long, default_value_t = 0)]
    ttft_ms: u64,
    /// Streaming: number of content chunks.
    #[arg(long, default_value_t = 5)]
    chunks: usize,
    /// Streaming: delay between chunks, in milliseconds.
    #[arg(long, default_value_t = 0)]
    cadence_ms: u64,
    /// Do not keep received requests in memory (for load tests: memory stays flat).
    #[arg(long)]
    no_record: bool,
}

impl Args {
    fn script(&self) -> Script {
        let ms = Duration::from_millis;
        let latency = if self.jitter_ms > 0 {
            Latency::Jitter {
                base: ms(self.latency_ms),
                jitter: ms(self.jitter_ms),
            }
        } else if self.latency_ms > 0 {
            Latency::Fixed(ms(self.latency_ms))
        } else {
            Latency::None
        };
        Script::new()
            .latency(latency)
            .ttft(ms(self.ttft_ms))
            .chunks(self.chunks)
            .cadence(ms(self.cadence_ms))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let flavor = match args.flavor {
        FlavorArg::Openai => Flavor::OpenAi,
        FlavorArg::Azure => Flavor::Azure,
    };
    let server = MockServer::start_on(flavor, SocketAddr::new(args.host, args.port)).await?;
    if let Some(key) = &args.api_key {
        server.require_api_key(key);
    }
    server.set_script(args.script());
    server.set_recording(!args.no_record);
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "llmur-mock ({flavor}) listening on {}",
            server.base_url()
        )?;
        out.flush()?;
    }
    tokio::signal::ctrl_c().await?;
    server.shutdown().await;
    Ok(())
}
