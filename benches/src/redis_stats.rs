//! Redis's own work behind an arm: the scripts it ran and the CPU it used, read from
//! `INFO cpu commandstats` before and after each of the arm's rounds.
//!
//! Owns: [`RedisStats`] (one reading), [`RedisLoad`] (per 1,000 requests) and the few
//! bytes of the Redis protocol the reading needs. Must not touch: llmur's keys in Redis.
//!
//! Redis runs on the same two cores as everything else in the bench, so its CPU is part of
//! what an arm costs the machine. The figures are Redis's totals over the round: work a
//! lease left to run after the round ended (a last give-back) falls into the next reading.

use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Result;

/// One reading of Redis's counters since it started (or since `CONFIG RESETSTAT`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RedisStats {
    /// Script calls (`EVAL`, `EVALSHA`, `FCALL` and their read-only forms): llmur talks
    /// to Redis in scripts alone, and the commands a script runs are counted apart.
    pub scripts: u64,
    /// CPU seconds used, user plus system.
    pub cpu_s: f64,
}

/// Redis's work per 1,000 requests of one round.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RedisLoad {
    /// Script calls.
    pub scripts_per_1k: f64,
    /// CPU milliseconds used.
    pub cpu_ms_per_1k: f64,
}

impl RedisStats {
    /// Reads `INFO cpu commandstats` from the Redis at `url` (`redis://host:port`, no
    /// password: the test Redis).
    pub async fn read(url: &str) -> Result<RedisStats> {
        let addr = url
            .trim_start_matches("redis://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let reading = async {
            let mut conn = TcpStream::connect(&addr).await?;
            conn.write_all(b"*3\r\n$4\r\nINFO\r\n$3\r\ncpu\r\n$12\r\ncommandstats\r\n")
                .await?;
            let mut reply = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                let n = conn.read(&mut buf).await?;
                if n == 0 {
                    return Err("Redis closed the connection mid-reply".into());
                }
                reply.extend_from_slice(buf.get(..n).unwrap_or_default());
                if let Some(text) = bulk(&reply)? {
                    return Ok(parse(text));
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), reading)
            .await
            .map_err(|_| format!("no answer to INFO from Redis at {addr} in 5 s"))?
    }

    /// The work between `self` (before) and `after`, per 1,000 of `requests`; none
    /// without requests.
    pub fn per_1k(self, after: RedisStats, requests: u64) -> Option<RedisLoad> {
        if requests == 0 {
            return None;
        }
        let per_1k = 1000.0 / requests as f64;
        let scripts = after.scripts.saturating_sub(self.scripts);
        Some(RedisLoad {
            scripts_per_1k: scripts as f64 * per_1k,
            cpu_ms_per_1k: (after.cpu_s - self.cpu_s).max(0.0) * 1000.0 * per_1k,
        })
    }
}

/// The text of a complete RESP bulk string reply (`$<len>\r\n<text>\r\n`), or none yet.
fn bulk(reply: &[u8]) -> Result<Option<&str>> {
    let Some(end) = reply.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(reply.get(..end).unwrap_or_default())?;
    let Some(len) = head.strip_prefix('$') else {
        return Err(format!("unexpected reply from Redis: {head}").into());
    };
    let len: usize = len.parse()?;
    let Some(body) = reply.get(end + 2..end + 2 + len) else {
        return Ok(None);
    };
    Ok(Some(std::str::from_utf8(body)?))
}

/// Sums the script commands' `calls=` and `used_cpu_sys` + `used_cpu_user` of an `INFO`
/// text.
fn parse(info: &str) -> RedisStats {
    let mut stats = RedisStats::default();
    for line in info.lines() {
        if let Some(rest) = line.strip_prefix("cmdstat_") {
            let Some((name, rest)) = rest.split_once(":calls=") else {
                continue;
            };
            if !(name.starts_with("eval") || name.starts_with("fcall")) {
                continue;
            }
            let calls = rest.split(',').next().and_then(|n| n.parse::<u64>().ok());
            stats.scripts += calls.unwrap_or(0);
        } else if let Some((name, value)) = line.split_once(':') {
            if name == "used_cpu_sys" || name == "used_cpu_user" {
                stats.cpu_s += value.trim().parse::<f64>().unwrap_or(0.0);
            }
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\n\
        used_cpu_sys_children:9.000000\r\nused_cpu_sys_main_thread:1.400000\r\n\r\n\
        # Commandstats\r\ncmdstat_evalsha:calls=120,usec=13200,usec_per_call=110.00,\
        rejected_calls=0,failed_calls=0\r\ncmdstat_hmget:calls=240,usec=2000,\
        usec_per_call=8.33,rejected_calls=0,failed_calls=0\r\ncmdstat_eval:calls=4,\
        usec=300,usec_per_call=75.00,rejected_calls=0,failed_calls=0\r\n";

    #[test]
    fn parses_script_calls_and_cpu_of_the_process_itself() {
        let stats = parse(INFO);
        // Not the HMGETs the scripts ran.
        assert_eq!(stats.scripts, 124);
        // Children's and the main thread's lines are not added again.
        assert!((stats.cpu_s - 3.75).abs() < 1e-9, "{}", stats.cpu_s);
    }

    #[test]
    fn reads_a_bulk_reply_only_once_complete() {
        let reply = format!("${}\r\n{INFO}\r\n", INFO.len());
        let bytes = reply.as_bytes();
        assert_eq!(bulk(bytes.get(..10).unwrap_or_default()).ok(), Some(None));
        assert_eq!(bulk(bytes).ok().flatten(), Some(INFO));
        assert!(bulk(b"-ERR unknown\r\n").is_err());
    }

    #[test]
    fn per_thousand_requests() {
        let before = RedisStats {
            scripts: 100,
            cpu_s: 1.0,
        };
        let after = RedisStats {
            scripts: 150,
            cpu_s: 1.02,
        };
        let load = before.per_1k(after, 500).unwrap_or(RedisLoad {
            scripts_per_1k: 0.0,
            cpu_ms_per_1k: 0.0,
        });
        assert!((load.scripts_per_1k - 100.0).abs() < 1e-9);
        assert!((load.cpu_ms_per_1k - 40.0).abs() < 1e-6);
        assert_eq!(before.per_1k(after, 0), None);
    }
}
