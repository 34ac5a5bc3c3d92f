//! The proactor: submit accept/recv/send to an io_uring and act on completions.
//!
//! Ownership rule, the one that matters: a buffer referenced by a submitted SQE
//! belongs to the kernel until that SQE's completion is reaped. Each connection
//! tracks its in-flight ops; its slot (and the buffers in it) is freed only when
//! none is left, after `shutdown(SHUT_RDWR)` has made every pending op complete.
//!
//! Levels: `baseline` (5.6) arms POLL_ADD and submits RECV only once readable, so no
//! io-wq thread is parked per idle connection and idle connections own no receive
//! buffer; `fastpoll` (5.7+) submits RECV/ACCEPT directly and lets the kernel's
//! internal poll do the waiting.

pub mod probe;
pub mod token;

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use io_uring::{IoUring, opcode, squeue, types};
use slab::Slab;
use socket2::Socket;

use super::conn::{self, Conn};
use super::sys::{self, Sys, SyscallCounts};
use super::{LoopStats, Reporter, ServerConfig, Signals};
use crate::cli::{FeatureChoice, FeatureLevel};
use probe::Unavailable;
use token::{Op, Token};

const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);
/// After the drain deadline, how long to wait for the kernel to hand buffers back.
const HARD_STOP_GRACE: Duration = Duration::from_secs(1);
/// Free receive buffers kept for reuse.
const POOL_MAX: usize = 1024;
/// Largest single SEND (the SQE length is 32 bits).
const MAX_SEND: usize = 1 << 30;

const IN_POLL: u8 = 1;
const IN_RECV: u8 = 2;
const IN_SEND: u8 = 4;

/// A ring that was set up and has what the chosen level needs.
pub struct Ring {
    ring: IoUring,
    pub level: FeatureLevel,
}

impl Ring {
    /// Set up the ring, check the opcodes, pick the feature level.
    pub fn setup(cfg: &ServerConfig) -> Result<Ring, Unavailable> {
        let ring = probe::build_ring(cfg.ring_entries)?;
        let p = probe::probe_ops(&ring)?;
        if let Some((name, _)) = probe::BASELINE_OPS.iter().find(|(_, code)| !p.is_supported(*code)) {
            return Err(Unavailable {
                errno: None,
                what: format!("opcode {name} is missing"),
                hint: "ringmux needs Linux 5.6+ (ACCEPT, RECV, SEND, POLL_ADD, ASYNC_CANCEL, TIMEOUT); fix: upgrade the kernel".into(),
            });
        }
        let fast_poll = ring.params().is_feature_fast_poll();
        let level = match cfg.features {
            FeatureChoice::Auto if fast_poll => FeatureLevel::Fastpoll,
            FeatureChoice::Auto | FeatureChoice::Baseline => FeatureLevel::Baseline,
            FeatureChoice::Fastpoll if fast_poll => FeatureLevel::Fastpoll,
            FeatureChoice::Fastpoll => {
                return Err(Unavailable {
                    errno: None,
                    what: "--uring-features fastpoll needs IORING_FEAT_FAST_POLL".into(),
                    hint: "this kernel lacks it (needs Linux 5.7+); use --uring-features baseline".into(),
                });
            }
        };
        Ok(Ring { ring, level })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    AcceptBackoff,
    DrainDeadline,
    HardStop,
}

struct UConn {
    fd: RawFd,
    generation: u32,
    conn: Conn,
    /// Kernel-owned while a RECV is in flight. At `fastpoll` the connection keeps it
    /// between receives; at `baseline` it goes back to the pool after each one.
    recv_buf: Option<Box<[u8]>>,
    /// Kernel-owned while a SEND is in flight; `send_buf[send_pos..]` is still unsent.
    send_buf: Vec<u8>,
    send_pos: usize,
    /// A drained send buffer kept to swap in as the next outbox.
    spare: Vec<u8>,
    /// IN_POLL | IN_RECV | IN_SEND: ops whose completion has not been reaped.
    inflight: u8,
    read_paused: bool,
    closing: bool,
}

struct Proactor<'a> {
    ring: IoUring,
    level: FeatureLevel,
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
    stats: LoopStats,
    accepting: bool,
    accept_inflight: Option<Token>,
    draining: bool,
    hard_stop: bool,
    last_overflow: u32,
    cqes: Vec<(u64, i32)>,
}

pub fn run(ring: Ring, listener: Socket, cfg: &ServerConfig, signals: &Signals, reporter: &Reporter) -> io::Result<LoopStats> {
    let mut p = Proactor {
        level: ring.level,
        ring: ring.ring,
        cfg,
        listen_fd: listener.as_raw_fd(),
        signal_fd: signals.fd(),
        conns: Slab::new(),
        next_generation: 1,
        pool: Vec::new(),
        backlog: VecDeque::new(),
        timers: Slab::new(),
        stats: LoopStats::default(),
        accepting: true,
        accept_inflight: None,
        draining: false,
        hard_stop: false,
        last_overflow: 0,
        cqes: Vec::with_capacity(1024),
    };
    let res = p.event_loop(signals, reporter);
    p.stats.syscalls = SyscallCounts::this_thread();
    let stats = std::mem::take(&mut p.stats);
    // Connections whose ops never completed: the kernel may still own their buffers,
    // so they are leaked on purpose rather than freed under it. Their fds close with
    // the process.
    let leaked = std::mem::take(&mut p.conns);
    if leaked.is_empty() {
        drop(leaked);
    } else {
        eprintln!("ringmux: warning: {} connections still had io_uring ops in flight at exit", leaked.len());
        std::mem::forget(leaked);
    }
    drop(p);
    drop(listener);
    res.map(|_| stats)
}

/// The slot for a completion, if its token is current (a stale generation means the
/// slot was reused, which the close protocol should make impossible).
fn slot(conns: &mut Slab<UConn>, t: Token) -> Option<&mut UConn> {
    conns.get_mut(t.key as usize).filter(|c| c.generation == t.generation)
}

fn errno(res: i32) -> i32 {
    -res
}

impl Proactor<'_> {
    fn event_loop(&mut self, signals: &Signals, reporter: &Reporter) -> io::Result<()> {
        self.arm_accept();
        self.arm_signal();
        loop {
            // Wait for the cancelled accept too: a pending ACCEPT holds a reference to
            // the listener, and the ring's teardown after exit is asynchronous, so
            // leaving it would keep the port bound for a moment after we exit.
            if self.draining && self.conns.is_empty() && self.accept_inflight.is_none() {
                return Ok(());
            }
            if self.hard_stop {
                return Ok(());
            }
            self.flush_backlog();
            sys::count(Sys::IoUringEnter);
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) => match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    // Entries stay in the SQ and go with the next enter; reap first
                    // so the kernel can make progress (tokio hung by not doing so).
                    Some(libc::EAGAIN | libc::EBUSY) => {
                        self.stats.enter_busy += 1;
                        if self.ring.completion().is_empty() {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                    _ => return Err(e),
                },
            }
            self.reap(signals, reporter);
        }
    }

    fn reap(&mut self, signals: &Signals, reporter: &Reporter) {
        let cq = self.ring.completion();
        let overflow = cq.overflow();
        if overflow != self.last_overflow {
            // With FEAT_NODROP the kernel keeps overflowed completions and hands them
            // over on a later enter; count the event, lose nothing.
            self.stats.cq_overflow += overflow.wrapping_sub(self.last_overflow) as u64;
            self.last_overflow = overflow;
        }
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.clear();
        cqes.extend(cq.map(|c| (c.user_data(), c.result())));
        for &(ud, res) in &cqes {
            let Some(t) = Token::decode(ud) else { continue };
            match t.op {
                Op::AcceptPoll => self.on_accept_poll(res),
                Op::Accept => self.on_accept(res),
                Op::Poll => self.on_poll(t, res),
                Op::Recv => self.on_recv(t, res),
                Op::Send => self.on_send(t, res),
                Op::Signal => self.on_signal(signals, reporter),
                Op::Timer => self.on_timer(t.key as usize),
                Op::Cancel => {}
            }
        }
        self.cqes = cqes;
    }

    // ---- submission ----

    fn push(&mut self, e: squeue::Entry) {
        if self.backlog.is_empty() {
            // SAFETY: every SQE built here references only memory that outlives its
            // completion: recv/send buffers live in the connection slot, which is freed
            // only once no op is in flight; timespecs live in `self.timers` until their
            // completion; fds stay open until their ops complete.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return;
            }
            self.stats.sq_full += 1;
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
        if !self.accepting || self.accept_inflight.is_some() {
            return;
        }
        let fd = types::Fd(self.listen_fd);
        let (t, e) = match self.level {
            FeatureLevel::Baseline => {
                let t = Token::new(Op::AcceptPoll, 0, 0);
                (t, opcode::PollAdd::new(fd, libc::POLLIN as u32).build())
            }
            FeatureLevel::Fastpoll => (Token::new(Op::Accept, 0, 0), self.accept_sqe()),
        };
        self.accept_inflight = Some(t);
        self.push(e.user_data(t.encode()));
    }

    /// ACCEPT on the listener; the new socket stays blocking (the ring polls it).
    fn accept_sqe(&self) -> squeue::Entry {
        opcode::Accept::new(types::Fd(self.listen_fd), std::ptr::null_mut(), std::ptr::null_mut()).flags(libc::SOCK_CLOEXEC).build()
    }

    fn arm_timer(&mut self, after: Duration, what: Timer) {
        let ts = Box::new(types::Timespec::new().sec(after.as_secs()).nsec(after.subsec_nanos()));
        let ptr: *const types::Timespec = &*ts;
        let key = self.timers.insert((ts, what));
        let e = opcode::Timeout::new(ptr).build().user_data(Token::new(Op::Timer, key, 0).encode());
        self.push(e);
    }

    fn cancel(&mut self, t: Token) {
        let e = opcode::AsyncCancel::new(t.encode()).build().user_data(Token::new(Op::Cancel, 0, 0).encode());
        self.push(e);
    }

    /// Ask for input: POLL_ADD at baseline, RECV at fastpoll. Not while the outbox is
    /// over its cap (backpressure), after EOF, or while closing.
    fn arm_read(&mut self, key: usize) {
        let cap = self.cfg.outbox_cap;
        let level = self.level;
        let Some(c) = self.conns.get_mut(key) else { return };
        if c.closing || c.conn.read_eof || c.conn.close_after_flush || c.inflight & (IN_POLL | IN_RECV) != 0 {
            return;
        }
        if c.conn.owed_len() + (c.send_buf.len() - c.send_pos) >= cap {
            c.read_paused = true;
            return;
        }
        match level {
            FeatureLevel::Baseline => {
                c.inflight |= IN_POLL;
                let e = opcode::PollAdd::new(types::Fd(c.fd), (libc::POLLIN | libc::POLLRDHUP) as u32)
                    .build()
                    .user_data(Token::new(Op::Poll, key, c.generation).encode());
                self.push(e);
            }
            FeatureLevel::Fastpoll => self.submit_recv(key),
        }
    }

    fn submit_recv(&mut self, key: usize) {
        let size = self.cfg.recv_buf;
        let Some(c) = self.conns.get_mut(key) else { return };
        let mut buf = c.recv_buf.take().or_else(|| self.pool.pop()).unwrap_or_else(|| vec![0u8; size].into_boxed_slice());
        let (ptr, len) = (buf.as_mut_ptr(), buf.len() as u32);
        c.recv_buf = Some(buf); // kernel-owned from here until the RECV completion
        c.inflight |= IN_RECV;
        let e = opcode::Recv::new(types::Fd(c.fd), ptr, len).build().user_data(Token::new(Op::Recv, key, c.generation).encode());
        self.push(e);
    }

    /// Hand owed bytes to the kernel: one SEND in flight per connection keeps order.
    fn start_send(&mut self, key: usize) {
        let Some(c) = self.conns.get_mut(key) else { return };
        if c.closing || c.inflight & IN_SEND != 0 || c.conn.owed_len() == 0 {
            return;
        }
        let spare = std::mem::take(&mut c.spare);
        c.send_buf = c.conn.take_owed(spare);
        c.send_pos = 0;
        self.submit_send(key);
    }

    fn submit_send(&mut self, key: usize) {
        let Some(c) = self.conns.get_mut(key) else { return };
        let rest = &c.send_buf[c.send_pos..];
        let len = rest.len().min(MAX_SEND) as u32;
        let ptr = rest.as_ptr();
        c.inflight |= IN_SEND; // send_buf is kernel-owned until the SEND completion
        let e = opcode::Send::new(types::Fd(c.fd), ptr, len).build().user_data(Token::new(Op::Send, key, c.generation).encode());
        self.push(e);
    }

    // ---- completions ----

    fn on_accept_poll(&mut self, res: i32) {
        self.accept_inflight = None;
        if !self.accepting {
            return;
        }
        if res < 0 && errno(res) != libc::EINTR {
            self.stats.accept_errors += 1;
        }
        let t = Token::new(Op::Accept, 0, 0);
        self.accept_inflight = Some(t);
        let e = self.accept_sqe().user_data(t.encode());
        self.push(e);
    }

    fn on_accept(&mut self, res: i32) {
        self.accept_inflight = None;
        if res >= 0 {
            self.stats.accepted += 1;
            if !self.accepting {
                sys::close(res);
                self.stats.closed += 1;
                return;
            }
            self.add_conn(res);
        } else {
            match errno(res) {
                libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
                    // Out of descriptors or memory: back off instead of spinning; the
                    // backlog keeps the clients waiting.
                    self.stats.accept_errors += 1;
                    self.stats.accept_backoffs += 1;
                    self.arm_timer(ACCEPT_BACKOFF, Timer::AcceptBackoff);
                    return;
                }
                libc::ECANCELED | libc::EAGAIN | libc::EINTR => {}
                _ => self.stats.accept_errors += 1, // ECONNABORTED, EPROTO, ...
            }
        }
        self.arm_accept();
    }

    fn add_conn(&mut self, fd: RawFd) {
        let _ = sys::set_nodelay(fd);
        let generation = self.next_generation;
        self.next_generation = (self.next_generation + 1) & token::GEN_MASK;
        let key = self.conns.insert(UConn {
            fd,
            generation,
            conn: Conn::new(self.cfg.proto),
            recv_buf: None,
            send_buf: Vec::new(),
            send_pos: 0,
            spare: Vec::new(),
            inflight: 0,
            read_paused: false,
            closing: false,
        });
        self.arm_read(key);
    }


    fn on_poll(&mut self, t: Token, res: i32) {
        let key = t.key as usize;
        let Some(c) = slot(&mut self.conns, t) else { return };
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

    fn on_recv(&mut self, t: Token, res: i32) {
        let key = t.key as usize;
        let level = self.level;
        let Some(c) = slot(&mut self.conns, t) else { return };
        c.inflight &= !IN_RECV;
        // The kernel is done with the buffer.
        let buf = c.recv_buf.take();
        if res > 0 {
            if let Some(b) = &buf {
                c.conn.on_input(&b[..res as usize]);
            }
            self.stats.bytes_in += res as u64;
        } else if res == 0 {
            c.conn.read_eof = true;
        }
        let keep = level == FeatureLevel::Fastpoll && res > 0 && !c.closing;
        if let Some(b) = buf {
            if keep {
                c.recv_buf = Some(b);
            } else if self.pool.len() < POOL_MAX {
                self.pool.push(b);
            }
        }
        let c = &self.conns[key];
        if c.closing {
            self.maybe_finalize(key);
            return;
        }
        let benign = matches!(errno(res), libc::EINTR | libc::EAGAIN | libc::ENOBUFS)
            || (errno(res) == libc::ECANCELED && self.draining);
        if res < 0 && !benign {
            self.begin_close(key); // ECONNRESET, ECANCELED, ...
            return;
        }
        self.start_send(key);
        if self.conns.get(key).is_some_and(|c| c.conn.finished() && c.inflight & IN_SEND == 0) {
            self.begin_close(key);
            return;
        }
        self.arm_read(key);
    }

    fn on_send(&mut self, t: Token, res: i32) {
        let key = t.key as usize;
        let cap = self.cfg.outbox_cap;
        let Some(c) = slot(&mut self.conns, t) else { return };
        c.inflight &= !IN_SEND;
        if c.closing {
            self.maybe_finalize(key);
            return;
        }
        if res <= 0 {
            // EPIPE, ECONNRESET, ECANCELED; 0 for a non-empty send would loop forever.
            self.begin_close(key);
            return;
        }
        self.stats.bytes_out += res as u64;
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
        if c.read_paused && c.conn.owed_len() < cap {
            c.read_paused = false;
            self.arm_read(key);
        }
    }

    fn on_signal(&mut self, signals: &Signals, reporter: &Reporter) {
        signals.drain();
        if signals.take_snapshot_request() {
            self.stats.syscalls = SyscallCounts::this_thread();
            reporter.snapshot(&self.stats);
        }
        if signals.stop_requested() && !self.draining {
            self.begin_drain();
        }
        self.arm_signal();
    }

    fn on_timer(&mut self, key: usize) {
        let Some((_, what)) = self.timers.try_remove(key) else { return };
        match what {
            Timer::AcceptBackoff => self.arm_accept(),
            Timer::DrainDeadline => {
                self.stats.forced_closed += self.conns.len() as u64;
                let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
                for k in keys {
                    self.begin_close(k);
                    self.cancel_ops(k);
                }
                self.arm_timer(HARD_STOP_GRACE, Timer::HardStop);
            }
            Timer::HardStop => self.hard_stop = true,
        }
    }

    // ---- closing ----

    /// Stop accepting and reading; close what owes nothing, flush the rest, and set
    /// the drain deadline.
    fn begin_drain(&mut self) {
        self.draining = true;
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
        for (bit, op) in [(IN_POLL, Op::Poll), (IN_RECV, Op::Recv), (IN_SEND, Op::Send)] {
            if inflight & bit != 0 {
                self.cancel(Token::new(op, key, generation));
            }
        }
    }

    /// Close: shut the socket down so every pending op completes (closing the fd
    /// alone would not: the ring holds a reference), then close once none is left.
    fn begin_close(&mut self, key: usize) {
        let Some(c) = self.conns.get_mut(key) else { return };
        if c.closing {
            return;
        }
        c.closing = true;
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
        sys::close(c.fd);
        self.stats.closed += 1;
        if let Some(b) = c.recv_buf
            && self.pool.len() < POOL_MAX {
                self.pool.push(b);
            }
    }
}
