//! The models with no readiness call (blocking, threads): the supervisor thread and
//! one connection served with blocking calls.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Instant;

use slab::Slab;
use socket2::Socket;

use super::accept::{self, AcceptFailure};
use super::drain::Drain;
use super::hub::Hub;
use super::io::{self as pio, Flush, Recv, flush, recv};
use super::timers::{Due, Timers};
use crate::server::config::ServerConfig;
use crate::server::conn::Conn;
use crate::server::fault::Faults;
use crate::server::signals::Signals;
use crate::server::stats::{LoopStats, Reporter};
use crate::server::sys::{self, SyscallCounts, ThreadCounts, syscall};

// ---------------------------------------------------------------------------------
// The models with no readiness call (blocking, threads) block in accept, recv and
// send. Signal handling cannot run in those threads, so a supervisor thread waits on
// the wake pipe: it answers SIGUSR1 with the counts of every thread, and on a stop it
// shuts the listener and every live connection down for reading (a blocked accept
// returns EINVAL, a blocked recv returns 0), then, at the drain deadline, for writing
// too (a blocked send fails), counting those as forced_closed.

/// A connection served by blocking calls, as the supervisor sees it.
pub struct Live {
    /// The connection's socket (shut down by the supervisor on a stop).
    pub fd: RawFd,
    /// Its counts, published after every call (never locked across a blocking call);
    /// a chat connection's writer thread publishes its own beside them.
    pub stats: Vec<Arc<Mutex<LoopStats>>>,
}

/// What the serving threads and the supervisor share.
pub struct Supervisor {
    /// The listening socket (shut down for reading on a stop, so a blocked accept returns).
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
    /// The serving side has ended (set before it wakes the supervisor).
    ended: AtomicBool,
    forced: AtomicU64,
    /// RINGMUX_FAULTS counters, shared by every connection (counted per server, as
    /// the event loops count per loop); only used when faults are on.
    faults: Mutex<Faults>,
    faults_on: bool,
}

/// The locks hold plain counts: a thread that panicked left whole values behind.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Supervisor {
    /// A supervisor for the server listening on `listen_fd`, with no connection yet.
    pub fn new(listen_fd: RawFd, faults: Faults) -> Supervisor {
        Supervisor {
            listen_fd,
            live: Mutex::new(Slab::new()),
            changed: Condvar::new(),
            finished: Mutex::new(LoopStats::default()),
            counts: Mutex::new((Slab::new(), SyscallCounts::default())),
            draining: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            forced: AtomicU64::new(0),
            faults_on: faults.any(),
            faults: Mutex::new(faults),
        }
    }

    /// The drain has begun: accept no more, read no more.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Count this thread's syscalls in the server's (once per thread). The key goes
    /// back to [`Supervisor::retire_thread`] when the thread is done.
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

    /// Connection `key`'s writer thread publishes its counts in `stats` too.
    pub fn add_stats(&self, key: usize, stats: Arc<Mutex<LoopStats>>) {
        if let Some(l) = lock(&self.live).get_mut(key) {
            l.stats.push(stats);
        }
    }

    /// The fault counters for one call (shared by every connection; a copy when
    /// faults are off), and putting them back after it: not held across the blocking
    /// call, as another thread may count meanwhile, so a count may be lost (tests only).
    pub fn take_faults(&self) -> Faults {
        if self.faults_on {
            *lock(&self.faults)
        } else {
            Faults::default()
        }
    }

    /// Put back the fault counters [`Supervisor::take_faults`] gave, with this call's
    /// injections counted (nothing to do when faults are off).
    pub fn put_faults(&self, f: Faults) {
        if self.faults_on {
            *lock(&self.faults) = f;
        }
    }

    /// Block until every connection has left (each [`Supervisor::leave`] wakes this).
    pub fn wait_empty(&self) {
        let mut live = lock(&self.live);
        while !live.is_empty() {
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
        live.insert(Live {
            fd,
            stats: vec![stats],
        })
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

    /// The serving side returned: wake the supervisor, which then returns.
    pub fn serving_ended(&self, signals: &Signals) {
        self.ended.store(true, Ordering::SeqCst);
        signals.wake();
    }

    /// The next connection to serve, accepted by a blocking accept: errors counted
    /// in `acceptor` and backed off from, `--max-conns` refused. None once the drain
    /// has begun (the supervisor shut the listener down).
    pub fn accept_next(&self, cfg: &ServerConfig, acceptor: &Mutex<LoopStats>) -> Option<RawFd> {
        while !self.draining() {
            let res = accept::accept(self.listen_fd, false);
            let mut a = lock(acceptor);
            match res {
                Ok(fd) => {
                    accept::accepted(fd, &mut a);
                    if !accept::refuse_max_conns(cfg, self.live(), fd, &mut a) {
                        return Some(fd);
                    }
                }
                Err(_) if self.draining() => return None,
                Err(e) => {
                    if accept::accept_failed(&e, &mut a) == AcceptFailure::BackOff {
                        drop(a);
                        pio::sleep(accept::ACCEPT_BACKOFF);
                    }
                }
            }
        }
        None
    }

    /// Every count so far: ended connections, live ones, `extra` (the acceptor's),
    /// and the syscalls of every thread.
    pub fn merged(&self, extra: &LoopStats) -> LoopStats {
        let mut m = lock(&self.finished).clone();
        for (_, l) in lock(&self.live).iter() {
            for st in &l.stats {
                let mut s = lock(st).clone();
                s.syscalls = SyscallCounts::default();
                m.merge(&s);
            }
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
        loop {
            // Woken by a signal, by the serving side's end, or at the drain deadline.
            let deadline = drain.deadline.filter(|_| !forced);
            signals.wait(deadline.map(|d| d.saturating_duration_since(Instant::now())));
            if self.ended.load(Ordering::SeqCst) {
                return;
            }
            if signals.take_snapshot_request() {
                reporter.snapshot(&self.merged(&lock(acceptor)));
            }
            if signals.stop_requested() && drain.begin(cfg.drain_timeout) {
                self.begin_drain();
            }
            if !forced && drain.expired() {
                forced = true;
                self.force_close();
            }
        }
    }
}

/// Where a connection served by blocking calls sends its replies.
pub enum Replies<'a> {
    /// This thread sends them, blocking: a blocking send is the backpressure (nothing
    /// more is read while the peer does not read). Broadcasts go nowhere: no other
    /// connection shares this thread (blocking serves one client at a time).
    Send,
    /// Chat on `threads`: member `id` of the room, whose writer thread sends both its
    /// replies and what others broadcast; this thread waits while that outbox is at
    /// the cap, and posts its broadcasts to the room.
    Room(&'a Hub, usize),
}

/// Serve one connection with blocking calls until the peer leaves (or the drain shuts
/// it): recv, feed the protocol, hand on what it owes. `stats` gets the counts after
/// every call. The deadlines are the loops' ([`Timers`]): a recv waits at most the
/// shorter of the two timeouts (SO_RCVTIMEO), then the due one is acted on.
pub fn serve_blocking(
    shared: &Supervisor,
    fd: RawFd,
    cfg: &ServerConfig,
    scratch: &mut [u8],
    stats: &Mutex<LoopStats>,
    replies: Replies,
) {
    let mut conn = Conn::with_guests(cfg.proto, &cfg.guests);
    let mut s = LoopStats::default();
    let mut timers = Timers::new(cfg);
    let mut clock = timers.open(0);
    conn.on_open();
    let broadcast = |conn: &mut Conn, s: &mut LoopStats| {
        let b = conn.take_broadcast();
        if let Replies::Room(hub, id) = replies {
            s.slow_receivers_dropped += hub.post(id, &b);
        }
    };
    broadcast(&mut conn, &mut s);
    if let Some(t) = [cfg.idle_timeout, cfg.header_timeout]
        .into_iter()
        .flatten()
        .min()
    {
        let _ = sys::set_recv_timeout(fd, t);
    }
    let mut first = true;
    loop {
        if !(first || conn.read_eof || conn.close_after_flush) {
            let mut faults = shared.take_faults();
            let r = recv(fd, scratch, &mut conn, &mut faults, &mut s);
            shared.put_faults(faults);
            if let Recv::Data(_) = r {
                timers.on_input(0, &mut clock, &conn);
                broadcast(&mut conn, &mut s);
            }
            match timers.due(&mut clock, &conn, Instant::now()) {
                Some(Due::Header) => {
                    s.header_timeouts += 1;
                    conn.header_timeout();
                }
                Some(Due::Idle) => {
                    s.idle_timeouts += 1;
                    lock(stats).clone_from(&s);
                    break;
                }
                None => {}
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
        let delivered = match replies {
            Replies::Send => {
                // Each blocking send returns once the kernel took some bytes (bounded
                // by the owed length: every turn advances, or fails).
                let mut ok = true;
                while ok && conn.owed_len() > 0 {
                    let mut faults = shared.take_faults();
                    ok = flush(fd, &mut conn, &mut faults, &mut s) != Flush::Failed;
                    shared.put_faults(faults);
                    lock(stats).clone_from(&s);
                }
                ok
            }
            Replies::Room(hub, id) => {
                hub.push_own(id, &conn.take_owed(Vec::new()));
                hub.wait_below(id)
            }
        };
        if !delivered || conn.finished() {
            break;
        }
    }
    if let Replies::Room(hub, id) = replies {
        s.slow_receivers_dropped += hub.post(id, &conn.on_close());
    }
    *lock(stats) = s;
}

/// Run a model with no readiness call: the supervisor on its own thread, `serve` on
/// this one (it may start scoped threads of its own), until `serve` returns and every
/// thread it started has ended. The counts are every thread's, merged.
pub fn run<F>(
    listener: Socket,
    cfg: &ServerConfig,
    signals: &Signals,
    reporter: &Reporter,
    serve: F,
) -> io::Result<LoopStats>
where
    F: for<'s, 'e> FnOnce(
        &'s thread::Scope<'s, 'e>,
        &'e Supervisor,
        &'e ServerConfig,
        &'e Mutex<LoopStats>,
    ),
{
    let shared = Supervisor::new(listener.as_raw_fd(), cfg.faults);
    let acceptor = Mutex::new(LoopStats::default());
    shared.count_this_thread();
    thread::scope(|s| {
        thread::Builder::new()
            .name("ringmux-supervisor".into())
            .spawn_scoped(s, || shared.supervise(cfg, signals, reporter, &acceptor))?;
        serve(s, &shared, cfg, &acceptor);
        shared.wait_empty();
        shared.serving_ended(signals);
        io::Result::Ok(())
    })?;
    let stats = shared.merged(&lock(&acceptor));
    drop(listener);
    Ok(stats)
}
