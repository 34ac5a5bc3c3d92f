//! What the coordinating thread and its load workers share: the read-only [`Plan`], the
//! live [`Shared`] counters, the [`Report`]s a worker sends while it runs and the
//! [`WorkerResult`] it hands back at the end.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use super::config::LoadConfig;
use super::schedule::Schedule;
use super::wire::Wire;
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
}

impl Plan {
    pub fn new(cfg: &LoadConfig) -> Plan {
        let wire = Wire::new(cfg.proto, cfg.size as usize);
        Plan {
            addr: cfg.addr,
            size: wire.request_len(cfg.size as usize),
            wire,
            pipeline: cfg.pipeline,
            schedule: cfg.rate().map(|r| Schedule::new(r, cfg.conns)),
            warmup_ns: ns(cfg.warmup),
            end_ns: ns(cfg.warmup + cfg.duration),
            hard_stop_ns: ns(cfg.warmup + cfg.duration + cfg.timeout),
            timeout_ns: ns(cfg.timeout),
            interval_ns: ns(cfg.interval),
            connect_timeout: cfg.timeout,
        }
    }
}

/// A duration in nanoseconds (saturating).
pub(crate) fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The kinds of error a worker counts (HTTP statuses are counted apart, by status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrKind {
    Mismatch = 0,
    Reset = 1,
    Timeout = 2,
    Connect = 3,
    Other = 4,
}

impl ErrKind {
    const ALL: [ErrKind; 5] = [
        ErrKind::Mismatch,
        ErrKind::Reset,
        ErrKind::Timeout,
        ErrKind::Connect,
        ErrKind::Other,
    ];

    /// Its count in `e`.
    pub fn count_in(self, e: &mut LoadErrors) -> &mut u64 {
        match self {
            ErrKind::Mismatch => &mut e.mismatch,
            ErrKind::Reset => &mut e.reset,
            ErrKind::Timeout => &mut e.timeout,
            ErrKind::Connect => &mut e.connect,
            ErrKind::Other => &mut e.other,
        }
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

/// Counters the coordinator reads for the progress line.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Set by the coordinator to end every worker early.
    pub stop: AtomicBool,
    pub warmup_done: AtomicU64,
    /// Errors by [`ErrKind`].
    errors: [AtomicU64; ErrKind::ALL.len()],
    /// HTTP replies outside 2xx, by status.
    status: Mutex<BTreeMap<u16, u64>>,
}

impl Shared {
    pub fn count(&self, kind: ErrKind, n: u64) {
        self.errors[kind as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn count_status(&self, status: u16) {
        if let Ok(mut m) = self.status.lock() {
            *m.entry(status).or_default() += 1;
        }
    }

    pub fn errors(&self) -> LoadErrors {
        let mut e = LoadErrors {
            status: self.status.lock().map(|m| m.clone()).unwrap_or_default(),
            ..LoadErrors::default()
        };
        for kind in ErrKind::ALL {
            *kind.count_in(&mut e) = self.errors[kind as usize].load(Ordering::Relaxed);
        }
        e
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_counts_each_kind_in_its_field() {
        let s = Shared::default();
        for (i, kind) in ErrKind::ALL.into_iter().enumerate() {
            s.count(kind, i as u64 + 1);
        }
        s.count_status(404);
        let e = s.errors();
        assert_eq!(
            (e.mismatch, e.reset, e.timeout, e.connect, e.other),
            (1, 2, 3, 4, 5)
        );
        assert_eq!(e.status.get(&404), Some(&1));
    }
}
