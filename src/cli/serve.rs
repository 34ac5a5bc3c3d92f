//! `ringmux serve`: its arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::{parse_addr, parse_secs};

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

/// io_uring feature level. Each level adds to the one before.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
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

fn parse_buf_entries(s: &str) -> Result<u16, String> {
    let n: u32 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !(1..=32768).contains(&n) || !n.is_power_of_two() {
        return Err(format!("{n} is not a power of two between 1 and 32768"));
    }
    Ok(n as u16)
}
