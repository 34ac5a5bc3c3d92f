//! The io_uring driver: per connection one RECV always in flight, submitted directly
//! (FEAT_FAST_POLL: the kernel waits for data in its own poll, no io-wq thread), and at
//! most one SEND in flight (a short send resubmits the rest, so bytes stay in order).
//! Every SQE of a loop turn goes to the kernel with the one `io_uring_enter` that also
//! waits for completions, with a timeout (FEAT_EXT_ARG) for the core's next deadline.
//!
//! Buffers: each connection owns a receive and a send buffer (a load generator has few
//! connections; they are sized to `pipeline x size`, 4–64 KiB). A buffer referenced by a
//! submitted SQE belongs to the kernel until its completion is reaped: the connection's
//! `inflight` flag says so, and neither the buffer nor the socket is touched, moved or
//! freed while it is set. Closing shuts the socket down (which completes pending ops),
//! then drops it once no op is left; at the end of the run whatever the kernel still
//! holds after a grace period is leaked on purpose, never freed under it.
//!
//! Per op costs kept low: the sockets are registered files (no file lookup per op), and
//! RECV asks the kernel to arm its poll first (RECVSEND_POLL_FIRST, 5.19+) since the reply
//! cannot be there yet when the RECV goes in. On 6.1+ the ring runs DEFER_TASKRUN, so
//! completions are processed only when this thread enters the ring.
//!
//! Ring setup and opcode probing come from `os::uring` (neutral: load never imports
//! the server).

use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{IoUring, opcode, squeue, types};

use super::engine::{Core, Driver};
use super::plan::{ErrKind, classify};
use crate::os::uring::{self as probe, Unavailable};

const IN_RECV: u8 = 1;
const IN_SEND: u8 = 2;
/// At the end of the run, how long to wait for the kernel to hand buffers back.
const FINISH_GRACE: Duration = Duration::from_secs(2);
/// Ring entries at most (the kernel's limit is 32768). Unit tests use a tiny ring so
/// that more SQEs than fit are queued in the backlog.
#[cfg(not(test))]
const MAX_ENTRIES: u32 = 16384;
#[cfg(test)]
const MAX_ENTRIES: u32 = 8;
/// All buffers of one worker together stay under this (per-connection size shrinks).
const BUFFER_BUDGET: usize = 256 << 20;
/// RECV flag (5.19+): arm the poll without trying the receive first. When a RECV is
/// submitted its reply is not there yet (the request goes out in the same enter), so the
/// first try would only cost a failed `tcp_recvmsg`. Older kernels answer EINVAL, and
/// the driver goes on without it.
const RECVSEND_POLL_FIRST: u16 = 1;

/// What a completion is for: `user_data` is the connection index shifted left once,
/// with the low bit telling RECV (0) from SEND (1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Recv,
    Send,
}

impl Op {
    fn flag(self) -> u8 {
        match self {
            Op::Recv => IN_RECV,
            Op::Send => IN_SEND,
        }
    }
}

fn token(op: Op, ci: usize) -> u64 {
    ((ci as u64) << 1) | u64::from(op == Op::Send)
}

fn untoken(ud: u64) -> (Op, usize) {
    (
        if ud & 1 == 0 { Op::Recv } else { Op::Send },
        (ud >> 1) as usize,
    )
}

/// Ok when this kernel can run the driver: a ring with RECV and SEND, FEAT_FAST_POLL
/// (Linux 5.7) and FEAT_EXT_ARG (timed waits, Linux 5.11). Err names what is missing
/// and the fix, for the one warning line of `--driver auto`.
pub fn available() -> Result<(), Unavailable> {
    let ring = probe::build_ring(8)?;
    let p = probe::probe_ops(&ring)?;
    for (name, code) in [("RECV", opcode::Recv::CODE), ("SEND", opcode::Send::CODE)] {
        if !p.is_supported(code) {
            return Err(Unavailable {
                errno: None,
                what: format!("opcode {name} is missing"),
                hint: "needs Linux 5.6+; fix: upgrade the kernel or use --driver epoll".into(),
            });
        }
    }
    let missing = |what: &str, kernel: &str| Unavailable {
        errno: None,
        what: format!("{what} is missing"),
        hint: format!(
            "load's io_uring driver needs Linux {kernel}+; fix: upgrade the kernel or use --driver epoll"
        ),
    };
    if !ring.params().is_feature_fast_poll() {
        return Err(missing("IORING_FEAT_FAST_POLL", "5.7"));
    }
    if !ring.params().is_feature_ext_arg() {
        return Err(missing("IORING_FEAT_EXT_ARG", "5.11"));
    }
    Ok(())
}

/// A ring for one worker thread. DEFER_TASKRUN (6.1+, with SINGLE_ISSUER: only this
/// thread submits) runs completions only when this thread enters the ring, so the
/// kernel never interrupts the loop to post them; COOP_TASKRUN (5.19+) comes close;
/// older kernels get a plain ring (halved on ENOMEM by `build_ring`).
fn build(entries: u32) -> Result<IoUring, Unavailable> {
    let cq = entries.saturating_mul(4);
    if let Ok(r) = IoUring::builder()
        .setup_cqsize(cq)
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(entries)
    {
        return Ok(r);
    }
    if let Ok(r) = IoUring::builder()
        .setup_cqsize(cq)
        .setup_coop_taskrun()
        .build(entries)
    {
        return Ok(r);
    }
    probe::build_ring(entries)
}

struct UConn {
    /// Dropped (closed) only once `inflight` is 0.
    stream: Option<TcpStream>,
    fd: RawFd,
    /// Kernel-owned while IN_RECV.
    rx: Box<[u8]>,
    /// Kernel-owned while IN_SEND; `tx[tx_pos..tx_len]` is not yet sent.
    tx: Box<[u8]>,
    tx_pos: usize,
    tx_len: usize,
    /// IN_RECV | IN_SEND: ops submitted (or queued) whose completion is not reaped yet.
    inflight: u8,
    /// Shut down: no new op, the stream goes once `inflight` is 0.
    closing: bool,
}

pub(crate) struct UringDriver {
    ring: IoUring,
    /// Never grows or shrinks during the run; the boxed buffers never move.
    conns: Vec<UConn>,
    /// The sockets are registered files (slot = connection index): no file lookup and
    /// reference count per op. Off if registering failed.
    fixed: bool,
    /// Set RECVSEND_POLL_FIRST on RECV; cleared on the first EINVAL (kernel before 5.19).
    poll_first: bool,
    /// SQEs that did not fit in the SQ (more connections than entries), in order.
    backlog: VecDeque<squeue::Entry>,
    cqes: Vec<(u64, i32)>,
}

impl UringDriver {
    /// A ring sized for these connections (blocking sockets: the ring polls them).
    /// Err: one line for the user.
    pub fn new(streams: Vec<TcpStream>, size: usize, pipeline: u32) -> Result<UringDriver, String> {
        let n = streams.len().max(1);
        // Two ops per connection at most between two enters: the SQ holds a whole turn.
        let entries = u32::try_from(2 * n)
            .unwrap_or(u32::MAX)
            .next_power_of_two()
            .clamp(8, MAX_ENTRIES);
        let ring = build(entries).map_err(|e| e.to_string())?;
        let want = (size.saturating_mul(pipeline as usize)).clamp(4096, 64 * 1024);
        let buf = want.min((BUFFER_BUDGET / (2 * n)).max(512));
        // Registered files save a lookup per op; without them the ring works on fds.
        let fds: Vec<RawFd> = streams.iter().map(|s| s.as_raw_fd()).collect();
        let fixed = ring.submitter().register_files(&fds).is_ok();
        let conns = streams
            .into_iter()
            .map(|s| UConn {
                fd: s.as_raw_fd(),
                stream: Some(s),
                rx: vec![0; buf].into_boxed_slice(),
                tx: vec![0; buf].into_boxed_slice(),
                tx_pos: 0,
                tx_len: 0,
                inflight: 0,
                closing: false,
            })
            .collect();
        Ok(UringDriver {
            ring,
            conns,
            fixed,
            poll_first: true,
            backlog: VecDeque::new(),
            cqes: Vec::with_capacity(4 * entries as usize),
        })
    }

    fn push(&mut self, e: squeue::Entry) {
        if self.backlog.is_empty() {
            // SAFETY: every SQE pushed references a buffer of `self.conns[ci]` (boxed,
            // never moved or freed while the op's inflight flag is set, see `finish`) and
            // the fd of a stream dropped only once no op of it is in flight.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return;
            }
        }
        self.backlog.push_back(e);
    }

    /// One enter: queued SQEs go in, and it waits up to `wait_ns` for a completion.
    fn enter(&mut self, wait_ns: u64) -> io::Result<()> {
        // Backlogged SQEs in order: each pass moves one into the SQ or hands a full SQ
        // to the kernel; what is left after the bound waits for the next turn.
        for _ in 0..self.backlog.len() + 64 {
            let Some(e) = self.backlog.front() else { break };
            // SAFETY: as in `push`.
            if unsafe { self.ring.submission().push(e) }.is_ok() {
                self.backlog.pop_front();
                continue;
            }
            match self.ring.submit() {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                    ) =>
                {
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        let ts = types::Timespec::new()
            .sec(wait_ns / 1_000_000_000)
            .nsec((wait_ns % 1_000_000_000) as u32);
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                Some(libc::ETIME | libc::EINTR) => Ok(()),
                // Entries stay in the SQ and go with the next enter; reap what is there
                // first so the kernel can make progress.
                Some(libc::EAGAIN | libc::EBUSY) => {
                    if self.ring.completion().is_empty() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Ok(())
                }
                _ => Err(e),
            },
        }
    }

    /// Take every completion out of the CQ into `self.cqes`. Each op's inflight flag is
    /// cleared as its completion is handled (a SEND's result must be applied before the
    /// connection may send again), and from then on its buffer is ours again.
    fn reap(&mut self) {
        self.cqes.clear();
        self.cqes
            .extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
    }

    fn completed(&mut self, op: Op, ci: usize) {
        self.conns[ci].inflight &= !op.flag();
    }

    fn submit_recv(&mut self, ci: usize) {
        let c = &mut self.conns[ci];
        let (ptr, len) = (c.rx.as_mut_ptr(), c.rx.len() as u32);
        c.inflight |= IN_RECV; // rx is kernel-owned until the RECV completion
        let prio = if self.poll_first {
            RECVSEND_POLL_FIRST
        } else {
            0
        };
        let e = if self.fixed {
            opcode::Recv::new(types::Fixed(ci as u32), ptr, len)
                .ioprio(prio)
                .build()
        } else {
            opcode::Recv::new(types::Fd(c.fd), ptr, len)
                .ioprio(prio)
                .build()
        };
        self.push(e.user_data(token(Op::Recv, ci)));
    }

    fn submit_send(&mut self, ci: usize) {
        let c = &mut self.conns[ci];
        let rest = &c.tx[c.tx_pos..c.tx_len];
        let (ptr, len) = (rest.as_ptr(), rest.len() as u32);
        c.inflight |= IN_SEND; // tx is kernel-owned until the SEND completion
        let e = if self.fixed {
            opcode::Send::new(types::Fixed(ci as u32), ptr, len).build()
        } else {
            opcode::Send::new(types::Fd(c.fd), ptr, len).build()
        };
        self.push(e.user_data(token(Op::Send, ci)));
    }

    /// A closing connection with nothing in flight: close the socket (and drop the
    /// ring's reference to it, or the peer would see no FIN until the ring goes).
    fn settle(&mut self, ci: usize) {
        let c = &mut self.conns[ci];
        if c.closing && c.inflight == 0 && c.stream.is_some() {
            if self.fixed {
                let _ = self
                    .ring
                    .submitter()
                    .register_files_update(ci as u32, &[-1]);
            }
            c.stream = None;
        }
    }

    fn on_recv(&mut self, core: &mut Core, ci: usize, res: i32, now: u64) {
        self.completed(Op::Recv, ci);
        if self.conns[ci].closing || !core.live(ci) {
            return self.settle(ci);
        }
        if res <= 0 {
            let kind = match -res {
                0 => ErrKind::Reset, // EOF
                libc::EINTR | libc::EAGAIN => return self.submit_recv(ci),
                libc::EINVAL if self.poll_first => {
                    self.poll_first = false; // a kernel before 5.19
                    return self.submit_recv(ci);
                }
                e => classify(Some(e)),
            };
            return core.kill(ci, kind, 1);
        }
        let c = &self.conns[ci];
        if let Err(kind) = core.on_bytes(ci, &c.rx[..res as usize], now) {
            return core.kill(ci, kind, 1);
        }
        self.submit_recv(ci);
        // A reply completed frees a slot: send the next message (or schedule it).
        self.send(core, ci, now);
    }

    fn on_send(&mut self, core: &mut Core, ci: usize, res: i32, now: u64) {
        self.completed(Op::Send, ci);
        if self.conns[ci].closing || !core.live(ci) {
            return self.settle(ci);
        }
        if res < 0 {
            return match -res {
                libc::EINTR | libc::EAGAIN => self.submit_send(ci),
                e => core.kill(ci, classify(Some(e)), 1),
            };
        }
        let c = &mut self.conns[ci];
        c.tx_pos += res as usize;
        if c.tx_pos < c.tx_len {
            self.submit_send(ci); // short send: the rest, before anything newer
        } else {
            self.send(core, ci, now);
        }
    }
}

impl Driver for UringDriver {
    fn send(&mut self, core: &mut Core, ci: usize, now: u64) {
        let c = &mut self.conns[ci];
        if c.closing {
            return;
        }
        // The reply of anything sent is read by the RECV armed with the first send.
        if c.inflight & IN_RECV == 0 {
            self.submit_recv(ci);
        }
        let c = &mut self.conns[ci];
        if c.inflight & IN_SEND != 0 {
            return; // its completion sends what follows
        }
        let len = core.fill(ci, now, &mut c.tx);
        if len == 0 {
            return core.idle(ci);
        }
        // Handed over now: the SEND goes with this turn's enter, and a failed one kills
        // the connection, so the cursor may move at once.
        core.sent(ci, len, now);
        c.tx_pos = 0;
        c.tx_len = len;
        self.submit_send(ci);
    }

    fn poll(&mut self, core: &mut Core, wait_ns: u64) -> io::Result<()> {
        self.enter(wait_ns)?;
        self.reap();
        let now = core.now();
        let cqes = std::mem::take(&mut self.cqes);
        for &(ud, res) in &cqes {
            match untoken(ud) {
                (Op::Recv, ci) => self.on_recv(core, ci, res, now),
                (Op::Send, ci) => self.on_send(core, ci, res, now),
            }
        }
        self.cqes = cqes;
        Ok(())
    }

    fn close(&mut self, ci: usize) {
        let c = &mut self.conns[ci];
        c.closing = true;
        // The peer sees the end now, and a pending RECV completes with 0, a SEND with
        // EPIPE: the kernel lets go of the buffers.
        if let Some(s) = &c.stream {
            let _ = s.shutdown(Shutdown::Both);
        }
        self.settle(ci);
    }

    fn finish(&mut self) {
        for ci in 0..self.conns.len() {
            if !self.conns[ci].closing {
                self.close(ci);
            }
        }
        // Bounded by time: the shut-down sockets complete their ops at once.
        let deadline = Instant::now() + FINISH_GRACE;
        while self.conns.iter().any(|c| c.inflight != 0) && Instant::now() < deadline {
            if self.enter(10_000_000).is_err() {
                break;
            }
            self.reap();
            for i in 0..self.cqes.len() {
                let (op, ci) = untoken(self.cqes[i].0);
                self.completed(op, ci);
                self.settle(ci);
            }
        }
        let held = self.conns.iter().filter(|c| c.inflight != 0).count();
        if held > 0 {
            eprintln!(
                "ringmux: warning: {held} load connection(s) still had io_uring ops in flight at the end; their buffers are leaked"
            );
            // Leaked, not freed: the kernel may still write into them.
            std::mem::forget(std::mem::take(&mut self.conns));
        }
    }
}

impl Drop for UringDriver {
    fn drop(&mut self) {
        // A worker that ends before `drive` (aborted start) may hold queued ops.
        if self.conns.iter().any(|c| c.inflight != 0) {
            self.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for ci in [0usize, 1, 2, 49, 65_535, 1 << 40] {
            for op in [Op::Recv, Op::Send] {
                assert_eq!(untoken(token(op, ci)), (op, ci));
            }
        }
        assert_ne!(token(Op::Recv, 3), token(Op::Send, 3));
    }
}
