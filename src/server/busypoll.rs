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
use super::core::{self, AcceptFailure, Drain, Flush, Recv};
use super::sys::{self, SyscallCounts};
use super::{LoopStats, Reporter, ServerConfig, Signals};

/// Sleep between accept attempts while no connection is open.
const IDLE_SLEEP: Duration = Duration::from_millis(1);
/// Accepts per turn.
const ACCEPTS_PER_TURN: usize = 64;

struct BConn {
    fd: RawFd,
    conn: Conn,
}

pub fn run(listener: Socket, cfg: &ServerConfig, signals: &Signals, reporter: &Reporter) -> io::Result<LoopStats> {
    let listen_fd = listener.as_raw_fd();
    let mut conns: Slab<BConn> = Slab::new();
    let mut scratch = vec![0u8; cfg.recv_buf];
    let mut stats = LoopStats::default();
    let mut faults = cfg.faults;
    let mut drain = Drain::default();
    let mut accept_paused_until: Option<std::time::Instant> = None;
    let mut closing: Vec<usize> = Vec::new();
    loop {
        if signals.stop_requested() || signals.take_snapshot_request_peek() {
            signals.drain();
            if core::check_signals(signals, reporter, &mut stats, &mut drain, cfg.drain_timeout) {
                for (_, c) in conns.iter_mut() {
                    c.conn.read_eof = true; // stop reading; flush what is owed
                }
            }
        }
        if drain.draining() {
            if conns.is_empty() {
                break;
            }
            if drain.expired() {
                stats.forced_closed += conns.len() as u64;
                break;
            }
        } else if accept_paused_until.is_none_or(|t| std::time::Instant::now() >= t) {
            accept_paused_until = None;
            for _ in 0..ACCEPTS_PER_TURN {
                match core::accept(listen_fd, true) {
                    Ok(fd) => {
                        core::accepted(fd, &mut stats);
                        conns.insert(BConn { fd, conn: Conn::new(cfg.proto) });
                    }
                    Err(e) => match core::accept_failed(&e, &mut stats) {
                        AcceptFailure::Empty => {
                            stats.busypoll_eagain += 1;
                            break;
                        }
                        AcceptFailure::BackOff => {
                            accept_paused_until = Some(std::time::Instant::now() + core::ACCEPT_BACKOFF);
                            break;
                        }
                        AcceptFailure::Next => {}
                    },
                }
            }
        }
        if conns.is_empty() {
            core::sleep(IDLE_SLEEP);
            continue;
        }
        for (key, c) in conns.iter_mut() {
            if !(c.conn.read_eof || c.conn.close_after_flush || core::over_cap(&c.conn, cfg.outbox_cap)) {
                match core::recv(c.fd, &mut scratch, &mut c.conn, &mut faults, &mut stats) {
                    Recv::WouldBlock => stats.busypoll_eagain += 1,
                    Recv::Failed => {
                        closing.push(key);
                        continue;
                    }
                    Recv::Data(_) | Recv::Eof | Recv::Interrupted => {}
                }
            }
            if c.conn.owed_len() > 0 {
                match core::flush(c.fd, &mut c.conn, &mut faults, &mut stats) {
                    Flush::Failed => {
                        closing.push(key);
                        continue;
                    }
                    Flush::Owes => stats.busypoll_eagain += 1,
                    Flush::Done => {}
                }
            }
            if c.conn.finished() {
                closing.push(key);
            }
        }
        for key in closing.drain(..) {
            let c = conns.remove(key);
            sys::close(c.fd);
            stats.closed += 1;
        }
    }
    for c in conns.drain() {
        sys::close(c.fd);
        stats.closed += 1;
    }
    drop(listener);
    stats.syscalls = SyscallCounts::this_thread();
    Ok(stats)
}
