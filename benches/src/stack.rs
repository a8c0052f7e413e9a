//! A *stack*: one mock upstream and, in front of it, the proxies of the arms (floor,
//! llmur bare, llmur full), all started fresh for a scenario and stopped after it.
//!
//! Owns: the mock's mode, the llmur config files, the llmur-full arm's throw-away
//! PostgreSQL schema. Must not touch: measurements beyond the idle RSS at start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use llmur_server::db::testing::{TempDatabaseGuard, fresh_postgres_database};

use crate::Result;
use crate::cli::Arm;
use crate::llmur_config::{CatalogSize, Profile, render};
use crate::load;
use crate::payload::{BodyGen, Payload};
use crate::procs::{Bins, Proc};

/// How the mock upstream answers.
#[derive(Debug, Clone, Copy, Default)]
pub struct MockMode {
    /// Before the response head, ms.
    pub latency_ms: u64,
    /// Uniform jitter around it, ms.
    pub jitter_ms: u64,
    /// Streams: before the first chunk, ms.
    pub ttft_ms: u64,
    /// Streams: content chunks.
    pub chunks: usize,
    /// Streams: between chunks, ms.
    pub cadence_ms: u64,
}

/// What every stack shares.
#[derive(Debug)]
pub struct Env {
    /// The binaries.
    pub bins: Bins,
    /// Log files and generated configs.
    pub work: PathBuf,
    /// Redis for the full arm.
    pub redis_url: String,
    /// Starts so far (names log files uniquely).
    pub starts: usize,
}

impl Env {
    /// A unique name for the next process of `what`.
    pub fn next_name(&mut self, what: &str) -> String {
        self.starts += 1;
        format!("{:03}-{what}", self.starts)
    }

    /// Directory for logs.
    pub fn logs(&self) -> PathBuf {
        self.work.join("logs")
    }
}

/// Started processes of one scenario.
#[derive(Debug)]
pub struct Stack {
    /// The mock upstream.
    pub mock: Proc,
    proxies: Vec<(Arm, Proc)>,
    guards: Vec<TempDatabaseGuard>,
    redis_url: String,
}

impl Stack {
    /// Starts the mock in `mode` and the proxies of `arms`, and sends each arm one
    /// request; returns the stack and each proxy's idle RSS (bytes) after that request.
    ///
    /// The llmur-full, llmur-early, llmur-nolease and llmur-pg arms each get a fresh schema in the PostgreSQL of the tests
    /// (`LLMUR_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`).
    pub async fn start(
        env: &mut Env,
        mode: MockMode,
        arms: &[Arm],
    ) -> Result<(Stack, Vec<(Arm, u64)>)> {
        let mock = start_mock(env, mode).await?;
        let upstream = format!("http://{}", mock.addr);
        let mut stack = Stack {
            mock,
            proxies: Vec::new(),
            guards: Vec::new(),
            redis_url: env.redis_url.clone(),
        };
        for &arm in arms {
            let proc = match arm {
                Arm::Direct => continue,
                Arm::Floor => start_floor(env, &upstream).await?,
                Arm::Bare | Arm::Full | Arm::Early | Arm::Pg | Arm::Redis | Arm::NoLease => {
                    let postgres = arm.uses_postgres();
                    let database_url = if postgres {
                        let (database_url, guard) = fresh_postgres_database().await?;
                        stack.guards.push(guard);
                        Some(database_url)
                    } else {
                        None
                    };
                    let profile = Profile {
                        database_url,
                        redis_url: arm.uses_redis().then(|| env.redis_url.clone()),
                        info_logs: postgres,
                        early: arm == Arm::Early,
                        no_lease: arm == Arm::NoLease,
                    };
                    let name = arm.to_string();
                    start_llmur(env, &name, &profile, &upstream, CatalogSize::MINIMAL)
                        .await?
                        .0
                }
            };
            stack.proxies.push((arm, proc));
        }
        let mut idle = Vec::new();
        for &arm in arms {
            let addr = stack.addr(arm)?;
            check_serves(addr, arm).await?;
            if let Some(proc) = stack.proc(arm) {
                idle.push((arm, proc.stats()?.rss));
            }
        }
        Ok((stack, idle))
    }

    /// Where requests of `arm` go.
    pub fn addr(&self, arm: Arm) -> Result<SocketAddr> {
        if arm == Arm::Direct {
            return Ok(self.mock.addr);
        }
        self.proc(arm)
            .map(|p| p.addr)
            .ok_or_else(|| format!("{arm} is not running").into())
    }

    /// The proxy process of `arm`.
    pub fn proc(&self, arm: Arm) -> Option<&Proc> {
        self.proxies.iter().find(|(a, _)| *a == arm).map(|(_, p)| p)
    }

    /// The Redis `arm` counts in, if it uses one.
    pub fn redis(&self, arm: Arm) -> Option<&str> {
        arm.uses_redis().then_some(self.redis_url.as_str())
    }

    /// Stops every process and removes the PostgreSQL schemas.
    pub async fn stop(self) {
        for (_, proc) in self.proxies {
            proc.stop().await;
        }
        self.mock.stop().await;
        for guard in self.guards {
            if let Err(e) = guard.cleanup().await {
                eprintln!("warning: could not drop the benchmark schema: {e}");
            }
        }
    }
}

/// One non-streamed chat request must answer 2xx.
pub async fn check_serves(addr: SocketAddr, what: impl std::fmt::Display) -> Result<()> {
    let mut sender = load::connect(addr).await?;
    let x = load::exchange(&mut sender, &BodyGen::new(Payload::Small, false)).await?;
    if !x.status.is_success() {
        return Err(format!("{what} answered {} to a chat request", x.status).into());
    }
    Ok(())
}

const START_TIMEOUT: Duration = Duration::from_secs(60);

async fn start_mock(env: &mut Env, m: MockMode) -> Result<Proc> {
    let port = crate::procs::free_port()?;
    let args: Vec<String> = vec![
        "--port".into(),
        port.to_string(),
        "--no-record".into(),
        "--latency-ms".into(),
        m.latency_ms.to_string(),
        "--jitter-ms".into(),
        m.jitter_ms.to_string(),
        "--ttft-ms".into(),
        m.ttft_ms.to_string(),
        "--chunks".into(),
        m.chunks.max(1).to_string(),
        "--cadence-ms".into(),
        m.cadence_ms.to_string(),
    ];
    let name = env.next_name("mock");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut proc = Proc::spawn(&name, &env.bins.mock, &args, addr, &env.logs())?;
    proc.wait_listening(START_TIMEOUT).await?;
    Ok(proc)
}

async fn start_floor(env: &mut Env, upstream: &str) -> Result<Proc> {
    let port = crate::procs::free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let args = vec![
        "--listen".into(),
        addr.to_string(),
        "--upstream".into(),
        upstream.to_owned(),
    ];
    let name = env.next_name("floor");
    let mut proc = Proc::spawn(&name, &env.bins.floor, &args, addr, &env.logs())?;
    proc.wait_listening(START_TIMEOUT).await?;
    Ok(proc)
}

/// Writes the config and starts `llmur serve`; returns it once it listens, with the time
/// from spawn to listening.
pub async fn start_llmur(
    env: &mut Env,
    what: &str,
    profile: &Profile,
    upstream: &str,
    size: CatalogSize,
) -> Result<(Proc, Duration)> {
    let mut proc = spawn_llmur(env, what, profile, upstream, size)?;
    let took = proc.wait_listening(START_TIMEOUT).await?;
    Ok((proc, took))
}

/// Writes the config (to `configs/`) and spawns `llmur serve` without waiting.
pub fn spawn_llmur(
    env: &mut Env,
    what: &str,
    profile: &Profile,
    upstream: &str,
    size: CatalogSize,
) -> Result<Proc> {
    let port = crate::procs::free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let name = env.next_name(what);
    let config = env.work.join("configs").join(format!("{name}.yaml"));
    if let Some(dir) = config.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&config, render(profile, port, upstream, size))?;
    let args = vec![
        "serve".into(),
        "--config".into(),
        config.display().to_string(),
    ];
    Proc::spawn(&name, &env.bins.llmur, &args, addr, &env.logs())
}
