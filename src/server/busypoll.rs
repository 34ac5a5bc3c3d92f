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
use std::time::{Duration, Instant};

use slab::Slab;
use socket2::Socket;

use super::config::ServerConfig;
use super::conn::Conn;
use super::policy::accept::{self, AcceptFailure};
use super::policy::fanout::Fanout;
use super::policy::io::{self as pio, Flush, Recv};
use super::policy::timers::Clock;
use super::policy::{self, Loop, LoopState, Member, over_cap};
use super::signals::Signals;
use super::stats::{LoopStats, Reporter};
use super::sys::SyscallCounts;

/// Sleep between accept attempts while no connection is open.
const IDLE_SLEEP: Duration = Duration::from_millis(1);
/// Accepts per turn.
const ACCEPTS_PER_TURN: usize = 64;

struct BConn {
    fd: RawFd,
    conn: Conn,
    clock: Clock,
}

impl Member for BConn {
    fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }
    fn clock(&mut self) -> (&mut Clock, &mut Conn) {
        (&mut self.clock, &mut self.conn)
    }
}

struct Busy {
    conns: Slab<BConn>,
    st: LoopState,
}

impl Loop for Busy {
    type M = BConn;
    fn parts(&mut self) -> (&mut LoopState, &mut Slab<BConn>) {
        (&mut self.st, &mut self.conns)
    }
    fn close(&mut self, key: usize) {
        if let Some(mut c) = self.conns.try_remove(key) {
            self.st.closing(key, &mut c.conn);
            self.st.close_fd(c.fd);
        }
    }
    /// Every connection is tried each turn: its send goes then.
    fn wake(&mut self, _key: usize) {}
}

impl Busy {
    /// One turn on connection `key`: recv (unless paused), fan out, send what is owed.
    fn turn(&mut self, key: usize, scratch: &mut [u8], cap: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let st = &mut self.st;
        if !(c.conn.read_eof || c.conn.close_after_flush || over_cap(&c.conn, 0, cap)) {
            match pio::recv(c.fd, scratch, &mut c.conn, &mut st.faults, &mut st.stats) {
                Recv::WouldBlock => st.stats.busypoll_eagain += 1,
                Recv::Failed => return self.close(key),
                Recv::Data(_) => {
                    if st.input(key, &mut c.clock, &mut c.conn) {
                        Fanout::settle(self);
                    }
                }
                Recv::Eof | Recv::Interrupted => {}
            }
        }
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let st = &mut self.st;
        if c.conn.owed_len() > 0 {
            match pio::flush(c.fd, &mut c.conn, &mut st.faults, &mut st.stats) {
                Flush::Failed => return self.close(key),
                Flush::Owes => st.stats.busypoll_eagain += 1,
                Flush::Done => {}
            }
        }
        if self.conns[key].conn.finished() {
            self.close(key);
        }
    }

    fn accept_some(
        &mut self,
        listen_fd: RawFd,
        cfg: &ServerConfig,
        paused_until: &mut Option<Instant>,
    ) {
        for _ in 0..ACCEPTS_PER_TURN {
            match accept::accept(listen_fd, true) {
                Ok(fd) => {
                    accept::accepted(fd, &mut self.st.stats);
                    if accept::refuse_max_conns(cfg, self.conns.len(), fd, &mut self.st.stats) {
                        continue;
                    }
                    let entry = self.conns.vacant_entry();
                    let key = entry.key();
                    let mut conn = Conn::with_guests(cfg.proto, &cfg.guests);
                    let clock = self.st.open(key, &mut conn);
                    entry.insert(BConn { fd, conn, clock });
                    Fanout::settle(self);
                }
                Err(e) => match accept::accept_failed(&e, &mut self.st.stats) {
                    AcceptFailure::Empty => {
                        self.st.stats.busypoll_eagain += 1;
                        return;
                    }
                    AcceptFailure::BackOff => {
                        *paused_until = Some(Instant::now() + accept::ACCEPT_BACKOFF);
                        return;
                    }
                    AcceptFailure::Next => {}
                },
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
        st: LoopState::new(cfg, Fanout::new(cfg.outbox_cap)),
    };
    let mut scratch = vec![0u8; cfg.recv_buf];
    let mut accept_paused_until: Option<Instant> = None;
    let mut keys: Vec<usize> = Vec::new();
    loop {
        if (signals.stop_requested() || signals.take_snapshot_request_peek())
            && b.st.woken(signals, reporter, cfg.drain_timeout)
        {
            policy::stop_reading(&mut b); // flush what is owed
        }
        if b.st.drain.draining() {
            if b.conns.is_empty() {
                break;
            }
            if b.st.drain.expired() {
                b.st.stats.forced_closed += b.conns.len() as u64;
                break;
            }
        } else if accept_paused_until.is_none_or(|t| Instant::now() >= t) {
            accept_paused_until = None;
            b.accept_some(listen_fd, cfg, &mut accept_paused_until);
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
        policy::expire_timers(&mut b);
    }
    for c in b.conns.drain() {
        b.st.close_fd(c.fd);
    }
    drop(listener);
    b.st.stats.syscalls = SyscallCounts::this_thread();
    Ok(std::mem::take(&mut b.st.stats))
}
