//! The one door to the kernel for the server: every raw syscall goes through
//! [`syscall!`], which counts it by kind (so syscalls per request is a measured
//! figure) and turns -1 into `io::Error`. io_uring calls made through the `io-uring`
//! crate are counted at their call sites with [`count`].

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io;

/// Syscall kinds the server makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Sys {
    Accept4,
    Recv,
    Send,
    Read,
    EpollWait,
    EpollCtl,
    Close,
    Shutdown,
    Setsockopt,
    IoUringSetup,
    IoUringEnter,
    IoUringRegister,
}

pub const KINDS: usize = 12;
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
];

thread_local! {
    static COUNTS: [Cell<u64>; KINDS] = const { [const { Cell::new(0) }; KINDS] };
}

/// Count one syscall of `kind` on this thread.
#[inline]
pub fn count(kind: Sys) {
    COUNTS.with(|c| c[kind as usize].set(c[kind as usize].get() + 1));
}

/// Syscall counts by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyscallCounts(pub [u64; KINDS]);

impl SyscallCounts {
    /// This thread's counts so far.
    pub fn this_thread() -> SyscallCounts {
        SyscallCounts(COUNTS.with(|c| std::array::from_fn(|i| c[i].get())))
    }

    pub fn add(&mut self, o: &SyscallCounts) {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a += b;
        }
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Non-zero counts by name.
    pub fn by_name(&self) -> BTreeMap<String, u64> {
        NAMES.iter().zip(self.0).filter(|(_, n)| *n > 0).map(|(k, n)| (k.to_string(), n)).collect()
    }
}

/// Call `libc::$fn(args)`, count it as `Sys::$kind`, map -1 to the errno.
///
/// Like mio's `syscall!`, the macro stands in for an unsafe call: use it only with
/// arguments that are valid for the syscall (live fds, pointers to memory the
/// caller owns for the duration of the call). It is private to the server.
#[macro_export]
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
    let _ = syscall!(Shutdown, shutdown(fd, libc::SHUT_RDWR));
}

/// Write one byte to a wake pipe, never blocking: a full pipe already holds a wake-up.
/// Async-signal-safe (a bare send(2), not counted), so signal handlers may call it.
pub fn wake(fd: i32) {
    let b = 1u8;
    // SAFETY: `b` is a live byte for the duration of the call; a bad fd is only an error.
    let _ = unsafe { libc::send(fd, (&b as *const u8).cast(), 1, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
}

pub fn close(fd: i32) {
    let _ = syscall!(Close, close(fd));
}

pub fn set_nodelay(fd: i32) -> io::Result<()> {
    let one: libc::c_int = 1;
    syscall!(
        Setsockopt,
        setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t
        )
    )
    .map(drop)
}

/// Errno name for messages ("EPERM").
pub fn errno_name(code: i32) -> &'static str {
    match code {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EBUSY => "EBUSY",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::EPIPE => "EPIPE",
        libc::ENOSYS => "ENOSYS",
        libc::ENOBUFS => "ENOBUFS",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ENOTCONN => "ENOTCONN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECANCELED => "ECANCELED",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EADDRINUSE => "EADDRINUSE",
        _ => "E?",
    }
}

/// Process CPU time and context switches (getrusage(RUSAGE_SELF): all threads).
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub user_s: f64,
    pub sys_s: f64,
    pub voluntary_ctx: u64,
    pub involuntary_ctx: u64,
    pub max_rss_kib: u64,
}

/// This process, all threads.
pub fn usage() -> Usage {
    usage_of(libc::RUSAGE_SELF)
}

/// The calling thread only (Linux's RUSAGE_THREAD, which the libc crate lacks for
/// glibc): an event loop's own CPU time.
pub const RUSAGE_THREAD: libc::c_int = 1;

/// This thread (CPU and context switches; max RSS stays process-wide).
pub fn thread_usage() -> Usage {
    usage_of(RUSAGE_THREAD)
}

/// getrusage(`who`): RUSAGE_SELF, RUSAGE_CHILDREN (children already waited for) or
/// [`RUSAGE_THREAD`].
pub fn usage_of(who: libc::c_int) -> Usage {
    // SAFETY: zeroed rusage is a valid value for this plain C struct; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a live, writable rusage for the duration of the call.
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Usage {
        user_s: tv(ru.ru_utime),
        sys_s: tv(ru.ru_stime),
        voluntary_ctx: ru.ru_nvcsw as u64,
        involuntary_ctx: ru.ru_nivcsw as u64,
        max_rss_kib: ru.ru_maxrss as u64,
    }
}

/// Pin the calling thread to one CPU (sched_setaffinity). EINVAL: no such CPU, or
/// one this process may not use (cpuset, taskset).
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` < CPU_SETSIZE (checked above), so CPU_SET writes inside `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` lives across the call; pid 0 is the calling thread.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The CPUs the calling thread may run on (sched_getaffinity), ascending.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is live and writable for the call; pid 0 is the calling thread.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: every `c` is below CPU_SETSIZE, so CPU_ISSET reads inside `set`.
    Ok((0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind() {
        let before = SyscallCounts::this_thread();
        let r = syscall!(Close, close(-1));
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EBADF));
        let after = SyscallCounts::this_thread();
        assert_eq!(after.0[Sys::Close as usize] - before.0[Sys::Close as usize], 1);
        assert_eq!(after.total() - before.total(), 1);
        assert_eq!(NAMES.len(), KINDS);
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
            assert_eq!(pin_current_thread(100_000).unwrap_err().raw_os_error(), Some(libc::EINVAL));
            let u = thread_usage();
            assert!(u.user_s >= 0.0 && u.sys_s >= 0.0);
        })
        .join()
        .unwrap();
    }
}
