//! The engine of a load worker, shared by both drivers and importing neither. The
//! protocol — what may be sent when, verification of every reply byte (through
//! [`super::wire`]), latency recording, schedules, intervals, timeouts, error counts —
//! lives once in [`Core`]; a [`Driver`] only moves bytes: `epoll` with non-blocking
//! calls on readiness, `uring` with SEND/RECV submitted to an io_uring. [`drive`] is
//! the loop both run under; `worker` picks the driver.
//!
//! No allocation per message: send times in a fixed ring of `pipeline` slots per
//! connection, payload regenerated (not stored) for both sending and verifying.
//!
//! Time is nanoseconds since the run's base instant (warm-up starts at 0). The measured
//! window is `[warmup, end)`: in closed loop by completion time, in open loop by
//! intended send time (a message intended inside the window is recorded whenever its
//! reply comes, up to `hard_stop`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::plan::{ErrKind, Plan, Report, Shared, WorkerResult};
use super::sys;
use super::wire::{HttpRx, Outcome, Wire};
use crate::results::outcome::new_histogram;

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

/// The worker's loop, the same for every driver: due sends, interval hand-over,
/// timeouts, then one wait for IO (bounded by the next thing to do and `MAX_WAIT_NS`).
/// Returns what the worker hands back to the coordinator.
pub(crate) fn drive<D: Driver>(mut core: Core, io: &mut D) -> WorkerResult {
    let core = &mut core;
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
    std::mem::take(&mut core.res)
}

impl<'a> Core<'a> {
    pub fn new(
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
            self.plan.wire.fill(c.id, seq, off, &mut buf[len..len + n]);
            len += n;
            off += n;
            if off == size {
                seq += 1;
                off = 0;
            }
        }
        len
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
        let wire = &self.plan.wire;
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
            let ok = wire.verify(c.id, c.rx_seq, c.rx_off, &data[i..i + k]);
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

    /// HTTP replies, framed and verified by [`HttpRx`]: complete each message as its
    /// reply ends. Err: the connection must be killed (the stream cannot be framed any
    /// more: a reply nobody asked for, a head that does not parse or has no valid
    /// Content-Length).
    fn on_http_bytes(&mut self, ci: usize, data: &[u8], now: u64) -> Result<(), ErrKind> {
        let Wire::Http { body: req_body, .. } = self.plan.wire else {
            unreachable!("http only")
        };
        let mut i = 0;
        while i < data.len() {
            let c = &mut self.conns[ci];
            let (id, seq, expecting) = (c.id, c.rx_seq, c.outstanding() > 0);
            let rx = c.http.as_mut().expect("http state on an http run");
            let (used, done) = rx
                .feed(&data[i..], id, seq, req_body, expecting)
                .map_err(|_| ErrKind::Mismatch)?;
            i += used;
            if let Some(outcome) = done {
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
            self.shared.count_status(s);
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
        *kind.count_in(&mut self.res.errors) += n;
        self.shared.count(kind, n);
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

/// Record `v`, growing the histogram when needed (rare: a new largest value).
#[inline]
fn record(h: &mut Histogram<u64>, v: u64) {
    if h.record(v).is_err() {
        h.saturating_record(v);
    }
}
