//! `llmur`: the LLM proxy server.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use llmur_server::{Config, cli, telemetry};

// mimalloc instead of glibc's malloc: a proxy allocates and frees many small buffers per
// request, and glibc's allocator was about a sixth of the full setup's CPU under load.
// The crate's `override` feature makes mimalloc *the* `malloc`/`free` of the process (the
// `use` links it in), and Rust keeps its default allocator, which calls `malloc` for
// alignments up to 16. Not `#[global_allocator] MiMalloc`: that calls `mi_malloc_aligned`
// for every allocation, whose path for sizes over 1 KiB that are not a power of two
// over-allocates and costs about 2,700 more instructions per request (callgrind). SQLite's
// C code allocates through mimalloc too.
use mimalloc as _;

/// llmur — a self-hostable, OpenAI-compatible LLM proxy.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// YAML configuration file (LLMUR_* environment variables override it).
    #[arg(
        long,
        short,
        global = true,
        env = "LLMUR_CONFIG",
        alias = "configuration"
    )]
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
    /// Apply the database migrations, then exit (serve applies them too).
    Migrate,
    /// Create an application admin user.
    CreateAdmin {
        /// Email (the login).
        #[arg(long)]
        email: String,
        /// Password (at least 8 characters); prefer the environment variable.
        #[arg(long, env = "LLMUR_ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
        /// Display name (default: the part of the email before `@`).
        #[arg(long)]
        name: Option<String>,
    },
    /// Create a virtual key and print it (shown once).
    CreateKey {
        /// Project id or name (a project of that name is created if none exists).
        #[arg(long)]
        project: String,
        /// Deployment names the key may use.
        #[arg(long = "deployment")]
        deployments: Vec<String>,
        /// A label instead of the masked key.
        #[arg(long)]
        alias: Option<String>,
    },
    /// Print the admin API's OpenAPI document.
    Openapi,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    if matches!(command, Command::Openapi) {
        return print(&llmur_server::admin::openapi_json());
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => return fail(&e),
    };
    if let Err(e) = telemetry::init(&config.log_level, config.log_format) {
        return fail(&e);
    }
    let result = match command {
        Command::Openapi => Ok(()),
        Command::CheckConfig => check_config(&config),
        Command::Migrate => cli::migrate(&config).await.map(|()| {
            tracing::info!("migrations applied");
        }),
        Command::CreateAdmin {
            email,
            password,
            name,
        } => cli::create_admin(&config, &email, &password, name.as_deref())
            .await
            .map(|user| tracing::info!(id = %user.id, email = %user.email, "admin user created")),
        Command::CreateKey {
            project,
            deployments,
            alias,
        } => match cli::create_key(&config, &project, &deployments, alias.as_deref()).await {
            Ok((stored, key)) => {
                tracing::info!(id = %stored.id, project = %stored.project_id, "virtual key created; it is shown once");
                return print(&key);
            }
            Err(e) => Err(e),
        },
        Command::Serve => {
            if cli.config.is_none() {
                tracing::info!(
                    "no --config given: embedded default (SQLite file llmur.db, no other service needed)"
                );
            }
            match llmur_server::start(config, shutdown_signal()).await {
                Ok(server) => {
                    server.wait().await;
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn check_config(config: &Config) -> Result<(), llmur_server::ConfigError> {
    let hasher = llmur_core::KeyHasher::new(&secrecy::SecretString::from("check"));
    let (_, counts) = llmur_server::catalog::snapshot_from_config(config, &hasher)?;
    config.database_url()?;
    config.redis_url()?;
    tracing::info!(?counts, "configuration is valid");
    Ok(())
}

fn print(text: &str) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}") {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
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
