//! Loop policies every backend shares, written once: accept errors and back-off,
//! signal and snapshot handling, the drain deadline, receive and send on a
//! connection with the outbox cap, fault hooks and counting, and the refusal of
//! descriptors a mechanism cannot watch. Backends own their waiting; what they do
//! once a socket is ready (or a blocking call returned) goes through here.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use slab::Slab;

use super::conn::Conn;
use super::fault::Faults;
use super::sys::{self, SyscallCounts, ThreadCounts};
use super::{LoopStats, Reporter, ServerConfig, Signals};
use crate::syscall;

/// Back-off after EMFILE/ENFILE/ENOBUFS/ENOMEM on accept.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);
/// Sends per flush before giving the others a turn.
const SENDS_PER_FLUSH: usize = 1024;

/// What to do after a failed accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptFailure {
    /// Nothing queued (EAGAIN): wait for readiness.
    Empty,
    /// Out of descriptors or memory: stop accepting for [`ACCEPT_BACKOFF`]; the
    /// backlog keeps the clients waiting.
    BackOff,
    /// One connection failed (ECONNABORTED, EPROTO, EINTR...): try the next.
    Next,
}

/// Classify and count an accept error.
pub fn accept_failed(e: &io::Error, stats: &mut LoopStats) -> AcceptFailure {
    match e.raw_os_error() {
        Some(libc::EAGAIN) => AcceptFailure::Empty,
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
            stats.accept_errors += 1;
            stats.accept_backoffs += 1;
            AcceptFailure::BackOff
        }
        _ => {
            stats.accept_errors += 1;
            AcceptFailure::Next
        }
    }
}

/// accept4 on `listen_fd`, the new socket non-blocking or not, counted.
pub fn accept(listen_fd: RawFd, nonblocking: bool) -> io::Result<RawFd> {
    let flags = libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: null address and length: the kernel writes no peer address; the new fd is the caller's.
    syscall!(
        Accept4,
        accept4(listen_fd, std::ptr::null_mut(), std::ptr::null_mut(), flags)
    )
}

/// A new connection is in: count it, set TCP_NODELAY.
pub fn accepted(fd: RawFd, stats: &mut LoopStats) {
    stats.accepted += 1;
    let _ = sys::set_nodelay(fd);
}

/// The drain deadline: unset while serving, set by the first stop signal.
#[derive(Debug, Clone, Copy, Default)]
pub struct Drain {
    pub deadline: Option<Instant>,
}

impl Drain {
    /// Start draining (once). True when this call started it.
    pub fn begin(&mut self, timeout: Duration) -> bool {
        if self.deadline.is_some() {
            return false;
        }
        self.deadline = Some(Instant::now() + timeout);
        true
    }

    pub fn draining(&self) -> bool {
        self.deadline.is_some()
    }

    pub fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// The loop was woken through its wake pipe (or polls the flags): answer a new
/// SIGUSR1 with a snapshot of `stats` (this thread's syscall counts filled in), and
/// return true when a stop was requested and the drain starts now.
pub fn on_wake(
    signals: &Signals,
    reporter: &Reporter,
    stats: &mut LoopStats,
    drain: &mut Drain,
    timeout: Duration,
) -> bool {
    signals.drain();
    check_signals(signals, reporter, stats, drain, timeout)
}

/// [`on_wake`] without reading the wake pipe (busy polling reads the flags each turn).
pub fn check_signals(
    signals: &Signals,
    reporter: &Reporter,
    stats: &mut LoopStats,
    drain: &mut Drain,
    timeout: Duration,
) -> bool {
    if signals.take_snapshot_request() {
        stats.syscalls = SyscallCounts::this_thread();
        reporter.snapshot(stats);
    }
    signals.stop_requested() && drain.begin(timeout)
}

/// The outcome of one receive on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recv {
    /// `n` bytes went to the protocol.
    Data(usize),
    /// The peer sent FIN (`conn.read_eof` is set).
    Eof,
    /// Nothing there (non-blocking socket).
    WouldBlock,
    /// Interrupted by a signal: try again.
    Interrupted,
    /// An error, or an injected reset: close the connection.
    Failed,
}

/// One recv into `scratch`, fed to the connection's protocol; faults and counts here.
pub fn recv(
    fd: RawFd,
    scratch: &mut [u8],
    conn: &mut Conn,
    faults: &mut Faults,
    stats: &mut LoopStats,
) -> Recv {
    // SAFETY: `scratch` is borrowed mutably for the call and is `scratch.len()` bytes long.
    match syscall!(
        Recv,
        recv(
            fd,
            scratch.as_mut_ptr() as *mut libc::c_void,
            scratch.len(),
            0
        )
    ) {
        Ok(0) => {
            conn.read_eof = true;
            Recv::Eof
        }
        Ok(_) if faults.recv_reset.hit() => {
            // Injected: as if the peer had reset (the bytes are dropped).
            stats.faults_injected += 1;
            Recv::Failed
        }
        Ok(n) => {
            let n = n as usize;
            stats.bytes_in += n as u64;
            conn.on_input(&scratch[..n]);
            Recv::Data(n)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Recv::WouldBlock,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Recv::Interrupted,
        Err(_) => Recv::Failed,
    }
}

/// The outcome of a flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Nothing owed any more.
    Done,
    /// The socket took what it could (EAGAIN, or the per-flush bound): bytes still owed.
    Owes,
    /// A send failed: close the connection.
    Failed,
}

/// Send owed bytes until none are owed, the socket would block, or the bound.
/// On a blocking socket this blocks until everything is sent (or it fails).
pub fn flush(fd: RawFd, conn: &mut Conn, faults: &mut Faults, stats: &mut LoopStats) -> Flush {
    let mut bound = 0;
    while conn.owed_len() > 0 && bound < SENDS_PER_FLUSH {
        bound += 1;
        let owed = conn.owed();
        let mut len = owed.len();
        if len > 1 && faults.send_short.hit() {
            stats.faults_injected += 1;
            len /= 2; // injected short send
        }
        // SAFETY: `owed` is borrowed for the call and `len` <= `owed.len()`; the kernel copies the bytes.
        match syscall!(
            Send,
            send(
                fd,
                owed.as_ptr() as *const libc::c_void,
                len,
                libc::MSG_NOSIGNAL
            )
        ) {
            Ok(n) => {
                stats.bytes_out += n as u64;
                conn.advance(n as usize);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Flush::Failed,
        }
    }
    if conn.owed_len() > 0 {
        Flush::Owes
    } else {
        Flush::Done
    }
}

/// A counted sleep (accept back-off, busy polling with nothing to poll).
pub fn sleep(d: Duration) {
    let ts = libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `ts` lives on this stack frame for the call; no remainder is asked for (null).
    let _ = syscall!(Nanosleep, nanosleep(&ts, std::ptr::null_mut()));
}

/// Over the outbox cap: stop reading this connection until it drains.
pub fn over_cap(conn: &Conn, cap: usize) -> bool {
    conn.owed_len() >= cap
}

/// Refusals of descriptors a mechanism cannot watch (select: fd >= FD_SETSIZE),
/// with one warning line per burst (a refusal after a quiet second starts a burst).
#[derive(Debug, Default)]
pub struct Refusals {
    last: Option<Instant>,
}

const BURST_GAP: Duration = Duration::from_secs(1);

impl Refusals {
    /// Close `fd` at once (it was never watched) and count it.
    pub fn refuse(&mut self, fd: RawFd, limit: RawFd, why: &str, stats: &mut LoopStats) {
        sys::close(fd);
        stats.refused_fd_setsize += 1;
        stats.closed += 1;
        let now = Instant::now();
        if self.last.is_none_or(|t| now.duration_since(t) > BURST_GAP) {
            eprintln!(
                "ringmux: warning: refusing connections on fd >= {limit} ({why}); \
                 counted as refused_fd_setsize, the others are served"
            );
        }
        self.last = Some(now);
    }
}

// ---------------------------------------------------------------------------------
// The models with no readiness call (blocking, threads) block in accept, recv and
// send. Signal handling cannot run in those threads, so a supervisor thread waits on
// the wake pipe: it answers SIGUSR1 with the counts of every thread, and on a stop it
// shuts the listener and every live connection down for reading (a blocked accept
// returns EINVAL, a blocked recv returns 0), then, at the drain deadline, for writing
// too (a blocked send fails), counting those as forced_closed.

/// A connection served by blocking calls, as the supervisor sees it.
pub struct Live {
    pub fd: RawFd,
    /// Its counts, published after every call (never locked across a blocking call).
    pub stats: Arc<Mutex<LoopStats>>,
}

/// What the serving threads and the supervisor share.
pub struct Blocking {
    pub listen_fd: RawFd,
    live: Mutex<Slab<Live>>,
    /// Signalled when a connection leaves (the threads backend's cap) or the drain starts.
    pub changed: Condvar,
    /// Counts of connections that ended (syscalls excluded: they are per thread).
    finished: Mutex<LoopStats>,
    /// Syscall counts of the threads serving now, and the sum of those that ended
    /// (a thread per connection: keeping every ended thread's handle grew the
    /// server by ~180 bytes per connection ever served).
    counts: Mutex<(Slab<Arc<ThreadCounts>>, SyscallCounts)>,
    draining: AtomicBool,
    /// The serving side has ended (written when it returns, so the supervisor wakes).
    done: (UnixStream, UnixStream),
    forced: AtomicU64,
    /// RINGMUX_FAULTS counters, shared by every connection (counted per server, as
    /// the event loops count per loop); only used when faults are on.
    faults: Mutex<Faults>,
}

/// The locks hold plain counts: a thread that panicked left whole values behind.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Blocking {
    pub fn new(listen_fd: RawFd, faults: Faults) -> io::Result<Blocking> {
        Ok(Blocking {
            listen_fd,
            live: Mutex::new(Slab::new()),
            changed: Condvar::new(),
            finished: Mutex::new(LoopStats::default()),
            counts: Mutex::new((Slab::new(), SyscallCounts::default())),
            draining: AtomicBool::new(false),
            done: UnixStream::pair()?,
            forced: AtomicU64::new(0),
            faults: Mutex::new(faults),
        })
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Count this thread's syscalls in the server's (once per thread). The key goes
    /// back to [`Blocking::retire_thread`] when the thread is done.
    pub fn count_this_thread(&self) -> usize {
        lock(&self.counts).0.insert(sys::this_thread_counts())
    }

    /// The thread that took `key` makes no more syscalls: fold its counts into the
    /// total of ended threads and let its handle go.
    pub fn retire_thread(&self, key: usize) {
        let mut c = lock(&self.counts);
        if let Some(h) = c.0.try_remove(key) {
            c.1.add(&SyscallCounts::of(&h));
        }
    }

    /// Live connections now.
    pub fn live(&self) -> usize {
        lock(&self.live).len()
    }

    /// Block until fewer than `cap` connections are live, or the drain starts.
    pub fn wait_below(&self, cap: usize) {
        let mut live = lock(&self.live);
        while live.len() >= cap && !self.draining() {
            live = self.changed.wait(live).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// A connection starts being served. If the drain has begun it is shut for
    /// reading at once (its owed bytes are still flushed).
    pub fn enter(&self, fd: RawFd, stats: Arc<Mutex<LoopStats>>) -> usize {
        let mut live = lock(&self.live);
        if self.draining() {
            // SAFETY: no memory; `fd` is the live connection being registered under the lock.
            let _ = syscall!(Shutdown, shutdown(fd, libc::SHUT_RD));
        }
        live.insert(Live { fd, stats })
    }

    /// The connection `key` ended with `stats`: close its fd (under the lock, so the
    /// supervisor never shuts down a reused fd number).
    pub fn leave(&self, key: usize, stats: &LoopStats) {
        let mut live = lock(&self.live);
        if let Some(l) = live.try_remove(key) {
            sys::close(l.fd);
        }
        let mut s = stats.clone();
        s.closed += 1;
        s.syscalls = SyscallCounts::default();
        lock(&self.finished).merge(&s);
        drop(live);
        self.changed.notify_all();
    }

    /// The serving side returned: wake the supervisor.
    pub fn serving_ended(&self) {
        sys::wake(self.done.1.as_raw_fd());
    }

    /// Every count so far: ended connections, live ones, `extra` (the acceptor's),
    /// and the syscalls of every thread.
    pub fn merged(&self, extra: &LoopStats) -> LoopStats {
        let mut m = lock(&self.finished).clone();
        for (_, l) in lock(&self.live).iter() {
            let mut s = lock(&l.stats).clone();
            s.syscalls = SyscallCounts::default();
            m.merge(&s);
        }
        let mut e = extra.clone();
        e.syscalls = SyscallCounts::default();
        m.merge(&e);
        m.forced_closed += self.forced.load(Ordering::SeqCst);
        let counts = lock(&self.counts);
        m.syscalls.add(&counts.1);
        for (_, c) in counts.0.iter() {
            m.syscalls.add(&SyscallCounts::of(c));
        }
        m
    }

    fn begin_drain(&self) {
        let live = lock(&self.live);
        self.draining.store(true, Ordering::SeqCst);
        // A blocked accept returns EINVAL once its listener is shut down.
        // SAFETY: no memory; the listener stays open until the server returns.
        let _ = syscall!(Shutdown, shutdown(self.listen_fd, libc::SHUT_RD));
        for (_, l) in live.iter() {
            // SAFETY: no memory; `l.fd` is open while it is in `live` (closed only under this lock).
            let _ = syscall!(Shutdown, shutdown(l.fd, libc::SHUT_RD));
        }
        drop(live);
        self.changed.notify_all();
    }

    fn force_close(&self) {
        let live = lock(&self.live);
        self.forced.store(live.len() as u64, Ordering::SeqCst);
        for (_, l) in live.iter() {
            // SAFETY: no memory; `l.fd` is open while it is in `live` (closed only under this lock).
            let _ = syscall!(Shutdown, shutdown(l.fd, libc::SHUT_RDWR));
        }
    }

    /// The supervisor: run on its own thread until the serving side has ended.
    /// `acceptor` holds the acceptor's counts (accepted, accept errors...).
    pub fn supervise(
        &self,
        cfg: &ServerConfig,
        signals: &Signals,
        reporter: &Reporter,
        acceptor: &Mutex<LoopStats>,
    ) {
        self.count_this_thread();
        let mut drain = Drain::default();
        let mut forced = false;
        let done_fd = self.done.0.as_raw_fd();
        let _ = self.done.0.set_nonblocking(true);
        loop {
            let timeout = match drain.deadline {
                Some(d) if !forced => {
                    super::reactor::timeout_ms(Some(d.saturating_duration_since(Instant::now())))
                }
                _ => -1,
            };
            let mut fds = [
                libc::pollfd {
                    fd: signals.fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: done_fd,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: `fds` lives on this stack frame for the call and has the 2 entries passed.
            let _ = syscall!(Poll, poll(fds.as_mut_ptr(), 2, timeout));
            if fds[1].revents != 0 {
                return;
            }
            if fds[0].revents != 0 {
                signals.drain();
                if signals.take_snapshot_request() {
                    reporter.snapshot(&self.merged(&lock(acceptor)));
                }
                if signals.stop_requested() && drain.begin(cfg.drain_timeout) {
                    self.begin_drain();
                }
            }
            if !forced && drain.expired() {
                forced = true;
                self.force_close();
            }
        }
    }
}

/// Serve one connection with blocking calls until the peer leaves (or the drain shuts
/// it): recv, feed the protocol, send everything owed (a blocking send is the
/// backpressure: nothing more is read while the peer does not read). `stats` gets
/// the counts after every call.
pub fn serve_blocking(
    shared: &Blocking,
    fd: RawFd,
    cfg: &ServerConfig,
    scratch: &mut [u8],
    stats: &Mutex<LoopStats>,
) {
    let mut conn = Conn::with_guests(cfg.proto, &cfg.guests);
    // A blocking connection has no other connection in its loop: its broadcasts go
    // nowhere (blocking serves one client; chat is refused on threads).
    conn.on_open();
    conn.take_broadcast();
    let mut s = LoopStats::default();
    let with_faults = cfg.faults.any();
    // Deadlines through SO_RCVTIMEO: a recv that waited that long returns EAGAIN.
    let wait = [cfg.idle_timeout, cfg.header_timeout]
        .into_iter()
        .flatten()
        .min();
    if let Some(t) = wait {
        let _ = sys::set_recv_timeout(fd, t);
    }
    let mut last_input = Instant::now();
    let mut head_since: Option<Instant> = None;
    // The shared counters, taken for one call and put back (not across the blocking
    // call: another thread may count meanwhile, so a count may be lost; tests only).
    let take = || {
        if with_faults {
            *lock(&shared.faults)
        } else {
            Faults::default()
        }
    };
    let give = |f: Faults| {
        if with_faults {
            *lock(&shared.faults) = f;
        }
    };
    let mut first = true;
    loop {
        if !(first || conn.read_eof || conn.close_after_flush) {
            let mut faults = take();
            let r = recv(fd, scratch, &mut conn, &mut faults, &mut s);
            give(faults);
            conn.take_broadcast();
            let now = Instant::now();
            if let Recv::Data(_) = r {
                last_input = now;
                head_since = if conn.wants_header_deadline() {
                    Some(head_since.unwrap_or(now))
                } else {
                    None
                };
            }
            if let (Some(h), Some(t)) = (cfg.header_timeout, head_since)
                && t + h <= now
                && conn.wants_header_deadline()
            {
                s.header_timeouts += 1;
                conn.header_timeout();
                head_since = None;
            } else if r == Recv::WouldBlock
                && cfg.idle_timeout.is_some_and(|i| last_input + i <= now)
            {
                s.idle_timeouts += 1;
                lock(stats).clone_from(&s);
                break;
            }
            // Published before the reply goes out, so a snapshot taken after the peer
            // saw its reply counts the bytes that caused it.
            lock(stats).clone_from(&s);
            match r {
                Recv::Data(_) | Recv::Eof | Recv::WouldBlock => {}
                Recv::Interrupted => continue,
                Recv::Failed => break,
            }
        }
        first = false;
        let mut failed = false;
        // Blocking sends: each returns once the kernel took some bytes (bounded by the
        // owed length: every turn advances, or fails).
        while conn.owed_len() > 0 {
            let mut faults = take();
            let r = flush(fd, &mut conn, &mut faults, &mut s);
            give(faults);
            lock(stats).clone_from(&s);
            if r == Flush::Failed {
                failed = true;
                break;
            }
        }
        if failed || conn.finished() {
            break;
        }
    }
    *lock(stats) = s;
}

// ---------------------------------------------------------------------------------
// Timers: every connection's deadlines (--idle-timeout, --header-timeout) in one
// min-heap per loop, so an idle connection costs no timer syscall of its own; the
// loop's wait ends at the nearest deadline ([`Timers::next`]).

/// A connection's clock: when it last sent something, when its pending head began.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Unique per loop: a heap entry for a closed connection whose slot was reused is
    /// recognised as stale.
    id: u64,
    last_input: Instant,
    head_since: Option<Instant>,
    /// The deadline of this connection's one current heap entry; other entries for it
    /// are stale and dropped when they come up.
    armed: Option<Instant>,
}

/// What a deadline that came up asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// http: the head did not complete in time: 408 and close.
    Header,
    /// Nothing received for --idle-timeout: close.
    Idle,
}

/// One loop's deadlines.
#[derive(Debug, Default)]
pub struct Timers {
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(Instant, usize, u64)>>,
    next_id: u64,
    idle: Option<Duration>,
    header: Option<Duration>,
}

impl Timers {
    pub fn new(cfg: &ServerConfig) -> Timers {
        Timers {
            idle: cfg.idle_timeout,
            header: cfg.header_timeout,
            ..Timers::default()
        }
    }

    /// A clock for the new connection in slot `key`.
    pub fn open(&mut self, key: usize) -> Clock {
        self.next_id += 1;
        let now = Instant::now();
        let mut c = Clock {
            id: self.next_id,
            last_input: now,
            head_since: None,
            armed: None,
        };
        self.rearm(key, &mut c);
        c
    }

    /// Input arrived on `conn` (call after the protocol saw it).
    pub fn on_input(&mut self, key: usize, clock: &mut Clock, conn: &Conn) {
        if self.idle.is_none() && self.header.is_none() {
            return;
        }
        let now = Instant::now();
        clock.last_input = now;
        if conn.wants_header_deadline() {
            if clock.head_since.is_none() {
                clock.head_since = Some(now);
                self.rearm(key, clock);
            }
        } else {
            clock.head_since = None;
        }
    }

    fn deadline(&self, c: &Clock) -> Option<Instant> {
        let idle = self.idle.map(|d| c.last_input + d);
        let head = self.header.zip(c.head_since).map(|(d, t)| t + d);
        idle.into_iter().chain(head).min()
    }

    /// Push an entry for the clock's deadline unless one as early is already armed.
    fn rearm(&mut self, key: usize, c: &mut Clock) {
        let Some(d) = self.deadline(c) else { return };
        if c.armed.is_some_and(|a| a <= d) {
            return;
        }
        c.armed = Some(d);
        self.heap.push(std::cmp::Reverse((d, key, c.id)));
    }

    /// The nearest deadline (possibly a stale one: waking for it costs one turn).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.0.0)
    }

    /// Take the next entry due at `now`: (slot key, connection id, its deadline).
    pub fn pop_due(&mut self, now: Instant) -> Option<(usize, u64, Instant)> {
        if self.next()? > now {
            return None;
        }
        self.heap.pop().map(|e| (e.0.1, e.0.2, e.0.0))
    }

    /// An entry popped by [`Timers::pop_due`] for the connection in `key` now: what is
    /// due, or None (a stale entry, or the deadline moved: re-armed).
    pub fn check(
        &mut self,
        key: usize,
        id: u64,
        at: Instant,
        clock: &mut Clock,
        conn: &Conn,
        now: Instant,
    ) -> Option<Due> {
        if clock.id != id || clock.armed != Some(at) {
            return None;
        }
        clock.armed = None;
        if let (Some(h), Some(t)) = (self.header, clock.head_since)
            && conn.wants_header_deadline()
            && t + h <= now
        {
            clock.head_since = None;
            return Some(Due::Header);
        }
        if self.idle.is_some_and(|d| clock.last_input + d <= now) {
            return Some(Due::Idle);
        }
        self.rearm(key, clock);
        None
    }
}

/// --max-conns: true when a new connection must be refused with `live` already in
/// (the caller closes it at once); counted.
pub fn refuse_max_conns(cfg: &ServerConfig, live: usize, fd: RawFd, stats: &mut LoopStats) -> bool {
    if cfg.max_conns.is_some_and(|m| live >= m) {
        sys::close(fd);
        stats.refused_max_conns += 1;
        stats.closed += 1;
        return true;
    }
    false
}
