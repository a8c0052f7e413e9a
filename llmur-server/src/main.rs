//! `llmur`: the LLM proxy server.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use llmur_server::{Config, config::LogFormat, telemetry};

/// llmur — a self-hostable, OpenAI-compatible LLM proxy.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// YAML configuration file (LLMUR_* environment variables override it).
    #[arg(long, short, global = true, env = "LLMUR_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Serve,
    /// Load and validate the configuration, then exit.
    CheckConfig,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => return fail(&e),
    };
    if let Err(e) = telemetry::init(&config.log_level, config.log_format) {
        return fail(&e);
    }
    if config.log_format == LogFormat::Human && cli.config.is_none() {
        tracing::info!("no --config given: embedded default (catalog from the environment only)");
    }
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            let hasher = llmur_core::KeyHasher::new(&secrecy::SecretString::from("check"));
            match llmur_server::catalog::snapshot_from_config(&config, &hasher) {
                Ok((_, counts)) => {
                    tracing::info!(?counts, "configuration is valid");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::Serve => match llmur_server::start(config, shutdown_signal()).await {
            Ok(server) => {
                server.wait().await;
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
    }
}

fn fail(e: &dyn std::error::Error) -> ExitCode {
    eprintln!("llmur: {e}");
    ExitCode::FAILURE
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
