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
//! Controlled slowdowns, for measuring the CI gate (does it catch a known regression?),
//! all hooked in `Conn::on_input`, so on every backend:
//!
//! - `input-work-ns=N`: N ns of CPU work per message received. The work is a fixed
//!   number of iterations of a `black_box` loop, calibrated once at start in the
//!   thread's CPU time (the fastest of several trials gives ns per iteration), so a
//!   preempted server still does all of it: the CPU it adds does not depend on the machine's load. A "message" is
//!   `msg-bytes` received bytes (below), counted across receives on each thread, so
//!   the work per message is the same however the kernel batches the bytes.
//! - `extra-syscalls=N`: N getppid(2) calls per message received (same counting),
//!   each counted in the server's syscall figures (kind `getppid`): a regression a
//!   syscalls-per-message gate sees exactly.
//! - `msg-bytes=B`: the message size the two above count in (default 128, the default
//!   `--size` of `load` and `bench`; echo has no framing, so the server cannot tell
//!   messages apart).
//! - `input-spin-ns=N`: every batch of received bytes waits N ns in a busy loop on the
//!   monotonic clock. Soft: per batch, not per message, and a preempted spin adds less
//!   CPU than N. A latency fault rather than a CPU one.
//!
//! None adds context switches; only `extra-syscalls` adds syscalls. Process-wide, set
//! once at start ([`set_slowdowns`]).
//!
//! The reactor (epoll, poll, select, sigio) and busypoll honour `recv-reset` and
//! `send-short`; `recv-nobufs` has no meaning there (they read into their own buffer)
//! and is ignored. blocking and threads count once for the whole server (every
//! connection shares the counters).

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use super::sys::syscall;
use std::time::{Duration, Instant};

/// The environment variable that turns faults on, e.g. `recv-reset=7,send-short=3`.
pub const ENV: &str = "RINGMUX_FAULTS";

/// Fires on every `n`th call (never when `n` is 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Every {
    n: u64,
    seen: u64,
}

impl Every {
    #[inline]
    /// Counts one call; true on every `n`th.
    pub fn hit(&mut self) -> bool {
        if self.n == 0 {
            return false;
        }
        self.seen += 1;
        self.seen.is_multiple_of(self.n)
    }
}

/// The faults asked in [`ENV`]; all off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// `recv-reset=N`: every Nth receive that brought data fails with ECONNRESET.
    pub recv_reset: Every,
    /// `recv-nobufs=N`: every Nth receive armed completes with ENOBUFS at once (io_uring
    /// levels with provided buffers; ignored elsewhere).
    pub recv_nobufs: Every,
    /// `send-short=N`: every Nth send goes out half-sized.
    pub send_short: Every,
    /// `input-spin-ns`: nanoseconds of wall time spun per batch of received bytes.
    pub input_spin_ns: u64,
    /// `input-work-ns`: nanoseconds of calibrated CPU work per message received.
    pub input_work_ns: u64,
    /// `extra-syscalls`: getppid calls per message received.
    pub extra_syscalls: u64,
    /// `msg-bytes`: bytes per message for the two above (0: the default).
    pub msg_bytes: u64,
}

/// Bytes per message when `msg-bytes` is not given: `load`'s and `bench`'s `--size`.
pub const DEFAULT_MSG_BYTES: u64 = 128;

/// The process-wide slowdowns (0: off; the check is relaxed loads).
static INPUT_SPIN_NS: AtomicU64 = AtomicU64::new(0);
static WORK_ITERS_PER_MSG: AtomicU64 = AtomicU64::new(0);
static SYSCALLS_PER_MSG: AtomicU64 = AtomicU64::new(0);
static MSG_BYTES: AtomicU64 = AtomicU64::new(DEFAULT_MSG_BYTES);

thread_local! {
    /// Bytes received on this thread since its last whole message.
    static CARRY: Cell<u64> = const { Cell::new(0) };
}

/// What [`set_slowdowns`] calibrated: iterations of the work loop per message and the
/// ns one iteration took (None when `input-work-ns` is off).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// Iterations of the work loop per message.
    pub iters_per_msg: u64,
    /// CPU ns one iteration took when calibrated.
    pub ns_per_iter: f64,
}

/// Set the slowdowns every connection's input pays from now on; calibrates the work
/// loop when `input-work-ns` is on (a few ms).
pub fn set_slowdowns(f: &Faults) -> Option<Calibration> {
    INPUT_SPIN_NS.store(f.input_spin_ns, Ordering::Relaxed);
    SYSCALLS_PER_MSG.store(f.extra_syscalls, Ordering::Relaxed);
    MSG_BYTES.store(
        if f.msg_bytes == 0 {
            DEFAULT_MSG_BYTES
        } else {
            f.msg_bytes
        },
        Ordering::Relaxed,
    );
    let cal = (f.input_work_ns > 0).then(|| {
        let ns_per_iter = calibrate();
        Calibration {
            iters_per_msg: ((f.input_work_ns as f64 / ns_per_iter).round() as u64).max(1),
            ns_per_iter,
        }
    });
    WORK_ITERS_PER_MSG.store(cal.map_or(0, |c| c.iters_per_msg), Ordering::Relaxed);
    cal
}

/// The wall-clock spin alone (`input-spin-ns`), for tests.
pub fn set_input_spin(ns: u64) {
    INPUT_SPIN_NS.store(ns, Ordering::Relaxed);
}

/// `iters` rounds of a dependent multiply-add chain the compiler cannot drop: CPU
/// work whose cost is a count, not a time.
#[inline(never)]
pub fn work(iters: u64) {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..iters {
        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
    }
    std::hint::black_box(x);
}

/// ns per iteration of [`work`] in this thread's CPU time (CLOCK_THREAD_CPUTIME_ID,
/// which a preempted thread does not accrue): the fastest of 7 trials of 500k
/// iterations.
fn calibrate() -> f64 {
    const ITERS: u64 = 500_000;
    work(ITERS / 10); // warm up
    (0..7)
        .map(|_| {
            let t0 = thread_cpu_ns();
            work(ITERS);
            (thread_cpu_ns() - t0) as f64 / ITERS as f64
        })
        .fold(f64::INFINITY, f64::min)
        .max(1e-3)
}

/// This thread's CPU time in ns (not counted: only the calibration reads it, at start).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live timespec on this stack frame for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `n` bytes were received: pay the slowdowns that are on (one relaxed load each when
/// off). Messages are counted in whole `msg-bytes` across calls on this thread.
#[inline]
pub fn on_input(n: usize) {
    input_spin();
    let (iters, calls) = (
        WORK_ITERS_PER_MSG.load(Ordering::Relaxed),
        SYSCALLS_PER_MSG.load(Ordering::Relaxed),
    );
    if iters == 0 && calls == 0 {
        return;
    }
    CARRY.with(|c| pay(c, n, MSG_BYTES.load(Ordering::Relaxed), iters, calls));
}

/// Count `n` more bytes against `carry` (bytes since the last whole message of `size`)
/// and, per whole message completed, do `iters` of work and `calls` getppid calls.
/// Returns the messages completed.
fn pay(carry: &Cell<u64>, n: usize, size: u64, iters: u64, calls: u64) -> u64 {
    let total = carry.get() + n as u64;
    carry.set(total % size);
    let msgs = total / size;
    work(msgs * iters);
    for _ in 0..msgs * calls {
        // SAFETY: no arguments; getppid cannot fail.
        let _ = syscall!(Getppid, getppid());
    }
    msgs
}

/// Burn the configured wall time (a busy loop on the monotonic clock, no syscall where
/// the clock is read through the vDSO).
#[inline]
fn input_spin() {
    let ns = INPUT_SPIN_NS.load(Ordering::Relaxed);
    if ns == 0 {
        return;
    }
    let (t0, d) = (Instant::now(), Duration::from_nanos(ns));
    while t0.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// A [`ENV`] value that cannot be read; its message is one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFaults(String);

impl fmt::Display for BadFaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad {ENV}: {} (expected e.g. \"recv-reset=7,send-short=3,input-work-ns=600,extra-syscalls=1\")",
            self.0
        )
    }
}

impl std::error::Error for BadFaults {}

impl Faults {
    /// Reads `NAME=N,...`; an unknown name or a bad number is an error.
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
            let amount = match name.trim() {
                "input-spin-ns" => Some(&mut f.input_spin_ns),
                "input-work-ns" => Some(&mut f.input_work_ns),
                "extra-syscalls" => Some(&mut f.extra_syscalls),
                "msg-bytes" => Some(&mut f.msg_bytes),
                _ => None,
            };
            if let Some(a) = amount {
                *a = n;
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

    /// Whether any fault is on (the start line then says so).
    pub fn any(&self) -> bool {
        self.recv_reset.n
            | self.recv_nobufs.n
            | self.send_short.n
            | self.input_spin_ns
            | self.input_work_ns
            | self.extra_syscalls
            != 0
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
        let s = Faults::parse("input-work-ns=600,extra-syscalls=2,msg-bytes=64").unwrap();
        assert!(s.any());
        assert_eq!(
            (s.input_work_ns, s.extra_syscalls, s.msg_bytes),
            (600, 2, 64)
        );
        assert!(
            !Faults::parse("msg-bytes=64").unwrap().any(),
            "a unit alone"
        );
    }

    #[test]
    fn extra_syscalls_are_per_message_whatever_the_batching() {
        use super::super::sys::{Sys, SyscallCounts};
        let getppid = || SyscallCounts::this_thread().0[Sys::Getppid as usize];
        let carry = Cell::new(0);
        let g0 = getppid();
        // 3 messages of 100 bytes in one batch, then 2.5 in bytes dribbled over 5 calls.
        assert_eq!(pay(&carry, 300, 100, 0, 2), 3);
        assert_eq!(getppid() - g0, 6);
        let dribbled: u64 = (0..5).map(|_| pay(&carry, 50, 100, 0, 2)).sum();
        assert_eq!((dribbled, carry.get()), (2, 50));
        assert_eq!(getppid() - g0, 10, "2 per message, 5 messages");
    }

    #[test]
    fn work_is_counted_in_iterations_and_calibrated() {
        let ns = calibrate();
        assert!(ns > 0.0 && ns < 1000.0, "{ns} ns per iteration");
        // 20 ms worth of iterations take at least most of 20 ms of this thread's CPU,
        // however often it is preempted (the work is a count, not a deadline).
        let iters = (20e6 / ns) as u64;
        let cpu0 = crate::os::thread_usage();
        work(iters);
        let cpu1 = crate::os::thread_usage();
        let used = (cpu1.user_s + cpu1.sys_s) - (cpu0.user_s + cpu0.sys_s);
        assert!(used >= 0.015, "{iters} iterations used {used} s of CPU");
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
