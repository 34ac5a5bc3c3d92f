//! The one door to the kernel for the server: every raw syscall goes through
//! `syscall!`, which counts it by kind (so syscalls per request is a measured
//! figure) and turns -1 into `io::Error`. io_uring calls made through the `io-uring`
//! crate are counted at their call sites with [`count`].

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Syscall kinds the server makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Sys {
    /// accept4(2): one connection taken from the listener.
    Accept4,
    /// recv(2) on a connection.
    Recv,
    /// send(2) on a connection.
    Send,
    /// read(2) of a signalfd or wake pipe (never of a connection).
    Read,
    /// epoll_wait(2).
    EpollWait,
    /// epoll_ctl(2): add, modify or delete interest.
    EpollCtl,
    /// close(2).
    Close,
    /// shutdown(2).
    Shutdown,
    /// setsockopt(2).
    Setsockopt,
    /// io_uring_setup(2): one attempt to build a ring.
    IoUringSetup,
    /// io_uring_enter(2): submit, wait, or both.
    IoUringEnter,
    /// io_uring_register(2): probe, buffers, files, ring fd.
    IoUringRegister,
    /// poll(2).
    Poll,
    /// select(2).
    Select,
    /// rt_sigtimedwait(2) (sigio: taking queued signals).
    RtSigtimedwait,
    /// fcntl(2) (sigio: O_ASYNC, F_SETSIG, F_SETOWN_EX).
    Fcntl,
    /// nanosleep(2) (accept back-off, busy polling with nothing to poll).
    Nanosleep,
    /// signalfd(2).
    Signalfd,
    /// epoll_create1(2).
    EpollCreate,
    /// getppid(2): only the `extra-syscalls` fault makes it (a known, countable
    /// regression).
    Getppid,
}

/// How many kinds [`Sys`] has: the length of every per-kind array.
pub const KINDS: usize = 20;
/// Each kind's name as reported (`syscalls.<name>` in `serve --json`), indexed by
/// `Sys as usize`.
pub const NAMES: [&str; KINDS] = [
    "accept4",
    "recv",
    "send",
    "read",
    "epoll_wait",
    "epoll_ctl",
    "close",
    "shutdown",
    "setsockopt",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "poll",
    "select",
    "rt_sigtimedwait",
    "fcntl",
    "nanosleep",
    "signalfd",
    "epoll_create1",
    "getppid",
];

/// One thread's counts. Only that thread writes them (a relaxed load and store, as
/// cheap as a plain add); other threads may read them at any time, and after the
/// thread has exited (the `threads` backend sums its connection threads this way).
pub type ThreadCounts = [AtomicU64; KINDS];

thread_local! {
    static COUNTS: Arc<ThreadCounts> = Arc::new(std::array::from_fn(|_| AtomicU64::new(0)));
}

/// Count one syscall of `kind` on this thread.
#[inline]
pub fn count(kind: Sys) {
    COUNTS.with(|c| {
        let a = &c[kind as usize];
        a.store(a.load(Ordering::Relaxed) + 1, Ordering::Relaxed)
    });
}

/// A handle on this thread's counts, readable from any thread for as long as it is held.
pub fn this_thread_counts() -> Arc<ThreadCounts> {
    COUNTS.with(Arc::clone)
}

/// Syscall counts by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyscallCounts(pub [u64; KINDS]);

impl SyscallCounts {
    /// This thread's counts so far.
    pub fn this_thread() -> SyscallCounts {
        COUNTS.with(|c| SyscallCounts::of(c))
    }

    /// The counts behind a [`this_thread_counts`] handle.
    pub fn of(c: &ThreadCounts) -> SyscallCounts {
        SyscallCounts(std::array::from_fn(|i| c[i].load(Ordering::Relaxed)))
    }

    /// Add `o`'s counts to these, kind by kind.
    pub fn add(&mut self, o: &SyscallCounts) {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a += b;
        }
    }

    /// Syscalls of every kind.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Non-zero counts by name.
    pub fn by_name(&self) -> BTreeMap<String, u64> {
        NAMES
            .iter()
            .zip(self.0)
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (k.to_string(), n))
            .collect()
    }
}

/// Call `libc::$fn(args)`, count it as `Sys::$kind`, map -1 to the errno.
///
/// Like mio's `syscall!`, the macro stands in for an unsafe call: use it only with
/// arguments that are valid for the syscall (live fds, pointers to memory the
/// caller owns for the duration of the call), and give each call site its own
/// `// SAFETY:` note. Crate-private: `use crate::server::sys::syscall;`.
macro_rules! syscall {
    ($kind:ident, $fn:ident ( $($arg:expr),* $(,)? )) => {{
        $crate::server::sys::count($crate::server::sys::Sys::$kind);
        #[allow(unused_unsafe, clippy::macro_metavars_in_unsafe)]
        // SAFETY: the caller passes arguments valid for this syscall; pointers in them
        // point to memory the caller owns for the duration of the call.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 { Err(::std::io::Error::last_os_error()) } else { Ok(res) }
    }};
}
pub(crate) use syscall;

/// Retry on EINTR (bounded: a signal storm cannot keep us here forever).
pub fn retry_eintr<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    for _ in 0..64 {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
    f()
}

/// `shutdown(fd, SHUT_RDWR)`, ignoring ENOTCONN (the peer may be gone already).
pub fn shutdown_rdwr(fd: i32) {
    // SAFETY: no memory is passed; a stale fd is only an error.
    let _ = syscall!(Shutdown, shutdown(fd, libc::SHUT_RDWR));
}

/// Write one byte to a wake pipe, never blocking: a full pipe already holds a wake-up.
/// Async-signal-safe (a bare send(2), not counted), so signal handlers may call it.
pub fn wake(fd: i32) {
    let b = 1u8;
    // SAFETY: `b` is a live byte for the duration of the call; a bad fd is only an error.
    let _ = unsafe {
        libc::send(
            fd,
            (&b as *const u8).cast(),
            1,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
}

/// close(2), counted; an error is ignored (the descriptor is gone either way).
pub fn close(fd: i32) {
    // SAFETY: no memory is passed; the caller gives up `fd` here.
    let _ = syscall!(Close, close(fd));
}

/// setsockopt(2) with a plain-data option value, counted.
fn setsockopt<T: Copy>(fd: i32, level: libc::c_int, name: libc::c_int, value: T) -> io::Result<()> {
    // SAFETY: `value` lives on this stack frame for the call and the length is its size;
    // T is plain data (Copy), what the option expects by the caller's choice of `name`.
    syscall!(
        Setsockopt,
        setsockopt(
            fd,
            level,
            name,
            &value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t
        )
    )
    .map(drop)
}

/// SO_RCVTIMEO: a blocking recv on `fd` returns EAGAIN after `t` without data.
pub fn set_recv_timeout(fd: i32, t: std::time::Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: t.as_secs() as libc::time_t,
        tv_usec: t.subsec_micros() as libc::suseconds_t,
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, tv)
}

/// TCP_NODELAY: send small replies at once instead of waiting for an ACK (Nagle).
pub fn set_nodelay(fd: i32) -> io::Result<()> {
    setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1 as libc::c_int)
}

pub use crate::os::{
    RUSAGE_THREAD, Usage, allowed_cpus, errno_name, pin_current_thread, thread_usage, usage,
    usage_of,
};

/// A wait timeout in whole milliseconds for poll(2)-style calls: -1 for none, rounded
/// up so the loop never wakes just before a deadline (a passed one is 0).
pub fn timeout_ms(t: Option<Duration>) -> i32 {
    match t {
        None => -1,
        Some(d) if d.is_zero() => 0,
        Some(d) => d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind() {
        let before = SyscallCounts::this_thread();
        // SAFETY: no memory; -1 is an invalid fd on purpose (EBADF).
        let r = syscall!(Close, close(-1));
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EBADF));
        let after = SyscallCounts::this_thread();
        assert_eq!(
            after.0[Sys::Close as usize] - before.0[Sys::Close as usize],
            1
        );
        assert_eq!(after.total() - before.total(), 1);
        // The kind counted is reported under its own name, and no two kinds share one.
        let mut diff = SyscallCounts::default();
        for (d, (a, b)) in diff.0.iter_mut().zip(after.0.iter().zip(before.0)) {
            *d = a - b;
        }
        assert_eq!(diff.by_name(), BTreeMap::from([("close".to_string(), 1)]));
        let mut names = NAMES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(
            names.len(),
            NAMES.len(),
            "duplicate syscall names: {NAMES:?}"
        );
    }

    #[test]
    fn affinity() {
        let allowed = allowed_cpus().unwrap();
        assert!(!allowed.is_empty());
        // Pin a scratch thread (not the test runner's) to a CPU it may use, then to one
        // that cannot exist.
        let cpu = allowed[allowed.len() - 1];
        std::thread::spawn(move || {
            pin_current_thread(cpu).unwrap();
            assert_eq!(allowed_cpus().unwrap(), vec![cpu]);
            assert_eq!(
                pin_current_thread(100_000).unwrap_err().raw_os_error(),
                Some(libc::EINVAL)
            );
            // Burn CPU on this thread until its usage shows it (or a deadline): a usage
            // that never moves, or exceeds the wall time, fails.
            let t0 = std::time::Instant::now();
            let mut x = 1u64;
            let u = loop {
                for _ in 0..100_000 {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
                let u = thread_usage();
                if u.user_s + u.sys_s >= 0.005 || t0.elapsed() > std::time::Duration::from_secs(10)
                {
                    break u;
                }
            };
            assert!(
                u.user_s + u.sys_s >= 0.005,
                "thread CPU time never reached 5 ms in {:?}: {u:?}",
                t0.elapsed()
            );
            assert!(
                u.user_s + u.sys_s <= t0.elapsed().as_secs_f64() + 0.05,
                "more CPU than wall time: {u:?} in {:?}",
                t0.elapsed()
            );
        })
        .join()
        .unwrap();
    }
}
