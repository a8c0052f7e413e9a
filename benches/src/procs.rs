//! The processes under test: finding (and building) the binaries, starting them on free
//! ports, waiting until they listen, and reading their memory and CPU from `/proc` (and
//! the CPU of the machine's PostgreSQL, whose processes the bench does not start).
//!
//! Owns: child processes (killed when dropped) and their log files. Must not touch: what
//! runs inside them.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::Result;

/// The three binaries the harness starts.
#[derive(Debug, Clone)]
pub struct Bins {
    /// The `llmur` server.
    pub llmur: PathBuf,
    /// The testkit's mock upstream.
    pub mock: PathBuf,
    /// This crate's pass-through proxy.
    pub floor: PathBuf,
}

impl Bins {
    /// The binaries next to this executable (same target dir and profile). With `build`,
    /// first runs `cargo build` for them in that profile so they are never stale.
    pub fn locate(build: bool) -> Result<Bins> {
        let exe = std::env::current_exe()?;
        let dir = exe
            .parent()
            .ok_or("cannot find the directory of the running executable")?
            .to_path_buf();
        let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if profile != "release" {
            eprintln!(
                "warning: llmur-bench is not a release build ({}): numbers are meaningless; use `cargo run -p llmur-bench --release`",
                dir.display()
            );
        }
        if build {
            cargo_build(profile == "release")?;
        }
        let bins = Bins {
            llmur: dir.join("llmur"),
            mock: dir.join("llmur-mock"),
            floor: dir.join("llmur-floor"),
        };
        for path in [&bins.llmur, &bins.mock, &bins.floor] {
            if !path.is_file() {
                return Err(format!(
                    "{} is missing: run `cargo build --release --workspace --bins` first (or drop --no-build)",
                    path.display()
                )
                .into());
            }
        }
        Ok(bins)
    }
}

fn cargo_build(release: bool) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut cmd = std::process::Command::new(cargo);
    cmd.arg("build").arg("--manifest-path").arg(&manifest);
    if release {
        cmd.arg("--release");
    }
    cmd.args([
        "-p",
        "llmur-server",
        "-p",
        "llmur-testkit",
        "-p",
        "llmur-bench",
        "--bins",
    ]);
    eprintln!("building the binaries under test: {cmd:?}");
    let status = cmd.stdin(Stdio::null()).status()?;
    if !status.success() {
        return Err(format!("cargo build failed ({status})").into());
    }
    Ok(())
}

/// A free TCP port on 127.0.0.1 (bound and released; the child binds it right after).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A running child process, killed when dropped.
#[derive(Debug)]
pub struct Proc {
    /// A short name for messages.
    pub name: String,
    /// Its process id.
    pub pid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
    /// When it was spawned.
    pub spawned: Instant,
    log: PathBuf,
    child: Child,
}

impl Proc {
    /// Starts `program args` with stdout and stderr to `logs/<name>.log`, without any
    /// inherited `LLMUR_*` variable. Does not wait for it to listen.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        addr: SocketAddr,
        logs: &Path,
    ) -> Result<Proc> {
        std::fs::create_dir_all(logs)?;
        let log = logs.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("LLMUR_") {
                cmd.env_remove(key);
            }
        }
        let spawned = Instant::now();
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let pid = child.id().ok_or("the child exited at once")?;
        Ok(Proc {
            name: name.to_owned(),
            pid,
            addr,
            spawned,
            log,
            child,
        })
    }

    /// Waits until the process accepts TCP connections on its address; returns the time
    /// from spawn to then.
    pub async fn wait_listening(&mut self, timeout: Duration) -> Result<Duration> {
        let start = self.spawned;
        loop {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(start.elapsed());
            }
            if let Some(status) = self.child.try_wait()? {
                return Err(self.failure(&format!("exited ({status})")).into());
            }
            if start.elapsed() > timeout {
                return Err(self.failure("did not start listening in time").into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// An error message with the tail of the process's log.
    pub fn failure(&self, what: &str) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "{} {what}; log {}:\n{}",
            self.name,
            self.log.display(),
            tail.join("\n")
        )
    }

    /// Whether the process has ended (with its status).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Memory and CPU counters of the process now.
    pub fn stats(&self) -> Result<ProcStats> {
        ProcStats::read(self.pid)
    }

    /// Kills the process and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A `/proc` reading of one process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    /// Resident memory now (`VmRSS`), bytes.
    pub rss: u64,
    /// Peak resident memory (`VmHWM`), bytes.
    pub hwm: u64,
    /// User + system CPU time, clock ticks.
    pub cpu_ticks: u64,
}

impl ProcStats {
    /// Reads `/proc/<pid>/status` and `/proc/<pid>/stat`.
    pub fn read(pid: u32) -> Result<ProcStats> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kb = |field: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command name (which may hold spaces) start at field 3 (state);
        // utime and stime are fields 14 and 15.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(ProcStats {
            rss: kb("VmRSS:"),
            hwm: kb("VmHWM:"),
            cpu_ticks: field(11) + field(12),
        })
    }
}

/// Clock ticks per second (`getconf CLK_TCK`, else 100), asked once.
pub fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(ask_clock_ticks)
}

fn ask_clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// User + system CPU clock ticks of every `postgres` process on this machine (the server
/// and its backends, the WAL writer, ...): the test PostgreSQL runs here. A backend that
/// exits between two readings takes its ticks with it.
pub fn postgres_cpu_ticks() -> Result<u64> {
    let mut ticks = 0;
    for entry in std::fs::read_dir("/proc")? {
        let path = entry?.path();
        let is_pid = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid {
            continue;
        }
        // Gone meanwhile: not counted.
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        ticks += ticks_of(&stat, "postgres").unwrap_or(0);
    }
    Ok(ticks)
}

/// User + system clock ticks in a `/proc/<pid>/stat` line, if its command is `comm`.
fn ticks_of(stat: &str, comm: &str) -> Option<u64> {
    let (head, after) = stat.rsplit_once(')')?;
    if head.split_once('(')?.1 != comm {
        return None;
    }
    // After the command: state is field 3, utime and stime fields 14 and 15.
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU seconds per 1,000 requests between two readings of a process.
pub fn cpu_per_1k(before: ProcStats, after: ProcStats, requests: u64) -> Option<f64> {
    ticks_s_per_1k(before.cpu_ticks, after.cpu_ticks, requests)
}

/// CPU seconds per 1,000 requests between two readings of clock ticks; none without
/// requests.
pub fn ticks_s_per_1k(before: u64, after: u64, requests: u64) -> Option<f64> {
    (requests > 0)
        .then(|| after.saturating_sub(before) as f64 / clock_ticks() * 1000.0 / requests as f64)
}

/// Bytes as MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_read_for_the_named_command_only() {
        let stat = "4242 (postgres) S 1 4242 4242 0 -1 4194560 1163 0 0 0 17 5 0 0 20 0 1 0";
        assert_eq!(ticks_of(stat, "postgres"), Some(22));
        assert_eq!(ticks_of(stat, "redis-server"), None);
        // A command name with spaces and parentheses.
        let odd = "7 (a (b) c) S 1 7 7 0 -1 0 0 0 0 0 3 4 0 0";
        assert_eq!(ticks_of(odd, "a (b) c"), Some(7));
        assert_eq!(ticks_of("7 (postgres) S 1", "postgres"), None);
    }
}
