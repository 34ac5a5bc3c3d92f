//! Command-line types for every subcommand (clap derive). Parsing only: each
//! subcommand's `Args` is turned into a validated config by the module that runs it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// ringmux: an io_uring proactor and an epoll reactor side by side, with the load
/// generator and reports to compare them.
#[derive(Debug, Parser)]
#[command(name = "ringmux", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a TCP server (echo, upper) on io_uring or epoll.
    Serve(ServeArgs),
    /// Drive a TCP echo server and record latency in HdrHistograms.
    Load(LoadArgs),
    /// Run the benchmark matrix (backends x connections x modes) and write a report.
    Bench(BenchArgs),
    /// Re-render report.md and report.html from a bench output folder.
    Report(ReportArgs),
    /// Compare two results files; exit 0 within limits, 1 on a regression, 2 on bad input.
    Compare(CompareArgs),
    /// Merge interval logs (.hlog) from several load processes into one.
    Merge(MergeArgs),
    /// Show the kernel, whether io_uring can be set up here, and each feature ringmux may use.
    Probe(ProbeArgs),
}

/// Which IO model serves connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// io_uring if it can be set up with the ops ringmux needs, else epoll (one warning line).
    Auto,
    /// The io_uring proactor; exit non-zero if io_uring is unavailable.
    Uring,
    /// The edge-triggered epoll reactor.
    Epoll,
}

/// How `load` drives its sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DriverChoice {
    /// io_uring if a ring with what the driver needs can be set up (Linux 5.11+), else
    /// epoll (one warning line).
    Auto,
    /// SEND/RECV through io_uring; exit non-zero if io_uring is unavailable.
    Uring,
    /// Non-blocking sockets on edge-triggered epoll.
    Epoll,
}

/// io_uring feature level. Each level adds to the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureLevel {
    /// Linux 5.6 set: POLL_ADD for readiness, then RECV; one-shot ACCEPT and SEND.
    Baseline,
    /// Linux 5.7+ with FEAT_FAST_POLL: RECV/SEND/ACCEPT submitted directly.
    Fastpoll,
}

/// Pick the best level or pin one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FeatureChoice {
    /// The best level this kernel supports.
    Auto,
    Baseline,
    Fastpoll,
}

pub use crate::proto::Proto as ProtoChoice;

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on (use port 0 for any free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub addr: SocketAddr,
    /// IO model.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// Protocol.
    #[arg(long, value_enum, default_value_t = ProtoChoice::Echo)]
    pub proto: ProtoChoice,
    /// io_uring feature level (ignored by epoll).
    #[arg(long, value_enum, default_value_t = FeatureChoice::Auto)]
    pub uring_features: FeatureChoice,
    /// Event-loop threads (one listener per thread with SO_REUSEPORT). Only 1 for now.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: u16,
    /// Pin event-loop thread i to CPU i (or to the CPUs in --cpus).
    #[arg(long)]
    pub pin: bool,
    /// Per-connection outbox cap in bytes; above it the server stops reading that connection.
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1024..=(1u64 << 32)))]
    pub outbox_cap: u64,
    /// Size of each receive buffer in bytes.
    #[arg(long, default_value_t = 16 * 1024, value_parser = clap::value_parser!(u64).range(512..=(16u64 << 20)))]
    pub recv_buf: u64,
    /// io_uring submission queue entries (the completion queue gets 4x). Halved on ENOMEM.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(8..=32768i64))]
    pub ring_entries: u32,
    /// listen(2) backlog.
    #[arg(long, default_value_t = 4096)]
    pub backlog: i32,
    /// On SIGINT/SIGTERM, seconds to flush owed bytes before closing anyway.
    #[arg(long, default_value_t = 5.0, value_parser = parse_secs)]
    pub drain_timeout: f64,
    /// Write the exit stats (syscalls, CPU, bytes, connections) as JSON to this file.
    #[arg(long)]
    pub stats_json: Option<PathBuf>,
    /// Print nothing but errors and warnings (no start line, no stats summary).
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Server address (loopback or an address you own).
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub addr: SocketAddr,
    /// Connections.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub conns: u32,
    /// Message size in bytes.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=(64i64 << 20)))]
    pub size: u32,
    /// Measured seconds (after warm-up).
    #[arg(long, default_value_t = 10.0, value_parser = parse_secs)]
    pub duration: f64,
    /// Unrecorded warm-up seconds.
    #[arg(long, default_value_t = 1.0, value_parser = parse_secs)]
    pub warmup: f64,
    /// Messages in flight per connection (closed loop); the most outstanding per
    /// connection in open loop.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub pipeline: u32,
    /// Total messages per second: open loop with coordinated-omission correction.
    /// Without it: closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Load threads; connections are spread over them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: u16,
    /// CPUs to pin load threads to, e.g. "1" or "2-5" or "1,3".
    #[arg(long)]
    pub pin: Option<String>,
    /// How the load threads drive their sockets.
    #[arg(long, value_enum, default_value_t = DriverChoice::Auto)]
    pub driver: DriverChoice,
    /// Write the percentile distribution (HdrHistogram plotter format, ms).
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// Write an HdrHistogram interval log (v1.3, tagged corrected/uncorrected).
    #[arg(long)]
    pub hlog: Option<PathBuf>,
    /// Write all figures and parameters as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress line and no summary.
    #[arg(long)]
    pub quiet: bool,
    /// Exit 0 even when errors (mismatches, resets, timeouts) were counted.
    #[arg(long)]
    pub allow_errors: bool,
    /// Seconds a message may stay unanswered before it counts as a timeout (its
    /// connection is then dropped). Also bounds the final drain of an open-loop run.
    #[arg(long, default_value_t = 10.0, value_parser = parse_secs)]
    pub timeout: f64,
    /// Length of one interval of the interval log (--hlog) and of the progress line, seconds.
    #[arg(long, default_value_t = 1.0, value_parser = parse_secs)]
    pub interval: f64,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Backends to compare, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "uring,epoll")]
    pub backends: Vec<String>,
    /// Connection counts, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,50,500")]
    pub conns: Vec<u32>,
    /// Message size in bytes.
    #[arg(long, default_value_t = 128)]
    pub size: u32,
    /// Seconds per measured run.
    #[arg(long, value_parser = parse_secs)]
    pub duration: Option<f64>,
    /// Repeats of the whole interleaved matrix.
    #[arg(long)]
    pub repeat: Option<u32>,
    /// Another server in the same matrix: NAME=CMD, CMD gets {addr}.
    #[arg(long)]
    pub external: Vec<String>,
    /// Short matrix for CI (under 30 s).
    #[arg(long)]
    pub quick: bool,
    /// Output folder (default bench-out/<timestamp>/).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A bench output folder (holds results.json).
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Baseline results (results.json from bench, or a load --json file).
    pub base: PathBuf,
    /// New results to check against the baseline.
    pub head: PathBuf,
    /// Allowed regressions, e.g. "p99=10%,throughput=5%".
    #[arg(long, default_value = "p99=10%,throughput=5%")]
    pub max_regression: String,
}

#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// Interval logs to merge.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output interval log.
    #[arg(short, long)]
    pub output: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Seconds as a non-negative finite number ("5", "0.5").
pub fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim_end_matches('s').parse().map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !v.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&v) {
        return Err(format!("'{s}' is out of range (0 to one year)"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn secs() {
        assert_eq!(parse_secs("5").unwrap(), 5.0);
        assert_eq!(parse_secs("0.5s").unwrap(), 0.5);
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("nan").is_err());
        assert!(parse_secs("x").is_err());
    }
}
