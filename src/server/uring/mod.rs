//! The proactor: submit accept/recv/send to an io_uring and act on completions.
//!
//! Ownership rule, the one that matters: a buffer referenced by a submitted SQE
//! belongs to the kernel until that SQE's completion is reaped. Each connection
//! tracks its in-flight ops; its slot (and the buffers in it) is freed only when
//! none is left, after `shutdown(SHUT_RDWR)` has made every pending op complete.
//!
//! The feature ladder (REFERENCE.md section 1), each level adding to the one before:
//! - `baseline` (5.6) arms POLL_ADD and submits RECV into a pooled buffer only once
//!   readable, so no io-wq thread is parked per idle connection and an idle connection
//!   owns no receive buffer; POLL_ADD then ACCEPT likewise.
//! - `fastpoll` (5.7) submits ACCEPT and RECV directly (the kernel's internal poll
//!   waits); RECV selects a buffer from a PROVIDE_BUFFERS group when data arrives, so an
//!   idle connection still owns none ([`bufs`]).
//! - `multishot` (6.0) arms one multishot ACCEPT for the listener and one multishot
//!   RECV per connection over a registered buffer ring; buffers go back by a store to
//!   shared memory; COOP_TASKRUN stops completions from interrupting the loop.
//! - `full` (6.1) adds SINGLE_ISSUER + DEFER_TASKRUN (completion work runs only when
//!   the loop enters the ring) and a registered ring fd.
//!
//! Every multishot completion is checked for IORING_CQE_F_MORE: without it the op is
//! over (EOF, an error, ENOBUFS, EMFILE, a CQ overflow, or even a success) and is
//! re-armed if the connection still wants it.

pub mod bufs;
mod completions;
mod ops;
pub mod probe;
mod setup;
pub mod token;

pub use setup::Ring;

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use slab::Slab;
use socket2::Socket;

use super::config::ServerConfig;
use super::conn::{self, Conn};
use super::features::{FeatureLevel, WaitMode};
use super::policy::accept::{self, AcceptFailure};
use super::policy::fanout::{self, Fanout};
use super::policy::timers::Clock;
use super::policy::{self, Loop, LoopState, Member, over_cap};
use super::signals::Signals;
use super::stats::{LoopStats, Reporter};
use super::sys::{self, Sys, SyscallCounts};
use crate::os::uring::{RingIndex, enter_registered, register_ring_fd};
use crate::proto::Proto;
use bufs::ProvidedBufs;
use probe::{RingFeatures, SetupFlags, Unavailable};
use token::{Op, Token};

/// After the drain deadline, how long to wait for the kernel to hand buffers back.
const HARD_STOP_GRACE: Duration = Duration::from_secs(1);
/// Free receive buffers kept for reuse (baseline): enough for a busy turn's worth of
/// receives without keeping megabytes after a burst across thousands of connections.
const POOL_MAX: usize = 64;
/// Largest single SEND (the SQE length is 32 bits).
const MAX_SEND: usize = 1 << 30;
/// At `full`, how long a wait for sends-plus-one may go before settling for fewer.
const MIN_WAIT_US: u32 = 50;
/// `--uring-wait adaptive` coalesces after a turn that brought at least this many
/// receives: a server that saturated (hundreds of connections, closed loop). With
/// fewer, coalescing made the loop sleep on its min_wait timer and wake again, and
/// cost more CPU than epoll: at 2 it cost 1.36x epoll per message in open loop at
/// 50 connections (3 interleaved runs, 2-core VM), while waiting for one completion
/// at a time cost 0.98x.
const COALESCE_AFTER_RECVS: usize = 32;
/// The longest a coalescing wait sleeps (see `event_loop`): an idle loop in
/// `--uring-wait coalesce` wakes once per cap; `adaptive` stops coalescing after one
/// idle turn and then sleeps until a completion.
const COALESCE_CAP: Duration = Duration::from_secs(1);
/// The longest a wait for the queued sends plus one sleeps: a SEND that did not
/// complete inside its enter (a full socket) may leave the wait one completion short.
/// Longer than a message's round trip on a loaded machine, so that the cap rarely
/// ends a wait while traffic flows (a wait it ends costs one more enter).
const COUNTED_CAP: Duration = Duration::from_millis(5);
/// SQPOLL thread idle time before it sleeps.
const SQPOLL_IDLE_MS: u32 = 100;

const IN_POLL: u8 = 1;
const IN_RECV: u8 = 2;
const IN_SEND: u8 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    AcceptBackoff,
    DrainDeadline,
    HardStop,
    /// The nearest connection deadline (idle, header): one TIMEOUT for all of them.
    Deadline(Instant),
    /// Chat: a receiver is over the cap; wake to recheck it after the grace.
    Congestion,
}

struct UConn {
    fd: RawFd,
    /// The socket sits in the registered file table at the slot numbered by its key.
    fixed: bool,
    generation: u32,
    conn: Conn,
    /// Baseline only: kernel-owned while a RECV is in flight, back to the pool after.
    recv_buf: Option<Box<[u8]>>,
    /// Kernel-owned while a SEND is in flight; `send_buf[send_pos..]` is still unsent.
    send_buf: Vec<u8>,
    send_pos: usize,
    /// A drained send buffer kept to swap in as the next outbox.
    spare: Vec<u8>,
    /// IN_POLL | IN_RECV | IN_SEND: ops whose (last) completion has not been reaped.
    inflight: u8,
    read_paused: bool,
    /// A cancel was sent for the armed multishot RECV (backpressure).
    recv_cancelling: bool,
    closing: bool,
    clock: Clock,
    /// SEND completions so far (the lenient fan-out's progress mark).
    sends_done: u64,
}

impl Member for UConn {
    fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }
    fn clock(&mut self) -> (&mut Clock, &mut Conn) {
        (&mut self.clock, &mut self.conn)
    }
    /// The fan-out counts the bytes the kernel owns against the cap, and appends only
    /// to the outbox, never to `send_buf`.
    fn in_flight(&self) -> usize {
        if self.inflight & IN_SEND != 0 {
            self.send_buf.len() - self.send_pos
        } else {
            0
        }
    }
    fn live(&self) -> bool {
        !self.closing
    }
    fn progress(&self) -> u64 {
        self.sends_done
    }
}

struct Proactor<'a> {
    // Field order is drop order: the ring goes before the buffers it may write into.
    ring: IoUring,
    bufs: Option<ProvidedBufs>,
    /// The descriptor each registered-file slot gets (FILES_UPDATE reads it when the
    /// SQE is issued): allocated once, never moved, outlives the ring.
    slot_fds: Box<[RawFd]>,
    features: RingFeatures,
    cfg: &'a ServerConfig,
    listen_fd: RawFd,
    signal_fd: RawFd,
    conns: Slab<UConn>,
    next_generation: u32,
    pool: Vec<Box<[u8]>>,
    /// SQEs that did not fit in the SQ, submitted in order before anything newer.
    backlog: VecDeque<squeue::Entry>,
    /// Timespecs referenced by in-flight TIMEOUT SQEs.
    timers: Slab<(Box<types::Timespec>, Timer)>,
    st: LoopState,
    accepting: bool,
    accept_inflight: Option<Token>,
    accept_backoff: bool,
    hard_stop: bool,
    last_overflow: u32,
    cqes: Vec<(u64, i32, u32)>,
    /// Connections whose RECV found no buffer: re-armed after the turn, once the
    /// buffers consumed in it are back.
    starved: Vec<(usize, u32)>,
    /// Completions made up by the fault layer, reaped like the kernel's.
    synthetic: Vec<(u64, i32, u32)>,
    /// SENDs queued since the last enter, and RECV completions in the last turn.
    sends_queued: usize,
    /// SEND completions in the last turn, and whether the SENDs of the turn before all
    /// completed inside the enter that submitted them (the counted wait pays).
    sends_last: usize,
    sends_inline: bool,
    recvs_last: usize,
    /// Since the last wait, bytes became owed behind a SEND in flight: its completion
    /// will start another SEND, so a wait for one more completion would sleep on it.
    owed_behind: bool,
    /// The deadline the armed Timer::Deadline TIMEOUT fires at.
    deadline_armed: Option<Instant>,
    /// A Timer::Congestion TIMEOUT is in flight.
    congestion_timer: bool,
    /// The ring's index in this thread's registered ring table (full, 5.18+, not with
    /// SQPOLL): every enter goes by it, with no fd lookup.
    ring_index: Option<RingIndex>,
}

impl Loop for Proactor<'_> {
    type M = UConn;
    fn parts(&mut self) -> (&mut LoopState, &mut Slab<UConn>) {
        (&mut self.st, &mut self.conns)
    }
    fn close(&mut self, key: usize) {
        self.begin_close(key);
    }
    fn wake(&mut self, key: usize) {
        self.start_send(key);
    }
}

pub fn run(
    ring: Ring,
    listener: Socket,
    cfg: &ServerConfig,
    signals: &Signals,
    reporter: &Reporter,
) -> io::Result<LoopStats> {
    let mut features = ring.features;
    // Registered here, on the loop's thread: the registered ring table is per thread.
    // EINVAL before 5.18: then the raw fd is used, nothing else changes.
    let ring_index = if features.level == FeatureLevel::Full && !cfg.sqpoll {
        sys::count(Sys::IoUringRegister);
        register_ring_fd(&ring.ring).ok()
    } else {
        None
    };
    features.registered_ring_fd = ring_index.is_some();
    let mut p = Proactor {
        ring: ring.ring,
        ring_index,
        bufs: ring.bufs,
        slot_fds: vec![-1; features.registered_files as usize].into_boxed_slice(),
        features,
        cfg,
        listen_fd: listener.as_raw_fd(),
        signal_fd: signals.fd(),
        conns: Slab::new(),
        next_generation: 1,
        pool: Vec::new(),
        backlog: VecDeque::new(),
        timers: Slab::new(),
        st: LoopState::new(cfg, Fanout::lenient(cfg.outbox_cap)),
        accepting: true,
        accept_inflight: None,
        accept_backoff: false,
        hard_stop: false,
        last_overflow: 0,
        cqes: Vec::with_capacity(1024),
        starved: Vec::new(),
        synthetic: Vec::new(),
        sends_queued: 0,
        sends_last: 0,
        sends_inline: true,
        recvs_last: 0,
        owed_behind: false,
        deadline_armed: None,
        congestion_timer: false,
    };
    for e in ring.provide {
        p.push(e.user_data(Token::new(Op::Ignored, 0, 0).encode()));
    }
    let res = p.event_loop(signals, reporter);
    p.st.stats.syscalls = SyscallCounts::this_thread();
    let stats = std::mem::take(&mut p.st.stats);
    // Connections whose ops never completed: the kernel may still own their buffers,
    // so they (and the provided buffers) are leaked on purpose rather than freed under
    // it. Their fds close with the process.
    let leaked = std::mem::take(&mut p.conns);
    if leaked.is_empty() {
        drop(leaked);
        drop(p);
    } else {
        eprintln!(
            "ringmux: warning: {} connections still had io_uring ops in flight at exit",
            leaked.len()
        );
        std::mem::forget(leaked);
        let bufs = p.bufs.take();
        drop(p);
        std::mem::forget(bufs);
    }
    drop(listener);
    res.map(|_| stats)
}

/// How a loop turn waits (see `wait_for`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// For `want` completions, unbounded (an idle loop sleeps).
    One,
    /// For the queued sends plus one, at most `COUNTED_CAP`.
    Counted,
    /// For `want` completions, settling for fewer after min_wait (µs), at most
    /// `COALESCE_CAP`.
    Coalesce(u32),
}

fn timespec(d: Duration) -> types::Timespec {
    types::Timespec::new()
        .sec(d.as_secs())
        .nsec(d.subsec_nanos())
}

/// The slot for a completion, if its token is current (a stale generation means the
/// slot was reused, which the close protocol should make impossible).
fn slot(conns: &mut Slab<UConn>, t: Token) -> Option<&mut UConn> {
    conns
        .get_mut(t.key as usize)
        .filter(|c| c.generation == t.generation)
}

fn errno(res: i32) -> i32 {
    -res
}

impl Proactor<'_> {
    fn event_loop(&mut self, signals: &Signals, reporter: &Reporter) -> io::Result<()> {
        self.st.join_room(self.cfg, signals);
        self.arm_accept();
        self.arm_signal();
        loop {
            // Wait for the cancelled accept too: a pending ACCEPT holds a reference to
            // the listener, and the ring's teardown after exit is asynchronous, so
            // leaving it would keep the port bound for a moment after we exit.
            if self.st.drain.draining() && self.conns.is_empty() && self.accept_inflight.is_none() {
                return Ok(());
            }
            if self.hard_stop {
                return Ok(());
            }
            self.flush_backlog();
            sys::count(Sys::IoUringEnter);
            // Made-up completions are waiting: submit, but do not block.
            let (want, wait) = self.wait_for();
            self.owed_behind = false;
            let submitted_sends = std::mem::take(&mut self.sends_queued);
            let res = match (self.ring_index, wait) {
                (Some(idx), w) => {
                    let (cap, min_wait) = match w {
                        Wait::One => (None, 0),
                        Wait::Counted => (Some(COUNTED_CAP), 0),
                        Wait::Coalesce(us) => (Some(COALESCE_CAP), us),
                    };
                    enter_registered(&mut self.ring, idx, want as u32, cap, min_wait)
                }
                // The cap matters: with min_wait but no general timeout the kernel treats
                // min_wait as the timeout (6.12+ io_cqring_min_timer_wakeup), so a wait
                // that saw no completion returned ETIME every 50 us and an idle server
                // spun at about 12,000 enters a second. With a cap, a wait that saw
                // nothing in min_wait sleeps until the first completion or the cap.
                (None, Wait::Coalesce(us)) => {
                    let cap = timespec(COALESCE_CAP);
                    self.ring.submitter().submit_with_args(
                        want,
                        &types::SubmitArgs::new().min_wait_usec(us).timespec(&cap),
                    )
                }
                (None, Wait::Counted) => {
                    let cap = timespec(COUNTED_CAP);
                    self.ring
                        .submitter()
                        .submit_with_args(want, &types::SubmitArgs::new().timespec(&cap))
                }
                (None, Wait::One) => self.ring.submit_and_wait(want),
            };
            match res {
                Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
                Ok(_) => {}
                Err(e) => match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    // Entries stay in the SQ and go with the next enter; reap first
                    // so the kernel can make progress (tokio hung by not doing so).
                    Some(libc::EAGAIN | libc::EBUSY) => {
                        self.st.stats.enter_busy += 1;
                        if self.ring.completion().is_empty() {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                    _ => return Err(e),
                },
            }
            let over = self.st.fanout.take_over();
            let reaped = self.reap(signals, reporter);
            if wait == Wait::Counted && reaped < want {
                self.st.stats.wait_cap_hits += 1;
            }
            if submitted_sends > 0 {
                // Did this enter's SENDs complete inside it? (Completions of older SENDs
                // may count too: a guess that decides only how the next wait waits.)
                self.sends_inline = self.sends_last >= submitted_sends;
                if !self.sends_inline && wait == Wait::Counted {
                    self.st.stats.sends_parked += 1;
                }
            }
            self.rearm_starved();
            let was = !over.is_empty() || self.st.fanout.congested();
            Fanout::settle(self);
            Fanout::recheck(self, over);
            if self.st.fanout.congested() && !self.congestion_timer {
                // Recheck after the grace even if nothing else completes meanwhile.
                self.congestion_timer = true;
                self.arm_timer(fanout::GRACE, Timer::Congestion);
            }
            if was && !self.st.fanout.congested() {
                // Congestion cleared: read the connections it paused.
                let paused: Vec<usize> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.read_paused)
                    .map(|(k, _)| k)
                    .collect();
                for k in paused {
                    self.arm_read(k);
                }
            }
            self.arm_deadline();
        }
    }

    /// How many completions to wait for, and the min_wait bound when coalescing.
    ///
    /// Usually 1. At `full` on 6.12+ (min_wait), a wait may coalesce: a SEND to a
    /// socket with room completes inside the enter that submits it, and its completion
    /// alone would end a wait for 1 at once, costing a second enter to wait for the
    /// next receive. So a coalescing wait asks for the queued sends plus half the
    /// receives the last turn brought (at least one), and min_wait returns after
    /// `MIN_WAIT_US` with whatever is there once anything is. It saves about a third of
    /// the enters at 50 connections, but arms an hrtimer on every wait, which cost a
    /// quarter more CPU per message than epoll at 1 connection and in open loop
    /// (issue 11). `adaptive` therefore coalesces only after a turn that brought
    /// `COALESCE_AFTER_RECVS` or more receives, that is, when the server is saturated.
    ///
    /// Otherwise, at multishot/full (`counted_wait`), the queued sends plus one,
    /// bounded by `COUNTED_CAP`: the sends' completions arrive inside the enter, and
    /// the wait sleeps for the next event, so at one connection one enter serves a
    /// message (a wait for one took two: the SEND's completion ended it at once). After
    /// a turn whose sends did not all complete inside their enter, wait for one; also
    /// when bytes are owed behind a SEND in flight (a message larger than a receive
    /// buffer): that SEND's completion is ours to act on, and the +1 would sleep.
    fn wait_for(&self) -> (usize, Wait) {
        if !self.synthetic.is_empty() {
            return (0, Wait::One); // made-up completions are waiting: submit, do not block
        }
        let coalesce = self.features.min_wait
            && match self.cfg.uring_wait {
                WaitMode::Single => false,
                WaitMode::Coalesce => true,
                WaitMode::Adaptive => self.recvs_last >= COALESCE_AFTER_RECVS,
            };
        if coalesce {
            (
                self.sends_queued + (self.recvs_last / 2).max(1),
                Wait::Coalesce(MIN_WAIT_US),
            )
        } else if self.features.counted_wait
            && self.sends_inline
            && !self.owed_behind
            && self.sends_queued > 0
        {
            (self.sends_queued + 1, Wait::Counted)
        } else {
            (1, Wait::One)
        }
    }

    /// Handle every completion there is; returns how many.
    fn reap(&mut self, signals: &Signals, reporter: &Reporter) -> usize {
        // With FEAT_NODROP, completions that do not fit in the CQ wait on a kernel
        // list and IORING_SQ_CQ_OVERFLOW is set; the next enter with GETEVENTS moves
        // them into the CQ, in order. Count the turns that found the flag (the ring's
        // own overflow counter does not move for these). That counter moves only when
        // the kernel could not even keep a completion (out of memory): it is lost,
        // and nothing can recover the op, so say it loudly.
        if self.ring.submission().cq_overflow() {
            self.st.stats.cq_overflow += 1;
        }
        let cq = self.ring.completion();
        let dropped = cq.overflow();
        if dropped != self.last_overflow {
            let n = dropped.wrapping_sub(self.last_overflow);
            eprintln!(
                "ringmux: warning: the kernel dropped {n} io_uring completions (CQ overflow with no memory to keep them)"
            );
            self.st.stats.cq_overflow += n as u64;
            self.last_overflow = dropped;
        }
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.clear();
        cqes.extend(cq.map(|c| (c.user_data(), c.result(), c.flags())));
        cqes.append(&mut self.synthetic);
        let (mut recvs, mut sends) = (0, 0);
        self.st.stats.cqes += cqes.len() as u64;
        for &(ud, res, flags) in &cqes {
            let Some(t) = Token::decode(ud) else { continue };
            match t.op {
                Op::AcceptPoll => self.on_accept_poll(res),
                Op::Accept => self.on_accept(res, flags),
                Op::Poll => self.on_poll(t, res),
                Op::Recv => {
                    recvs += 1;
                    self.on_recv(t, res, flags)
                }
                Op::Send => {
                    sends += 1;
                    self.on_send(t, res)
                }
                Op::Signal => self.on_signal(signals, reporter),
                Op::Timer => self.on_timer(t.key as usize),
                Op::Ignored => {}
            }
        }
        let n = cqes.len();
        self.cqes = cqes;
        self.recvs_last = recvs;
        self.sends_last = sends;
        n
    }

    // ---- closing ----

    /// Stop accepting and reading; close what owes nothing, flush the rest, and set
    /// the drain deadline.
    fn begin_drain(&mut self) {
        self.accepting = false;
        if let Some(t) = self.accept_inflight {
            self.cancel(t);
        }
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for k in keys {
            let c = &mut self.conns[k];
            c.conn.read_eof = true;
            let (fd_ops, generation) = (c.inflight & (IN_POLL | IN_RECV), c.generation);
            if c.conn.finished() && c.inflight & IN_SEND == 0 {
                self.begin_close(k);
            } else if fd_ops & IN_POLL != 0 {
                self.cancel(Token::new(Op::Poll, k, generation));
            } else if fd_ops & IN_RECV != 0 {
                self.cancel(Token::new(Op::Recv, k, generation));
            }
        }
        self.arm_timer(self.cfg.drain_timeout, Timer::DrainDeadline);
    }

    fn cancel_ops(&mut self, key: usize) {
        let Some(c) = self.conns.get(key) else { return };
        let (inflight, generation) = (c.inflight, c.generation);
        for (bit, op) in [
            (IN_POLL, Op::Poll),
            (IN_RECV, Op::Recv),
            (IN_SEND, Op::Send),
        ] {
            if inflight & bit != 0 {
                self.cancel(Token::new(op, key, generation));
            }
        }
    }

    /// Close: shut the socket down so every pending op completes (closing the fd
    /// alone would not: the ring holds a reference), then close once none is left.
    fn begin_close(&mut self, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.closing {
            return;
        }
        c.closing = true;
        self.st.closing(key, &mut c.conn);
        if c.inflight != 0 {
            sys::shutdown_rdwr(c.fd);
        }
        self.maybe_finalize(key);
    }

    fn maybe_finalize(&mut self, key: usize) {
        let Some(c) = self.conns.get(key) else { return };
        if !c.closing || c.inflight != 0 {
            return;
        }
        let c = self.conns.remove(key);
        if c.fixed {
            // The table holds a reference to the socket: empty the slot, or the close
            // would not release it (no FIN until the next enter runs this).
            self.update_slot(key, None);
        }
        self.st.close_fd(c.fd);
        if let Some(b) = c.recv_buf
            && self.pool.len() < POOL_MAX
        {
            self.pool.push(b);
        }
    }
}
