//! One load worker: a thread driving its share of the connections. The protocol — what
//! may be sent when, verification of every echoed byte, latency recording, schedules,
//! intervals, timeouts, error counts — lives once in [`Core`]; a [`Driver`] only moves
//! bytes: [`super::epoll`] with non-blocking calls on readiness, [`super::uring`] with
//! SEND/RECV submitted to an io_uring. [`drive`] is the loop both run under.
//!
//! No allocation per message: send times in a fixed ring of `pipeline` slots per
//! connection, payload regenerated (not stored) for both sending and verifying.
//!
//! Time is nanoseconds since the run's base instant (warm-up starts at 0). The measured
//! window is `[warmup, end)`: in closed loop by completion time, in open loop by
//! intended send time (a message intended inside the window is recorded whenever its
//! reply comes, up to `hard_stop`).

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::collections::BinaryHeap;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::payload;
use super::schedule::Schedule;
use super::sys;
use super::{Driver as DriverKind, epoll, uring};
use crate::results::schema::LoadErrors;

/// Read-only facts every worker shares.
#[derive(Debug)]
pub(crate) struct Plan {
    pub addr: SocketAddr,
    /// Bytes of one request on the wire (http: head and body).
    pub size: usize,
    /// What is sent and what replies must be.
    pub wire: Wire,
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
    /// The IO driver every worker runs (decided once, before the workers start).
    pub driver: DriverKind,
}

/// The protocol of a run: how a request is laid out and how its reply is checked.
#[derive(Debug)]
pub(crate) enum Wire {
    /// The reply is the request.
    Echo,
    /// The reply is the request with ASCII letters upper-cased.
    Upper,
    /// HTTP/1.1: each request is `head` then `body` payload bytes; each reply is a status
    /// line, headers with a Content-Length, and a body: `Hello, World!` when `body` is
    /// 0 (`GET /`), else the payload sent (`POST /echo`).
    Http { head: Box<[u8]>, body: usize },
}

impl Wire {
    pub fn new(proto: crate::cli::LoadProto, size: usize) -> Wire {
        use crate::cli::LoadProto;
        match proto {
            LoadProto::Echo => Wire::Echo,
            LoadProto::Upper => Wire::Upper,
            LoadProto::Http if size == 0 => Wire::Http {
                head: Box::from(&b"GET / HTTP/1.1\r\nHost: ringmux\r\n\r\n"[..]),
                body: 0,
            },
            LoadProto::Http => Wire::Http {
                head: format!(
                    "POST /echo HTTP/1.1\r\nHost: ringmux\r\nContent-Length: {size}\r\n\r\n"
                )
                .into_bytes()
                .into_boxed_slice(),
                body: size,
            },
        }
    }

    /// Bytes of one request on the wire.
    pub fn request_len(&self, size: usize) -> usize {
        match self {
            Wire::Echo | Wire::Upper => size,
            Wire::Http { head, body } => head.len() + body,
        }
    }
}

/// The body `GET /` answers.
const HELLO: &[u8] = b"Hello, World!";
/// The longest HTTP reply head accepted.
const MAX_REPLY_HEAD: usize = 8 * 1024;

/// Counters the coordinator reads for the progress line.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Set by the coordinator to end every worker early.
    pub stop: AtomicBool,
    pub warmup_done: AtomicU64,
    pub errors: [AtomicU64; 5],
    /// HTTP replies outside 2xx, by status.
    pub status: Mutex<BTreeMap<u16, u64>>,
}

impl Shared {
    pub fn errors(&self) -> LoadErrors {
        let e = |i: usize| self.errors[i].load(Ordering::Relaxed);
        let status = self.status.lock().map(|m| m.clone()).unwrap_or_default();
        LoadErrors {
            mismatch: e(0),
            reset: e(1),
            timeout: e(2),
            connect: e(3),
            other: e(4),
            status,
        }
    }
}

/// How a message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Verified,
    Mismatch,
    /// HTTP: a reply with this status outside 2xx.
    Status(u16),
}

/// HTTP reply parsing state of one connection.
#[derive(Debug, Default)]
struct HttpRx {
    /// Bytes of the reply head so far (until the blank line).
    head: Vec<u8>,
    /// In the body: bytes still to come.
    body_left: Option<u64>,
    body_off: usize,
    status: u16,
    bad: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrKind {
    Mismatch = 0,
    Reset = 1,
    Timeout = 2,
    Connect = 3,
    Other = 4,
}

/// What a worker tells the coordinator while it runs.
pub(crate) enum Report {
    /// Connect phase over. `fatal`: the worker cannot run at all (pinning, epoll, ring).
    Ready {
        connected: u32,
        first_connect_error: Option<io::Error>,
        fatal: Option<String>,
    },
    /// A finished interval `k` (counted from the start of the measured window).
    Interval {
        k: u64,
        latency: Histogram<u64>,
        uncorrected: Option<Histogram<u64>>,
    },
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
    /// Completion time of the last message recorded in the window, ns since base (0: none).
    pub last_reply_ns: u64,
    /// Open loop: the most a message intended in the window was sent after its intended
    /// time (one never sent: how late it was when the run stopped), ns.
    pub max_lag_ns: u64,
    /// Connects refused by the server (ECONNREFUSED), also counted in `errors.connect`.
    pub connect_refused: u64,
}

pub(crate) fn new_histogram() -> Histogram<u64> {
    // Auto-resizing, 3 significant digits: memory follows the largest value recorded.
    Histogram::new(3).expect("3 significant digits is valid")
}

/// The IO side of a worker. `ci` is the connection's index in the worker (its streams
/// are handed over in that order); a connection is never reconnected, so an index is
/// never reused within a run. Every method is called from the worker's thread only.
pub(crate) trait Driver {
    /// Send what connection `ci` may send now ([`Core::fill`]), or, when nothing may,
    /// tell the core ([`Core::idle`]). A send error kills the connection.
    fn send(&mut self, core: &mut Core, ci: usize, now: u64);
    /// Wait up to `wait_ns` for IO and handle what arrived: received bytes go to
    /// [`Core::on_bytes`], freed slots to [`Driver::send`]. An error ends the run.
    fn poll(&mut self, core: &mut Core, wait_ns: u64) -> io::Result<()>;
    /// The core dropped connection `ci`: close it (once the kernel is done with it).
    fn close(&mut self, ci: usize);
    /// The run is over: close every connection.
    fn finish(&mut self);
}

/// Protocol state of one connection.
struct Conn {
    id: u32,
    live: bool,
    /// Write cursor: message `tx_seq`, `tx_off` bytes of it already handed to the kernel.
    tx_seq: u64,
    tx_off: usize,
    /// Read cursor.
    rx_seq: u64,
    rx_off: usize,
    /// A byte of message `rx_seq` differed from what was sent.
    rx_bad: bool,
    in_heap: bool,
    /// Open loop: the first message not to send (intended at or after the window's end).
    last_seq: u64,
    /// Send time (ns) of message `seq` at `seq % pipeline`.
    sent_at: Box<[u64]>,
    /// HTTP only.
    http: Option<Box<HttpRx>>,
}

impl Conn {
    fn started(&self) -> u64 {
        self.tx_seq + u64::from(self.tx_off > 0)
    }
    fn outstanding(&self) -> u64 {
        self.started() - self.rx_seq
    }
}

/// Everything of a worker that is not IO: per-connection protocol state, the open-loop
/// send heap, histograms and counters.
pub(crate) struct Core<'a> {
    plan: &'a Plan,
    shared: &'a Shared,
    base: Instant,
    conns: Vec<Conn>,
    heap: BinaryHeap<Reverse<(u64, u32)>>,
    /// Open loop: live connections with messages still to complete. Closed: live ones.
    remaining: usize,
    res: WorkerResult,
    cur_k: u64,
    latency: Histogram<u64>,
    uncorrected: Option<Histogram<u64>>,
    out: Sender<Report>,
    /// Connections killed since the driver last closed them.
    dead: Vec<usize>,
}

const SCAN_EVERY_NS: u64 = 50_000_000;
const MAX_WAIT_NS: u64 = 20_000_000;

/// Run one worker to its end. Sends `Ready` once connected, waits for the base instant
/// (None: abort), then drives its connections with the plan's driver.
pub(crate) fn worker(
    conn_ids: Vec<u32>,
    cpu: Option<usize>,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    out: Sender<Report>,
    start: Receiver<Option<Instant>>,
) -> WorkerResult {
    let fatal = |out: &Sender<Report>, msg: String| {
        let _ = out.send(Report::Ready {
            connected: 0,
            first_connect_error: None,
            fatal: Some(msg),
        });
    };
    if let Some(cpu) = cpu
        && let Err(e) = sys::pin_current_thread(cpu)
    {
        let why = if e.raw_os_error() == Some(libc::EINVAL) {
            "no such CPU, or not allowed to this process".to_string()
        } else {
            e.to_string()
        };
        fatal(
            &out,
            format!("--pin: cannot pin load thread to CPU {cpu}: {why}"),
        );
        return WorkerResult::default();
    }
    sys::tighten_timer_slack();

    // Connect phase, bounded as a whole by the connect timeout. Sockets stay blocking
    // here; the epoll driver makes them non-blocking, io_uring polls them as they are.
    let mut res = WorkerResult::default();
    let mut first_err = None;
    let mut streams = Vec::with_capacity(conn_ids.len());
    let mut ids = Vec::with_capacity(conn_ids.len());
    let deadline = Instant::now() + plan.connect_timeout;
    for &id in &conn_ids {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = if left.is_zero() {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connect phase timed out",
            ))
        } else {
            TcpStream::connect_timeout(&plan.addr, left).and_then(|s| {
                s.set_nodelay(true)?;
                Ok(s)
            })
        };
        match r {
            Ok(s) => {
                streams.push(s);
                ids.push(id);
            }
            Err(e) => {
                res.errors.connect += 1;
                if e.raw_os_error() == Some(libc::ECONNREFUSED) {
                    res.connect_refused += 1;
                }
                shared.errors[ErrKind::Connect as usize].fetch_add(1, Ordering::Relaxed);
                first_err.get_or_insert(e);
            }
        }
    }
    // The IO side is set up before `Ready`, so a failure is reported as fatal.
    let go = Go {
        plan: &plan,
        shared: &shared,
        ids,
        res,
        first_err,
        out,
        start,
    };
    match plan.driver {
        DriverKind::Epoll => go.run(epoll::EpollDriver::new(streams, plan.size)),
        DriverKind::Uring => go.run(uring::UringDriver::new(streams, plan.size, plan.pipeline)),
    }
}

/// A connected worker, ready to report and run once its driver is set up.
struct Go<'a> {
    plan: &'a Plan,
    shared: &'a Shared,
    ids: Vec<u32>,
    res: WorkerResult,
    first_err: Option<io::Error>,
    out: Sender<Report>,
    start: Receiver<Option<Instant>>,
}

impl Go<'_> {
    fn run<D: Driver>(self, io: Result<D, String>) -> WorkerResult {
        let mut io = match io {
            Ok(io) => io,
            Err(e) => {
                let _ = self.out.send(Report::Ready {
                    connected: 0,
                    first_connect_error: None,
                    fatal: Some(e),
                });
                return WorkerResult::default();
            }
        };
        let connected = self.ids.len() as u32;
        if self
            .out
            .send(Report::Ready {
                connected,
                first_connect_error: self.first_err,
                fatal: None,
            })
            .is_err()
        {
            return self.res;
        }
        let base = match self.start.recv() {
            Ok(Some(b)) => b,
            _ => return self.res,
        };
        let mut core = Core::new(self.plan, self.shared, base, &self.ids, self.res, self.out);
        drive(&mut core, &mut io);
        core.res
    }
}

/// The worker's loop, the same for every driver: due sends, interval hand-over,
/// timeouts, then one wait for IO (bounded by the next thing to do and `MAX_WAIT_NS`).
pub(crate) fn drive<D: Driver>(core: &mut Core, io: &mut D) {
    let plan = core.plan;
    let open = plan.schedule.is_some();
    let mut cpu_start: Option<Duration> = None;
    let mut cpu_end: Option<Duration> = None;
    let mut warm_published = 0u64;

    let now = core.now();
    if open {
        for ci in 0..core.conns.len() {
            if core.conns[ci].last_seq == 0 {
                core.remaining -= 1;
            } else {
                core.idle(ci);
            }
        }
    } else {
        for ci in 0..core.conns.len() {
            io.send(core, ci, now);
        }
    }
    core.close_dead(io);

    let mut next_scan = now + SCAN_EVERY_NS;
    loop {
        let now = core.now();
        if cpu_start.is_none() && now >= plan.warmup_ns {
            cpu_start = Some(sys::thread_cpu_time());
        }
        if cpu_end.is_none() && now >= plan.end_ns {
            cpu_end = Some(sys::thread_cpu_time());
        }
        let stop = if open {
            now >= plan.hard_stop_ns
        } else {
            now >= plan.end_ns
        };
        if stop || core.remaining == 0 || core.shared.stop.load(Ordering::Relaxed) {
            break;
        }
        // Sends that are due.
        while let Some(&Reverse((t, ci))) = core.heap.peek() {
            if t > now {
                break;
            }
            core.heap.pop();
            let ci = ci as usize;
            core.conns[ci].in_heap = false;
            if core.conns[ci].live {
                io.send(core, ci, now);
            }
        }
        core.roll_interval(now);
        if now >= next_scan {
            core.scan_timeouts(now);
            next_scan = now + SCAN_EVERY_NS;
        }
        core.close_dead(io);
        let warm = core.res.warmup_messages;
        if warm != warm_published {
            core.shared
                .warmup_done
                .fetch_add(warm - warm_published, Ordering::Relaxed);
            warm_published = warm;
        }

        // Sleep until the next thing to do, at most MAX_WAIT_NS.
        let mut wake = next_scan.min(if open { plan.hard_stop_ns } else { plan.end_ns });
        if let Some(t) = core.next_roll(now) {
            wake = wake.min(t);
        }
        if let Some(&Reverse((t, _))) = core.heap.peek() {
            wake = wake.min(t);
        }
        let wait = wake.saturating_sub(now).min(MAX_WAIT_NS);
        let polled = io.poll(core, wait);
        core.close_dead(io);
        if polled.is_err() {
            core.count(ErrKind::Other, 1);
            break;
        }
    }

    let now = core.now();
    core.res.stopped_ns = now;
    let cpu_now = sys::thread_cpu_time();
    if let Some(s) = cpu_start {
        core.res.cpu_in_window = cpu_end.unwrap_or(cpu_now).saturating_sub(s);
    }
    if warm_published != core.res.warmup_messages {
        core.shared
            .warmup_done
            .fetch_add(core.res.warmup_messages - warm_published, Ordering::Relaxed);
    }
    core.count_missing(now);
    io.finish();
    core.send_interval();
}

impl<'a> Core<'a> {
    fn new(
        plan: &'a Plan,
        shared: &'a Shared,
        base: Instant,
        ids: &[u32],
        res: WorkerResult,
        out: Sender<Report>,
    ) -> Core<'a> {
        let conns: Vec<Conn> = ids
            .iter()
            .map(|&id| Conn {
                id,
                live: true,
                tx_seq: 0,
                tx_off: 0,
                rx_seq: 0,
                rx_off: 0,
                rx_bad: false,
                in_heap: false,
                last_seq: plan
                    .schedule
                    .map_or(u64::MAX, |s| s.count_before(id, plan.end_ns)),
                sent_at: vec![0; plan.pipeline as usize].into_boxed_slice(),
                http: matches!(plan.wire, Wire::Http { .. }).then(Box::default),
            })
            .collect();
        Core {
            plan,
            shared,
            base,
            remaining: conns.len(),
            heap: BinaryHeap::with_capacity(conns.len()),
            conns,
            res,
            cur_k: 0,
            latency: new_histogram(),
            uncorrected: plan.schedule.map(|_| new_histogram()),
            out,
            dead: Vec::new(),
        }
    }

    #[inline]
    pub fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    #[inline]
    pub fn live(&self, ci: usize) -> bool {
        self.conns[ci].live
    }

    fn close_dead<D: Driver>(&mut self, io: &mut D) {
        for ci in self.dead.drain(..) {
            io.close(ci);
        }
    }

    /// Nothing may be sent on `ci` now. Open loop: if it has a free slot and a message
    /// still to send, wake at its intended time.
    pub fn idle(&mut self, ci: usize) {
        let Some(s) = self.plan.schedule else { return };
        let c = &mut self.conns[ci];
        if c.in_heap
            || !c.live
            || c.tx_off > 0
            || c.tx_seq >= c.last_seq
            || c.outstanding() >= u64::from(self.plan.pipeline)
        {
            return;
        }
        c.in_heap = true;
        self.heap
            .push(Reverse((s.intended(c.id, c.tx_seq), ci as u32)));
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

    /// Write into `buf` the bytes connection `ci` may send now, from its write cursor on
    /// (pipeline slots and, in open loop, the schedule allowing). The cursor does not
    /// move: call [`Core::sent`] with what the kernel took. 0: nothing may be sent.
    pub fn fill(&self, ci: usize, now: u64, buf: &mut [u8]) -> usize {
        let size = self.plan.size;
        let c = &self.conns[ci];
        let limit = self.start_limit(c, now);
        let (mut seq, mut off) = (c.tx_seq, c.tx_off);
        let mut len = 0;
        while len < buf.len() {
            if off == 0 && seq >= limit {
                break;
            }
            let n = (size - off).min(buf.len() - len);
            self.fill_msg(c.id, seq, off, &mut buf[len..len + n]);
            len += n;
            off += n;
            if off == size {
                seq += 1;
                off = 0;
            }
        }
        len
    }

    /// Bytes `off..` of request `seq` of connection `id`.
    fn fill_msg(&self, id: u32, seq: u64, off: usize, out: &mut [u8]) {
        match &self.plan.wire {
            Wire::Echo | Wire::Upper => payload::fill(id, seq, off, out),
            Wire::Http { head, .. } => {
                let mut out = out;
                let mut off = off;
                if off < head.len() {
                    let n = (head.len() - off).min(out.len());
                    out[..n].copy_from_slice(&head[off..off + n]);
                    out = &mut out[n..];
                    off += n;
                }
                payload::fill(id, seq, off - head.len(), out);
            }
        }
    }

    /// The kernel took `n` more bytes of connection `ci` at `now`: move its write
    /// cursor, stamping the send time of every message started.
    pub fn sent(&mut self, ci: usize, n: usize, now: u64) {
        let size = self.plan.size;
        let p = u64::from(self.plan.pipeline);
        let c = &mut self.conns[ci];
        let mut rem = n;
        while rem > 0 {
            if c.tx_off == 0 {
                c.sent_at[(c.tx_seq % p) as usize] = now;
                if let Some(s) = self.plan.schedule {
                    let intended = s.intended(c.id, c.tx_seq);
                    if intended >= self.plan.warmup_ns {
                        self.res.max_lag_ns = self.res.max_lag_ns.max(now.saturating_sub(intended));
                    }
                }
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

    /// Bytes received on connection `ci`: verify them, complete and record messages.
    /// Err: the connection must be killed with that kind (more bytes than were sent).
    pub fn on_bytes(&mut self, ci: usize, data: &[u8], now: u64) -> Result<(), ErrKind> {
        if matches!(self.plan.wire, Wire::Http { .. }) {
            return self.on_http_bytes(ci, data, now);
        }
        let upper = matches!(self.plan.wire, Wire::Upper);
        let size = self.plan.size;
        let sz = size as u64;
        let n = data.len();
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
            let ok = if upper {
                verify_upper(c.id, c.rx_seq, c.rx_off, &data[i..i + k])
            } else {
                payload::verify(c.id, c.rx_seq, c.rx_off, &data[i..i + k])
            };
            if !c.rx_bad && !ok {
                c.rx_bad = true;
            }
            c.rx_off += k;
            i += k;
            if c.rx_off == size {
                let (seq, bad) = (c.rx_seq, c.rx_bad);
                c.rx_seq += 1;
                c.rx_off = 0;
                c.rx_bad = false;
                self.complete(
                    ci,
                    seq,
                    if bad {
                        Outcome::Mismatch
                    } else {
                        Outcome::Verified
                    },
                    now,
                );
            }
        }
        Ok(())
    }

    /// HTTP replies: parse each head (status, Content-Length), check the body against
    /// what the request asked for, complete the message. Err: the connection must be
    /// killed (a reply nobody asked for, a head that does not parse or has no valid
    /// Content-Length: the stream cannot be framed any more).
    fn on_http_bytes(&mut self, ci: usize, data: &[u8], now: u64) -> Result<(), ErrKind> {
        let Wire::Http { body: req_body, .. } = self.plan.wire else {
            unreachable!("http only")
        };
        let mut i = 0;
        while i < data.len() {
            let c = &mut self.conns[ci];
            let (id, seq) = (c.id, c.rx_seq);
            let outstanding = c.outstanding();
            let rx = c.http.as_mut().expect("http state on an http run");
            match rx.body_left {
                None => {
                    // Head: take bytes up to the blank line.
                    let from = rx.head.len().saturating_sub(3);
                    let take = (data.len() - i).min(MAX_REPLY_HEAD + 1 - rx.head.len());
                    rx.head.extend_from_slice(&data[i..i + take]);
                    let Some(end) = rx.head[from..]
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map(|p| from + p + 4)
                    else {
                        if rx.head.len() > MAX_REPLY_HEAD {
                            return Err(ErrKind::Mismatch);
                        }
                        return Ok(());
                    };
                    i += take - (rx.head.len() - end);
                    rx.head.truncate(end);
                    if outstanding == 0 {
                        return Err(ErrKind::Mismatch);
                    }
                    let (status, len) = parse_reply_head(&rx.head).ok_or(ErrKind::Mismatch)?;
                    let want = if req_body == 0 { HELLO.len() } else { req_body } as u64;
                    rx.head.clear();
                    rx.status = status;
                    rx.bad = (200..300).contains(&status) && len != want;
                    rx.body_off = 0;
                    rx.body_left = Some(len);
                }
                Some(left) => {
                    let k = left.min((data.len() - i) as u64) as usize;
                    let part = &data[i..i + k];
                    if (200..300).contains(&rx.status) && !rx.bad {
                        let ok = if req_body == 0 {
                            HELLO.get(rx.body_off..rx.body_off + k) == Some(part)
                        } else {
                            payload::verify(id, seq, rx.body_off, part)
                        };
                        rx.bad = !ok;
                    }
                    rx.body_off += k;
                    rx.body_left = Some(left - k as u64);
                    i += k;
                }
            }
            let c = &mut self.conns[ci];
            let rx = c.http.as_mut().expect("http state on an http run");
            if rx.body_left == Some(0) {
                rx.body_left = None;
                let outcome = match (rx.status, rx.bad) {
                    (200..=299, false) => Outcome::Verified,
                    (200..=299, true) => Outcome::Mismatch,
                    (s, _) => Outcome::Status(s),
                };
                c.rx_seq += 1;
                self.complete(ci, seq, outcome, now);
            }
        }
        Ok(())
    }

    fn complete(&mut self, ci: usize, seq: u64, outcome: Outcome, now: u64) {
        let plan = self.plan;
        let c = &self.conns[ci];
        let sent = c.sent_at[(seq % u64::from(plan.pipeline)) as usize];
        let (id, last) = (c.id, c.last_seq);
        if let Outcome::Status(s) = outcome {
            *self.res.errors.status.entry(s).or_default() += 1;
            if let Ok(mut m) = self.shared.status.lock() {
                *m.entry(s).or_default() += 1;
            }
        } else if outcome == Outcome::Mismatch {
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
                        self.record(
                            now,
                            now.saturating_sub(intended),
                            Some(now.saturating_sub(sent)),
                        );
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
        self.res.last_reply_ns = self.res.last_reply_ns.max(now);
        record(&mut self.latency, latency);
        if let (Some(h), Some(v)) = (self.uncorrected.as_mut(), uncorrected) {
            record(h, v);
        }
    }

    /// Close the current interval if `now` is past its end. A reply that comes after the
    /// window (open loop: to a message intended inside it) counts in the window's last
    /// interval, so the interval series covers exactly the measured window.
    fn roll_interval(&mut self, now: u64) {
        let plan = self.plan;
        if now < plan.warmup_ns {
            return;
        }
        let k = ((now - plan.warmup_ns) / plan.interval_ns).min(self.last_k());
        if k > self.cur_k {
            self.send_interval();
            self.cur_k = k;
        }
    }

    /// The window's last interval.
    fn last_k(&self) -> u64 {
        (self.plan.end_ns - self.plan.warmup_ns).saturating_sub(1) / self.plan.interval_ns
    }

    /// When the current interval is to be handed over: after warm-up, while inside the window.
    fn next_roll(&self, now: u64) -> Option<u64> {
        let plan = self.plan;
        if now < plan.warmup_ns {
            Some(plan.warmup_ns)
        } else if self.cur_k < self.last_k() {
            Some(plan.warmup_ns + (self.cur_k + 1) * plan.interval_ns)
        } else {
            None
        }
    }

    fn send_interval(&mut self) {
        if self.latency.is_empty() {
            return;
        }
        let latency = std::mem::replace(&mut self.latency, new_histogram());
        let uncorrected = self
            .uncorrected
            .as_mut()
            .map(|h| std::mem::replace(h, new_histogram()));
        let _ = self.out.send(Report::Interval {
            k: self.cur_k,
            latency,
            uncorrected,
        });
    }

    /// A connection with a message unanswered for longer than the timeout is dropped; each
    /// of its outstanding messages counts as a timeout.
    fn scan_timeouts(&mut self, now: u64) {
        let p = u64::from(self.plan.pipeline);
        for ci in 0..self.conns.len() {
            let c = &self.conns[ci];
            if !c.live || c.outstanding() == 0 {
                continue;
            }
            let oldest = c.sent_at[(c.rx_seq % p) as usize];
            if now.saturating_sub(oldest) > self.plan.timeout_ns {
                let n = c.outstanding();
                self.kill(ci, ErrKind::Timeout, n);
            }
        }
    }

    /// Open loop: messages intended in the window that never completed (stall at the end,
    /// dead connections, or a server too slow for the rate). When stopped early, only
    /// what was intended before the stop is owed.
    fn count_missing(&mut self, now: u64) {
        let plan = self.plan;
        let Some(s) = plan.schedule else { return };
        let until = plan.end_ns.min(now);
        for c in &self.conns {
            let first = s.count_before(c.id, plan.warmup_ns);
            let last = c.last_seq.min(s.count_before(c.id, until)).max(first);
            let done = c.rx_seq.clamp(first, last);
            self.res.missing += last - done;
            // The first message of the window never sent was that late when the run stopped.
            let unsent = c.started().max(first);
            if unsent < last {
                self.res.max_lag_ns = self
                    .res
                    .max_lag_ns
                    .max(now.saturating_sub(s.intended(c.id, unsent)));
            }
            self.res.scheduled += last - first;
        }
    }

    pub fn count(&mut self, kind: ErrKind, n: u64) {
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

    /// Count the error and drop the connection (never reconnected); the driver closes
    /// it at the end of the current step.
    pub fn kill(&mut self, ci: usize, kind: ErrKind, n: u64) {
        self.count(kind, n);
        let c = &mut self.conns[ci];
        if c.live {
            c.live = false;
            self.dead.push(ci);
            let finished = self.plan.schedule.is_some() && c.rx_seq >= c.last_seq;
            if !finished {
                self.remaining -= 1;
            }
        }
    }
}

/// True when `data` is bytes `off..` of message `seq` of `conn`, upper-cased.
fn verify_upper(conn: u32, seq: u64, off: usize, data: &[u8]) -> bool {
    let mut buf = [0u8; 256];
    data.chunks(buf.len()).enumerate().all(|(j, chunk)| {
        let b = &mut buf[..chunk.len()];
        payload::fill(conn, seq, off + j * 256, b);
        b.make_ascii_uppercase();
        b == chunk
    })
}

/// Status and Content-Length of an HTTP reply head (ending in the blank line); None
/// when it does not parse or has no single all-digit Content-Length.
fn parse_reply_head(head: &[u8]) -> Option<(u16, u64)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(_) = r.parse(head).ok()? else {
        return None;
    };
    let status = r.code?;
    let mut len = None;
    for h in r
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        if h.value.is_empty() || !h.value.iter().all(u8::is_ascii_digit) || h.value.len() > 18 {
            return None;
        }
        let v: u64 = std::str::from_utf8(h.value).ok()?.parse().ok()?;
        if len.is_some_and(|l| l != v) {
            return None;
        }
        len = Some(v);
    }
    Some((status, len?))
}

/// Record `v`, growing the histogram when needed (rare: a new largest value).
#[inline]
fn record(h: &mut Histogram<u64>, v: u64) {
    if h.record(v).is_err() {
        h.saturating_record(v);
    }
}

/// The error kind of a failed send or receive (errno).
pub(crate) fn classify(errno: Option<i32>) -> ErrKind {
    match errno {
        Some(libc::ECONNRESET | libc::EPIPE | libc::ECONNABORTED | libc::ENOTCONN) => {
            ErrKind::Reset
        }
        Some(libc::ETIMEDOUT) => ErrKind::Timeout,
        _ => ErrKind::Other,
    }
}
