//! Non-blocking IO without a readiness call: every turn tries accept on the listener
//! and recv (and send, when owed) on every connection, and most of those calls return
//! EAGAIN. Nothing ever waits, so a core burns even when every client is idle: that
//! waste is the lesson, and the EAGAINs are counted (`busypoll_eagain`). Only when
//! there is no connection at all does the loop sleep briefly between accepts.
//!
//! Signals are seen through the stop flag and snapshot counter each turn (no wait to
//! wake from); the wake pipe is emptied when one is found.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use slab::Slab;
use socket2::Socket;

use super::conn::Conn;
use super::policy::accept::{self, AcceptFailure};
use super::policy::drain::{self, Drain};
use super::policy::io::{self as pio, Flush, Recv};
use super::policy::over_cap;
use super::policy::timers::{self, Due};
use super::policy::fanout::{Fanout, Member, Room};
use super::sys::{self, SyscallCounts};
use super::{LoopStats, Reporter, ServerConfig, Signals};

/// Sleep between accept attempts while no connection is open.
const IDLE_SLEEP: Duration = Duration::from_millis(1);
/// Accepts per turn.
const ACCEPTS_PER_TURN: usize = 64;

struct BConn {
    fd: RawFd,
    conn: Conn,
    clock: timers::Clock,
}

impl Member for BConn {
    fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

struct Busy {
    conns: Slab<BConn>,
    fanout: Fanout,
    stats: LoopStats,
    faults: super::fault::Faults,
    timers: timers::Timers,
}

impl Room for Busy {
    type M = BConn;
    fn parts(&mut self) -> (&mut Fanout, &mut Slab<BConn>) {
        (&mut self.fanout, &mut self.conns)
    }
    fn close_dropped(&mut self, key: usize) {
        self.stats.slow_receivers_dropped += 1;
        self.close(key);
    }
    /// Every connection is tried each turn: its send goes then.
    fn wake(&mut self, _key: usize) {}
}

impl Busy {
    fn close(&mut self, key: usize) {
        if let Some(mut c) = self.conns.try_remove(key) {
            let bye = c.conn.on_close();
            self.fanout.queue(key, bye);
            sys::close(c.fd);
            self.stats.closed += 1;
        }
    }

    /// One turn on connection `key`: recv (unless paused), fan out, send what is owed.
    fn turn(&mut self, key: usize, scratch: &mut [u8], cap: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if !(c.conn.read_eof || c.conn.close_after_flush || over_cap(&c.conn, 0, cap)) {
            match pio::recv(
                c.fd,
                scratch,
                &mut c.conn,
                &mut self.faults,
                &mut self.stats,
            ) {
                Recv::WouldBlock => self.stats.busypoll_eagain += 1,
                Recv::Failed => return self.close(key),
                Recv::Data(_) => {
                    self.timers.on_input(key, &mut c.clock, &c.conn);
                    let b = c.conn.take_broadcast();
                    self.fanout.queue(key, b);
                    Fanout::settle(self);
                }
                Recv::Eof | Recv::Interrupted => {}
            }
        }
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.conn.owed_len() > 0 {
            match pio::flush(c.fd, &mut c.conn, &mut self.faults, &mut self.stats) {
                Flush::Failed => return self.close(key),
                Flush::Owes => self.stats.busypoll_eagain += 1,
                Flush::Done => {}
            }
        }
        if self.conns[key].conn.finished() {
            self.close(key);
        }
    }

    fn expire_timers(&mut self) {
        let now = std::time::Instant::now();
        while let Some((key, id, at)) = self.timers.pop_due(now) {
            let Some(c) = self.conns.get_mut(key) else {
                continue;
            };
            match self.timers.check(key, id, at, &mut c.clock, &c.conn, now) {
                None => {}
                Some(Due::Header) => {
                    self.stats.header_timeouts += 1;
                    c.conn.header_timeout(); // sent on its next turn
                }
                Some(Due::Idle) => {
                    self.stats.idle_timeouts += 1;
                    self.close(key);
                }
            }
        }
    }
}

pub fn run(
    listener: Socket,
    cfg: &ServerConfig,
    signals: &Signals,
    reporter: &Reporter,
) -> io::Result<LoopStats> {
    let listen_fd = listener.as_raw_fd();
    let mut b = Busy {
        conns: Slab::new(),
        fanout: Fanout::new(cfg.outbox_cap),
        stats: LoopStats::default(),
        faults: cfg.faults,
        timers: timers::Timers::new(cfg),
    };
    let mut scratch = vec![0u8; cfg.recv_buf];
    let mut drain = Drain::default();
    let mut accept_paused_until: Option<std::time::Instant> = None;
    let mut keys: Vec<usize> = Vec::new();
    loop {
        if signals.stop_requested() || signals.take_snapshot_request_peek() {
            signals.drain();
            if drain::check_signals(
                signals,
                reporter,
                &mut b.stats,
                &mut drain,
                cfg.drain_timeout,
            ) {
                for (_, c) in b.conns.iter_mut() {
                    c.conn.read_eof = true; // stop reading; flush what is owed
                }
            }
        }
        if drain.draining() {
            if b.conns.is_empty() {
                break;
            }
            if drain.expired() {
                b.stats.forced_closed += b.conns.len() as u64;
                break;
            }
        } else if accept_paused_until.is_none_or(|t| std::time::Instant::now() >= t) {
            accept_paused_until = None;
            for _ in 0..ACCEPTS_PER_TURN {
                match accept::accept(listen_fd, true) {
                    Ok(fd) => {
                        accept::accepted(fd, &mut b.stats);
                        if accept::refuse_max_conns(cfg, b.conns.len(), fd, &mut b.stats) {
                            continue;
                        }
                        let entry = b.conns.vacant_entry();
                        let key = entry.key();
                        let clock = b.timers.open(key);
                        let c = entry.insert(BConn {
                            fd,
                            conn: Conn::with_guests(cfg.proto, &cfg.guests),
                            clock,
                        });
                        c.conn.on_open();
                        let bytes = c.conn.take_broadcast();
                        b.fanout.queue(key, bytes);
                        Fanout::settle(&mut b);
                    }
                    Err(e) => match accept::accept_failed(&e, &mut b.stats) {
                        AcceptFailure::Empty => {
                            b.stats.busypoll_eagain += 1;
                            break;
                        }
                        AcceptFailure::BackOff => {
                            accept_paused_until =
                                Some(std::time::Instant::now() + accept::ACCEPT_BACKOFF);
                            break;
                        }
                        AcceptFailure::Next => {}
                    },
                }
            }
        }
        if b.conns.is_empty() {
            pio::sleep(IDLE_SLEEP);
            continue;
        }
        keys.clear();
        keys.extend(b.conns.iter().map(|(k, _)| k));
        for &key in &keys {
            b.turn(key, &mut scratch, cfg.outbox_cap);
        }
        // A leave goes out before the closed keys can be reused by the next accept.
        Fanout::settle(&mut b);
        b.expire_timers();
        Fanout::settle(&mut b);
    }
    for c in b.conns.drain() {
        sys::close(c.fd);
        b.stats.closed += 1;
    }
    drop(listener);
    b.stats.syscalls = SyscallCounts::this_thread();
    Ok(b.stats)
}
