//! The `llmur` binary as a child process, for tests of several instances at once.

#![allow(
    dead_code,
    reason = "each test binary reads a different part of an instance"
)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// One `llmur` process; killed on drop.
pub struct Instance {
    child: Child,
    /// `http://{addr}` it listens on.
    pub base: String,
    /// Every line it wrote to stdout so far (JSON logs), then its stderr once it ends.
    pub output: Arc<Mutex<Vec<String>>>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Instance {
    /// Stops it as a service manager would (SIGTERM) and waits up to 30 s for it to exit;
    /// returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", pid.as_str()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait on llmur") {
                return status.success();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "llmur {pid} still running 30 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Starts `llmur` with `env` on a free port of 127.0.0.1, logging JSON, and waits up to
/// 30 s for its "llmur listening" line.
pub fn spawn_llmur(env: &[(&str, &str)]) -> Instance {
    let mut child = Command::new(env!("CARGO_BIN_EXE_llmur"))
        .envs(env.iter().copied())
        .env("LLMUR_HOST", "127.0.0.1")
        .env("LLMUR_PORT", "0")
        .env("LLMUR_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("llmur starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let output = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = output.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["message"] == "llmur listening" {
                    let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_owned());
                }
            }
            sink.lock().expect("lock").push(line);
        }
    });
    // Drained so a chatty process never blocks on a full pipe.
    let sink = output.clone();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        sink.lock().expect("lock").push(text);
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| {
            panic!(
                "llmur did not start; output: {:?}",
                output.lock().map(|o| o.clone())
            )
        });
    Instance {
        child,
        base: format!("http://{addr}"),
        output,
    }
}
