//! Command-line types for every subcommand (clap derive). Parsing only: each
//! subcommand's `Args` is turned into a validated config by the module that runs it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// ringmux: the Linux IO models side by side (an io_uring proactor, an epoll reactor,
/// poll, select, signal-driven IO, blocking, threads, busy polling), with the load
/// generator and reports to compare them.
#[derive(Debug, Parser)]
#[command(name = "ringmux", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a TCP server (echo, upper, http, chat) on any IO model (--backend).
    Serve(ServeArgs),
    /// Drive a TCP server (echo, upper or http) and record latency in HdrHistograms.
    Load(LoadArgs),
    /// Run the benchmark matrix (backends x connections x modes) and write a report.
    Bench(BenchArgs),
    /// Re-render report.md and report.html from a bench output folder.
    Report(ReportArgs),
    /// Compare two results files; exit 0 within limits, 1 on a regression, 2 on bad input.
    Compare(CompareArgs),
    /// Merge interval logs (.hlog) from several load processes, or a folder of load
    /// agents' results, into one.
    Merge(MergeArgs),
    /// Show the kernel, whether io_uring can be set up here, and each feature ringmux may use.
    Probe(ProbeArgs),
    /// Connect, send each stdin line, print what the server sends as it arrives.
    Client(ClientArgs),
}

/// Which IO model serves connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// io_uring if it can be set up with the ops ringmux needs, else epoll (one warning line).
    Auto,
    /// The io_uring proactor; exit non-zero if io_uring is unavailable.
    Uring,
    /// The reactor on epoll (edge-triggered; a wait costs O(ready fds)).
    Epoll,
    /// The reactor on poll(2) (level-triggered; a wait costs O(watched fds)).
    Poll,
    /// The reactor on select(2) (level-triggered; O(highest fd); a connection whose fd
    /// is 1024 or more is closed at once and counted as refused_fd_setsize).
    Select,
    /// The reactor on signal-driven IO (O_ASYNC + F_SETSIG real-time signals routed by
    /// fd; a queue overflow means a rescan of every connection, counted).
    Sigio,
    /// A blocking thread per connection (64 KiB stacks); --max-threads caps them, and a
    /// connection above the cap waits in the listen backlog until a thread ends.
    Threads,
    /// One connection at a time with blocking calls: a second client waits in the
    /// listen backlog until the first leaves.
    Blocking,
    /// Non-blocking sockets polled in a loop with no readiness call (burns a core while
    /// any connection is open; counts the EAGAINs).
    Busypoll,
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
    /// Linux 5.7+ with FEAT_FAST_POLL: RECV/SEND/ACCEPT submitted directly; RECV picks
    /// a buffer from a PROVIDE_BUFFERS group only when data arrives.
    Fastpoll,
    /// Linux 6.0+: multishot ACCEPT, multishot RECV into a registered buffer ring,
    /// COOP_TASKRUN.
    Multishot,
    /// Linux 6.1+: multishot plus SINGLE_ISSUER + DEFER_TASKRUN and a registered ring fd;
    /// on 6.12+ coalesced waits bounded by min_wait.
    Full,
}

/// How the proactor waits for completions at `full` (with FEAT_MIN_TIMEOUT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitMode {
    /// Coalesce only after a busy turn (32 or more receives); else wait for one.
    Adaptive,
    /// Always wait for the queued sends plus some receives, bounded by min_wait.
    Coalesce,
    /// Always wait for one completion.
    Single,
}

impl WaitMode {
    pub fn name(self) -> &'static str {
        match self {
            WaitMode::Adaptive => "adaptive",
            WaitMode::Coalesce => "coalesce",
            WaitMode::Single => "single",
        }
    }
}

/// Pick the best level or pin one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FeatureChoice {
    /// The best level this kernel supports.
    Auto,
    Baseline,
    Fastpoll,
    Multishot,
    Full,
}

impl From<FeatureLevel> for FeatureChoice {
    fn from(l: FeatureLevel) -> FeatureChoice {
        match l {
            FeatureLevel::Baseline => FeatureChoice::Baseline,
            FeatureLevel::Fastpoll => FeatureChoice::Fastpoll,
            FeatureLevel::Multishot => FeatureChoice::Multishot,
            FeatureLevel::Full => FeatureChoice::Full,
        }
    }
}

impl FeatureChoice {
    /// The level pinned, if one is.
    pub fn pinned(self) -> Option<FeatureLevel> {
        match self {
            FeatureChoice::Auto => None,
            FeatureChoice::Baseline => Some(FeatureLevel::Baseline),
            FeatureChoice::Fastpoll => Some(FeatureLevel::Fastpoll),
            FeatureChoice::Multishot => Some(FeatureLevel::Multishot),
            FeatureChoice::Full => Some(FeatureLevel::Full),
        }
    }
}

impl FeatureLevel {
    pub fn name(self) -> &'static str {
        match self {
            FeatureLevel::Baseline => "baseline",
            FeatureLevel::Fastpoll => "fastpoll",
            FeatureLevel::Multishot => "multishot",
            FeatureLevel::Full => "full",
        }
    }
}

pub use crate::proto::Proto as ProtoChoice;

/// What `load` speaks (and verifies) on each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoadProto {
    /// Every byte sent comes back unchanged.
    Echo,
    /// Every byte comes back with ASCII letters upper-cased (`serve --proto upper`).
    Upper,
    /// HTTP/1.1: `GET /` expecting `Hello, World!` with --size 0, else `POST /echo` with
    /// a --size byte body expected back; non-2xx replies count as errors by status.
    Http,
}

impl LoadProto {
    pub fn name(self) -> &'static str {
        match self {
            LoadProto::Echo => "echo",
            LoadProto::Upper => "upper",
            LoadProto::Http => "http",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on, IP:PORT (port 0: any free port; the bound address is printed).
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:7878", value_parser = parse_addr)]
    pub addr: SocketAddr,
    /// IO model.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// Protocol.
    #[arg(long, value_enum, default_value_t = ProtoChoice::Echo)]
    pub proto: ProtoChoice,
    /// io_uring feature level (ignored by epoll). `auto` picks the best this kernel
    /// supports (see `ringmux probe`); naming a level pins it, and fails if the kernel
    /// lacks it.
    #[arg(long, value_enum, default_value_t = FeatureChoice::Auto)]
    pub uring_features: FeatureChoice,
    /// At multishot/full: use one-shot ACCEPT instead of multishot ACCEPT (multishot
    /// accept with DEFER_TASKRUN returned bad descriptors on some 6.6-6.8 kernels).
    #[arg(long)]
    pub no_multishot_accept: bool,
    /// At full: leave out DEFER_TASKRUN (keep SINGLE_ISSUER).
    #[arg(long)]
    pub no_defer_taskrun: bool,
    /// At full on Linux 6.12+: how the loop waits for completions.
    ///
    /// `adaptive` (default) waits for one completion at a time while traffic is light
    /// and coalesces (the queued sends plus half the last turn's receives, bounded by
    /// min_wait) only after a turn that brought 32 or more receives. `coalesce` always
    /// coalesces; `single` never does. An idle server sleeps in every mode.
    #[arg(long, value_enum, default_value_t = WaitMode::Adaptive, verbatim_doc_comment)]
    pub uring_wait: WaitMode,
    /// Let a kernel thread poll the submission queue (IORING_SETUP_SQPOLL). It burns a
    /// core while busy; its CPU time counts in the server's stats. Excludes DEFER_TASKRUN.
    #[arg(long)]
    pub sqpoll: bool,
    /// The most receive buffers the kernel may pick from at fastpoll/multishot/full (a
    /// power of two; each is --recv-buf bytes). The group starts at 64 and doubles after
    /// a loop turn in which a RECV found it empty (ENOBUFS: the bytes wait in the
    /// socket and the RECV is re-armed).
    #[arg(long, default_value_t = 1024, value_parser = parse_buf_entries)]
    pub buf_ring_entries: u16,
    /// Event loops, one thread each, sharing the port through SO_REUSEPORT.
    ///
    /// Each loop has its own listening socket on the same address (SO_REUSEPORT) and
    /// its own io_uring ring or epoll instance; loops share nothing while serving. The
    /// kernel hands each new connection to one listener by a hash of its addresses and
    /// ports, so the spread is even only on average (a few connections may all land on
    /// one loop), and a connection stays on the loop that accepted it for its whole
    /// life: the load of one busy connection is never shared out. `--stats-json` shows
    /// the spread (per_thread). 1, the default, runs one loop on the main thread.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024), verbatim_doc_comment)]
    pub threads: u16,
    /// threads: the most connection threads at once. A connection above the cap is not
    /// accepted: it waits in the listen backlog until a thread ends. Each thread has a
    /// 64 KiB stack.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000), verbatim_doc_comment)]
    pub max_threads: u32,
    /// Pin event loop i to the i-th CPU this process may run on (or of --cpus).
    ///
    /// A pinned loop keeps its caches warm and never competes with another loop for a
    /// core. Without it the scheduler places and moves the threads as it likes.
    #[arg(long, verbatim_doc_comment)]
    pub pin: bool,
    /// CPUs for the event loops, e.g. "2-5,7" (implies --pin); the same option as
    /// `load --cpus`. Default: not pinned.
    ///
    /// Loop i runs on the i-th CPU listed; list at least --threads CPUs this process
    /// may run on (`taskset -c` syntax).
    #[arg(long, value_name = "LIST", verbatim_doc_comment)]
    pub cpus: Option<String>,
    /// Per-connection outbox cap in bytes; above it the server stops reading that connection.
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1024..=(1u64 << 32)))]
    pub outbox_cap: u64,
    /// Size of each receive buffer in bytes.
    #[arg(long, default_value_t = 16 * 1024, value_parser = clap::value_parser!(u64).range(512..=(16u64 << 20)))]
    pub recv_buf: u64,
    /// io_uring submission queue entries (the completion queue gets 4x). Halved on ENOMEM.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(8..=32768i64))]
    pub ring_entries: u32,
    /// io_uring completion queue entries (default 4x --ring-entries; at least
    /// --ring-entries). A small CQ overflows under bursts: completions are then kept
    /// by the kernel (FEAT_NODROP) and reaped later, counted as cq_overflow, and
    /// multishot ops ended by it are re-armed. Mostly a test knob.
    #[arg(long, value_parser = clap::value_parser!(u32).range(8..=131072i64))]
    pub cq_entries: Option<u32>,
    /// listen(2) backlog.
    #[arg(long, default_value_t = 4096)]
    pub backlog: i32,
    /// On SIGINT/SIGTERM, seconds to flush owed bytes before closing anyway.
    #[arg(long, default_value_t = 5.0, value_parser = parse_secs)]
    pub drain_timeout: f64,
    /// Write the exit stats (syscalls, CPU, bytes, connections) as JSON to this file
    /// (and a snapshot on SIGUSR1). `--stats-json` is the old spelling.
    #[arg(long = "json", visible_alias = "stats-json", value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
    /// Print nothing but errors and warnings (no start line, no stats summary).
    #[arg(long)]
    pub quiet: bool,
    /// http: seconds a request head may take to arrive once its first byte is in;
    /// then 408 and close (slowloris). 0: no limit. Default 10 for http.
    #[arg(long, value_name = "S", value_parser = parse_secs)]
    pub header_timeout: Option<f64>,
    /// Close a connection that sent nothing for S seconds (counted as idle_timeouts).
    /// 0: never. Default: 60 for http, never for echo, upper and chat.
    #[arg(long, value_name = "S", value_parser = parse_secs)]
    pub idle_timeout: Option<f64>,
    /// The most connections served at once (0: no limit). Above it a new connection is
    /// accepted and closed at once (counted as refused_max_conns); the ones in are
    /// served as before. blocking serves one at a time anyway.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_conns: u64,
}

#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Server address, IP:PORT (loopback or an address you own).
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:7878", value_parser = parse_addr)]
    pub addr: SocketAddr,
    /// Connections (1 to 1000000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub conns: u32,
    /// Silent connections opened before the active ones and held for the whole run, so
    /// the active sockets get the highest descriptors in the server (what makes
    /// select's O(highest fd) show). They send nothing and count in neither errors nor
    /// latency; at the end the summary says how many the server had closed.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub idle_conns: u32,
    /// Message size in bytes, up to 67108864 (with --proto http: the POST body; 0 sends
    /// `GET /`; echo and upper need at least 1).
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(0..=(64i64 << 20)))]
    pub size: u32,
    /// Protocol to speak and verify.
    #[arg(long, value_enum, default_value_t = LoadProto::Echo)]
    pub proto: LoadProto,
    /// Measured seconds, after the warm-up (above 0, at most a year).
    #[arg(long, default_value_t = 10.0, value_parser = parse_secs)]
    pub duration: f64,
    /// Unrecorded warm-up seconds (0 for none).
    #[arg(long, default_value_t = 1.0, value_parser = parse_secs)]
    pub warmup: f64,
    /// Messages in flight per connection (closed loop); the most outstanding per
    /// connection in open loop (1 to 65536).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub pipeline: u32,
    /// Total messages per second (above 0, at most 1e9): open loop with
    /// coordinated-omission correction. Default: none, closed loop.
    #[arg(long, value_name = "MSGS_PER_S")]
    pub rate: Option<f64>,
    /// Load threads (1 to 1024); connections are spread over them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: u16,
    /// CPUs to pin load threads to, thread i on the i-th CPU listed, e.g. "1", "2-5" or
    /// "1,3" (`taskset -c` syntax, CPUs 0-1023 this process may run on). The same option
    /// as `serve --cpus`; `--pin LIST` is the old spelling. Default: not pinned.
    #[arg(long = "cpus", visible_alias = "pin", value_name = "LIST")]
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
    /// Write all figures and parameters as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// No progress line and no summary.
    #[arg(long)]
    pub quiet: bool,
    /// Exit 0 even when errors (mismatches, resets, timeouts, failed connects) were
    /// counted; with it, a run where no connection could be made still writes its files.
    #[arg(long)]
    pub allow_errors: bool,
    /// Open loop: exit 1 when the rate was not kept (achieved below 99% of --rate, or
    /// the schedule fell behind by more than --max-lag).
    #[arg(long)]
    pub require_rate: bool,
    /// Open loop: seconds a send may fall behind its intended time before the rate
    /// counts as not kept.
    #[arg(long, default_value_t = 0.05, value_parser = parse_secs)]
    pub max_lag: f64,
    /// Load agents (processes, machines) sharing this run: each runs its share of
    /// --conns and of --rate (merge their files with `ringmux merge DIR`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub agents: u32,
    /// This agent's index, 0..agents-1 (a Kubernetes Indexed Job's completion index).
    #[arg(long, default_value_t = 0)]
    pub agent_id: u32,
    /// Start the warm-up at this wall-clock time (UNIX seconds, fractions allowed), so
    /// every agent starts together. Connections are made before it.
    #[arg(long, value_name = "UNIX_TIME")]
    pub start_at: Option<f64>,
    /// Seconds a message may stay unanswered before it counts as a timeout (its
    /// connection is then dropped). Also bounds the final drain of an open-loop run.
    #[arg(long, default_value_t = 10.0, value_parser = parse_secs)]
    pub timeout: f64,
    /// Length of one interval of the interval log (--hlog) and of the progress line,
    /// seconds (at least 0.01). `bench` passes 0.1 for runs under 10 s.
    #[arg(long, default_value_t = 1.0, value_parser = parse_secs)]
    pub interval: f64,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Backends to compare, comma separated: `uring` (the best level here), any other
    /// `serve --backend` (epoll, poll, select, sigio, threads, blocking, busypoll), or
    /// `uring:LEVEL` with LEVEL one of baseline, fastpoll, multishot, full, optionally
    /// followed by `+sqpoll`, `+no-defer-taskrun`, `+no-multishot-accept`,
    /// `+wait-single`, `+wait-coalesce` or `+wait-adaptive` (e.g. `uring:full+sqpoll`).
    #[arg(long, value_delimiter = ',', default_value = "uring,epoll")]
    pub backends: Vec<String>,
    /// Connection counts, comma separated (each 1 to 100000; --quick keeps those up to 50).
    #[arg(long, value_delimiter = ',', default_value = "1,50,500")]
    pub conns: Vec<u32>,
    /// Message size in bytes, up to 16777216 (with --proto http: the POST body; 0 sends
    /// `GET /`).
    #[arg(long, default_value_t = 128)]
    pub size: u32,
    /// Protocol every server in the matrix serves and the load speaks and verifies
    /// (`serve --proto`, `load --proto`). External servers are taken to speak echo only:
    /// with another protocol they are named in one line and left out.
    #[arg(long, value_enum, default_value_t = LoadProto::Echo)]
    pub proto: LoadProto,
    /// Seconds per measured run, 0.2 to 3600 [default: 1.5; with --quick 1.0]. Each run
    /// has an unrecorded warm-up before it (0.5 s; with --quick 0.3 s).
    #[arg(long, value_parser = parse_bench_secs)]
    pub duration: Option<f64>,
    /// Repeats of the whole interleaved matrix, 1 to 100 [default: 3; with --quick 1]
    /// (`compare` needs 3 or more per side for a verdict that sees noise).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: Option<u32>,
    /// Run the open-loop shape at this fixed rate (msgs/s) instead of 50% of the
    /// measured peak, so runs on different days are comparable (cell id open-R/cN/sS).
    /// Default: none.
    #[arg(long, value_name = "R")]
    pub open_rate: Option<f64>,
    /// Another server in the same matrix: NAME=CMD, CMD gets {addr} (repeatable). With
    /// any --external, the reference peers are left out.
    #[arg(long)]
    pub external: Vec<String>,
    /// Leave out the reference peers. By default the matrix includes a tokio echo server
    /// (epoll) and a monoio echo server (io_uring), the example binaries beside ringmux;
    /// run from the source tree, the bench builds them once with cargo and says so.
    #[arg(long)]
    pub no_peers: bool,
    /// Short matrix for CI: connection counts up to 50, no pipelined shape, 1 s runs,
    /// one repeat (about 10 s with the two backends, 20 s with the peers).
    #[arg(long)]
    pub quick: bool,
    /// Output folder [default: bench-out/<UTC timestamp>/].
    #[arg(short = 'o', long, visible_alias = "output", value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Measure memory instead of throughput: hold N idle connections to each server and
    /// report its resident memory per connection, (VmRSS after - before) / N. Each
    /// connection sends 16 bytes and reads the echo once, then stays open and silent.
    /// Runs this case only, not the throughput matrix (run bench twice for both);
    /// --backends, --external, --repeat, --quick (one repeat) and --out apply, and a
    /// plain `uring` stands for every io_uring level this kernel has.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub idle_conns: Option<u32>,
    /// Event-loop threads for ringmux servers (`serve --threads N --pin`).
    ///
    /// To measure scaling: the server gets CPUs 0..N-1, one loop on each, and the load
    /// the CPUs after them. When that leaves the load no CPU, nothing is pinned and the
    /// bench warns that the figures do not measure scaling.
    ///
    /// 1 to 1024. `--threads` is an alias (as in `serve --threads`).
    #[arg(long, visible_alias = "threads", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024), verbatim_doc_comment)]
    pub server_threads: u16,
    /// Record each server with `perf` during every measured run and show where its
    /// CPU went: network stack, io_uring, readiness (epoll/poll/select, sock_poll,
    /// tcp_poll), syscall entry, scheduler and timers, other kernel, user space.
    /// Shares go to results.json and a stacked bar per server and cell to
    /// report.html. Without perf installed, the bench says so and runs the rest.
    #[arg(long, verbatim_doc_comment)]
    pub profile: bool,
    /// Seconds each server sits idle for the quiet rows (CPU share and syscalls per
    /// second with no connection, then with --quiet-conns silent ones); 0 skips them.
    #[arg(long, default_value_t = 1.5, value_parser = parse_secs)]
    pub quiet_secs: f64,
    /// Silent connections held open for the second quiet row.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub quiet_conns: u32,
    /// A ready-made study instead of the matrix. `models`: the IO-model lab, every
    /// backend through four sweeps (cost vs idle connections, one connection, few vs
    /// many, the limits), and the eight claims of the IO models judged from the
    /// figures (report.md and report.html, section "Claims"). About 5 minutes on two
    /// cores; with --quick under a minute. --repeat, --duration, --size, --profile and
    /// --out apply; the matrix options (--backends, --conns, ...) do not.
    #[arg(long, value_enum, value_name = "NAME")]
    pub preset: Option<BenchPreset>,
}

/// `bench --preset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchPreset {
    /// The IO-model lab: sweeps A-D and the Claims section.
    Models,
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
    /// Exit 1 on an inconclusive verdict too (the noise straddles a limit).
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// Interval logs to merge, or one folder holding the .json and .hlog files of
    /// `load --agents N` agents (then OUTPUT is a load result, its .hlog beside it).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output interval log (or, for a folder of agents, the merged load result .json).
    /// `--output` is the old spelling.
    #[arg(short = 'o', long = "out", visible_alias = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// Merge the agents that are there even when some are missing or failed (they are
    /// named; the result's rate_kept is then false).
    #[arg(long)]
    pub allow_partial: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub addr: SocketAddr,
    /// Seconds to wait for the connection.
    #[arg(long, default_value_t = 10.0, value_parser = parse_secs)]
    pub connect_timeout: f64,
}

#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// An IP:PORT socket address. A host name gets a hint instead of clap's "invalid
/// socket address syntax": ringmux resolves no names.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    let hint = match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            if host.eq_ignore_ascii_case("localhost") {
                format!("use 127.0.0.1:{port} (or [::1]:{port} for IPv6)")
            } else if host.contains(':') {
                format!("an IPv6 address goes in brackets: [{host}]:{port}")
            } else {
                format!("'{host}' is not an IP address; ringmux resolves no host names")
            }
        }
        _ => "expected IP:PORT, e.g. 127.0.0.1:7878 or [::1]:7878".to_string(),
    };
    Err(format!("'{s}' is not IP:PORT: {hint}"))
}

/// Seconds per bench run: 0.2 to 3600.
fn parse_bench_secs(s: &str) -> Result<f64, String> {
    let v = parse_secs(s)?;
    if !(0.2..=3600.0).contains(&v) {
        return Err(format!("'{s}' is out of range (0.2 to 3600 s)"));
    }
    Ok(v)
}

fn parse_buf_entries(s: &str) -> Result<u16, String> {
    let n: u32 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !(1..=32768).contains(&n) || !n.is_power_of_two() {
        return Err(format!("{n} is not a power of two between 1 and 32768"));
    }
    Ok(n as u16)
}

/// Seconds as a non-negative finite number ("5", "0.5").
pub fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim_end_matches('s').parse().map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !v.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&v) {
        return Err(format!("'{s}' is out of range (0 to one year)"));
    }
    Ok(v)
}

/// The biggest CPU number accepted (the size of a `cpu_set_t`).
pub const MAX_CPU: usize = 1023;

/// Parse a CPU list: "1", "2-5", "1,3", "0-1,4". Order is kept; duplicates are refused.
/// Used by `load --pin` and `serve --cpus` (the same syntax as `taskset -c`).
pub fn parse_cpu_list(s: &str) -> anyhow::Result<Vec<usize>> {
    let num = |t: &str| -> anyhow::Result<usize> {
        let t = t.trim();
        let v: usize = t.parse().map_err(|_| anyhow::anyhow!("'{t}' is not a CPU number (expected e.g. \"1\", \"2-5\" or \"1,3\")"))?;
        if v > MAX_CPU {
            anyhow::bail!("CPU {v} is out of range (0 to {MAX_CPU})");
        }
        Ok(v)
    };
    let mut out = Vec::new();
    for part in s.split(',') {
        if part.trim().is_empty() {
            anyhow::bail!("empty entry in the CPU list (expected e.g. \"1\", \"2-5\" or \"1,3\")");
        }
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    anyhow::bail!("range {a}-{b} runs backwards");
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    let mut sorted = out.clone();
    sorted.sort_unstable();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        anyhow::bail!("CPU {} is listed twice", w[0]);
    }
    Ok(out)
}

/// Write CPUs the way [`parse_cpu_list`] reads them, runs folded: [0, 1, 2, 5] -> "0-2,5".
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        out.push(if j > i { format!("{}-{}", cpus[i], cpus[j]) } else { cpus[i].to_string() });
        i = j + 1;
    }
    out.join(",")
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
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("1").unwrap(), vec![1]);
        assert_eq!(parse_cpu_list("2-5").unwrap(), vec![2, 3, 4, 5]);
        assert_eq!(parse_cpu_list("1,3").unwrap(), vec![1, 3]);
        assert_eq!(parse_cpu_list("3,0-1").unwrap(), vec![3, 0, 1]);
        assert_eq!(parse_cpu_list(" 4 , 6-6 ").unwrap(), vec![4, 6]);
        for bad in ["", "abc", "1,", ",1", "5-2", "1-", "-1", "1,1", "0-2,2", "99999", "1.5", "1-x"] {
            let e = parse_cpu_list(bad);
            assert!(e.is_err(), "{bad:?} accepted: {e:?}");
        }
        assert!(parse_cpu_list("abc").unwrap_err().to_string().contains("not a CPU number"));
    }

    #[test]
    fn cpu_lists_format_round_trip() {
        assert_eq!(format_cpu_list(&[0, 1, 2, 5]), "0-2,5");
        assert_eq!(format_cpu_list(&[3, 0, 1]), "3,0-1");
        assert_eq!(format_cpu_list(&[7]), "7");
        assert_eq!(format_cpu_list(&[]), "");
        for l in ["0-3", "1,3", "2-5,7", "3,0-1"] {
            assert_eq!(format_cpu_list(&parse_cpu_list(l).unwrap()), l);
        }
    }

    #[test]
    fn addresses_say_ip_port() {
        assert_eq!(parse_addr("127.0.0.1:7878").unwrap().port(), 7878);
        assert!(parse_addr("[::1]:80").is_ok());
        let e = parse_addr("localhost:7878").unwrap_err();
        assert!(e.contains("is not IP:PORT") && e.contains("use 127.0.0.1:7878"), "{e}");
        assert!(parse_addr("::1:80").unwrap_err().contains("[::1]:80"));
        assert!(parse_addr("example.com:80").unwrap_err().contains("resolves no host names"));
        assert!(parse_addr("7878").unwrap_err().contains("expected IP:PORT"));
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
