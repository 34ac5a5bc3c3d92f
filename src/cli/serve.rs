//! `ringmux serve`: its arguments, and their conversion into a [`ServerConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::{parse_addr, parse_secs};
use crate::error::ExitError;
use crate::proto::Proto;
use crate::server::config::plan_cpus;
use crate::server::fault::Faults;
use crate::server::{BackendChoice, FeatureChoice, ServerConfig, WaitMode};

/// `ringmux serve`: the server as asked; `config()` checks it into a `ServerConfig`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on, IP:PORT (port 0: any free port; the bound address is printed).
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:7878", value_parser = parse_addr)]
    pub addr: SocketAddr,
    /// IO model.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// Protocol.
    #[arg(long, value_enum, default_value_t = Proto::Echo)]
    pub proto: Proto,
    /// io_uring feature level (ignored by epoll). `auto` picks the best this kernel
    /// supports (see `ringmux probe`); naming a level pins it, and fails if the kernel
    /// lacks it.
    #[arg(long, value_enum, default_value_t = FeatureChoice::AUTO)]
    pub uring_features: FeatureChoice,
    /// At multishot/full: use one-shot ACCEPT instead of multishot ACCEPT (multishot
    /// accept with DEFER_TASKRUN returned bad descriptors on some 6.6-6.8 kernels).
    #[arg(long)]
    pub no_multishot_accept: bool,
    /// At full: leave out DEFER_TASKRUN (keep SINGLE_ISSUER).
    #[arg(long)]
    pub no_defer_taskrun: bool,
    /// At multishot/full: name sockets to the ring by their descriptor, as the lower
    /// levels do.
    ///
    /// By default (Linux 5.19+) the ring gets a sparse registered file table (up to
    /// 65536 slots, at most RLIMIT_NOFILE) and each accepted socket a slot in it, so
    /// RECV and SEND reach the socket without looking its descriptor up (no fget/fput
    /// per op). A FILES_UPDATE in the ring fills the slot at accept and another empties
    /// it at close (no extra syscall). Connections beyond the table use their descriptor.
    #[arg(long, verbatim_doc_comment)]
    pub no_register_files: bool,
    /// At multishot/full: set up the ring with IORING_SETUP_NO_SQARRAY (Linux 6.6+).
    ///
    /// The kernel then takes SQEs in ring order, without the index array between the
    /// submission queue and the entries (one memory read less per SQE). Opt-in: no
    /// count or profile share of ringmux's benchmarks moved with it. A kernel that
    /// refuses the flag gets the ring without it (the feature line says which).
    #[arg(long, verbatim_doc_comment)]
    pub no_sqarray: bool,
    /// At multishot/full: one completion per buffer, not multishot RECV bundles.
    ///
    /// By default (Linux 6.10+, FEAT_RECVSEND_BUNDLE) the multishot RECV is a bundle
    /// (IORING_RECVSEND_BUNDLE): one completion carries as many provided buffers,
    /// consecutive in the buffer ring, as the bytes waiting in the socket fill. It
    /// matters only when a receive finds more than one --recv-buf of bytes (large
    /// messages, small buffers). Not with --proto chat (one-shot receives).
    #[arg(long, verbatim_doc_comment)]
    pub no_recv_bundles: bool,
    /// At multishot/full: how the loop waits for completions.
    ///
    /// `adaptive` (default) waits for the SENDs it just submitted plus one more
    /// completion (bounded by 5 ms): a SEND to a socket with room completes inside the
    /// enter that submits it, so the wait goes on to sleep for the next receive, and one
    /// io_uring_enter serves a message at one connection. After a turn whose SENDs did
    /// not all complete inside their enter (a full socket), it waits for one completion
    /// until they do again. At full on Linux 6.12+ it also coalesces (the queued sends
    /// plus half the last turn's receives, bounded by min_wait) after a turn that
    /// brought 32 or more receives. `coalesce` always coalesces at full; `single` waits
    /// for one completion at a time (the behaviour before). An idle server sleeps in
    /// every mode.
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
    /// threads: the most connections at once, each on its own thread. A connection above
    /// the cap is not accepted: it waits in the listen backlog until a thread ends. Each
    /// thread has a 64 KiB stack; a chat connection has a second thread, its writer.
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

impl ServeArgs {
    /// The validated configuration these arguments ask for: bad combinations and CPUs
    /// this process may not use are errors here, before anything runs.
    pub fn config(&self) -> anyhow::Result<ServerConfig> {
        let threads = usize::from(self.threads.max(1));
        if let Some(cq) = self.cq_entries
            && cq < self.ring_entries
        {
            return Err(ExitError {
                code: 2,
                msg: format!(
                    "--cq-entries {cq} must be at least --ring-entries {}",
                    self.ring_entries
                ),
            }
            .into());
        }
        let cpus = plan_cpus(
            threads,
            self.pin,
            self.cpus.as_deref(),
            crate::os::allowed_cpus,
        )?;
        // http has deadlines by default; the other protocols none.
        let http_default = |secs: f64| (self.proto == Proto::Http).then_some(secs);
        Ok(ServerConfig {
            addr: self.addr,
            backend: self.backend,
            features: self.uring_features,
            proto: self.proto,
            outbox_cap: self.outbox_cap as usize,
            recv_buf: self.recv_buf as usize,
            ring_entries: self.ring_entries,
            cq_entries: self.cq_entries,
            backlog: self.backlog,
            drain_timeout: Duration::from_secs_f64(self.drain_timeout),
            stats_json: self.stats_json.clone(),
            quiet: self.quiet,
            multishot_accept: !self.no_multishot_accept,
            defer_taskrun: !self.no_defer_taskrun,
            register_files: !self.no_register_files,
            no_sqarray: self.no_sqarray,
            recv_bundles: !self.no_recv_bundles,
            uring_wait: self.uring_wait,
            sqpoll: self.sqpoll,
            buf_entries: self.buf_ring_entries,
            faults: Faults::from_env()?,
            threads,
            max_threads: self.max_threads as usize,
            cpus,
            guests: Arc::default(),
            room: Arc::default(),
            header_timeout: secs_or_off(self.header_timeout.or(http_default(10.0))),
            idle_timeout: secs_or_off(self.idle_timeout.or(http_default(60.0))),
            max_conns: (self.max_conns > 0).then_some(self.max_conns as usize),
        })
    }
}

/// Seconds from the command line, 0 meaning off.
fn secs_or_off(s: Option<f64>) -> Option<Duration> {
    s.filter(|&v| v > 0.0).map(Duration::from_secs_f64)
}
