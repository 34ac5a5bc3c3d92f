//! One load worker: a thread driving its share of the connections with edge-triggered
//! epoll. No allocation per message: one send and one receive scratch buffer per thread,
//! send times in a fixed ring of `pipeline` slots per connection, payload regenerated
//! (not stored) for both sending and verifying.
//!
//! Time is nanoseconds since the run's base instant (warm-up starts at 0). The measured
//! window is `[warmup, end)`: in closed loop by completion time, in open loop by
//! intended send time (a message intended inside the window is recorded whenever its
//! reply comes, up to `hard_stop`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::payload;
use super::schedule::Schedule;
use super::sys::{self, EV_ERR, EV_IN, EV_OUT, Epoll};
use crate::report::model::LoadErrors;

/// Read-only facts every worker shares.
#[derive(Debug)]
pub(crate) struct Plan {
    pub addr: SocketAddr,
    pub size: usize,
    pub pipeline: u32,
    pub schedule: Option<Schedule>,
    pub warmup_ns: u64,
    pub end_ns: u64,
    /// Open loop: nothing runs past this (end + timeout).
    pub hard_stop_ns: u64,
    pub timeout_ns: u64,
    pub interval_ns: u64,
    /// Total time allowed for the connect phase.
    pub connect_timeout: Duration,
}

/// Counters the coordinator reads for the progress line.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Set by the coordinator to end every worker early.
    pub stop: AtomicBool,
    pub warmup_done: AtomicU64,
    pub errors: [AtomicU64; 5],
}

impl Shared {
    pub fn errors(&self) -> LoadErrors {
        let e = |i: usize| self.errors[i].load(Ordering::Relaxed);
        LoadErrors { mismatch: e(0), reset: e(1), timeout: e(2), connect: e(3), other: e(4) }
    }
}

#[derive(Debug, Clone, Copy)]
enum ErrKind {
    Mismatch = 0,
    Reset = 1,
    Timeout = 2,
    Connect = 3,
    Other = 4,
}

/// What a worker tells the coordinator while it runs.
pub(crate) enum Report {
    /// Connect phase over. `Err`: the worker cannot run at all (pinning, epoll).
    Ready { connected: u32, first_connect_error: Option<io::Error>, fatal: Option<String> },
    /// A finished interval `k` (counted from the start of the measured window).
    Interval { k: u64, latency: Histogram<u64>, uncorrected: Option<Histogram<u64>> },
}

/// What a worker hands back when it ends.
#[derive(Debug, Default)]
pub(crate) struct WorkerResult {
    pub messages: u64,
    pub warmup_messages: u64,
    pub errors: LoadErrors,
    /// This thread's CPU time from the start of the window to its end.
    pub cpu_in_window: Duration,
    /// When the worker stopped, ns since base.
    pub stopped_ns: u64,
    /// Open loop: messages intended in the window that never got a verified reply.
    pub missing: u64,
    /// Open loop: messages intended in the window (until the stop, if stopped early).
    pub scheduled: u64,
}

pub(crate) fn new_histogram() -> Histogram<u64> {
    // Auto-resizing, 3 significant digits: memory follows the largest value recorded.
    Histogram::new(3).expect("3 significant digits is valid")
}

struct Conn {
    stream: Option<TcpStream>,
    fd: RawFd,
    id: u32,
    /// Write cursor: message `tx_seq`, `tx_off` bytes of it already written.
    tx_seq: u64,
    tx_off: usize,
    /// Read cursor.
    rx_seq: u64,
    rx_off: usize,
    /// A byte of message `rx_seq` differed from what was sent.
    rx_bad: bool,
    writable: bool,
    in_heap: bool,
    /// Open loop: the first message not to send (intended at or after the window's end).
    last_seq: u64,
    /// Send time (ns) of message `seq` at `seq % pipeline`.
    sent_at: Box<[u64]>,
}

impl Conn {
    fn started(&self) -> u64 {
        self.tx_seq + u64::from(self.tx_off > 0)
    }
    fn outstanding(&self) -> u64 {
        self.started() - self.rx_seq
    }
    fn live(&self) -> bool {
        self.stream.is_some()
    }
}

enum Flush {
    /// Socket buffer full: wait for EPOLLOUT.
    Blocked,
    /// Nothing may be sent now (slots or schedule).
    Idle,
    Failed(ErrKind),
}

struct Worker<'a> {
    plan: &'a Plan,
    shared: &'a Shared,
    base: Instant,
    epoll: Epoll,
    conns: Vec<Conn>,
    tx_buf: Vec<u8>,
    rx_buf: Vec<u8>,
    heap: BinaryHeap<Reverse<(u64, u32)>>,
    /// Open loop: live connections with messages still to complete. Closed: live ones.
    remaining: usize,
    res: WorkerResult,
    cur_k: u64,
    latency: Histogram<u64>,
    uncorrected: Option<Histogram<u64>>,
    out: Sender<Report>,
}

const SCRATCH: usize = 64 * 1024;
const EVENTS: usize = 1024;
const SCAN_EVERY_NS: u64 = 50_000_000;
const MAX_WAIT_NS: u64 = 20_000_000;

/// Run one worker to its end. Sends `Ready` once connected, waits for the base instant
/// (None: abort), then drives its connections.
pub(crate) fn worker(
    conn_ids: Vec<u32>,
    cpu: Option<usize>,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    out: Sender<Report>,
    start: Receiver<Option<Instant>>,
) -> WorkerResult {
    let fatal = |out: &Sender<Report>, msg: String| {
        let _ = out.send(Report::Ready { connected: 0, first_connect_error: None, fatal: Some(msg) });
    };
    if let Some(cpu) = cpu
        && let Err(e) = sys::pin_current_thread(cpu)
    {
        let why = if e.raw_os_error() == Some(libc::EINVAL) { "no such CPU, or not allowed to this process".to_string() } else { e.to_string() };
        fatal(&out, format!("--pin: cannot pin load thread to CPU {cpu}: {why}"));
        return WorkerResult::default();
    }
    sys::tighten_timer_slack();
    let epoll = match Epoll::new() {
        Ok(e) => e,
        Err(e) => {
            fatal(&out, format!("epoll_create1: {e}"));
            return WorkerResult::default();
        }
    };

    // Connect phase, bounded as a whole by the connect timeout.
    let mut res = WorkerResult::default();
    let mut first_err = None;
    let mut conns = Vec::with_capacity(conn_ids.len());
    let deadline = Instant::now() + plan.connect_timeout;
    for &id in &conn_ids {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = if left.is_zero() {
            Err(io::Error::new(io::ErrorKind::TimedOut, "connect phase timed out"))
        } else {
            TcpStream::connect_timeout(&plan.addr, left).and_then(|s| {
                s.set_nodelay(true)?;
                s.set_nonblocking(true)?;
                Ok(s)
            })
        };
        match r {
            Ok(s) => {
                let fd = s.as_raw_fd();
                if let Err(e) = epoll.add(fd, conns.len() as u64) {
                    fatal(&out, format!("epoll_ctl: {e}"));
                    return WorkerResult::default();
                }
                conns.push(Conn {
                    stream: Some(s),
                    fd,
                    id,
                    tx_seq: 0,
                    tx_off: 0,
                    rx_seq: 0,
                    rx_off: 0,
                    rx_bad: false,
                    writable: true,
                    in_heap: false,
                    last_seq: plan.schedule.map_or(u64::MAX, |s| s.count_before(id, plan.end_ns)),
                    sent_at: vec![0; plan.pipeline as usize].into_boxed_slice(),
                });
            }
            Err(e) => {
                res.errors.connect += 1;
                shared.errors[ErrKind::Connect as usize].fetch_add(1, Ordering::Relaxed);
                first_err.get_or_insert(e);
            }
        }
    }
    let connected = conns.len() as u32;
    if out.send(Report::Ready { connected, first_connect_error: first_err, fatal: None }).is_err() {
        return res;
    }
    let base = match start.recv() {
        Ok(Some(b)) => b,
        _ => return res,
    };
    let mut w = Worker {
        plan: &plan,
        shared: &shared,
        base,
        epoll,
        remaining: conns.len(),
        conns,
        tx_buf: vec![0; SCRATCH.max(plan.size.min(1 << 20))],
        rx_buf: vec![0; SCRATCH],
        heap: BinaryHeap::with_capacity(conn_ids.len()),
        res,
        cur_k: 0,
        latency: new_histogram(),
        uncorrected: plan.schedule.map(|_| new_histogram()),
        out,
    };
    w.run();
    w.res
}

impl Worker<'_> {
    #[inline]
    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn run(&mut self) {
        let plan = self.plan;
        let open = plan.schedule.is_some();
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        let mut cpu_start: Option<Duration> = None;
        let mut cpu_end: Option<Duration> = None;
        let mut warm_published = 0u64;

        let now = self.now();
        if open {
            for ci in 0..self.conns.len() {
                if self.conns[ci].last_seq == 0 {
                    self.remaining -= 1;
                } else {
                    self.schedule_next(ci);
                }
            }
        } else {
            for ci in 0..self.conns.len() {
                self.flush_and_handle(ci, now);
            }
        }

        let mut next_scan = now + SCAN_EVERY_NS;
        loop {
            let now = self.now();
            if cpu_start.is_none() && now >= plan.warmup_ns {
                cpu_start = Some(sys::thread_cpu_time());
            }
            if cpu_end.is_none() && now >= plan.end_ns {
                cpu_end = Some(sys::thread_cpu_time());
            }
            let stop = if open { now >= plan.hard_stop_ns } else { now >= plan.end_ns };
            if stop || self.remaining == 0 || self.shared.stop.load(Ordering::Relaxed) {
                break;
            }
            // Sends that are due.
            while let Some(&Reverse((t, ci))) = self.heap.peek() {
                if t > now {
                    break;
                }
                self.heap.pop();
                let ci = ci as usize;
                self.conns[ci].in_heap = false;
                if self.conns[ci].live() {
                    self.flush_and_handle(ci, now);
                }
            }
            self.roll_interval(now);
            if now >= next_scan {
                self.scan_timeouts(now);
                next_scan = now + SCAN_EVERY_NS;
            }
            let warm = self.res.warmup_messages;
            if warm != warm_published {
                self.shared.warmup_done.fetch_add(warm - warm_published, Ordering::Relaxed);
                warm_published = warm;
            }

            // Sleep until the next thing to do, at most MAX_WAIT_NS.
            let mut wake = next_scan.min(if open { plan.hard_stop_ns } else { plan.end_ns });
            if now >= plan.warmup_ns {
                wake = wake.min(plan.warmup_ns + (self.cur_k + 1) * plan.interval_ns);
            } else {
                wake = wake.min(plan.warmup_ns);
            }
            if let Some(&Reverse((t, _))) = self.heap.peek() {
                wake = wake.min(t);
            }
            let wait = wake.saturating_sub(now).min(MAX_WAIT_NS);
            let n = match self.epoll.wait(&mut events, Duration::from_nanos(wait)) {
                Ok(n) => n,
                Err(_) => {
                    self.res.errors.other += 1;
                    self.shared.errors[ErrKind::Other as usize].fetch_add(1, Ordering::Relaxed);
                    break;
                }
            };
            let now = self.now();
            for ev in &events[..n] {
                let ci = ev.u64 as usize;
                let flags = ev.events;
                if !self.conns[ci].live() {
                    continue;
                }
                if flags & (EV_IN | EV_ERR) != 0 {
                    if let Err(kind) = self.on_readable(ci, now) {
                        self.kill(ci, kind, 1);
                        continue;
                    }
                    if !self.conns[ci].live() {
                        continue;
                    }
                }
                if flags & EV_OUT != 0 {
                    self.conns[ci].writable = true;
                }
                self.flush_and_handle(ci, now);
            }
        }

        let now = self.now();
        self.res.stopped_ns = now;
        let cpu_now = sys::thread_cpu_time();
        if let Some(s) = cpu_start {
            self.res.cpu_in_window = cpu_end.unwrap_or(cpu_now).saturating_sub(s);
        }
        if warm_published != self.res.warmup_messages {
            self.shared.warmup_done.fetch_add(self.res.warmup_messages - warm_published, Ordering::Relaxed);
        }
        if let Some(s) = plan.schedule {
            // Messages intended in the window that never completed (stall at the end, dead
            // connections, or a server too slow for the rate).
            // When stopped early, only what was intended before the stop is owed.
            let until = plan.end_ns.min(now);
            for c in &self.conns {
                let first = s.count_before(c.id, plan.warmup_ns);
                let last = c.last_seq.min(s.count_before(c.id, until)).max(first);
                let done = c.rx_seq.clamp(first, last);
                self.res.missing += last - done;
                self.res.scheduled += last - first;
            }
        }
        self.send_interval();
    }

    /// Send what may be sent on connection `ci`, then handle failure or scheduling.
    fn flush_and_handle(&mut self, ci: usize, now: u64) {
        match self.flush(ci, now) {
            Flush::Failed(kind) => self.kill(ci, kind, 1),
            Flush::Blocked => {}
            Flush::Idle => self.schedule_next(ci),
        }
    }

    /// Open loop: if connection `ci` has a free slot and a message still to send, wake
    /// at its intended time.
    fn schedule_next(&mut self, ci: usize) {
        let Some(s) = self.plan.schedule else { return };
        let c = &mut self.conns[ci];
        if c.in_heap || !c.live() || c.tx_off > 0 || c.tx_seq >= c.last_seq || c.outstanding() >= u64::from(self.plan.pipeline) {
            return;
        }
        c.in_heap = true;
        self.heap.push(Reverse((s.intended(c.id, c.tx_seq), ci as u32)));
    }

    /// The first message that may not be started now.
    fn start_limit(&self, c: &Conn, now: u64) -> u64 {
        let slots = c.rx_seq + u64::from(self.plan.pipeline);
        match self.plan.schedule {
            None if now >= self.plan.end_ns => c.tx_seq,
            None => slots,
            Some(s) => {
                let mut lim = slots.min(c.last_seq);
                // Catch up at once on every message whose time has come (bounded by slots).
                if lim > c.tx_seq && s.intended(c.id, lim - 1) > now {
                    lim = lim.min(s.count_before(c.id, now.saturating_add(1)));
                }
                lim
            }
        }
    }

    fn flush(&mut self, ci: usize, now: u64) -> Flush {
        let size = self.plan.size;
        let p = u64::from(self.plan.pipeline);
        // Bounded: each pass writes bytes or returns; bytes allowed are at most
        // pipeline x size beyond what was already received.
        loop {
            let c = &self.conns[ci];
            if !c.writable {
                return Flush::Blocked;
            }
            let limit = self.start_limit(c, now);
            let (mut seq, mut off, id) = (c.tx_seq, c.tx_off, c.id);
            let mut len = 0;
            let buf = &mut self.tx_buf;
            while len < buf.len() {
                if off == 0 && seq >= limit {
                    break;
                }
                let n = (size - off).min(buf.len() - len);
                payload::fill(id, seq, off, &mut buf[len..len + n]);
                len += n;
                off += n;
                if off == size {
                    seq += 1;
                    off = 0;
                }
            }
            if len == 0 {
                return Flush::Idle;
            }
            let c = &mut self.conns[ci];
            match sys::send(c.fd, &self.tx_buf[..len]) {
                Ok(n) => {
                    if n < len {
                        // Short write: the send buffer is full; EPOLLOUT will say when not.
                        c.writable = false;
                    }
                    let mut rem = n;
                    while rem > 0 {
                        if c.tx_off == 0 {
                            c.sent_at[(c.tx_seq % p) as usize] = now;
                        }
                        let k = (size - c.tx_off).min(rem);
                        c.tx_off += k;
                        rem -= k;
                        if c.tx_off == size {
                            c.tx_seq += 1;
                            c.tx_off = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    c.writable = false;
                    return Flush::Blocked;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Flush::Failed(classify(&e)),
            }
        }
    }

    /// Read until the socket is drained (edge-triggered). A short read means the receive
    /// queue was empty at that moment, and data arriving later raises a new edge, so no
    /// extra recv is spent to see EAGAIN. Bounded: the server can only owe what was sent;
    /// anything beyond is a mismatch that ends the connection.
    fn on_readable(&mut self, ci: usize, now: u64) -> Result<(), ErrKind> {
        loop {
            let fd = self.conns[ci].fd;
            match sys::recv(fd, &mut self.rx_buf) {
                Ok(0) => return Err(ErrKind::Reset),
                Ok(n) => {
                    self.on_bytes(ci, n, now)?;
                    if n < self.rx_buf.len() {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(classify(&e)),
            }
        }
    }

    fn on_bytes(&mut self, ci: usize, n: usize, now: u64) -> Result<(), ErrKind> {
        let size = self.plan.size;
        let sz = size as u64;
        {
            let c = &self.conns[ci];
            let sent = c.tx_seq * sz + c.tx_off as u64;
            let got = c.rx_seq * sz + c.rx_off as u64;
            if got + n as u64 > sent {
                // More bytes than were sent: not an echo.
                return Err(ErrKind::Mismatch);
            }
        }
        let mut i = 0;
        while i < n {
            let c = &mut self.conns[ci];
            let k = (size - c.rx_off).min(n - i);
            if !c.rx_bad && !payload::verify(c.id, c.rx_seq, c.rx_off, &self.rx_buf[i..i + k]) {
                c.rx_bad = true;
            }
            c.rx_off += k;
            i += k;
            if c.rx_off == size {
                let (seq, bad) = (c.rx_seq, c.rx_bad);
                c.rx_seq += 1;
                c.rx_off = 0;
                c.rx_bad = false;
                self.complete(ci, seq, bad, now);
            }
        }
        Ok(())
    }

    fn complete(&mut self, ci: usize, seq: u64, bad: bool, now: u64) {
        let plan = self.plan;
        let c = &self.conns[ci];
        let sent = c.sent_at[(seq % u64::from(plan.pipeline)) as usize];
        let (id, last) = (c.id, c.last_seq);
        if bad {
            self.count(ErrKind::Mismatch, 1);
        } else {
            match plan.schedule {
                None => {
                    if now < plan.warmup_ns {
                        self.res.warmup_messages += 1;
                    } else if now < plan.end_ns {
                        self.record(now, now - sent, None);
                    }
                }
                Some(s) => {
                    let intended = s.intended(id, seq);
                    if intended < plan.warmup_ns {
                        self.res.warmup_messages += 1;
                    } else {
                        self.record(now, now.saturating_sub(intended), Some(now.saturating_sub(sent)));
                    }
                }
            }
        }
        if plan.schedule.is_some() && seq + 1 == last {
            self.remaining -= 1;
        }
    }

    fn record(&mut self, now: u64, latency: u64, uncorrected: Option<u64>) {
        self.roll_interval(now);
        self.res.messages += 1;
        record(&mut self.latency, latency);
        if let (Some(h), Some(v)) = (self.uncorrected.as_mut(), uncorrected) {
            record(h, v);
        }
    }

    /// Close the current interval if `now` is past its end.
    fn roll_interval(&mut self, now: u64) {
        if now < self.plan.warmup_ns {
            return;
        }
        let k = (now - self.plan.warmup_ns) / self.plan.interval_ns;
        if k > self.cur_k {
            self.send_interval();
            self.cur_k = k;
        }
    }

    fn send_interval(&mut self) {
        if self.latency.is_empty() {
            return;
        }
        let latency = std::mem::replace(&mut self.latency, new_histogram());
        let uncorrected = self.uncorrected.as_mut().map(|h| std::mem::replace(h, new_histogram()));
        let _ = self.out.send(Report::Interval { k: self.cur_k, latency, uncorrected });
    }

    /// A connection with a message unanswered for longer than the timeout is dropped; each
    /// of its outstanding messages counts as a timeout.
    fn scan_timeouts(&mut self, now: u64) {
        let p = u64::from(self.plan.pipeline);
        for ci in 0..self.conns.len() {
            let c = &self.conns[ci];
            if !c.live() || c.outstanding() == 0 {
                continue;
            }
            let oldest = c.sent_at[(c.rx_seq % p) as usize];
            if now.saturating_sub(oldest) > self.plan.timeout_ns {
                let n = c.outstanding();
                self.kill(ci, ErrKind::Timeout, n);
            }
        }
    }

    fn count(&mut self, kind: ErrKind, n: u64) {
        let e = &mut self.res.errors;
        match kind {
            ErrKind::Mismatch => e.mismatch += n,
            ErrKind::Reset => e.reset += n,
            ErrKind::Timeout => e.timeout += n,
            ErrKind::Connect => e.connect += n,
            ErrKind::Other => e.other += n,
        }
        self.shared.errors[kind as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Count the error and drop the connection (never reconnected).
    fn kill(&mut self, ci: usize, kind: ErrKind, n: u64) {
        self.count(kind, n);
        let c = &mut self.conns[ci];
        if let Some(s) = c.stream.take() {
            let _ = self.epoll.delete(c.fd);
            drop(s);
            let finished = self.plan.schedule.is_some() && c.rx_seq >= c.last_seq;
            if !finished {
                self.remaining -= 1;
            }
        }
    }
}

/// Record `v`, growing the histogram when needed (rare: a new largest value).
#[inline]
fn record(h: &mut Histogram<u64>, v: u64) {
    if h.record(v).is_err() {
        h.saturating_record(v);
    }
}

fn classify(e: &io::Error) -> ErrKind {
    match e.raw_os_error() {
        Some(libc::ECONNRESET | libc::EPIPE | libc::ECONNABORTED | libc::ENOTCONN) => ErrKind::Reset,
        Some(libc::ETIMEDOUT) => ErrKind::Timeout,
        _ => ErrKind::Other,
    }
}
