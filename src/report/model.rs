//! Result file schemas shared by `load`, `bench`, `report` and `compare`.
//! Stable: add fields with `#[serde(default)]`, never rename; bump the schema string
//! on a breaking change.

use serde::{Deserialize, Serialize};

use crate::sysinfo::SysInfo;

pub const LOAD_SCHEMA: &str = "ringmux.load/1";
pub const BENCH_SCHEMA: &str = "ringmux.bench/1";

/// Latency percentiles in nanoseconds, from one HdrHistogram.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p75: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub p99_99: u64,
    pub p99_999: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(h: &hdrhistogram::Histogram<u64>) -> Percentiles {
        let q = |p: f64| h.value_at_quantile(p);
        Percentiles {
            count: h.len(),
            min: if h.is_empty() { 0 } else { h.min() },
            mean: h.mean(),
            p50: q(0.50),
            p75: q(0.75),
            p90: q(0.90),
            p99: q(0.99),
            p99_9: q(0.999),
            p99_99: q(0.9999),
            p99_999: q(0.99999),
            max: h.max(),
        }
    }
}

/// Errors seen by the load generator, by kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LoadErrors {
    /// Echoed bytes that differ from what was sent.
    pub mismatch: u64,
    /// Connections reset or closed by the server mid-run.
    pub reset: u64,
    /// Replies that did not arrive in time.
    pub timeout: u64,
    /// Failed connects.
    pub connect: u64,
    pub other: u64,
}

impl LoadErrors {
    pub fn total(&self) -> u64 {
        self.mismatch + self.reset + self.timeout + self.connect + self.other
    }
}

/// Parameters of one load run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadParams {
    pub addr: String,
    /// "closed" or "open".
    pub mode: String,
    pub conns: u32,
    pub size: u32,
    pub pipeline: u32,
    /// Asked total rate in msgs/s (open loop only).
    pub rate: Option<f64>,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub threads: u16,
    /// IO driver the load generator used ("uring" or "epoll").
    pub driver: String,
    /// Seconds a message may stay unanswered before it counts as a timeout.
    #[serde(default)]
    pub timeout_s: Option<f64>,
}

/// What `ringmux load --json` writes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadResult {
    pub schema: String,
    pub params: LoadParams,
    pub sys: SysInfo,
    /// Start of the measured window, seconds since the epoch.
    pub start_unix_s: f64,
    /// Length of the measured window in seconds.
    pub elapsed_s: f64,
    /// Messages completed (reply fully received and verified) in the measured window.
    pub messages: u64,
    /// Messages completed during warm-up (not recorded in histograms).
    pub warmup_messages: u64,
    pub msgs_per_s: f64,
    /// Payload megabytes (1e6) per second, one direction.
    pub mb_per_s: f64,
    /// Open loop: true when the achieved rate stayed within 1% of the asked rate.
    pub rate_kept: Option<bool>,
    /// Latency: from the intended send time in open loop (corrected), from the actual
    /// send in closed loop.
    pub latency: Percentiles,
    /// Open loop only: from the actual send time (uncorrected).
    pub latency_uncorrected: Option<Percentiles>,
    pub errors: LoadErrors,
    /// Load generator CPU (user + system, all its threads) per message over the measured
    /// window, nanoseconds: to check the client costs less than the server.
    #[serde(default)]
    pub load_cpu_ns_per_msg: Option<f64>,
    /// Open loop: messages intended in the window that got no verified reply (server too
    /// slow, stalled at the end, or connections lost).
    #[serde(default)]
    pub missing: Option<u64>,
    /// The run was stopped early (Ctrl-C, SIGTERM, or the caller's stop flag).
    #[serde(default)]
    pub interrupted: bool,
}

/// One measured figure set for one run of one cell of the bench matrix.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunMetrics {
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
    pub p50_ns: f64,
    pub p90_ns: f64,
    pub p99_ns: f64,
    pub p99_9_ns: f64,
    pub p99_99_ns: f64,
    pub max_ns: f64,
    /// Server CPU (user + system) nanoseconds per message.
    pub cpu_ns_per_msg: Option<f64>,
    /// Server syscalls per message (only where the server reports its syscalls).
    pub syscalls_per_msg: Option<f64>,
    /// Server context switches (voluntary + involuntary) per message.
    pub ctx_switches_per_msg: Option<f64>,
    pub errors: u64,
    /// The load generator's own CPU nanoseconds per message (to show it is cheaper
    /// than the server it measures).
    #[serde(default)]
    pub load_cpu_ns_per_msg: Option<f64>,
}

/// One cell of the bench matrix: a server under one load shape, run `runs.len()` times.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cell {
    /// Stable key used by `compare`, e.g. "uring/closed/c50/s128".
    pub id: String,
    /// "uring", "epoll", or an external server's name.
    pub server: String,
    /// io_uring feature level used, when the server is ringmux on io_uring.
    pub features: Option<String>,
    /// Event-loop threads of a ringmux server (`bench --server-threads`, `serve
    /// --threads`); None for other servers and in files from before it was recorded.
    #[serde(default)]
    pub server_threads: Option<u16>,
    /// "closed", "pipelined" or "open".
    pub mode: String,
    pub conns: u32,
    pub size: u32,
    pub pipeline: u32,
    pub rate: Option<f64>,
    pub runs: Vec<RunMetrics>,
    /// Per-metric median over runs, and min and max (spread).
    pub median: RunMetrics,
    pub min: RunMetrics,
    pub max: RunMetrics,
    /// Files (relative to the results folder) with this cell's histograms, one per run.
    #[serde(default)]
    pub hgrm: Vec<String>,
    #[serde(default)]
    pub hlog: Vec<String>,
}

/// What `ringmux bench` writes as results.json.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BenchResults {
    pub schema: String,
    pub sys: SysInfo,
    pub start_unix_s: f64,
    /// The command line and the matrix actually run.
    pub args: serde_json::Value,
    pub cells: Vec<Cell>,
    /// Free-form notes (e.g. "open loop at 50% of measured peak 120000 msgs/s").
    #[serde(default)]
    pub notes: Vec<String>,
}
