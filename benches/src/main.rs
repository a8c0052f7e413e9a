//! `llmur-bench`: the load benchmark. Runs the arms *direct*, *floor*, *llmur bare* and
//! *llmur full* side by side in one run (see `/work/shared/BENCHMARKING.md` and
//! `benches/README.md`), prints a table and writes the figures as JSON.
//!
//! Owns: the order of scenarios, the output files. Must not touch: llmur's own code — it
//! only starts the built binaries.

mod cli;
mod extra;
mod llmur_config;
mod load;
mod payload;
mod procs;
mod redis_stats;
mod report;
mod results;
mod scenarios;
mod stack;
mod stats;
mod targets;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;

use cli::{Args, Plan, Scenario};
use results::Results;
use stack::Env;

/// The harness's error type: any error, with a message.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let plan = Plan::from_args(&args);
    let bins = procs::Bins::locate(!args.no_build)?;
    // The workspace's target/bench, wherever the harness is started from.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bench_dir = manifest
        .parent()
        .unwrap_or(manifest)
        .join("target")
        .join("bench");
    let json = args
        .json
        .clone()
        .unwrap_or_else(|| bench_dir.join("latest.json"));
    let work = bench_dir.join("work");
    // Only this run's logs and configs: the notes below read every log there.
    for owned in ["logs", "configs"] {
        let dir = work.join(owned);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
    }
    let mut env = Env {
        bins,
        work,
        redis_url: args.redis_url.clone(),
        starts: 0,
    };
    let mut results = Results::new(plan.clone(), procs::clock_ticks());
    let started = Instant::now();
    tokio::select! {
        outcome = run_all(&mut env, &plan, &mut results) => outcome?,
        _ = tokio::signal::ctrl_c() => return Err("interrupted".into()),
    }
    results.wall_secs = started.elapsed().as_secs_f64();
    results.notes = log_notes(&env.logs());
    results.checks = targets::check(&results);
    if let Some(dir) = json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&json, serde_json::to_vec_pretty(&results)?)?;
    let mut out = std::io::stdout().lock();
    out.write_all(report::render(&results).as_bytes())?;
    writeln!(
        out,
        "JSON: {}   logs and configs: {}",
        json.display(),
        env.work.display()
    )?;
    Ok(())
}

/// One note per process log with warning or error lines (llmur logs them at `WARN`/`ERROR`).
fn log_notes(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let mut notes = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let bad: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect();
        if let Some(first) = bad.first() {
            let name = path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            let first: String = first.chars().take(200).collect();
            notes.push(format!(
                "{name}: {} warning/error lines; first: {first}",
                bad.len()
            ));
        }
    }
    notes
}

async fn run_all(env: &mut Env, plan: &Plan, results: &mut Results) -> Result<()> {
    for &scenario in &plan.scenarios {
        let started = Instant::now();
        eprintln!("--- {scenario:?}");
        match scenario {
            Scenario::Throughput => scenarios::throughput(env, plan, results).await?,
            Scenario::Latency => scenarios::latency(env, plan, results).await?,
            Scenario::Stream => scenarios::stream(env, plan, results).await?,
            Scenario::Streams => extra::streams(env, plan, results).await?,
            Scenario::ColdStart => extra::cold_start(env, plan, results).await?,
            Scenario::Scale => extra::scale(env, plan, results).await?,
        }
        eprintln!(
            "--- {scenario:?} took {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
