//! The orchestrator: the one place that knows servers, load and reports together.
//!
//! Each run starts a fresh server process pinned to one CPU (`--server-threads N`: N
//! CPUs, one event loop on each) and a `ringmux load` process pinned to the others,
//! warms up (unrecorded), then measures. The server's
//! CPU, context switches and (for ringmux) syscalls are read just before and after the
//! measured load, so warm-up and connection set-up of the warm-up run stay out.
//! Servers are interleaved (A B A B ...) within every repeat.
//!
//! The rooms: [`BenchConfig`] (what was asked), `plan` (the checked plan: servers,
//! shapes, CPUs), `proc` (server and load processes, their counters), `matrix`
//! (the interleaved runs and their medians), `quiet` (the idle-cost rows), `peers`
//! (the reference servers). Two cases run instead of the matrix: `--idle-conns N`
//! (`idle`: the server's resident memory per idle connection) and `--preset models`
//! (`models`: the IO-model lab).

mod config;
mod empty;
mod group;
mod idle;
mod matrix;
mod models;
mod peers;
mod plan;
mod proc;
mod profile;
mod quiet;
mod spec;
mod tokio_client;
mod versus;

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;

pub use config::{BenchConfig, BenchPreset, LoadClient, RunLengths, VersusMode};
pub use peers::{PEERS, locked_version};
pub use plan::{Plan, Shape};
pub use proc::{pinned, proc_cpu_s};
pub use spec::ServerSpec;

use crate::error::ExitError;
use crate::proto::Proto;
use crate::results::schema::{BENCH_SCHEMA, BenchResults};
use crate::sysinfo::SysInfo;

/// Bad usage: one line, exit 2.
fn usage_error(e: anyhow::Error) -> ExitError {
    ExitError {
        code: 2,
        msg: format!("{e:#}"),
    }
}

/// `ringmux bench`.
pub fn bench_cmd(cfg: BenchConfig) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the ringmux binary")?;
    // Orphans of a server's group (a wrapper's child whose wrapper died) come to us to
    // be reaped, not to PID 1.
    group::become_subreaper();
    // Servers run in groups of their own: a Ctrl-C no longer reaches them, we stop them.
    group::stop_groups_on_signal();
    let r = bench_run(cfg, exe);
    group::wait_if_interrupted();
    r
}

/// The bench itself, once the process is set up to stop what it starts.
fn bench_run(cfg: BenchConfig, exe: PathBuf) -> anyhow::Result<ExitCode> {
    if cfg.preset == Some(BenchPreset::Models) {
        return models_cmd(cfg, exe);
    }
    // Every error of the plan is bad usage (unknown backend, bad --external, ...).
    let plan = Plan::new(&cfg, exe).map_err(usage_error)?;
    if let Some(n) = plan.cfg.idle_conns {
        let results = idle::run(&plan, n)?;
        if let Some(idle) = &results.idle {
            println!("{}", crate::report::md::idle_markdown(idle));
        }
        println!("report: {}", plan.out.join("report.html").display());
        return Ok(ExitCode::SUCCESS);
    }
    let results = matrix::run(&plan)?;
    if plan.client.is_some() {
        println!("load: the tokio reference client (bench --client tokio), not ringmux load\n");
    }
    println!("{}", crate::report::headline_markdown(&results));
    print!("{}", crate::report::cost::quiet_markdown(&results));
    println!("report: {}", plan.out.join("report.html").display());
    let errors: u64 = results
        .cells
        .iter()
        .flat_map(|c| &c.runs)
        .map(|r| r.errors)
        .sum();
    let empty: u32 = results.cells.iter().map(|c| c.empty_runs).sum();
    if empty > 0 {
        eprintln!(
            "ringmux: warning: {empty} run(s) measured 0 messages and 0 errors, twice: no figure kept; see the notes in results.json"
        );
    }
    if errors > 0 {
        eprintln!("ringmux: warning: the load generator counted {errors} errors; see results.json");
    }
    if errors > 0 || empty > 0 {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `ringmux bench --preset models`: the IO-model lab ([`models`]).
fn models_cmd(cfg: BenchConfig, exe: PathBuf) -> anyhow::Result<ExitCode> {
    let conflicting = [
        (cfg.idle_conns.is_some(), "--idle-conns"),
        (!cfg.external.is_empty(), "--external"),
        (cfg.proto != Proto::Echo, "--proto"),
        (cfg.server_threads > 1, "--server-threads"),
        (cfg.open_rate.is_some(), "--open-rate"),
        (cfg.versus.is_some(), "--versus"),
        (cfg.together, "--together"),
        (cfg.client != LoadClient::Ringmux, "--client"),
    ];
    if let Some((_, flag)) = conflicting.iter().find(|c| c.0) {
        return Err(usage_error(anyhow::anyhow!(
            "--preset models chooses its own servers and loads: leave out {flag}"
        ))
        .into());
    }
    // The lab chooses its servers per sweep: the plan gives it the rest (CPUs, run
    // lengths, output folder, perf).
    let plan = Plan::new(
        &BenchConfig {
            no_peers: true,
            backends: vec!["epoll".into()],
            ..cfg.clone()
        },
        exe,
    )
    .map_err(usage_error)?;
    let results = models::run(&plan)?;
    if let Some(m) = &results.models {
        println!(
            "## IO models: Claims\n\n{}",
            crate::report::models::claims_markdown(m)
        );
        println!(
            "Slope per watched fd (sweep A):\n\n{}",
            crate::report::models::slopes_markdown(m)
        );
    }
    println!("report: {}", plan.out.join("report.html").display());
    Ok(ExitCode::SUCCESS)
}

/// Create the output folder (with `runs/`) and return the start time (Unix seconds).
fn create_out(plan: &Plan) -> anyhow::Result<f64> {
    fs::create_dir_all(plan.out.join("runs"))
        .with_context(|| format!("cannot create {}", plan.out.display()))?;
    Ok(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64())
}

/// Write results.json and the reports into the output folder.
fn write_results(plan: &Plan, results: &BenchResults) -> anyhow::Result<()> {
    fs::write(
        plan.out.join("results.json"),
        serde_json::to_vec_pretty(results)?,
    )?;
    crate::report::write_reports(&plan.out, results)
}

/// Results begun at `start_unix_s` with `args`: schema and this machine filled in,
/// the rest empty for the case to fill.
fn results(start_unix_s: f64, args: serde_json::Value) -> BenchResults {
    BenchResults {
        schema: BENCH_SCHEMA.to_string(),
        sys: SysInfo::collect(),
        start_unix_s,
        args,
        cells: Vec::new(),
        notes: Vec::new(),
        idle: None,
        quiet: Vec::new(),
        models: None,
    }
}

/// The progress lines on stderr: "[3/12] epoll/closed/c50/s128 run 2 (14s)".
struct Progress {
    done: usize,
    total: usize,
    t0: Instant,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress {
            done: 0,
            total,
            t0: Instant::now(),
        }
    }

    /// One more run of `what` (repeat `rep`, from 0) begins.
    fn step(&mut self, what: &str, rep: u32) {
        self.done += 1;
        eprintln!(
            "[{}/{}] {what} run {} ({:.0}s)",
            self.done,
            self.total,
            rep + 1,
            self.t0.elapsed().as_secs_f64()
        );
    }
}

/// The file stem of a run's files in `runs/`: its id made path-safe, and the repeat.
fn run_stem(id: &str, rep: u32) -> String {
    format!("{}-r{}", id.replace(['/', ':'], "_"), rep + 1)
}
