//! The policy layer: every rule the backends share, written once. Backends own their
//! waiting and their kernel interface (readiness calls, blocking calls, ring
//! submissions); what a connection or the loop does about what happened goes
//! through here.
//!
//! - [`accept`]: accept errors and the back-off, `--max-conns`, descriptors a
//!   mechanism cannot watch.
//! - [`drain`]: the drain deadline; [`LoopState::woken`]: signals (SIGUSR1
//!   snapshots, SIGINT/SIGTERM).
//! - [`io`]: receive and send on a socket, with the fault hooks and the counts.
//! - [`over_cap`]: the outbox cap's backpressure rule.
//! - [`timers`]: the idle and header deadlines, and what a loop does when one is due.
//! - [`fanout`]: broadcasts to the other connections, and the slow-receiver drop;
//!   [`hub`]: the same across threads (loops, or the `threads` model's connections).
//! - [`supervisor`]: the models with no readiness call (blocking, threads).

pub mod accept;
pub mod drain;
pub mod fanout;
pub mod hub;
pub mod io;
pub mod supervisor;
pub mod timers;

use super::conn::Conn;

/// The outbox cap's rule, for every backend: a connection whose queued bytes (its
/// outbox, plus what the kernel owns in an in-flight send) reach `cap` is not read
/// until they drop below it. Echo thus pushes back on a peer that does not read.
pub fn over_cap(conn: &Conn, in_flight: usize, cap: usize) -> bool {
    conn.owed_len() + in_flight >= cap
}

use std::sync::Arc;
use std::time::Duration;

use slab::Slab;

use self::drain::Drain;
use self::fanout::Fanout;
use self::hub::Hub;
use self::timers::{Clock, Due, Timers};
use super::config::ServerConfig;
use super::fault::Faults;
use super::signals::Signals;
use super::stats::{LoopStats, Reporter};
use super::sys::SyscallCounts;
use crate::proto::Proto;

/// What every event loop (the reactor, the proactor, busy polling) keeps for the
/// policies: its counts, its fan-out, its deadlines, its fault counters, its drain.
#[derive(Debug)]
pub struct LoopState {
    /// What this loop counted (its syscalls are filled in when it publishes).
    pub stats: LoopStats,
    /// Broadcasts waiting to reach this loop's other connections (chat).
    pub fanout: Fanout,
    /// Every connection's idle and header deadlines.
    pub timers: Timers,
    /// The fault hooks (`RINGMUX_FAULTS`, tests only) and what they have injected.
    pub faults: Faults,
    /// The drain deadline, once a stop signal came.
    pub drain: Drain,
    /// Chat with several loops: the room across them, and this loop's member id.
    room: Option<(Arc<Hub>, usize)>,
}

/// The sender of broadcasts that came from another loop (no connection of this one).
pub const OTHER_LOOP: usize = usize::MAX;

impl LoopState {
    /// The state of a new loop: nothing counted, no deadline, not in a shared room yet
    /// ([`LoopState::join_room`]).
    pub fn new(cfg: &ServerConfig, fanout: Fanout) -> LoopState {
        LoopState {
            stats: LoopStats::default(),
            fanout,
            timers: Timers::new(cfg),
            faults: cfg.faults,
            drain: Drain::default(),
            room: None,
        }
    }

    /// Chat with `--threads N` > 1: join the room every loop shares, woken through
    /// this loop's wake pipe when another loop posts to it.
    pub fn join_room(&mut self, cfg: &ServerConfig, signals: &Signals) {
        if cfg.proto == Proto::Chat && cfg.threads > 1 {
            let id = cfg.room.join_loop(signals.waker());
            self.room = Some((cfg.room.clone(), id));
        }
    }

    /// Queue a broadcast of this loop's connection `from` for the other connections,
    /// here and, in a shared room, in every other loop.
    fn broadcast(&mut self, from: usize, bytes: Vec<u8>) {
        if let Some((hub, id)) = &self.room {
            hub.post(*id, &bytes);
        }
        self.fanout.queue(from, bytes);
    }

    /// The loop was woken through its wake pipe (or, busy polling, found a flag set):
    /// empty the pipe, answer a new SIGUSR1 with a snapshot (this thread's syscall
    /// counts filled in), queue what other loops posted to this one (the caller settles
    /// the fan-out), and return true when a stop was requested and the drain starts now.
    pub fn woken(
        &mut self,
        signals: &Signals,
        reporter: &Reporter,
        drain_timeout: Duration,
    ) -> bool {
        signals.drain();
        if signals.take_snapshot_request() {
            self.stats.syscalls = SyscallCounts::this_thread();
            reporter.snapshot(&self.stats);
        }
        // After the wake pipe was emptied: a post that comes later leaves a new wake.
        self.take_room();
        signals.stop_requested() && self.drain.begin(drain_timeout)
    }

    /// Queue what other loops posted to this one since it last looked (the caller
    /// settles the fan-out).
    pub fn take_room(&mut self) {
        if let Some((hub, id)) = &self.room {
            self.fanout.queue(OTHER_LOOP, hub.take(*id));
        }
    }

    /// A connection was accepted into slot `key`: its clock starts, the protocol's
    /// greeting lands in its outbox, its join broadcast is queued. The backend then
    /// sends what is owed and settles the fan-out.
    pub fn open(&mut self, key: usize, conn: &mut Conn) -> Clock {
        let clock = self.timers.open(key);
        conn.on_open();
        self.broadcast(key, conn.take_broadcast());
        clock
    }

    /// Bytes from the peer went to `conn`'s protocol: its clock moves and its
    /// broadcast, if any, is queued. True when something was queued (the caller
    /// settles the fan-out: receiver by receiver, so the receivers' sends keep pace).
    pub fn input(&mut self, key: usize, clock: &mut Clock, conn: &mut Conn) -> bool {
        self.timers.on_input(key, clock, conn);
        let b = conn.take_broadcast();
        let queued = !b.is_empty();
        self.broadcast(key, b);
        queued
    }

    /// `conn` in slot `key` is closing: its leave broadcast is queued. The backend
    /// closes the socket with [`LoopState::close_fd`] (at once, or once the kernel has
    /// given back everything it owned).
    pub fn closing(&mut self, key: usize, conn: &mut Conn) {
        let bye = conn.on_close();
        self.broadcast(key, bye);
    }

    /// Close a connection's socket, counted.
    pub fn close_fd(&mut self, fd: std::os::fd::RawFd) {
        close_counted(fd, &mut self.stats);
    }
}

impl Drop for LoopState {
    /// A loop that ends leaves the room: nothing more is posted to its inbox.
    fn drop(&mut self) {
        if let Some((hub, id)) = &self.room {
            hub.leave(*id);
        }
    }
}

/// Close a connection's socket and count it closed: the one place a close is counted.
pub fn close_counted(fd: std::os::fd::RawFd, stats: &mut LoopStats) {
    super::sys::close(fd);
    stats.closed += 1;
}

/// A loop's per-connection slot, as the policies see it.
pub trait Member {
    /// The connection: protocol state and outbox.
    fn conn(&mut self) -> &mut Conn;
    /// Its deadline clock, with the connection (borrowed together for the timers).
    fn clock(&mut self) -> (&mut Clock, &mut Conn);
    /// Bytes of this connection the kernel owns in an in-flight send (io_uring).
    fn in_flight(&self) -> usize {
        0
    }
    /// False once the backend is closing it: no more broadcasts, no deadlines.
    fn live(&self) -> bool {
        true
    }
    /// Sends completed so far (io_uring): a receiver over the cap is dropped only if
    /// this did not move for a whole turn.
    fn progress(&self) -> u64 {
        0
    }
}

/// An event loop, as the policies see it: its state and its connections, and the
/// two things only the backend knows how to do.
pub trait Loop {
    /// The per-connection slot.
    type M: Member;
    /// The loop's state and its connections, borrowed together.
    fn parts(&mut self) -> (&mut LoopState, &mut Slab<Self::M>);
    /// Close `key` now, without flushing (a slow receiver, an idle connection); its
    /// leave goes through [`LoopState::closing`].
    fn close(&mut self, key: usize);
    /// `key` owes bytes (its outbox grew): send them, or arm the send. It may close.
    fn wake(&mut self, key: usize);
}

/// Deadlines that came up: an HTTP head too slow gets its 408 (and closes after it),
/// a connection silent for --idle-timeout closes. Written once for every loop.
pub fn expire_timers<L: Loop>(l: &mut L) {
    let now = std::time::Instant::now();
    loop {
        let (st, members) = l.parts();
        let Some((key, id, at)) = st.timers.pop_due(now) else {
            return;
        };
        let Some(m) = members.get_mut(key).filter(|m| m.live()) else {
            continue;
        };
        let (clock, conn) = m.clock();
        match st.timers.check(key, id, at, clock, conn, now) {
            None => continue,
            Some(Due::Header) => {
                st.stats.header_timeouts += 1;
                conn.header_timeout();
                l.wake(key);
            }
            Some(Due::Idle) => {
                st.stats.idle_timeouts += 1;
                l.close(key);
            }
        }
        Fanout::settle(l);
    }
}

/// The drain began: nothing more is read from any connection; each closes once it
/// owes nothing (the backend flushes what is owed).
pub fn stop_reading<L: Loop>(l: &mut L) {
    for (_, m) in l.parts().1.iter_mut() {
        m.conn().read_eof = true;
    }
}
