//! Logging set-up: `tracing` to stdout, human-readable or JSON.
//!
//! Secrets never reach a log line: credentials are `SecretString`s (their `Debug` is
//! `[REDACTED]`), provider keys travel in headers marked sensitive, and virtual keys are
//! logged only by id or masked alias.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::error::ConfigError;

/// Installs the global subscriber. `level` is a tracing filter (`info`, `llmur=debug`).
pub fn init(level: &str, format: LogFormat) -> Result<(), ConfigError> {
    let filter = EnvFilter::try_new(level)
        .map_err(|e| ConfigError::new(format!("log_level {level:?} is not valid: {e}")))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_writer(std::io::stdout);
    let result = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| ConfigError::new(format!("cannot install the logger: {e}")))
}
