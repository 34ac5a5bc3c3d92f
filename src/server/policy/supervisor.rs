//! The models with no readiness call (blocking, threads): the supervisor thread and
//! one connection served with blocking calls.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use slab::Slab;

use super::drain::Drain;
use super::io::{Flush, Recv, flush, recv};
use crate::server::conn::Conn;
use crate::server::fault::Faults;
use crate::server::sys::{self, SyscallCounts, ThreadCounts, syscall};
use crate::server::{LoopStats, Reporter, ServerConfig, Signals};

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
pub struct Supervisor {
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

impl Supervisor {
    pub fn new(listen_fd: RawFd, faults: Faults) -> io::Result<Supervisor> {
        Ok(Supervisor {
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
                    sys::timeout_ms(Some(d.saturating_duration_since(Instant::now())))
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
    shared: &Supervisor,
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
        // Supervisor sends: each returns once the kernel took some bytes (bounded by the
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

