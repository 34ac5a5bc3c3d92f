//! Result file schemas shared by `load`, `bench`, `report` and `compare`.
//! Stable: add fields with `#[serde(default)]`, never rename; bump the schema string
//! on a breaking change.

use serde::{Deserialize, Serialize};

use crate::sysinfo::SysInfo;

/// The `schema` string of a [`LoadResult`] (`load --json`, `merge`).
pub const LOAD_SCHEMA: &str = "ringmux.load/1";
/// The `schema` string of a [`BenchResults`] (`bench`'s results.json).
pub const BENCH_SCHEMA: &str = "ringmux.bench/1";
/// `bench --versus`: the suffix of a server run from the base binary (`uring@base`);
/// `compare --pair @base` pairs each with the server without it.
pub const BASE_SUFFIX: &str = "@base";

/// Latency percentiles in nanoseconds, from one HdrHistogram.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    /// Values recorded in the histogram (0 for an empty one).
    pub count: u64,
    /// Smallest value (0 when the histogram is empty).
    pub min: u64,
    /// Mean value.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 75th percentile.
    pub p75: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p99_9: u64,
    /// 99.99th percentile.
    pub p99_99: u64,
    /// 99.999th percentile.
    pub p99_999: u64,
    /// Largest value.
    pub max: u64,
}

impl Percentiles {
    /// The count, min, mean, percentiles and max of `h`, in its unit (ns for latency).
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
    /// Any other error.
    pub other: u64,
    /// HTTP: replies with a status outside 2xx, by status.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub status: std::collections::BTreeMap<u16, u64>,
}

impl LoadErrors {
    /// Errors of every kind, HTTP statuses included.
    pub fn total(&self) -> u64 {
        self.mismatch
            + self.reset
            + self.timeout
            + self.connect
            + self.other
            + self.status.values().sum::<u64>()
    }

    /// Add `other`'s counts to these, kind by kind and status by status.
    pub fn add(&mut self, other: &LoadErrors) {
        self.mismatch += other.mismatch;
        self.reset += other.reset;
        self.timeout += other.timeout;
        self.connect += other.connect;
        self.other += other.other;
        for (k, v) in &other.status {
            *self.status.entry(*k).or_default() += v;
        }
    }
}

/// Parameters of one load run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadParams {
    /// The server's address (`host:port`), as given to `load --addr`.
    pub addr: String,
    /// "closed" or "open".
    pub mode: String,
    /// Connections: this agent's share with `--agents`, the sum in a merged result.
    pub conns: u32,
    /// Message size in bytes (http: the POST body; 0 for `GET /`).
    pub size: u32,
    /// Messages in flight per connection.
    pub pipeline: u32,
    /// Asked total rate in msgs/s (open loop only).
    pub rate: Option<f64>,
    /// The measured window asked for, seconds.
    pub duration_s: f64,
    /// The warm-up before it, seconds (not recorded).
    pub warmup_s: f64,
    /// Load generator threads.
    pub threads: u16,
    /// IO driver the load generator used ("uring" or "epoll").
    pub driver: String,
    /// Protocol spoken ("echo", "upper", "http"); absent in files from before it existed (echo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    /// Seconds a message may stay unanswered before it counts as a timeout.
    #[serde(default)]
    pub timeout_s: Option<f64>,
    /// `load --agents N`: the number of agents sharing the run (None: one). `conns` and
    /// `rate` above are this agent's share (a merged result: the sums).
    #[serde(default)]
    pub agents: Option<u32>,
    /// `load --agent-id I` (None in a merged result).
    #[serde(default)]
    pub agent_id: Option<u32>,
    /// `load --start-at`: the wall-clock start of the warm-up, UNIX seconds.
    #[serde(default)]
    pub start_at: Option<f64>,
}

/// What `ringmux load --json` writes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadResult {
    /// [`LOAD_SCHEMA`].
    pub schema: String,
    /// What was asked.
    pub params: LoadParams,
    /// The machine it ran on.
    pub sys: SysInfo,
    /// Start of the measured window, seconds since the epoch.
    pub start_unix_s: f64,
    /// Length of the measured window in seconds.
    pub elapsed_s: f64,
    /// Messages completed (reply fully received and verified) in the measured window.
    pub messages: u64,
    /// Messages completed during warm-up (not recorded in histograms).
    pub warmup_messages: u64,
    /// Throughput, messages per second (open loop: the achieved rate).
    pub msgs_per_s: f64,
    /// Payload megabytes (1e6) per second, one direction.
    pub mb_per_s: f64,
    /// Open loop: true when the achieved rate (`msgs_per_s`) is at least 99% of the
    /// asked rate and the schedule never fell behind by more than `max_lag_limit_s`.
    pub rate_kept: Option<bool>,
    /// Open loop: the most a message intended in the window was sent after its intended
    /// time, seconds (a message never sent: how late it was when the run stopped).
    #[serde(default)]
    pub max_lag_s: Option<f64>,
    /// Open loop: the lag above which the rate counts as not kept (`load --max-lag`).
    #[serde(default)]
    pub max_lag_limit_s: Option<f64>,
    /// Connections that were established (of `params.conns` requested).
    #[serde(default)]
    pub conns_established: Option<u32>,
    /// Connects the server refused (ECONNREFUSED); included in `errors.connect`.
    #[serde(default)]
    pub connect_refused: u64,
    /// Latency: from the intended send time in open loop (corrected), from the actual
    /// send in closed loop.
    pub latency: Percentiles,
    /// Open loop only: from the actual send time (uncorrected).
    pub latency_uncorrected: Option<Percentiles>,
    /// Errors by kind over the whole run.
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
    /// `--idle-conns`: silent connections held open during the run.
    #[serde(default)]
    pub idle_conns: u32,
    /// Of those, how many the server had closed (EOF or reset) by the end.
    #[serde(default)]
    pub idle_closed: u32,
}

/// One measured figure set for one run of one cell of the bench matrix.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunMetrics {
    /// Throughput, messages per second.
    pub msgs_per_s: f64,
    /// Payload megabytes (1e6 bytes) per second, one direction.
    pub mb_per_s: f64,
    /// Median latency, ns (corrected in open loop).
    pub p50_ns: f64,
    /// 90th percentile latency, ns.
    pub p90_ns: f64,
    /// 99th percentile latency, ns.
    pub p99_ns: f64,
    /// 99.9th percentile latency, ns.
    pub p99_9_ns: f64,
    /// 99.99th percentile latency, ns.
    pub p99_99_ns: f64,
    /// Largest latency, ns.
    pub max_ns: f64,
    /// Server CPU (user + system) nanoseconds per message.
    pub cpu_ns_per_msg: Option<f64>,
    /// Server syscalls per message (only where the server reports its syscalls).
    pub syscalls_per_msg: Option<f64>,
    /// Server context switches (voluntary + involuntary) per message.
    pub ctx_switches_per_msg: Option<f64>,
    /// Errors the load generator counted ([`LoadErrors::total`]); in a cell's `median`
    /// this is the sum over runs.
    pub errors: u64,
    /// The load generator's own CPU nanoseconds per message (to show it is cheaper
    /// than the server it measures).
    #[serde(default)]
    pub load_cpu_ns_per_msg: Option<f64>,
    /// The server's busy share during the measured run: its CPU seconds over the
    /// run's wall seconds (1.0 = one core saturated). CPU per message means little
    /// without it: an unsaturated server sleeps and wakes for small batches.
    #[serde(default)]
    pub server_busy: Option<f64>,
}

impl RunMetrics {
    /// A load generator's figures (throughput, latency percentiles in ns, errors);
    /// the server-side ones are left for the bench to fill in.
    pub fn of_load(msgs_per_s: f64, mb_per_s: f64, l: &Percentiles, errors: u64) -> RunMetrics {
        RunMetrics {
            msgs_per_s,
            mb_per_s,
            p50_ns: l.p50 as f64,
            p90_ns: l.p90 as f64,
            p99_ns: l.p99 as f64,
            p99_9_ns: l.p99_9 as f64,
            p99_99_ns: l.p99_99 as f64,
            max_ns: l.max as f64,
            errors,
            ..RunMetrics::default()
        }
    }
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
    /// Connections.
    pub conns: u32,
    /// Message size in bytes.
    pub size: u32,
    /// Messages in flight per connection.
    pub pipeline: u32,
    /// Open loop: the rate, msgs/s; None in closed loop.
    pub rate: Option<f64>,
    /// One set of figures per run, in run order.
    pub runs: Vec<RunMetrics>,
    /// Per-metric median over runs (`errors`: their sum).
    pub median: RunMetrics,
    /// Per-metric smallest over runs (the low end of the spread).
    pub min: RunMetrics,
    /// Per-metric largest over runs (the high end of the spread).
    pub max: RunMetrics,
    /// Files (relative to the results folder) with this cell's histograms, one per run.
    #[serde(default)]
    pub hgrm: Vec<String>,
    /// The same for the `.hlog` interval logs.
    #[serde(default)]
    pub hlog: Vec<String>,
    /// `bench --profile`: where the server's CPU went (perf samples grouped), the
    /// mean of the runs' shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<super::profile::Profile>,
    /// Runs whose load measured nothing (0 messages, 0 errors) twice, tried and
    /// retried: left out of `runs` and of the median. A cell with no run has no data.
    #[serde(default)]
    pub empty_runs: u32,
}

/// What `ringmux bench` writes as results.json.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BenchResults {
    /// [`BENCH_SCHEMA`].
    pub schema: String,
    /// The machine it ran on.
    pub sys: SysInfo,
    /// When the bench started, seconds since the epoch.
    pub start_unix_s: f64,
    /// The command line and the matrix actually run.
    pub args: serde_json::Value,
    /// The throughput matrix, one per server and load shape (empty with `--idle-conns`).
    pub cells: Vec<Cell>,
    /// Free-form notes (e.g. "open loop at 50% of measured peak 120000 msgs/s").
    #[serde(default)]
    pub notes: Vec<String>,
    /// `bench --idle-conns N`: resident memory per idle connection, per server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<IdleResults>,
    /// What each server costs with no traffic: CPU share and syscalls (or context
    /// switches) per second, with no connection and with idle connections open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quiet: Vec<QuietRow>,
    /// `bench --preset models`: the IO-model lab's sweeps and claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<super::models::ModelsResults>,
}

/// One server sitting idle for `seconds` with `conns` silent connections open.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct QuietRow {
    /// Server name (`uring`, `epoll`, a peer, an external).
    pub server: String,
    /// Its io_uring feature level, or None.
    pub features: Option<String>,
    /// Silent connections held open (0, then `--quiet-conns`).
    pub conns: u32,
    /// Wall seconds it sat idle.
    pub seconds: f64,
    /// Server CPU seconds per wall second (0.01 = 1% of a core).
    pub cpu_share: f64,
    /// Syscalls per second (ringmux servers, from their own counts).
    pub syscalls_per_s: Option<f64>,
    /// Context switches per second (every server, from /proc).
    pub ctx_per_s: f64,
}

/// The server's resident memory per idle connection (`bench --idle-conns N`): RSS
/// read before and after N connections that each did one small echo round trip and
/// then stayed open and silent.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IdleResults {
    /// Connections held open per run.
    pub conns: u32,
    /// Bytes each connection sent, and read back, once before going idle.
    pub round_trip_bytes: u32,
    /// Connections opened and round-tripped at a time.
    pub wave: u32,
    /// Connections opened and closed before the first RSS reading (code pages and
    /// one-time allocations are not charged to the idle connections).
    pub warmup_conns: u32,
    /// Pause before each RSS reading, milliseconds.
    pub settle_ms: u64,
    /// The budget figures are held against, bytes per connection (1024).
    pub budget_bytes_per_conn: f64,
    /// One entry per server.
    pub servers: Vec<IdleServer>,
}

/// One server's idle-memory figures over `runs.len()` fresh server processes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IdleServer {
    /// Stable key used by `compare`, e.g. "idle/uring:baseline/c10000".
    pub id: String,
    /// Server name.
    pub server: String,
    /// io_uring feature level used, when the server is ringmux on io_uring.
    pub features: Option<String>,
    /// One entry per fresh server process.
    pub runs: Vec<IdleRun>,
    /// (VmRSS after - before) / conns in bytes, the median over runs.
    pub bytes_per_conn: f64,
    /// Smallest of the runs' `bytes_per_conn`.
    pub bytes_per_conn_min: f64,
    /// Largest of the runs' `bytes_per_conn`.
    pub bytes_per_conn_max: f64,
    /// The same for RssAnon (heap and anonymous mappings only), median over runs.
    pub anon_bytes_per_conn: f64,
}

/// One run: a fresh server, its RSS before and after the idle connections.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IdleRun {
    /// VmRSS before the connections were opened, KiB.
    pub rss_before_kib: u64,
    /// VmRSS with them open, KiB.
    pub rss_after_kib: u64,
    /// RssAnon before, KiB.
    pub anon_before_kib: u64,
    /// RssAnon after, KiB.
    pub anon_after_kib: u64,
    /// (`rss_after_kib` - `rss_before_kib`) × 1024 / connections: bytes per connection.
    pub bytes_per_conn: f64,
    /// The same from RssAnon.
    pub anon_bytes_per_conn: f64,
    /// Seconds to open every connection and do its round trip.
    pub connect_s: f64,
    /// Connections the server had open when RSS was read (ringmux: accepted - closed
    /// from a stats snapshot; other servers: file descriptors gained).
    pub server_open: u64,
}
