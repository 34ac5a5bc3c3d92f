//! A fault layer for tests: strace can fail syscalls but not the ops a ring executes
//! itself (REFERENCE.md section 3), so ringmux rewrites chosen results itself.
//!
//! `RINGMUX_FAULTS="recv-reset=7,recv-nobufs=5,send-short=3"` makes every 7th receive
//! that brought data fail with ECONNRESET (the bytes are dropped, as a reset drops
//! them), every 5th receive armed complete with ENOBUFS at once (the bytes stay in the
//! socket, as when the buffer group is empty), and every 3rd send hand the kernel only
//! half of what it owes (a short send). Counts are per event loop. Unset or empty: no
//! faults, and the checks cost one branch.
//!
//! `input-spin-ns=N` is a controlled slowdown for measuring the CI gate (does it catch
//! a known regression?): every batch of received bytes burns N ns of CPU in a busy loop
//! before the protocol sees it, on every backend (the hook is `Conn::on_input`). It
//! adds CPU per message and latency, and neither syscalls nor context switches.
//! Process-wide, set once at start ([`set_input_spin`]).
//!
//! The reactor (epoll, poll, select, sigio) and busypoll honour `recv-reset` and
//! `send-short`; `recv-nobufs` has no meaning there (they read into their own buffer)
//! and is ignored. blocking and threads count once for the whole server (every
//! connection shares the counters).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const ENV: &str = "RINGMUX_FAULTS";

/// Fires on every `n`th call (never when `n` is 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Every {
    n: u64,
    seen: u64,
}

impl Every {
    #[inline]
    pub fn hit(&mut self) -> bool {
        if self.n == 0 {
            return false;
        }
        self.seen += 1;
        self.seen.is_multiple_of(self.n)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    pub recv_reset: Every,
    pub recv_nobufs: Every,
    pub send_short: Every,
    /// `input-spin-ns`: nanoseconds of CPU burnt per batch of received bytes.
    pub input_spin_ns: u64,
}

/// The process-wide `input-spin-ns` (0: off, the check is one relaxed load).
static INPUT_SPIN_NS: AtomicU64 = AtomicU64::new(0);

/// Set the slowdown every connection's input pays from now on.
pub fn set_input_spin(ns: u64) {
    INPUT_SPIN_NS.store(ns, Ordering::Relaxed);
}

/// Burn the configured CPU time (a busy loop on the monotonic clock, no syscall where
/// the clock is read through the vDSO).
#[inline]
pub fn input_spin() {
    let ns = INPUT_SPIN_NS.load(Ordering::Relaxed);
    if ns == 0 {
        return;
    }
    let (t0, d) = (Instant::now(), Duration::from_nanos(ns));
    while t0.elapsed() < d {
        std::hint::spin_loop();
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFaults(String);

impl fmt::Display for BadFaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad {ENV}: {} (expected e.g. \"recv-reset=7,recv-nobufs=5,send-short=3,input-spin-ns=2000\")",
            self.0
        )
    }
}

impl std::error::Error for BadFaults {}

impl Faults {
    pub fn parse(spec: &str) -> Result<Faults, BadFaults> {
        let mut f = Faults::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, n) = item
                .split_once('=')
                .ok_or_else(|| BadFaults(format!("`{item}` has no `=N`")))?;
            let n: u64 = n
                .trim()
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| BadFaults(format!("`{item}`: N must be a positive integer")))?;
            if name.trim() == "input-spin-ns" {
                f.input_spin_ns = n;
                continue;
            }
            let slot = match name.trim() {
                "recv-reset" => &mut f.recv_reset,
                "recv-nobufs" => &mut f.recv_nobufs,
                "send-short" => &mut f.send_short,
                other => return Err(BadFaults(format!("unknown fault `{other}`"))),
            };
            *slot = Every { n, seen: 0 };
        }
        Ok(f)
    }

    /// From the environment; unset means none.
    pub fn from_env() -> Result<Faults, BadFaults> {
        match std::env::var(ENV) {
            Ok(s) => Faults::parse(&s),
            Err(std::env::VarError::NotPresent) => Ok(Faults::default()),
            Err(std::env::VarError::NotUnicode(_)) => Err(BadFaults("not UTF-8".into())),
        }
    }

    pub fn any(&self) -> bool {
        self.recv_reset.n | self.recv_nobufs.n | self.send_short.n | self.input_spin_ns != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_fires_every_nth() {
        let mut f = Faults::parse("recv-reset=3, send-short=1").unwrap();
        assert!(f.any());
        let hits: Vec<bool> = (0..6).map(|_| f.recv_reset.hit()).collect();
        assert_eq!(hits, [false, false, true, false, false, true]);
        assert!(f.send_short.hit() && f.send_short.hit());
        assert!(!f.recv_nobufs.hit());
        assert!(!Faults::parse("").unwrap().any());
        let s = Faults::parse("input-spin-ns=2000").unwrap();
        assert!(s.any() && s.input_spin_ns == 2000 && s.recv_reset.n == 0);
    }

    #[test]
    fn input_spin_burns_at_least_its_time() {
        set_input_spin(2_000_000);
        let t0 = Instant::now();
        input_spin();
        set_input_spin(0);
        assert!(t0.elapsed() >= Duration::from_millis(2));
        let t0 = Instant::now();
        input_spin();
        assert!(t0.elapsed() < Duration::from_millis(2), "off: no spin");
    }

    #[test]
    fn rejects_bad_specs() {
        for bad in ["recv-reset", "recv-reset=0", "recv-reset=x", "nope=3"] {
            let e = Faults::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("bad RINGMUX_FAULTS"), "{e}");
        }
    }
}
