//! The server: configuration, backend selection, signals, stats.
//!
//! Every backend exposes the same entry, `run(listener, &cfg, &signals, ...) ->
//! io::Result<LoopStats>`; [`serve`] picks one with a plain `match`.

pub mod conn;
pub mod epoll;
pub mod fault;
pub mod listener;
pub mod sys;
pub mod uring;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::cli::{BackendChoice, FeatureChoice, FeatureLevel, ServeArgs};
use crate::proto::Proto;
use crate::syscall;
use sys::SyscallCounts;

/// A validated server configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    pub backend: BackendChoice,
    pub features: FeatureChoice,
    pub proto: Proto,
    pub outbox_cap: usize,
    pub recv_buf: usize,
    pub ring_entries: u32,
    pub backlog: i32,
    pub drain_timeout: Duration,
    pub stats_json: Option<PathBuf>,
    pub quiet: bool,
    /// At multishot/full: multishot ACCEPT (else one-shot).
    pub multishot_accept: bool,
    /// At full: DEFER_TASKRUN.
    pub defer_taskrun: bool,
    pub sqpoll: bool,
    /// Provided receive buffers (a power of two).
    pub buf_entries: u16,
    /// Injected faults (tests only; from RINGMUX_FAULTS).
    pub faults: fault::Faults,
}

impl ServerConfig {
    pub fn from_args(a: &ServeArgs) -> anyhow::Result<ServerConfig> {
        if a.threads != 1 {
            anyhow::bail!("--threads {} is not supported yet: only 1 event-loop thread for now", a.threads);
        }
        if a.pin {
            anyhow::bail!("--pin needs --threads, which is not supported yet; pin with `taskset -c CPU ringmux serve ...`");
        }
        Ok(ServerConfig {
            addr: a.addr,
            backend: a.backend,
            features: a.uring_features,
            proto: a.proto,
            outbox_cap: a.outbox_cap as usize,
            recv_buf: a.recv_buf as usize,
            ring_entries: a.ring_entries,
            backlog: a.backlog,
            drain_timeout: Duration::from_secs_f64(a.drain_timeout),
            stats_json: a.stats_json.clone(),
            quiet: a.quiet,
            multishot_accept: !a.no_multishot_accept,
            defer_taskrun: !a.no_defer_taskrun,
            sqpoll: a.sqpoll,
            buf_entries: a.buf_ring_entries,
            faults: fault::Faults::from_env()?,
        })
    }
}

/// The backend actually running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Uring(FeatureLevel),
    Epoll,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Uring(_) => "uring",
            Backend::Epoll => "epoll",
        }
    }

    pub fn features(self) -> Option<FeatureLevel> {
        match self {
            Backend::Uring(l) => Some(l),
            Backend::Epoll => None,
        }
    }
}

/// What one event loop counted.
#[derive(Debug, Clone, Default)]
pub struct LoopStats {
    pub accepted: u64,
    pub closed: u64,
    pub accept_errors: u64,
    pub accept_backoffs: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub syscalls: SyscallCounts,
    pub cq_overflow: u64,
    pub sq_full: u64,
    pub enter_busy: u64,
    /// Connections still open (or owing bytes) when the drain timeout ran out.
    pub forced_closed: u64,
    /// Receives that found no provided buffer (ENOBUFS) and were re-armed.
    pub recv_nobufs: u64,
    /// Times the provided-buffer group doubled after running dry.
    pub buf_grows: u64,
    /// Results rewritten by RINGMUX_FAULTS.
    pub faults_injected: u64,
}

/// SIGINT/SIGTERM (stop) and SIGUSR1 (write a stats snapshot) arrive as flags plus a
/// byte on a pipe the event loop watches, so no loop sleeps through a signal.
pub struct Signals {
    read: UnixStream,
    stop: Arc<AtomicBool>,
    snapshot: Arc<AtomicBool>,
}

impl Signals {
    pub fn install() -> io::Result<Signals> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let snapshot = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, stop.clone())?;
            signal_hook::low_level::pipe::register(sig, write.try_clone()?)?;
        }
        signal_hook::flag::register(signal_hook::consts::SIGUSR1, snapshot.clone())?;
        signal_hook::low_level::pipe::register(signal_hook::consts::SIGUSR1, write)?;
        Ok(Signals { read, stop, snapshot })
    }

    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Empty the wake pipe (bounded: it is non-blocking and small).
    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        for _ in 0..64 {
            match syscall!(Read, read(self.fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len())) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn take_snapshot_request(&self) -> bool {
        self.snapshot.swap(false, Ordering::Relaxed)
    }
}

/// Server stats as printed on exit and written by `--stats-json`.
#[derive(Debug, Clone, Serialize)]
pub struct StatsReport {
    pub schema: &'static str,
    /// false for a SIGUSR1 snapshot, true for the report written on exit.
    pub r#final: bool,
    pub backend: &'static str,
    pub features: Option<FeatureLevel>,
    pub proto: Proto,
    pub addr: String,
    pub pid: u32,
    pub elapsed_s: f64,
    pub connections_accepted: u64,
    pub connections_closed: u64,
    pub accept_errors: u64,
    pub accept_backoffs: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub syscalls: std::collections::BTreeMap<String, u64>,
    pub syscalls_total: u64,
    pub cq_overflow: u64,
    pub sq_full: u64,
    pub enter_busy: u64,
    pub forced_closed: u64,
    pub recv_nobufs: u64,
    pub buf_grows: u64,
    pub faults_injected: u64,
    /// Each io_uring feature's state (uring only).
    pub uring: Option<uring::probe::RingFeatures>,
    pub cpu_user_s: f64,
    pub cpu_sys_s: f64,
    pub ctx_voluntary: u64,
    pub ctx_involuntary: u64,
    pub max_rss_kib: u64,
}

/// Everything a loop needs to report itself.
pub struct Reporter {
    pub backend: Backend,
    pub uring: Option<uring::probe::RingFeatures>,
    pub cfg: ServerConfig,
    pub addr: SocketAddr,
    pub started: Instant,
}

impl Reporter {
    pub fn report(&self, s: &LoopStats, is_final: bool) -> StatsReport {
        let u = sys::usage();
        StatsReport {
            schema: "ringmux.server-stats/1",
            r#final: is_final,
            backend: self.backend.name(),
            features: self.backend.features(),
            proto: self.cfg.proto,
            addr: self.addr.to_string(),
            pid: std::process::id(),
            elapsed_s: self.started.elapsed().as_secs_f64(),
            connections_accepted: s.accepted,
            connections_closed: s.closed,
            accept_errors: s.accept_errors,
            accept_backoffs: s.accept_backoffs,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            syscalls: s.syscalls.by_name(),
            syscalls_total: s.syscalls.total(),
            cq_overflow: s.cq_overflow,
            sq_full: s.sq_full,
            enter_busy: s.enter_busy,
            forced_closed: s.forced_closed,
            recv_nobufs: s.recv_nobufs,
            buf_grows: s.buf_grows,
            faults_injected: s.faults_injected,
            uring: self.uring,
            cpu_user_s: u.user_s,
            cpu_sys_s: u.sys_s,
            ctx_voluntary: u.voluntary_ctx,
            ctx_involuntary: u.involuntary_ctx,
            max_rss_kib: u.max_rss_kib,
        }
    }

    /// Write the JSON stats file if asked for (atomically: temp file, then rename, so a
    /// reader never sees half a file).
    pub fn write_json(&self, s: &LoopStats, is_final: bool) -> io::Result<()> {
        let Some(path) = &self.cfg.stats_json else { return Ok(()) };
        let tmp = path.with_extension("tmp");
        let body = serde_json::to_vec_pretty(&self.report(s, is_final)).map_err(io::Error::other)?;
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, path)
    }

    /// SIGUSR1: a snapshot; a failure to write it is a warning, not the end of the server.
    pub fn snapshot(&self, s: &LoopStats) {
        if let Err(e) = self.write_json(s, false) {
            eprintln!("ringmux: warning: cannot write stats snapshot: {e}");
        }
    }
}

fn print_summary(r: &StatsReport, out: &mut impl Write) -> io::Result<()> {
    writeln!(
        out,
        "stats: backend={} features={} proto={} elapsed={:.3}s",
        r.backend,
        r.features.map_or("-", |f| f.name()),
        r.proto.name(),
        r.elapsed_s
    )?;
    writeln!(
        out,
        "  connections: accepted={} closed={} accept_errors={} accept_backoffs={} forced_closed={}",
        r.connections_accepted, r.connections_closed, r.accept_errors, r.accept_backoffs, r.forced_closed
    )?;
    writeln!(out, "  bytes: in={} out={}", r.bytes_in, r.bytes_out)?;
    let calls: Vec<String> = r.syscalls.iter().map(|(k, v)| format!("{k}={v}")).collect();
    writeln!(out, "  syscalls: total={} {}", r.syscalls_total, calls.join(" "))?;
    if r.backend == "uring" {
        writeln!(
            out,
            "  io_uring: cq_overflow={} sq_full={} enter_busy={} recv_nobufs={} buf_grows={}",
            r.cq_overflow, r.sq_full, r.enter_busy, r.recv_nobufs, r.buf_grows
        )?;
        if let Some(f) = &r.uring {
            writeln!(out, "  io_uring features: {}", f.summary())?;
        }
    }
    writeln!(
        out,
        "  cpu: user={:.3}s sys={:.3}s ctx_switches: voluntary={} involuntary={} max_rss={}KiB",
        r.cpu_user_s, r.cpu_sys_s, r.ctx_voluntary, r.ctx_involuntary, r.max_rss_kib
    )
}

/// `ringmux serve`.
pub fn serve_cmd(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let cfg = ServerConfig::from_args(&a)?;
    serve(cfg)?;
    Ok(ExitCode::SUCCESS)
}

/// Choose the backend, bind, run until a stop signal, report.
pub fn serve(cfg: ServerConfig) -> anyhow::Result<StatsReport> {
    let signals = Signals::install().context("cannot install signal handlers")?;
    // Decide the backend before binding, so a failed `--backend uring` leaves no
    // socket behind and `auto` prints its one warning first.
    let ring = match cfg.backend {
        BackendChoice::Epoll => None,
        BackendChoice::Uring => Some(uring::Ring::setup(&cfg).map_err(anyhow::Error::new)?),
        BackendChoice::Auto => match uring::Ring::setup(&cfg) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("ringmux: warning: {e}; falling back to epoll");
                None
            }
        },
    };
    let backend = ring.as_ref().map_or(Backend::Epoll, |r| Backend::Uring(r.features.level));
    let uring_features = ring.as_ref().map(|r| r.features);
    // io_uring sockets stay blocking (the ring polls them); epoll needs non-blocking.
    let listener = listener::bind(cfg.addr, cfg.backlog, false, ring.is_none())
        .with_context(|| format!("cannot listen on {}", cfg.addr))?;
    let addr = listener.local_addr()?.as_socket().context("listener has no inet address")?;
    if !cfg.quiet {
        println!(
            "ringmux: serving {} on {addr} backend={} features={} threads=1 pid={}",
            cfg.proto.name(),
            backend.name(),
            backend.features().map_or("-", |f| f.name()),
            std::process::id()
        );
        if let Some(f) = &uring_features {
            println!("ringmux: io_uring {}", f.summary());
        }
        if cfg.faults.any() {
            println!("ringmux: fault injection on: {}", std::env::var(fault::ENV).unwrap_or_default());
        }
    }
    let reporter = Reporter { backend, uring: uring_features, cfg: cfg.clone(), addr, started: Instant::now() };
    let stats = match ring {
        Some(ring) => uring::run(ring, listener, &cfg, &signals, &reporter),
        None => epoll::run(listener, &cfg, &signals, &reporter),
    }
    .context("event loop failed")?;
    let report = reporter.report(&stats, true);
    if !cfg.quiet {
        let mut out = io::stdout().lock();
        print_summary(&report, &mut out)?;
        out.flush()?;
    }
    reporter.write_json(&stats, true).with_context(|| format!("cannot write {}", cfg.stats_json.as_ref().unwrap().display()))?;
    Ok(report)
}
