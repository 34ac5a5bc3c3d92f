//! The reactor: one loop for every readiness mechanism (select, poll, epoll,
//! signal-driven IO). A mechanism ([`Readiness`]) only translates interest into its
//! kernel interface and readiness back into [`Event`]s, like Python's selectors; the
//! loop here does accept, recv, send, backpressure and drain once for all of them.
//!
//! Edge- or level-triggered matters to the loop. Edge-triggered (epoll ET, SIGIO):
//! a ready socket is reported once per change, so the loop reads and writes until
//! EAGAIN (or keeps the connection on its own ready list), and read interest never
//! changes. Level-triggered (select, poll): a ready socket is reported on every wait,
//! so the loop must drop read interest while a connection is paused by its outbox
//! cap (and the listener's while accept backs off), or the wait would spin.
//! Write interest is armed only while a connection owes bytes the socket would not
//! take. Reads go into one scratch buffer shared by every connection, so an idle
//! connection owns no read buffer.

pub mod epoll;
pub mod poll;
pub mod select;
pub mod sigio;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use slab::Slab;
use socket2::Socket;

use super::config::ServerConfig;
use super::conn::Conn;
use super::signals::Signals;
use super::stats::{LoopStats, Reporter};
use super::sys::{self, SyscallCounts};
use crate::server::policy::accept::{self, AcceptFailure, Refusals};
use crate::server::policy::fanout::Fanout;
use crate::server::policy::io::{self as pio, Flush, Recv};
use crate::server::policy::timers;
use crate::server::policy::{self, Loop, LoopState, Member, over_cap};

/// What the loop wants to hear about a descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Interest {
    /// Tell when the descriptor has data to read (or a connection to accept).
    pub read: bool,
    /// Tell when the descriptor can take more bytes.
    pub write: bool,
}

impl Interest {
    /// Read interest only: the usual state of a connection that owes nothing.
    pub const READ: Interest = Interest {
        read: true,
        write: false,
    };
    /// No interest: the listener muted while accept backs off (level-triggered
    /// mechanisms would report it ready on every wait).
    pub const NONE: Interest = Interest {
        read: false,
        write: false,
    };
}

/// Readiness of one registered descriptor, by its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The token the descriptor was registered under ([`LISTENER`], [`SIGNAL`], a
    /// connection's slab key), or [`RESCAN`].
    pub token: usize,
    /// Data (or a connection to accept) is waiting.
    pub readable: bool,
    /// The socket can take more bytes.
    pub writable: bool,
    /// Peer hang-up or error (read to learn which).
    pub hup: bool,
}

/// Token of the listening socket.
pub const LISTENER: usize = usize::MAX;
/// Token of the loop's wake pipe.
pub const SIGNAL: usize = usize::MAX - 1;
/// Not a descriptor: readiness was lost (sigio's queue overflowed); every registered
/// descriptor may be ready.
pub const RESCAN: usize = usize::MAX - 2;

/// A readiness mechanism: register/modify/unregister descriptors under tokens, wait
/// for events. It knows nothing of connections.
pub trait Readiness: Sized {
    /// The name in stats and the start line.
    const NAME: &'static str;
    /// Edge-triggered (reported once per change) rather than level-triggered.
    const EDGE: bool;
    /// Edge-triggered only: a FIN already queued is reported with the readiness
    /// (epoll's EPOLLRDHUP), so the loop may stop reading at a short read. Without
    /// it the loop reads until EAGAIN.
    const REPORTS_RDHUP: bool = false;
    /// Readiness that came before registration may not be reported (sigio: no
    /// signal for data already queued): read once at registration.
    const READ_ON_REGISTER: bool = false;
    /// Set up the mechanism (an epoll instance, a signalfd, ...) on the thread that will
    /// wait (sigio routes its signals to that thread).
    fn new() -> io::Result<Self>;
    /// Descriptors at or above this cannot be watched (select: FD_SETSIZE).
    fn fd_limit(&self) -> Option<RawFd> {
        None
    }
    /// Start watching `fd` for `interest`, reporting it under `token`.
    fn register(&mut self, fd: RawFd, token: usize, interest: Interest) -> io::Result<()>;
    /// Change what `fd` (registered under `token`) is watched for.
    fn modify(&mut self, fd: RawFd, token: usize, interest: Interest) -> io::Result<()>;
    /// Stop watching `fd`; `closing`: the caller closes it right after (epoll lets
    /// close(2) do the removal).
    fn unregister(&mut self, fd: RawFd, token: usize, closing: bool) -> io::Result<()>;
    /// Wait up to `timeout` (None: no limit) and append the events to `events`.
    fn wait(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()>;
    /// The mechanism's own counts since the last call (sigio's signals and overflows).
    fn take_counts(&mut self) -> Counts {
        Counts::default()
    }
}

/// What a mechanism counts of its own (sigio: signals taken, queue overflows).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    /// Real-time signals (and SIGIOs) taken.
    pub signals: u64,
    /// Plain SIGIOs: the signal queue overflowed and readiness was lost.
    pub overflows: u64,
}

/// Reads per connection per turn before yielding to others (fairness under load).
const READS_PER_TURN: usize = 16;
/// Accepts per turn.
const ACCEPTS_PER_TURN: usize = 256;

struct RConn {
    fd: RawFd,
    conn: Conn,
    /// What the mechanism watches for this connection now.
    interest: Interest,
    /// Reading stopped because the outbox is over its cap.
    read_paused: bool,
    /// On the ready list: still has unread input after its turn.
    in_ready: bool,
    clock: timers::Clock,
}

impl Member for RConn {
    fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }
    fn clock(&mut self) -> (&mut timers::Clock, &mut Conn) {
        (&mut self.clock, &mut self.conn)
    }
}

struct Reactor<'a, M: Readiness> {
    poller: M,
    listen_fd: RawFd,
    conns: Slab<RConn>,
    scratch: Vec<u8>,
    ready: Vec<usize>,
    st: LoopState,
    cfg: &'a ServerConfig,
    accept_paused_until: Option<Instant>,
    /// Level-triggered: the listener's read interest is off during a back-off.
    listener_muted: bool,
    accepting: bool,
    refusals: Refusals,
}

impl<M: Readiness> Loop for Reactor<'_, M> {
    type M = RConn;
    fn parts(&mut self) -> (&mut LoopState, &mut Slab<RConn>) {
        (&mut self.st, &mut self.conns)
    }
    fn close(&mut self, key: usize) {
        if let Some(mut c) = self.conns.try_remove(key) {
            self.st.closing(key, &mut c.conn);
            let _ = self.poller.unregister(c.fd, key, true);
            self.st.close_fd(c.fd);
        }
    }
    fn wake(&mut self, key: usize) {
        if self.conns.contains(key) {
            self.flush(key);
        }
    }
}

/// Serve on `listener` with mechanism `M` until a stop signal and the drain.
pub fn run<M: Readiness>(
    listener: Socket,
    cfg: &ServerConfig,
    signals: &Signals,
    reporter: &Reporter,
) -> io::Result<LoopStats> {
    let poller = M::new()?;
    let listen_fd = listener.as_raw_fd();
    if let Some(limit) = poller.fd_limit()
        && (listen_fd >= limit || signals.fd() >= limit)
    {
        return Err(io::Error::other(format!(
            "{}: the listening socket (fd {listen_fd}) or wake pipe (fd {}) is at or above {limit}; it cannot be watched",
            M::NAME,
            signals.fd()
        )));
    }
    let mut r = Reactor {
        poller,
        listen_fd,
        conns: Slab::new(),
        scratch: vec![0u8; cfg.recv_buf],
        ready: Vec::new(),
        st: LoopState::new(cfg, Fanout::new(cfg.outbox_cap)),
        cfg,
        accept_paused_until: None,
        listener_muted: false,
        accepting: true,
        refusals: Refusals::default(),
    };
    let res = r.event_loop(signals, reporter);
    for (_, c) in r.conns.iter() {
        let _ = r.poller.unregister(c.fd, 0, true);
    }
    for c in r.conns.drain() {
        sys::close(c.fd);
    }
    drop(listener);
    r.count_mechanism();
    drop(r.poller);
    r.st.stats.syscalls = SyscallCounts::this_thread();
    res.map(|_| std::mem::take(&mut r.st.stats))
}

impl<M: Readiness> Reactor<'_, M> {
    fn event_loop(&mut self, signals: &Signals, reporter: &Reporter) -> io::Result<()> {
        self.poller
            .register(self.listen_fd, LISTENER, Interest::READ)?;
        self.poller.register(signals.fd(), SIGNAL, Interest::READ)?;
        self.st.join_room(self.cfg, signals);
        let mut events: Vec<Event> = Vec::with_capacity(512);
        if M::READ_ON_REGISTER {
            // Connections queued, or a signal taken, before the listener and the wake
            // pipe were armed raised no readiness.
            self.on_signal(signals, reporter);
            self.accept_all();
        }
        loop {
            if self.st.drain.draining() {
                if self.conns.is_empty() {
                    return Ok(());
                }
                if self.st.drain.expired() {
                    self.st.stats.forced_closed += self.conns.len() as u64;
                    let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
                    for k in keys {
                        self.close(k);
                    }
                    return Ok(());
                }
            }
            let timeout = self.wait_timeout();
            events.clear();
            match self.poller.wait(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            for ev in &events {
                match ev.token {
                    LISTENER => self.accept_all(),
                    SIGNAL => self.on_signal(signals, reporter),
                    RESCAN => {
                        // Readiness was lost: look at everything as if it were ready.
                        self.on_signal(signals, reporter);
                        self.accept_all();
                        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
                        for k in keys {
                            if self.flush(k) {
                                self.on_readable(k, true);
                            }
                        }
                    }
                    key => self.on_conn_event(key, ev),
                }
                Fanout::settle(self);
            }
            policy::expire_timers(self);
            if let Some(t) = self.accept_paused_until
                && Instant::now() >= t
            {
                self.accept_paused_until = None;
                self.unmute_listener();
                self.accept_all();
            }
            // Connections that still had input after their turn.
            // Keys pushed while these run go to the fresh `self.ready` for next turn.
            let mut ready = std::mem::take(&mut self.ready);
            for key in ready.drain(..) {
                if let Some(c) = self.conns.get_mut(key) {
                    c.in_ready = false;
                    self.on_readable(key, true);
                }
            }
            if self.ready.is_empty() {
                self.ready = ready; // keep the allocation
            }
            Fanout::settle(self);
        }
    }

    fn on_signal(&mut self, signals: &Signals, reporter: &Reporter) {
        self.count_mechanism();
        let stop = self.st.woken(signals, reporter, self.cfg.drain_timeout);
        if stop {
            self.begin_drain();
        }
    }

    fn count_mechanism(&mut self) {
        let c = self.poller.take_counts();
        self.st.stats.sigio_signals += c.signals;
        self.st.stats.sigio_overflows += c.overflows;
    }

    fn wait_timeout(&self) -> Option<Duration> {
        if !self.ready.is_empty() {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        [
            self.st.drain.deadline,
            self.accept_paused_until,
            self.st.timers.next(),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|t| t.saturating_duration_since(now))
    }

    fn accept_all(&mut self) {
        if !self.accepting || self.accept_paused_until.is_some() {
            return;
        }
        for _ in 0..ACCEPTS_PER_TURN {
            match accept::accept(self.listen_fd, true) {
                Ok(fd) => self.add_conn(fd),
                Err(e) => match accept::accept_failed(&e, &mut self.st.stats) {
                    AcceptFailure::Empty => return,
                    AcceptFailure::BackOff => {
                        self.accept_paused_until = Some(Instant::now() + accept::ACCEPT_BACKOFF);
                        self.mute_listener();
                        return;
                    }
                    AcceptFailure::Next => {}
                },
            }
        }
        // More may be queued: edge-triggered, so come back without waiting.
        self.accept_paused_until = Some(Instant::now());
    }

    /// Level-triggered: a listener with a queued connection would wake every wait
    /// during a back-off.
    fn mute_listener(&mut self) {
        if !M::EDGE
            && !self.listener_muted
            && self
                .poller
                .modify(self.listen_fd, LISTENER, Interest::NONE)
                .is_ok()
        {
            self.listener_muted = true;
        }
    }

    fn unmute_listener(&mut self) {
        if self.listener_muted && self.accepting {
            self.listener_muted = false;
            let _ = self.poller.modify(self.listen_fd, LISTENER, Interest::READ);
        }
    }

    fn add_conn(&mut self, fd: RawFd) {
        if let Some(limit) = self.poller.fd_limit()
            && fd >= limit
        {
            self.st.stats.accepted += 1;
            self.refusals.refuse(fd, limit, M::NAME, &mut self.st.stats);
            return;
        }
        accept::accepted(fd, &mut self.st.stats);
        if accept::refuse_max_conns(self.cfg, self.conns.len(), fd, &mut self.st.stats) {
            return;
        }
        // A leave queued by a closed connection goes out before its key is reused, and
        // what other loops broadcast before this accept reaches only those already in.
        self.st.take_room();
        Fanout::settle(self);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if self.poller.register(fd, key, Interest::READ).is_err() {
            self.st.close_fd(fd);
            return;
        }
        let mut conn = Conn::with_guests(self.cfg.proto, &self.cfg.guests);
        let clock = self.st.open(key, &mut conn);
        entry.insert(RConn {
            fd,
            conn,
            interest: Interest::READ,
            read_paused: false,
            in_ready: false,
            clock,
        });
        if !self.flush(key) {
            return;
        }
        Fanout::settle(self);
        // epoll: data that arrived before registration raises an edge at EPOLL_CTL_ADD
        // (the socket is already readable then), so no read is needed here.
        if M::READ_ON_REGISTER {
            self.on_readable(key, true);
        }
    }

    fn on_conn_event(&mut self, key: usize, ev: &Event) {
        if !self.conns.contains(key) {
            return;
        }
        if ev.writable && !self.flush(key) {
            return;
        }
        if ev.hup {
            self.on_readable(key, true);
        } else if ev.readable {
            self.on_readable(key, M::EDGE && !M::REPORTS_RDHUP);
        }
    }

    /// Read until EAGAIN (or the outbox cap, or the per-turn bound), feeding the
    /// protocol; then flush.
    ///
    /// `greedy` false (epoll): stop at a short read, like nginx. The socket was empty
    /// at that moment and any later data or FIN raises a new edge; a FIN that was
    /// already queued shows as EPOLLRDHUP in this event, and then the caller passes
    /// greedy. Level-triggered mechanisms may stop anywhere: the next wait reports
    /// the rest.
    fn on_readable(&mut self, key: usize, greedy: bool) {
        let cap = self.cfg.outbox_cap;
        let mut turns = 0;
        loop {
            let Some(c) = self.conns.get_mut(key) else {
                return;
            };
            if c.conn.read_eof || c.conn.close_after_flush {
                break;
            }
            if over_cap(&c.conn, 0, cap) {
                c.read_paused = true;
                break;
            }
            if turns == READS_PER_TURN {
                // Fairness: let the others run, come back next turn without an edge.
                if !c.in_ready {
                    c.in_ready = true;
                    self.ready.push(key);
                }
                break;
            }
            turns += 1;
            match pio::recv(
                c.fd,
                &mut self.scratch,
                &mut c.conn,
                &mut self.st.faults,
                &mut self.st.stats,
            ) {
                Recv::Eof | Recv::WouldBlock => break,
                Recv::Interrupted => continue,
                Recv::Failed => {
                    self.close(key);
                    return;
                }
                Recv::Data(n) => {
                    if self.st.input(key, &mut c.clock, &mut c.conn) {
                        // Fanned out read by read: the receivers' sends keep pace.
                        Fanout::settle(self);
                    }
                    let Some(c) = self.conns.get_mut(key) else {
                        return;
                    };
                    if n < self.scratch.len() && !greedy {
                        break;
                    }
                    if c.conn.owed_len() >= cap / 2 && !self.flush(key) {
                        return;
                    }
                }
            }
        }
        self.flush(key);
    }

    /// Write owed bytes until EAGAIN, then bring the interest up to date. Returns
    /// false when the connection was closed.
    fn flush(&mut self, key: usize) -> bool {
        let cap = self.cfg.outbox_cap;
        let Some(c) = self.conns.get_mut(key) else {
            return false;
        };
        if pio::flush(c.fd, &mut c.conn, &mut self.st.faults, &mut self.st.stats) == Flush::Failed {
            self.close(key);
            return false;
        }
        let c = &mut self.conns[key];
        if c.conn.finished() {
            self.close(key);
            return false;
        }
        if c.read_paused && c.conn.owed_len() < cap {
            // Backpressure released: the input left in the socket raises no new edge,
            // so read it now (via the ready list, to keep the stack flat).
            c.read_paused = false;
            if !c.in_ready {
                c.in_ready = true;
                self.ready.push(key);
            }
        }
        let want = Interest {
            // Edge-triggered: read interest stays (a paused connection simply is not read).
            read: M::EDGE || !(c.read_paused || c.conn.read_eof || c.conn.close_after_flush),
            write: c.conn.owed_len() > 0,
        };
        if want != c.interest {
            if self.poller.modify(c.fd, key, want).is_err() {
                self.close(key);
                return false;
            }
            self.conns[key].interest = want;
        }
        true
    }

    /// Stop accepting and reading; close what owes nothing, flush the rest.
    fn begin_drain(&mut self) {
        if self.accepting {
            self.accepting = false;
            let _ = self.poller.unregister(self.listen_fd, LISTENER, false);
        }
        policy::stop_reading(self);
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for k in keys {
            self.flush(k);
        }
    }
}
