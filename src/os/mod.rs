//! Neutral OS helpers that both the server and the load generator use (DESIGN.md:
//! `load` never imports `server`): CPU affinity, resource usage, limits, and io_uring
//! setup probing ([`uring`]).

pub mod cpus;
pub mod uring;

use std::io;
use std::time::Duration;

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
    /// User CPU seconds.
    pub user_s: f64,
    /// System (kernel) CPU seconds.
    pub sys_s: f64,
    /// Voluntary context switches (the thread blocked or slept).
    pub voluntary_ctx: u64,
    /// Involuntary context switches (preempted).
    pub involuntary_ctx: u64,
    /// Peak resident memory, KiB (process-wide even for [`thread_usage`]).
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
    pin_current_thread_to(&[cpu])
}

/// Pin the calling thread to a set of CPUs (sched_setaffinity). EINVAL: an empty set,
/// no such CPU, or none this process may use. It allocates nothing, so a forked child
/// may call it before exec (`Command::pre_exec`).
pub fn pin_current_thread_to(cpus: &[usize]) -> io::Result<()> {
    if cpus.iter().any(|&c| c >= libc::CPU_SETSIZE as usize) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: `cpu` < CPU_SETSIZE (checked above), so CPU_SET writes inside `set`.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
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
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: every `c` is below CPU_SETSIZE, so CPU_ISSET reads inside `set`.
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Ask for precise timer wake-ups on this thread (default slack is 50 µs), so open-loop
/// sends leave close to their intended time. Best effort.
pub fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes an unsigned long and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
}

/// RLIMIT_NOFILE: the open files this process may have now (soft) and at most (hard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// The current limit, open files.
    pub soft: u64,
    /// The ceiling the soft limit may be raised to without privilege.
    pub hard: u64,
}

/// RLIMIT_NOFILE as it is now, None when it cannot be read.
pub fn nofile_limit() -> Option<NofileLimit> {
    nofile_rlimit().map(|rl| NofileLimit {
        soft: rl.rlim_cur,
        hard: rl.rlim_max,
    })
}

fn nofile_rlimit() -> Option<libc::rlimit> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is valid for writes during the call.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0).then_some(rl)
}

/// Raise the soft limit of open files to the hard limit so many connections fit
/// (processes started later inherit it). An unlimited hard limit still stops at
/// fs.nr_open, the most the kernel allows. Best effort: returns the limits in force
/// afterwards, None when they cannot be read.
pub fn raise_nofile_limit() -> Option<NofileLimit> {
    let mut rl = nofile_rlimit()?;
    // An unlimited hard limit still stops at fs.nr_open.
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20);
    let target = rl.rlim_max.min(nr_open);
    if target > rl.rlim_cur {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: rl.rlim_max,
        };
        // SAFETY: `raised` is valid for reads during the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            rl.rlim_cur = target;
        }
    }
    Some(NofileLimit {
        soft: rl.rlim_cur,
        hard: rl.rlim_max,
    })
}

/// CPU time (user + system) of the calling thread.
pub fn thread_cpu_time() -> Duration {
    let u = thread_usage();
    Duration::from_secs_f64(u.user_s + u.sys_s)
}
