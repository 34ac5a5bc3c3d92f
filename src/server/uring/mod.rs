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
pub mod probe;
pub mod token;

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use slab::Slab;
use socket2::Socket;

use super::conn::{self, Conn};
use super::policy::accept::{self, AcceptFailure};
use super::policy::drain;
use super::policy::fanout::{self, Fanout};
use super::policy::timers::Clock;
use super::policy::{self, Loop, LoopState, Member, over_cap};
use super::sys::{self, Sys, SyscallCounts};
use super::{LoopStats, Reporter, ServerConfig, Signals};
use crate::cli::{FeatureLevel, WaitMode};
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
/// SQPOLL thread idle time before it sleeps.
const SQPOLL_IDLE_MS: u32 = 100;

const IN_POLL: u8 = 1;
const IN_RECV: u8 = 2;
const IN_SEND: u8 = 4;

/// A ring that was set up with what the chosen level needs.
pub struct Ring {
    // Field order is drop order: the ring goes before the buffers it may write into.
    ring: IoUring,
    bufs: Option<ProvidedBufs>,
    /// The PROVIDE_BUFFERS SQEs that hand a legacy group to the kernel (fastpoll).
    provide: Vec<squeue::Entry>,
    pub features: RingFeatures,
}

fn unavailable(what: impl Into<String>, hint: impl Into<String>) -> Unavailable {
    Unavailable {
        errno: None,
        what: what.into(),
        hint: hint.into(),
    }
}

impl Ring {
    /// Set up the ring, check the opcodes, pick the feature level: the one pinned by
    /// `--uring-features`, or with `auto` the best that sets up here, stepping down a
    /// level whenever a flag or registration is refused.
    pub fn setup(cfg: &ServerConfig) -> Result<Ring, Unavailable> {
        let basic = probe::build_ring_with(
            cfg.ring_entries,
            SetupFlags {
                cq_entries: cfg.cq_entries,
                ..SetupFlags::default()
            },
        )?;
        let p = probe::probe_ops(&basic)?;
        if let Some((name, _)) = probe::BASELINE_OPS
            .iter()
            .find(|(_, code)| !p.is_supported(*code))
        {
            return Err(unavailable(
                format!("opcode {name} is missing"),
                "ringmux needs Linux 5.6+ (ACCEPT, RECV, SEND, POLL_ADD, ASYNC_CANCEL, TIMEOUT); fix: upgrade the kernel",
            ));
        }
        let fast_poll =
            basic.params().is_feature_fast_poll() && p.is_supported(opcode::ProvideBuffers::CODE);
        let pinned = cfg.features.pinned();
        let top = pinned.unwrap_or(FeatureLevel::Full);
        let mut basic = Some(basic);
        let mut last_err = None;
        let mut passed_over: Vec<&str> = Vec::new();
        let mut first_reason = None;
        for level in [
            FeatureLevel::Full,
            FeatureLevel::Multishot,
            FeatureLevel::Fastpoll,
            FeatureLevel::Baseline,
        ] {
            if level > top || (pinned.is_some() && Some(level) != pinned) {
                continue;
            }
            match Ring::try_level(cfg, level, fast_poll, &mut basic) {
                Ok(r) => {
                    if !passed_over.is_empty() && !cfg.quiet {
                        // `auto` stepped down: say from where and why, once.
                        eprintln!(
                            "ringmux: note: io_uring level {} not used ({}); running at {}",
                            passed_over.join(", "),
                            first_reason.unwrap_or_default(),
                            level.name()
                        );
                    }
                    return Ok(r);
                }
                Err(e) => {
                    passed_over.push(level.name());
                    first_reason.get_or_insert_with(|| e.to_string());
                    last_err = Some(e)
                }
            }
        }
        Err(last_err.unwrap_or_else(|| unavailable("io_uring setup", "no level could be set up")))
    }

    fn try_level(
        cfg: &ServerConfig,
        level: FeatureLevel,
        fast_poll: bool,
        basic: &mut Option<IoUring>,
    ) -> Result<Ring, Unavailable> {
        let name = level.name();
        if level >= FeatureLevel::Fastpoll && !fast_poll {
            return Err(unavailable(
                format!("--uring-features {name} needs IORING_FEAT_FAST_POLL and PROVIDE_BUFFERS"),
                "this kernel lacks them (needs Linux 5.7+); use --uring-features baseline",
            ));
        }
        if level >= FeatureLevel::Multishot {
            let t = probe::multishot_trial();
            if let Some(why) = [&t.buf_ring, &t.accept, &t.recv]
                .into_iter()
                .find_map(|r| r.as_ref().err())
            {
                return Err(unavailable(
                    format!("--uring-features {name} needs multishot ACCEPT/RECV and buffer rings"),
                    format!("{why}; use --uring-features fastpoll"),
                ));
            }
        }
        let sqpoll_idle_ms = cfg.sqpoll.then_some(SQPOLL_IDLE_MS);
        let flags = SetupFlags {
            coop_taskrun: level == FeatureLevel::Multishot,
            single_issuer: level == FeatureLevel::Full,
            // DEFER_TASKRUN and SQPOLL exclude each other (the SQ thread is the issuer).
            defer_taskrun: level == FeatureLevel::Full && cfg.defer_taskrun && !cfg.sqpoll,
            sqpoll_idle_ms,
            cq_entries: cfg.cq_entries,
        };
        let plain = SetupFlags {
            cq_entries: cfg.cq_entries,
            ..SetupFlags::default()
        };
        let ring = match (flags == plain, basic.take()) {
            (true, Some(r)) => r,
            (_, b) => {
                *basic = b;
                probe::build_ring_with(cfg.ring_entries, flags).map_err(|mut e| {
                    e.hint = format!(
                        "{}; the kernel refused the setup flags for --uring-features {name}",
                        e.hint
                    );
                    e
                })?
            }
        };
        let mut registered_ring_fd = false;
        if level == FeatureLevel::Full {
            sys::count(Sys::IoUringRegister);
            // Fails with EINVAL before 5.18: then the raw fd is used, nothing else changes.
            registered_ring_fd = ring.submitter().register_ring_fd().is_ok();
        }
        let mut provide = Vec::new();
        let bufs = match level {
            FeatureLevel::Baseline => None,
            FeatureLevel::Fastpoll => {
                let (b, e) = ProvidedBufs::legacy(cfg.buf_entries, cfg.recv_buf);
                provide = e;
                Some(b)
            }
            FeatureLevel::Multishot | FeatureLevel::Full => Some(
                ProvidedBufs::ring(&ring, cfg.buf_entries, cfg.recv_buf).map_err(|e| {
                    Unavailable {
                        errno: e.raw_os_error(),
                        what: "IORING_REGISTER_PBUF_RING".into(),
                        hint: format!(
                            "cannot register {} buffers of {} bytes; use --uring-features fastpoll",
                            cfg.buf_entries, cfg.recv_buf
                        ),
                    }
                })?,
            ),
        };
        let multishot = level >= FeatureLevel::Multishot;
        let min_wait = level == FeatureLevel::Full && ring.params().is_feature_min_timeout();
        let features = RingFeatures {
            level,
            min_wait,
            wait: if min_wait {
                cfg.uring_wait.name()
            } else {
                WaitMode::Single.name()
            },
            recv_buffers: match level {
                FeatureLevel::Baseline => "pooled",
                FeatureLevel::Fastpoll => "provide_buffers",
                _ => "buf_ring",
            },
            buf_entries: if level == FeatureLevel::Baseline {
                0
            } else {
                cfg.buf_entries
            },
            multishot_accept: multishot && cfg.multishot_accept,
            // Chat: a multishot RECV brings a whole burst per turn, and each byte of it is
            // multiplied by the number of receivers before any send runs (1 GB of outboxes
            // at 100 clients); one-shot RECVs let the fan-out pace the senders.
            multishot_recv: multishot && cfg.proto != Proto::Chat,
            coop_taskrun: flags.coop_taskrun,
            single_issuer: flags.single_issuer,
            defer_taskrun: flags.defer_taskrun,
            registered_ring_fd,
            sqpoll: cfg.sqpoll,
            sq_entries: ring.params().sq_entries(),
            cq_entries: ring.params().cq_entries(),
        };
        Ok(Ring {
            ring,
            bufs,
            provide,
            features,
        })
    }
}

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
    recvs_last: usize,
    /// The deadline the armed Timer::Deadline TIMEOUT fires at.
    deadline_armed: Option<Instant>,
    /// A Timer::Congestion TIMEOUT is in flight.
    congestion_timer: bool,
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
    let mut p = Proactor {
        ring: ring.ring,
        bufs: ring.bufs,
        features: ring.features,
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
        recvs_last: 0,
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
            let (want, min_wait) = self.wait_for();
            self.sends_queued = 0;
            let res = match min_wait {
                // The cap matters: with min_wait but no general timeout the kernel treats
                // min_wait as the timeout (6.12+ io_cqring_min_timer_wakeup), so a wait
                // that saw no completion returned ETIME every 50 us and an idle server
                // spun at about 12,000 enters a second. With a cap, a wait that saw
                // nothing in min_wait sleeps until the first completion or the cap.
                Some(us) => {
                    let cap = types::Timespec::new()
                        .sec(COALESCE_CAP.as_secs())
                        .nsec(COALESCE_CAP.subsec_nanos());
                    self.ring.submitter().submit_with_args(
                        want,
                        &types::SubmitArgs::new().min_wait_usec(us).timespec(&cap),
                    )
                }
                None => self.ring.submit_and_wait(want),
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
            self.reap(signals, reporter);
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
    fn wait_for(&self) -> (usize, Option<u32>) {
        if !self.synthetic.is_empty() {
            return (0, None); // made-up completions are waiting: submit, do not block
        }
        if !self.features.min_wait {
            return (1, None);
        }
        let coalesce = match self.cfg.uring_wait {
            WaitMode::Single => false,
            WaitMode::Coalesce => true,
            WaitMode::Adaptive => self.recvs_last >= COALESCE_AFTER_RECVS,
        };
        if coalesce {
            (
                self.sends_queued + (self.recvs_last / 2).max(1),
                Some(MIN_WAIT_US),
            )
        } else {
            (1, None)
        }
    }

    fn reap(&mut self, signals: &Signals, reporter: &Reporter) {
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
        let mut recvs = 0;
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
                Op::Send => self.on_send(t, res),
                Op::Signal => self.on_signal(signals, reporter),
                Op::Timer => self.on_timer(t.key as usize),
                Op::Ignored => {}
            }
        }
        self.cqes = cqes;
        self.recvs_last = recvs;
    }

    // ---- submission ----

    fn push(&mut self, e: squeue::Entry) {
        if self.backlog.is_empty() {
            // SAFETY: every SQE built here references only memory that outlives its
            // completion: recv/send buffers live in the connection slot, which is freed
            // only once no op is in flight; provided buffers live in `self.bufs`, which
            // outlives the ring; timespecs live in `self.timers` until their
            // completion; fds stay open until their ops complete.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return;
            }
            self.st.stats.sq_full += 1;
        }
        self.backlog.push_back(e);
    }

    /// Move backlogged SQEs into the SQ, submitting when it is full. Never drops one.
    fn flush_backlog(&mut self) {
        for _ in 0..64 {
            while let Some(e) = self.backlog.front() {
                // SAFETY: as in `push`: the entry's memory outlives its completion.
                if unsafe { self.ring.submission().push(e) }.is_err() {
                    break;
                }
                self.backlog.pop_front();
            }
            if self.backlog.is_empty() {
                return;
            }
            sys::count(Sys::IoUringEnter);
            if self.ring.submit().is_err() {
                return; // EBUSY/EAGAIN: the main loop reaps, then tries again
            }
        }
    }

    fn arm_signal(&mut self) {
        let e = opcode::PollAdd::new(types::Fd(self.signal_fd), libc::POLLIN as u32)
            .build()
            .user_data(Token::new(Op::Signal, 0, 0).encode());
        self.push(e);
    }

    fn arm_accept(&mut self) {
        if !self.accepting || self.accept_inflight.is_some() || self.accept_backoff {
            return;
        }
        let fd = types::Fd(self.listen_fd);
        let (t, e) = match self.features.level {
            FeatureLevel::Baseline => {
                let t = Token::new(Op::AcceptPoll, 0, 0);
                (t, opcode::PollAdd::new(fd, libc::POLLIN as u32).build())
            }
            _ if self.features.multishot_accept => (
                Token::new(Op::Accept, 0, 0),
                opcode::AcceptMulti::new(fd)
                    .flags(libc::SOCK_CLOEXEC)
                    .build(),
            ),
            _ => (Token::new(Op::Accept, 0, 0), self.accept_sqe()),
        };
        self.accept_inflight = Some(t);
        self.push(e.user_data(t.encode()));
    }

    /// ACCEPT on the listener; the new socket stays blocking (the ring polls it).
    fn accept_sqe(&self) -> squeue::Entry {
        opcode::Accept::new(
            types::Fd(self.listen_fd),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
        .flags(libc::SOCK_CLOEXEC)
        .build()
    }

    fn arm_timer(&mut self, after: Duration, what: Timer) {
        let ts = Box::new(
            types::Timespec::new()
                .sec(after.as_secs())
                .nsec(after.subsec_nanos()),
        );
        let ptr: *const types::Timespec = &*ts;
        let key = self.timers.insert((ts, what));
        let e = opcode::Timeout::new(ptr)
            .build()
            .user_data(Token::new(Op::Timer, key, 0).encode());
        self.push(e);
    }

    /// One TIMEOUT for the nearest connection deadline, re-armed only when a nearer one
    /// appears (a later one is found when this fires).
    fn arm_deadline(&mut self) {
        let Some(next) = self.st.timers.next() else {
            return;
        };
        if self.st.drain.draining() || self.deadline_armed.is_some_and(|a| a <= next) {
            return;
        }
        self.deadline_armed = Some(next);
        let after = next.saturating_duration_since(Instant::now());
        self.arm_timer(after, Timer::Deadline(next));
    }

    fn cancel(&mut self, t: Token) {
        let e = opcode::AsyncCancel::new(t.encode())
            .build()
            .user_data(Token::new(Op::Ignored, 0, 0).encode());
        self.push(e);
    }

    /// Ask for input: POLL_ADD at baseline, RECV (multishot from `multishot` up)
    /// otherwise. Not while the outbox is over its cap (backpressure), after EOF, or
    /// while closing.
    fn arm_read(&mut self, key: usize) {
        let cap = self.cfg.outbox_cap;
        let level = self.features.level;
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.closing
            || c.conn.read_eof
            || c.conn.close_after_flush
            || c.inflight & (IN_POLL | IN_RECV) != 0
        {
            return;
        }
        if over_cap(&c.conn, c.in_flight(), cap)
            || (self.cfg.proto == Proto::Chat && self.st.fanout.congested())
        {
            c.read_paused = true;
            return;
        }
        c.read_paused = false;
        if level == FeatureLevel::Baseline {
            c.inflight |= IN_POLL;
            let e = opcode::PollAdd::new(types::Fd(c.fd), (libc::POLLIN | libc::POLLRDHUP) as u32)
                .build()
                .user_data(Token::new(Op::Poll, key, c.generation).encode());
            self.push(e);
            return;
        }
        c.inflight |= IN_RECV;
        let t = Token::new(Op::Recv, key, c.generation);
        if self.st.faults.recv_nobufs.hit() {
            // As if the group were empty: the op "ran" and found no buffer.
            self.st.stats.faults_injected += 1;
            self.synthetic.push((t.encode(), -libc::ENOBUFS, 0));
            return;
        }
        let fd = types::Fd(c.fd);
        let e = if self.features.multishot_recv {
            opcode::RecvMulti::new(fd, bufs::BGID).build()
        } else {
            opcode::Recv::new(fd, std::ptr::null_mut(), self.cfg.recv_buf as u32)
                .buf_group(bufs::BGID)
                .build()
                .flags(squeue::Flags::BUFFER_SELECT)
        };
        self.push(e.user_data(t.encode()));
    }

    /// Baseline: the socket is readable; RECV into a pooled buffer.
    fn submit_recv(&mut self, key: usize) {
        let size = self.cfg.recv_buf;
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let mut buf = c
            .recv_buf
            .take()
            .or_else(|| self.pool.pop())
            .unwrap_or_else(|| vec![0u8; size].into_boxed_slice());
        let (ptr, len) = (buf.as_mut_ptr(), buf.len() as u32);
        c.recv_buf = Some(buf); // kernel-owned from here until the RECV completion
        c.inflight |= IN_RECV;
        let e = opcode::Recv::new(types::Fd(c.fd), ptr, len)
            .build()
            .user_data(Token::new(Op::Recv, key, c.generation).encode());
        self.push(e);
    }

    /// Hand owed bytes to the kernel: one SEND in flight per connection keeps order.
    fn start_send(&mut self, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.closing || c.inflight & IN_SEND != 0 || c.conn.owed_len() == 0 {
            return;
        }
        let spare = std::mem::take(&mut c.spare);
        c.send_buf = c.conn.take_owed(spare);
        c.send_pos = 0;
        self.submit_send(key);
    }

    fn submit_send(&mut self, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let rest = &c.send_buf[c.send_pos..];
        let mut len = rest.len().min(MAX_SEND);
        if len > 1 && self.st.faults.send_short.hit() {
            self.st.stats.faults_injected += 1;
            len /= 2;
        }
        let ptr = rest.as_ptr();
        c.inflight |= IN_SEND; // send_buf is kernel-owned until the SEND completion
        self.sends_queued += 1;
        let e = opcode::Send::new(types::Fd(c.fd), ptr, len as u32)
            .build()
            .user_data(Token::new(Op::Send, key, c.generation).encode());
        self.push(e);
    }

    // ---- completions ----

    fn on_accept_poll(&mut self, res: i32) {
        self.accept_inflight = None;
        if !self.accepting {
            return;
        }
        if res < 0 && errno(res) != libc::EINTR {
            self.st.stats.accept_errors += 1;
        }
        let t = Token::new(Op::Accept, 0, 0);
        self.accept_inflight = Some(t);
        let e = self.accept_sqe().user_data(t.encode());
        self.push(e);
    }

    fn on_accept(&mut self, res: i32, flags: u32) {
        if !cqueue::more(flags) {
            self.accept_inflight = None; // a multishot ACCEPT ended, or a one-shot did
        }
        if res >= 0 {
            accept::accepted(res, &mut self.st.stats);
            if accept::refuse_max_conns(self.cfg, self.conns.len(), res, &mut self.st.stats) {
                self.arm_accept();
                return;
            }
            if !self.accepting {
                self.st.close_fd(res);
                return;
            }
            self.add_conn(res);
        } else if accept::failed(errno(res), &mut self.st.stats) == AcceptFailure::BackOff {
            // Out of descriptors or memory (this also ends a multishot ACCEPT): back
            // off instead of spinning; the backlog keeps the clients waiting.
            if self.accept_inflight.is_none() && !self.accept_backoff {
                self.accept_backoff = true;
                self.arm_timer(accept::ACCEPT_BACKOFF, Timer::AcceptBackoff);
            }
            return;
        }
        self.arm_accept();
    }

    fn add_conn(&mut self, fd: RawFd) {
        // A leave queued by a closing connection goes out before its key is reused.
        Fanout::settle(self);
        let generation = self.next_generation;
        self.next_generation = (self.next_generation + 1) & token::GEN_MASK;
        let key = self.conns.vacant_key();
        let mut conn = Conn::with_guests(self.cfg.proto, &self.cfg.guests);
        let clock = self.st.open(key, &mut conn);
        let key = self.conns.insert(UConn {
            fd,
            generation,
            clock,
            conn,
            recv_buf: None,
            send_buf: Vec::new(),
            send_pos: 0,
            spare: Vec::new(),
            inflight: 0,
            read_paused: false,
            recv_cancelling: false,
            closing: false,
            sends_done: 0,
        });
        self.start_send(key);
        Fanout::settle(self);
        self.arm_read(key);
    }

    fn on_poll(&mut self, t: Token, res: i32) {
        let key = t.key as usize;
        let Some(c) = slot(&mut self.conns, t) else {
            return;
        };
        c.inflight &= !IN_POLL;
        if c.closing {
            self.maybe_finalize(key);
        } else if c.conn.read_eof {
            // Draining: the poll was cancelled; close once nothing is owed.
            if c.conn.finished() && c.inflight & IN_SEND == 0 {
                self.begin_close(key);
            }
        } else if res < 0 {
            self.begin_close(key);
        } else {
            // Readable (or hung up: the RECV tells which).
            self.submit_recv(key);
        }
    }

    fn on_recv(&mut self, t: Token, mut res: i32, flags: u32) {
        let key = t.key as usize;
        let Some(c) = slot(&mut self.conns, t) else {
            // Never expected (the slot outlives its ops), but a selected buffer must
            // still go back or the group shrinks for good.
            if let Some(bid) = cqueue::buffer_select(flags) {
                self.give_back(bid);
            }
            return;
        };
        let more = cqueue::more(flags);
        // Whether this completion ends a RECV we had asked to cancel (the cancel may
        // also lose the race to an EOF or error: either way the op is over).
        let mut was_cancelling = false;
        if !more {
            c.inflight &= !IN_RECV;
            was_cancelling = std::mem::take(&mut c.recv_cancelling);
        }
        if res > 0 && self.st.faults.recv_reset.hit() {
            self.st.stats.faults_injected += 1;
            res = -libc::ECONNRESET; // the bytes are dropped, as a reset drops them
        }
        // Hand the bytes to the protocol, then the buffer back to the kernel.
        let selected = cqueue::buffer_select(flags);
        if res > 0 {
            let n = res as usize;
            match (selected, &self.bufs, &c.recv_buf) {
                (Some(bid), Some(b), _) => {
                    if let Some(data) = b.data(bid, n) {
                        c.conn.on_input(data);
                    }
                }
                (None, _, Some(b)) => c.conn.on_input(&b[..n]),
                _ => {}
            }
            self.st.stats.bytes_in += n as u64;
        } else if res == 0 {
            c.conn.read_eof = true;
        }
        if let Some(b) = c.recv_buf.take()
            && self.pool.len() < POOL_MAX
        {
            self.pool.push(b);
        }
        if let Some(bid) = selected {
            self.give_back(bid);
        }
        if res > 0 {
            let c = &mut self.conns[key];
            if self.st.input(key, &mut c.clock, &mut c.conn) {
                Fanout::settle(self);
            }
        }
        let c = &mut self.conns[key];
        if c.closing {
            self.maybe_finalize(key);
            return;
        }
        if res < 0 {
            match errno(res) {
                libc::ENOBUFS => {
                    // The group was empty: the bytes wait in the socket. Re-arm after
                    // this turn, when the buffers it consumed are back.
                    self.st.stats.recv_nobufs += 1;
                    if !more {
                        self.starved.push((key, c.generation));
                    }
                    return;
                }
                libc::ECANCELED if was_cancelling => {}
                libc::ECANCELED if self.st.drain.draining() => {}
                libc::EINTR | libc::EAGAIN => {}
                _ => {
                    self.begin_close(key); // ECONNRESET, ...
                    return;
                }
            }
        }
        self.start_send(key);
        let cap = self.cfg.outbox_cap;
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.conn.finished() && c.inflight & IN_SEND == 0 {
            self.begin_close(key);
            return;
        }
        if c.inflight & IN_RECV != 0 {
            // A multishot RECV is still armed: stop it while the outbox is over its cap.
            let congested = self.cfg.proto == Proto::Chat && self.st.fanout.congested();
            if !c.recv_cancelling && (over_cap(&c.conn, c.in_flight(), cap) || congested) {
                c.recv_cancelling = true;
                c.read_paused = true;
                let t = Token::new(Op::Recv, key, c.generation);
                self.cancel(t);
            }
            return;
        }
        self.arm_read(key);
    }

    fn give_back(&mut self, bid: u16) {
        if let Some(e) = self.bufs.as_mut().and_then(|b| b.give_back(bid)) {
            self.push(e.user_data(Token::new(Op::Ignored, 0, 0).encode()));
        }
    }

    fn rearm_starved(&mut self) {
        if self.starved.is_empty() {
            return;
        }
        // The group ran dry this turn: grow it (up to its maximum) before re-arming.
        let mut sqes = Vec::new();
        if self.bufs.as_mut().is_some_and(|b| b.grow(&mut sqes)) {
            self.st.stats.buf_grows += 1;
        }
        for e in sqes {
            self.push(e.user_data(Token::new(Op::Ignored, 0, 0).encode()));
        }
        let starved = std::mem::take(&mut self.starved);
        for &(key, generation) in &starved {
            if self
                .conns
                .get(key)
                .is_some_and(|c| c.generation == generation)
            {
                self.arm_read(key);
            }
        }
        self.starved = starved;
        self.starved.clear();
    }

    fn on_send(&mut self, t: Token, res: i32) {
        let key = t.key as usize;
        let cap = self.cfg.outbox_cap;
        let Some(c) = slot(&mut self.conns, t) else {
            return;
        };
        c.inflight &= !IN_SEND;
        c.sends_done += 1;
        if c.closing {
            self.maybe_finalize(key);
            return;
        }
        if res <= 0 {
            // EPIPE, ECONNRESET, ECANCELED; 0 for a non-empty send would loop forever.
            self.begin_close(key);
            return;
        }
        self.st.stats.bytes_out += res as u64;
        c.send_pos += res as usize;
        if c.send_pos < c.send_buf.len() {
            self.submit_send(key); // short send: the rest, in order
            return;
        }
        c.spare = conn::recycle(std::mem::take(&mut c.send_buf));
        c.send_pos = 0;
        if c.conn.owed_len() > 0 {
            self.start_send(key);
            return;
        }
        if c.conn.finished() {
            self.begin_close(key);
            return;
        }
        if c.read_paused && !over_cap(&c.conn, c.in_flight(), cap) {
            self.arm_read(key);
        }
    }

    fn on_signal(&mut self, signals: &Signals, reporter: &Reporter) {
        let st = &mut self.st;
        let stop = drain::on_wake(
            signals,
            reporter,
            &mut st.stats,
            &mut st.drain,
            self.cfg.drain_timeout,
        );
        // After the wake pipe was emptied: a post that comes later leaves a new wake.
        st.take_room();
        if stop {
            self.begin_drain();
        }
        self.arm_signal();
    }

    fn on_timer(&mut self, key: usize) {
        let Some((_, what)) = self.timers.try_remove(key) else {
            return;
        };
        match what {
            Timer::AcceptBackoff => {
                self.accept_backoff = false;
                self.arm_accept();
            }
            Timer::DrainDeadline => {
                self.st.stats.forced_closed += self.conns.len() as u64;
                let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
                for k in keys {
                    self.begin_close(k);
                    self.cancel_ops(k);
                }
                self.arm_timer(HARD_STOP_GRACE, Timer::HardStop);
            }
            Timer::HardStop => self.hard_stop = true,
            Timer::Congestion => self.congestion_timer = false,
            Timer::Deadline(at) => {
                if self.deadline_armed == Some(at) {
                    self.deadline_armed = None;
                }
                policy::expire_timers(self);
            }
        }
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
        self.st.close_fd(c.fd);
        if let Some(b) = c.recv_buf
            && self.pool.len() < POOL_MAX
        {
            self.pool.push(b);
        }
    }
}
