//! The server: configuration, backend selection, signals, stats.
//!
//! Every backend exposes the same entry, `run(listener, &cfg, &signals, ...) ->
//! io::Result<LoopStats>`; [`percore::run`] picks one with a plain `match` on
//! [`Backend`], the one list of every IO model. The readiness models share one loop
//! ([`reactor`]) over a mechanism each; what every backend repeats lives in [`core`].
//!
//! Thread-per-core (`--threads N`, [`percore`]): N such loops, each on its own thread
//! with its own SO_REUSEPORT listener and its own ring or epoll instance. A loop sees
//! only its own [`Signals`] (wake pipe) and [`Reporter`] (its slot for stats); the
//! process's figures are the loops' [`LoopStats`] summed.

pub mod blocking;
pub mod busypoll;
pub mod conn;
pub mod fault;
pub mod listener;
pub mod percore;
pub mod policy;
pub mod reactor;
pub mod sys;
pub mod threads;
pub mod uring;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::cli::{BackendChoice, FeatureChoice, FeatureLevel, ServeArgs};
use crate::proto::Proto;
use crate::server::sys::syscall;
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
    /// Completion queue entries (`--cq-entries`; default 4x ring_entries).
    pub cq_entries: Option<u32>,
    pub backlog: i32,
    pub drain_timeout: Duration,
    pub stats_json: Option<PathBuf>,
    pub quiet: bool,
    /// At multishot/full: multishot ACCEPT (else one-shot).
    pub multishot_accept: bool,
    /// At full: DEFER_TASKRUN.
    pub defer_taskrun: bool,
    /// At full with FEAT_MIN_TIMEOUT: how the proactor waits.
    pub uring_wait: crate::cli::WaitMode,
    pub sqpoll: bool,
    /// Provided receive buffers (a power of two).
    pub buf_entries: u16,
    /// Injected faults (tests only; from RINGMUX_FAULTS).
    pub faults: fault::Faults,
    /// Event loops (threads), at least 1.
    pub threads: usize,
    /// `threads` backend: the most connection threads at once.
    pub max_threads: usize,
    /// `--pin`: the CPU of loop i is `cpus[i]` (exactly `threads` entries).
    pub cpus: Option<Vec<usize>>,
    /// Chat guest numbers, one counter per server.
    pub guests: Arc<crate::proto::Guests>,
    /// Chat: the room across threads (event loops, or the threads model's connections).
    pub room: Arc<policy::hub::Hub>,
    /// http: the header deadline (None: no limit).
    pub header_timeout: Option<Duration>,
    /// Close connections silent this long (None: never).
    pub idle_timeout: Option<Duration>,
    /// The most connections at once (None: no limit).
    pub max_conns: Option<usize>,
}

impl ServerConfig {
    pub fn from_args(a: &ServeArgs) -> anyhow::Result<ServerConfig> {
        let threads = usize::from(a.threads.max(1));
        if let Some(cq) = a.cq_entries
            && cq < a.ring_entries
        {
            return Err(crate::error::ExitError {
                code: 2,
                msg: format!(
                    "--cq-entries {cq} must be at least --ring-entries {}",
                    a.ring_entries
                ),
            }
            .into());
        }
        let cpus = percore::plan_cpus(threads, a.pin, a.cpus.as_deref(), sys::allowed_cpus)?;
        Ok(ServerConfig {
            addr: a.addr,
            backend: a.backend,
            features: a.uring_features,
            proto: a.proto,
            outbox_cap: a.outbox_cap as usize,
            recv_buf: a.recv_buf as usize,
            ring_entries: a.ring_entries,
            cq_entries: a.cq_entries,
            backlog: a.backlog,
            drain_timeout: Duration::from_secs_f64(a.drain_timeout),
            stats_json: a.stats_json.clone(),
            quiet: a.quiet,
            multishot_accept: !a.no_multishot_accept,
            defer_taskrun: !a.no_defer_taskrun,
            uring_wait: a.uring_wait,
            sqpoll: a.sqpoll,
            buf_entries: a.buf_ring_entries,
            faults: fault::Faults::from_env()?,
            threads,
            max_threads: a.max_threads as usize,
            cpus,
            guests: Arc::default(),
            room: Arc::default(),
            header_timeout: secs_or_off(
                a.header_timeout
                    .or((a.proto == Proto::Http).then_some(10.0)),
            ),
            idle_timeout: secs_or_off(a.idle_timeout.or((a.proto == Proto::Http).then_some(60.0))),
            max_conns: (a.max_conns > 0).then_some(a.max_conns as usize),
        })
    }
}

/// Seconds from the command line, 0 meaning off.
fn secs_or_off(s: Option<f64>) -> Option<Duration> {
    s.filter(|&v| v > 0.0).map(Duration::from_secs_f64)
}

/// The backend actually running: every IO model ringmux has, one list.
///
/// [`Backend::NAMES`] is the list the CLI, the bench's `--backends`, the stats and the
/// tests check themselves against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The io_uring proactor (completions), at a feature level.
    Uring(FeatureLevel),
    /// The reactor over epoll (edge-triggered).
    Epoll,
    /// The reactor over poll(2) (level-triggered).
    Poll,
    /// The reactor over select(2) (level-triggered; fds >= 1024 refused).
    Select,
    /// The reactor over signal-driven IO (F_SETSIG real-time signals).
    Sigio,
    /// A blocking thread per connection.
    Threads,
    /// One connection at a time, blocking calls.
    Blocking,
    /// Non-blocking sockets polled in a loop, no readiness call.
    Busypoll,
}

impl Backend {
    /// Every backend's name, in the order of MODELS.md's table (uring last).
    pub const NAMES: [&'static str; 8] = [
        "blocking", "threads", "busypoll", "select", "poll", "epoll", "sigio", "uring",
    ];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Uring(_) => "uring",
            Backend::Epoll => "epoll",
            Backend::Poll => "poll",
            Backend::Select => "select",
            Backend::Sigio => "sigio",
            Backend::Threads => "threads",
            Backend::Blocking => "blocking",
            Backend::Busypoll => "busypoll",
        }
    }

    /// The backend a `--backend` choice names, when it needs no io_uring probing
    /// (`auto` and `uring` are decided by setting up a ring).
    pub fn from_choice(c: BackendChoice) -> Option<Backend> {
        Some(match c {
            BackendChoice::Auto | BackendChoice::Uring => return None,
            BackendChoice::Epoll => Backend::Epoll,
            BackendChoice::Poll => Backend::Poll,
            BackendChoice::Select => Backend::Select,
            BackendChoice::Sigio => Backend::Sigio,
            BackendChoice::Threads => Backend::Threads,
            BackendChoice::Blocking => Backend::Blocking,
            BackendChoice::Busypoll => Backend::Busypoll,
        })
    }

    /// False for the models with no event loop to replicate: `--threads N` > 1 is
    /// refused for them.
    pub fn has_event_loop(self) -> bool {
        !matches!(
            self,
            Backend::Threads | Backend::Blocking | Backend::Busypoll
        )
    }

    /// Whether the listening socket is non-blocking (io_uring polls blocking sockets;
    /// the blocking models block in accept).
    pub fn nonblocking_listener(self) -> bool {
        !matches!(
            self,
            Backend::Uring(_) | Backend::Threads | Backend::Blocking
        )
    }

    pub fn features(self) -> Option<FeatureLevel> {
        match self {
            Backend::Uring(l) => Some(l),
            _ => None,
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
    /// select: connections closed at once because their fd was >= FD_SETSIZE.
    pub refused_fd_setsize: u64,
    /// sigio: real-time signals (and SIGIOs) taken.
    pub sigio_signals: u64,
    /// sigio: plain SIGIOs, i.e. the signal queue overflowed and every connection was rescanned.
    pub sigio_overflows: u64,
    /// busypoll: recv/accept calls that found nothing (EAGAIN).
    pub busypoll_eagain: u64,
    /// threads: connection threads started.
    pub threads_started: u64,
    /// threads: the most connection threads alive at once (merged as a sum over loops).
    pub threads_peak: u64,
    /// chat: receivers closed because a broadcast would have put them over --outbox-cap.
    pub slow_receivers_dropped: u64,
    /// Connections closed for sending nothing for --idle-timeout.
    pub idle_timeouts: u64,
    /// http: heads not complete within --header-timeout (answered 408).
    pub header_timeouts: u64,
    /// Connections accepted and closed at once for --max-conns.
    pub refused_max_conns: u64,
}

impl LoopStats {
    /// Add another loop's counts: with several loops the server's figures are the sums.
    pub fn merge(&mut self, o: &LoopStats) {
        // Destructured so that a field added to LoopStats cannot be forgotten here.
        let LoopStats {
            accepted,
            closed,
            accept_errors,
            accept_backoffs,
            bytes_in,
            bytes_out,
            syscalls,
            cq_overflow,
            sq_full,
            enter_busy,
            forced_closed,
            recv_nobufs,
            buf_grows,
            faults_injected,
            refused_fd_setsize,
            sigio_signals,
            sigio_overflows,
            busypoll_eagain,
            threads_started,
            threads_peak,
            slow_receivers_dropped,
            idle_timeouts,
            header_timeouts,
            refused_max_conns,
        } = o;
        self.accepted += accepted;
        self.closed += closed;
        self.accept_errors += accept_errors;
        self.accept_backoffs += accept_backoffs;
        self.bytes_in += bytes_in;
        self.bytes_out += bytes_out;
        self.syscalls.add(syscalls);
        self.cq_overflow += cq_overflow;
        self.sq_full += sq_full;
        self.enter_busy += enter_busy;
        self.forced_closed += forced_closed;
        self.recv_nobufs += recv_nobufs;
        self.buf_grows += buf_grows;
        self.faults_injected += faults_injected;
        self.refused_fd_setsize += refused_fd_setsize;
        self.sigio_signals += sigio_signals;
        self.sigio_overflows += sigio_overflows;
        self.busypoll_eagain += busypoll_eagain;
        self.threads_started += threads_started;
        self.threads_peak += threads_peak;
        self.slow_receivers_dropped += slow_receivers_dropped;
        self.idle_timeouts += idle_timeouts;
        self.header_timeouts += header_timeouts;
        self.refused_max_conns += refused_max_conns;
    }
}

/// The process's signal state, with one wake pipe per event loop.
///
/// SIGINT/SIGTERM set one stop flag; SIGUSR1 bumps a request counter. Either then
/// writes a byte to every loop's own wake pipe, so every loop wakes, whichever thread
/// the kernel ran the handler on. A counter, not a flag: each loop must tell by itself
/// whether a request is new to it, and two quick SIGUSR1s may reach a loop as one
/// wake, yet the snapshot must cover the newest request.
///
/// One handler action per signal wakes all loops (rather than signal-hook's pipe
/// helper once per loop and signal), so a loop costs two fds, not four.
pub struct SignalHub {
    stop: Arc<AtomicBool>,
    /// Write ends of the loops' wake pipes. The handler actions hold them too, so they
    /// stay open as long as an action may run.
    wakers: Arc<Vec<UnixStream>>,
}

fn wake_all(wakers: &[UnixStream]) {
    for w in wakers {
        sys::wake(w.as_raw_fd());
    }
}

impl SignalHub {
    /// Install the handlers; returns the hub and each loop's [`Signals`].
    pub fn install(loops: usize) -> io::Result<(SignalHub, Vec<Signals>)> {
        use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let mut wakers = Vec::with_capacity(loops);
        let mut reads = Vec::with_capacity(loops);
        for _ in 0..loops.max(1) {
            let (read, write) = UnixStream::pair()?;
            read.set_nonblocking(true)?;
            write.set_nonblocking(true)?;
            wakers.push(write);
            reads.push(read);
        }
        let wakers = Arc::new(wakers);
        let seen = || Arc::new(AtomicUsize::new(0));
        let each = reads
            .into_iter()
            .enumerate()
            .map(|(index, read)| Signals {
                read,
                wakers: wakers.clone(),
                index,
                stop: stop.clone(),
                requests: requests.clone(),
                seen: seen(),
            })
            .collect();
        for sig in [SIGINT, SIGTERM] {
            let (stop, w) = (stop.clone(), wakers.clone());
            // SAFETY: the action runs inside the signal handler and does only
            // async-signal-safe things: an atomic store, then send(2) on fds the
            // closure keeps open (signal-hook saves and restores errno around it).
            unsafe {
                signal_hook::low_level::register(sig, move || {
                    stop.store(true, Ordering::SeqCst);
                    wake_all(&w);
                })
            }?;
        }
        let (r, w) = (requests.clone(), wakers.clone());
        // SAFETY: as above: a lock-free atomic add, then send(2) on fds kept open.
        unsafe {
            signal_hook::low_level::register(SIGUSR1, move || {
                r.fetch_add(1, Ordering::SeqCst);
                wake_all(&w);
            })
        }?;
        Ok((SignalHub { stop, wakers }, each))
    }

    /// Stop every loop as SIGTERM would (a loop failed: the server fails as a whole).
    pub fn stop_all(&self) {
        self.stop.store(true, Ordering::SeqCst);
        wake_all(&self.wakers);
    }
}

/// One event loop's view of the signals: its own wake pipe, which it watches, and the
/// shared stop flag and snapshot counter.
pub struct Signals {
    read: UnixStream,
    /// Every loop's wake pipe write end, and which one is this loop's.
    wakers: Arc<Vec<UnixStream>>,
    index: usize,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    /// The newest snapshot request this loop has taken (shared with its [`Reporter`]).
    seen: Arc<AtomicUsize>,
}

impl Signals {
    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Empty the wake pipe until EAGAIN (bounded: it is non-blocking, and each signal
    /// adds one byte; edge-triggered waits need it empty).
    pub fn drain(&self) {
        let mut buf = [0u8; 256];
        for _ in 0..4096 {
            // SAFETY: `buf` lives on this stack frame for the call and is `buf.len()` bytes long.
            match syscall!(
                Read,
                read(self.fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len())
            ) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Wake this loop as a signal would (its serving side ended, or another loop
    /// posted to its chat inbox).
    pub fn wake(&self) {
        self.waker().wake();
    }

    /// A handle another thread may keep to wake this loop.
    pub fn waker(&self) -> Waker {
        Waker {
            wakers: self.wakers.clone(),
            index: self.index,
        }
    }

    /// Block until this loop is woken (the byte is taken) or `timeout` passes: for the
    /// models with no event loop, whose supervisor has nothing else to wait for. The
    /// pipe is made blocking for the read, with the timeout as SO_RCVTIMEO.
    pub fn wait(&self, timeout: Option<Duration>) {
        if timeout.is_some_and(|t| t.is_zero()) {
            return;
        }
        let r = &self.read;
        if r.set_nonblocking(false).is_ok() && r.set_read_timeout(timeout).is_ok() {
            let mut b = [0u8; 1];
            let _ = (&self.read).read(&mut b);
        }
        let _ = r.set_nonblocking(true);
    }

    /// A SIGUSR1 is pending for this loop (without taking it).
    pub fn take_snapshot_request_peek(&self) -> bool {
        self.requests.load(Ordering::Relaxed) != self.seen.load(Ordering::Relaxed)
    }

    /// True once per new SIGUSR1 (several quick ones may count as one).
    pub fn take_snapshot_request(&self) -> bool {
        let now = self.requests.load(Ordering::SeqCst);
        if now == self.seen.load(Ordering::Relaxed) {
            return false;
        }
        self.seen.store(now, Ordering::Relaxed);
        true
    }
}

/// Wakes one loop from any thread (see [`Signals::waker`]).
#[derive(Clone)]
pub struct Waker {
    wakers: Arc<Vec<UnixStream>>,
    index: usize,
}

impl Waker {
    pub fn wake(&self) {
        wake_all(&self.wakers[self.index..=self.index]);
    }
}

impl std::fmt::Debug for Waker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Waker(loop {})", self.index)
    }
}

/// Server stats as printed on exit and written by `--stats-json`.
#[derive(Debug, Clone, Serialize)]
pub struct StatsReport {
    pub schema: &'static str,
    /// false for a SIGUSR1 snapshot, true for the report written on exit.
    pub r#final: bool,
    /// A snapshot: the SIGUSR1 it answers (1 for the first; signals sent in quick
    /// succession may be answered by one snapshot, for the last of them). Every loop's
    /// counts in it were taken after that signal. None in the final report.
    pub snapshot_request: Option<usize>,
    pub backend: &'static str,
    pub features: Option<FeatureLevel>,
    pub proto: Proto,
    /// Event loops (`--threads`); every count below is their sum.
    pub threads: usize,
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
    /// select: connections refused because their fd was >= FD_SETSIZE (1024).
    pub refused_fd_setsize: u64,
    /// sigio: signals taken, and queue overflows (each a rescan of every connection).
    pub sigio_signals: u64,
    pub sigio_overflows: u64,
    /// busypoll: calls that found nothing (EAGAIN): the waste of polling without waiting.
    pub busypoll_eagain: u64,
    /// threads: connection threads started, and the most alive at once.
    pub threads_started: u64,
    pub threads_peak: u64,
    pub slow_receivers_dropped: u64,
    pub idle_timeouts: u64,
    pub header_timeouts: u64,
    pub refused_max_conns: u64,
    /// threads: each connection thread's stack size in bytes.
    pub thread_stack_bytes: Option<usize>,
    /// Each io_uring feature's state (uring only).
    pub uring: Option<uring::probe::RingFeatures>,
    pub cpu_user_s: f64,
    pub cpu_sys_s: f64,
    pub ctx_voluntary: u64,
    pub ctx_involuntary: u64,
    pub max_rss_kib: u64,
    /// Each loop's share, in loop order: how SO_REUSEPORT spread the connections.
    pub per_thread: Vec<ThreadReport>,
}

/// One event loop's counts in [`StatsReport`].
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ThreadReport {
    /// The CPU it is pinned to (`--pin`), if any.
    pub pinned_cpu: Option<usize>,
    pub connections_accepted: u64,
    pub connections_closed: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub syscalls_total: u64,
    /// This thread's CPU time (io_uring's kernel workers are counted only process-wide).
    pub cpu_user_s: f64,
    pub cpu_sys_s: f64,
}

/// What every loop reports into: the facts of the run and one slot per loop.
pub struct StatsBoard {
    pub backend: Backend,
    pub uring: Option<uring::probe::RingFeatures>,
    pub cfg: ServerConfig,
    pub addr: SocketAddr,
    pub started: Instant,
    slots: Mutex<percore::Board>,
}

impl StatsBoard {
    pub fn new(
        backend: Backend,
        uring: Option<uring::probe::RingFeatures>,
        cfg: ServerConfig,
        addr: SocketAddr,
    ) -> StatsBoard {
        let n = cfg.threads;
        StatsBoard {
            backend,
            uring,
            cfg,
            addr,
            started: Instant::now(),
            slots: Mutex::new(percore::Board::new(n)),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, percore::Board> {
        // A loop that panicked while holding the lock left whole values behind.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loop `i` publishes its counts: for snapshot request `generation`, or its final
    /// ones (`None`). Called on the loop's own thread (its CPU time is read here). The
    /// publish that completes a request writes the merged snapshot.
    fn publish(&self, i: usize, generation: Option<usize>, s: Option<&LoopStats>) {
        let cpu = sys::thread_usage();
        let mut slots = self.slots();
        if slots.publish(i, generation, s, cpu) {
            // Written under the lock: one writer at a time for the temp file.
            let report = self.report_of(&slots, false);
            if let Err(e) = self.write_json(&report) {
                eprintln!("ringmux: warning: cannot write stats snapshot: {e}");
            }
        }
    }

    /// The merged report of what the loops published last.
    pub fn report(&self, is_final: bool) -> StatsReport {
        self.report_of(&self.slots(), is_final)
    }

    fn report_of(&self, slots: &percore::Board, is_final: bool) -> StatsReport {
        let s = slots.merged();
        let u = sys::usage();
        let per_thread = slots
            .each()
            .enumerate()
            .map(|(i, (l, cpu))| ThreadReport {
                pinned_cpu: self.cfg.cpus.as_ref().and_then(|c| c.get(i).copied()),
                connections_accepted: l.accepted,
                connections_closed: l.closed,
                bytes_in: l.bytes_in,
                bytes_out: l.bytes_out,
                syscalls_total: l.syscalls.total(),
                cpu_user_s: cpu.user_s,
                cpu_sys_s: cpu.sys_s,
            })
            .collect();
        StatsReport {
            schema: "ringmux.server-stats/1",
            r#final: is_final,
            snapshot_request: (!is_final).then(|| slots.written()),
            backend: self.backend.name(),
            features: self.backend.features(),
            proto: self.cfg.proto,
            threads: self.cfg.threads,
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
            refused_fd_setsize: s.refused_fd_setsize,
            sigio_signals: s.sigio_signals,
            sigio_overflows: s.sigio_overflows,
            busypoll_eagain: s.busypoll_eagain,
            threads_started: s.threads_started,
            threads_peak: s.threads_peak,
            slow_receivers_dropped: s.slow_receivers_dropped,
            idle_timeouts: s.idle_timeouts,
            header_timeouts: s.header_timeouts,
            refused_max_conns: s.refused_max_conns,
            thread_stack_bytes: (self.backend == Backend::Threads).then_some(threads::STACK_SIZE),
            uring: self.uring,
            cpu_user_s: u.user_s,
            cpu_sys_s: u.sys_s,
            ctx_voluntary: u.voluntary_ctx,
            ctx_involuntary: u.involuntary_ctx,
            max_rss_kib: u.max_rss_kib,
            per_thread,
        }
    }

    /// Write the JSON stats file if asked for (atomically: temp file, then rename, so a
    /// reader never sees half a file).
    pub fn write_json(&self, r: &StatsReport) -> io::Result<()> {
        let Some(path) = &self.cfg.stats_json else {
            return Ok(());
        };
        let tmp = path.with_extension("tmp");
        let body = serde_json::to_vec_pretty(r).map_err(io::Error::other)?;
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, path)
    }
}

/// One loop's handle on the [`StatsBoard`]: its slot. What the backends report through.
pub struct Reporter {
    index: usize,
    /// The newest snapshot request this loop took (shared with its [`Signals`]).
    seen: Arc<AtomicUsize>,
    board: Arc<StatsBoard>,
}

impl Reporter {
    pub fn new(index: usize, signals: &Signals, board: Arc<StatsBoard>) -> Reporter {
        Reporter {
            index,
            seen: signals.seen.clone(),
            board,
        }
    }

    /// SIGUSR1: publish this loop's counts for the request just taken. The file is
    /// written, merged over every loop, once all have published for that request; a
    /// failure to write it is a warning, not the end of the server.
    pub fn snapshot(&self, s: &LoopStats) {
        self.board
            .publish(self.index, Some(self.seen.load(Ordering::Relaxed)), Some(s));
    }

    /// The loop has ended (with its final counts, or `None` after an error): it no
    /// longer holds snapshots up.
    pub fn finish(&self, s: Option<&LoopStats>) {
        self.board.publish(self.index, None, s);
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
        r.connections_accepted,
        r.connections_closed,
        r.accept_errors,
        r.accept_backoffs,
        r.forced_closed
    )?;
    writeln!(out, "  bytes: in={} out={}", r.bytes_in, r.bytes_out)?;
    writeln!(
        out,
        "  limits: idle_timeouts={} header_timeouts={} refused_max_conns={} slow_receivers_dropped={}",
        r.idle_timeouts, r.header_timeouts, r.refused_max_conns, r.slow_receivers_dropped
    )?;
    let calls: Vec<String> = r.syscalls.iter().map(|(k, v)| format!("{k}={v}")).collect();
    writeln!(
        out,
        "  syscalls: total={} {}",
        r.syscalls_total,
        calls.join(" ")
    )?;
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
    match r.backend {
        "select" => writeln!(out, "  select: refused_fd_setsize={}", r.refused_fd_setsize)?,
        "sigio" => writeln!(
            out,
            "  sigio: signals={} overflows={}",
            r.sigio_signals, r.sigio_overflows
        )?,
        "busypoll" => writeln!(out, "  busypoll: eagain={}", r.busypoll_eagain)?,
        "threads" => writeln!(
            out,
            "  threads: started={} peak={} stack={}KiB",
            r.threads_started,
            r.threads_peak,
            r.thread_stack_bytes.unwrap_or(0) / 1024
        )?,
        _ => {}
    }
    writeln!(
        out,
        "  cpu: user={:.3}s sys={:.3}s ctx_switches: voluntary={} involuntary={} max_rss={}KiB",
        r.cpu_user_s, r.cpu_sys_s, r.ctx_voluntary, r.ctx_involuntary, r.max_rss_kib
    )?;
    // The server sees bytes, not the client's messages: cost per KiB received is what it
    // can state without knowing the framing (for N-byte messages, x N/1024 per message).
    if r.bytes_in > 0 {
        let kib = r.bytes_in as f64 / 1024.0;
        writeln!(
            out,
            "  per KiB received: syscalls={:.3} cpu={:.2}us (for N-byte messages, x N/1024 per message)",
            r.syscalls_total as f64 / kib,
            (r.cpu_user_s + r.cpu_sys_s) * 1e6 / kib
        )?;
    }
    if r.threads > 1 {
        let each = |f: fn(&ThreadReport) -> String| {
            r.per_thread.iter().map(f).collect::<Vec<_>>().join("/")
        };
        writeln!(
            out,
            "  per thread: connections {} bytes_in {} cpu {}",
            each(|t| t.connections_accepted.to_string()),
            each(|t| t.bytes_in.to_string()),
            each(|t| format!("{:.3}s", t.cpu_user_s + t.cpu_sys_s)),
        )?;
    }
    Ok(())
}

/// `ringmux serve`.
pub fn serve_cmd(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let cfg = ServerConfig::from_args(&a)?;
    serve(cfg)?;
    Ok(ExitCode::SUCCESS)
}

/// Choose the backend, bind, run until a stop signal, report.
pub fn serve(cfg: ServerConfig) -> anyhow::Result<StatsReport> {
    let (hub, signals) =
        SignalHub::install(cfg.threads).context("cannot install signal handlers")?;
    // Decide the backend before binding, so a failed `--backend uring` leaves no
    // socket behind and `auto` prints its one warning first. This ring serves loop 0;
    // every other loop sets up its own.
    let ring = match cfg.backend {
        BackendChoice::Uring => Some(uring::Ring::setup(&cfg).map_err(anyhow::Error::new)?),
        BackendChoice::Auto => match uring::Ring::setup(&cfg) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("ringmux: warning: {e}; falling back to epoll");
                None
            }
        },
        _ => None,
    };
    let backend = match &ring {
        Some(r) => Backend::Uring(r.features.level),
        None => Backend::from_choice(cfg.backend).unwrap_or(Backend::Epoll),
    };
    if !backend.has_event_loop() && cfg.threads > 1 {
        anyhow::bail!(crate::error::ExitError {
            code: 2,
            msg: format!(
                "--threads {} does not apply to --backend {}: it has no event loop to run per core (use --threads 1)",
                cfg.threads,
                backend.name()
            )
        });
    }
    if backend == Backend::Sigio {
        // Before any loop thread exists, so every thread inherits the mask.
        reactor::sigio::block_signals().context("sigio: cannot block its signals")?;
    }
    let uring_features = ring.as_ref().map(|r| r.features);
    // io_uring sockets stay blocking (the ring polls them), and so do the blocking
    // models' listeners; the readiness models need non-blocking ones.
    let listeners = listener::bind_group(
        cfg.addr,
        cfg.threads,
        cfg.backlog,
        backend.nonblocking_listener(),
    )
    .with_context(|| format!("cannot listen on {}", cfg.addr))?;
    let addr = listeners[0]
        .local_addr()?
        .as_socket()
        .context("listener has no inet address")?;
    let board = Arc::new(StatsBoard::new(backend, uring_features, cfg.clone(), addr));
    // Printed once every loop is ready to serve.
    let announce = || {
        if !cfg.quiet {
            let cpus = cfg.cpus.as_ref().map_or(String::new(), |c| {
                format!(" cpus={}", crate::os::cpus::format_cpu_list(c))
            });
            println!(
                "ringmux: serving {} on {addr} backend={} features={} threads={}{cpus} pid={}",
                cfg.proto.name(),
                backend.name(),
                backend.features().map_or("-", |f| f.name()),
                cfg.threads,
                std::process::id()
            );
            if let Some(f) = &uring_features {
                println!("ringmux: io_uring {}", f.summary());
            }
            if cfg.faults.any() {
                println!(
                    "ringmux: fault injection on: {}",
                    std::env::var(fault::ENV).unwrap_or_default()
                );
            }
        }
    };
    percore::run(
        &cfg,
        backend,
        ring,
        listeners,
        signals,
        Arc::new(hub),
        &board,
        announce,
    )?;
    let report = board.report(true);
    if !cfg.quiet {
        let mut out = io::stdout().lock();
        print_summary(&report, &mut out)?;
        out.flush()?;
    }
    board.write_json(&report).with_context(|| {
        format!(
            "cannot write {}",
            cfg.stats_json.as_ref().unwrap().display()
        )
    })?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_stats_merge_sums_every_field() {
        let mut syscalls = SyscallCounts::default();
        syscalls.0[sys::Sys::Recv as usize] = 5;
        let a = LoopStats {
            accepted: 1,
            closed: 2,
            accept_errors: 3,
            accept_backoffs: 4,
            bytes_in: 5,
            bytes_out: 6,
            syscalls,
            cq_overflow: 7,
            sq_full: 8,
            enter_busy: 9,
            forced_closed: 10,
            recv_nobufs: 11,
            buf_grows: 12,
            faults_injected: 13,
            refused_fd_setsize: 14,
            sigio_signals: 15,
            sigio_overflows: 16,
            busypoll_eagain: 17,
            threads_started: 18,
            threads_peak: 19,
            slow_receivers_dropped: 20,
            idle_timeouts: 21,
            header_timeouts: 22,
            refused_max_conns: 23,
        };
        let mut m = LoopStats::default();
        m.merge(&a);
        m.merge(&a);
        assert_eq!(
            (m.accepted, m.closed, m.accept_errors, m.accept_backoffs),
            (2, 4, 6, 8)
        );
        assert_eq!(
            (
                m.bytes_in,
                m.bytes_out,
                m.cq_overflow,
                m.sq_full,
                m.enter_busy,
                m.forced_closed
            ),
            (10, 12, 14, 16, 18, 20)
        );
        assert_eq!(
            (m.recv_nobufs, m.buf_grows, m.faults_injected),
            (22, 24, 26)
        );
        assert_eq!(
            (m.refused_fd_setsize, m.sigio_signals, m.sigio_overflows),
            (28, 30, 32)
        );
        assert_eq!(
            (m.busypoll_eagain, m.threads_started, m.threads_peak),
            (34, 36, 38)
        );
        assert_eq!(
            (
                m.slow_receivers_dropped,
                m.idle_timeouts,
                m.header_timeouts,
                m.refused_max_conns
            ),
            (40, 42, 44, 46)
        );
        assert_eq!(m.syscalls.0[sys::Sys::Recv as usize], 10);
        assert_eq!(m.syscalls.total(), 10);
    }
}
