//! Signals and the drain: a loop woken through its wake pipe answers SIGUSR1 with a
//! snapshot and starts draining on SIGINT/SIGTERM, with one deadline.

use std::time::{Duration, Instant};

use crate::server::signals::Signals;
use crate::server::stats::{LoopStats, Reporter};
use crate::server::sys::SyscallCounts;

/// The drain deadline: unset while serving, set by the first stop signal.
#[derive(Debug, Clone, Copy, Default)]
pub struct Drain {
    pub deadline: Option<Instant>,
}

impl Drain {
    /// Start draining (once). True when this call started it.
    pub fn begin(&mut self, timeout: Duration) -> bool {
        if self.deadline.is_some() {
            return false;
        }
        self.deadline = Some(Instant::now() + timeout);
        true
    }

    pub fn draining(&self) -> bool {
        self.deadline.is_some()
    }

    pub fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// The loop was woken through its wake pipe (or polls the flags): answer a new
/// SIGUSR1 with a snapshot of `stats` (this thread's syscall counts filled in), and
/// return true when a stop was requested and the drain starts now.
pub fn on_wake(
    signals: &Signals,
    reporter: &Reporter,
    stats: &mut LoopStats,
    drain: &mut Drain,
    timeout: Duration,
) -> bool {
    signals.drain();
    check_signals(signals, reporter, stats, drain, timeout)
}

/// [`on_wake`] without reading the wake pipe (busy polling reads the flags each turn).
pub fn check_signals(
    signals: &Signals,
    reporter: &Reporter,
    stats: &mut LoopStats,
    drain: &mut Drain,
    timeout: Duration,
) -> bool {
    if signals.take_snapshot_request() {
        stats.syscalls = SyscallCounts::this_thread();
        reporter.snapshot(stats);
    }
    signals.stop_requested() && drain.begin(timeout)
}
