//! io_uring availability for anyone who sets up a ring outside the server's proactor
//! (the load generator's driver): setup with the fix to print, and opcode probing.
//! The server's own feature ladder stays in `server::uring::probe`, which counts these
//! calls among the server's syscalls.

use std::fmt;
use std::io;

use io_uring::{IoUring, Probe};
use serde::Serialize;

use super::errno_name;

/// Why io_uring cannot be used here, with the fix to print.
#[derive(Debug, Clone, Serialize)]
pub struct Unavailable {
    /// errno of the failing call, when one failed.
    pub errno: Option<i32>,
    /// What failed: the call (`io_uring_setup`, `io_uring_register(REGISTER_PROBE)`) or
    /// what is missing.
    pub what: String,
    /// The likely cause and its fix (memlock limit, `kernel.io_uring_disabled`, seccomp, kernel version).
    pub hint: String,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errno {
            Some(e) => write!(
                f,
                "io_uring unavailable: {} failed with {} ({}): {}",
                self.what,
                errno_name(e),
                io::Error::from_raw_os_error(e)
                    .to_string()
                    .split(" (os error")
                    .next()
                    .unwrap_or(""),
                self.hint
            ),
            None => write!(f, "io_uring unavailable: {}: {}", self.what, self.hint),
        }
    }
}

impl std::error::Error for Unavailable {}

/// The hint for an io_uring_setup errno (REFERENCE.md section 2).
pub fn setup_hint(errno: i32) -> String {
    match errno {
        libc::ENOSYS => "this kernel has no io_uring; ringmux needs Linux 5.6+ built with CONFIG_IO_URING".into(),
        libc::EPERM => "io_uring is disabled by sysctl kernel.io_uring_disabled (1 or 2) or blocked by a seccomp profile \
                        (Docker's default blocks it); fix: `sysctl -w kernel.io_uring_disabled=0`, or run with a seccomp \
                        profile that allows io_uring_setup/io_uring_enter/io_uring_register"
            .into(),
        libc::ENOMEM => "RLIMIT_MEMLOCK is too low for the ring even at 8 entries; fix: raise it (`ulimit -l 65536`, \
                         or LimitMEMLOCK= in a systemd unit)"
            .into(),
        libc::EINVAL => "the kernel rejected the ring parameters (kernel older than 5.6?); fix: upgrade the kernel".into(),
        _ => "unexpected error from io_uring_setup".into(),
    }
}

/// Build a plain ring, halving the size on ENOMEM (a low RLIMIT_MEMLOCK) down to 8 entries.
pub fn build_ring(entries: u32) -> Result<IoUring, Unavailable> {
    build_ring_configured(
        entries,
        |b, n| {
            b.setup_cqsize(n.saturating_mul(4));
        },
        || {},
        || "io_uring_setup".into(),
    )
}

/// Build a ring of `entries` (at least 8) set up by `configure(builder, entries)`,
/// halving the entries on ENOMEM (a low RLIMIT_MEMLOCK) down to 8. `on_attempt` runs
/// before each io_uring_setup (the server counts them); `what` names the call in the
/// error.
pub fn build_ring_configured(
    entries: u32,
    configure: impl Fn(&mut io_uring::Builder, u32),
    mut on_attempt: impl FnMut(),
    what: impl FnOnce() -> String,
) -> Result<IoUring, Unavailable> {
    let mut n = entries.max(8);
    loop {
        on_attempt();
        let mut b = IoUring::builder();
        configure(&mut b, n);
        match b.build(n) {
            Ok(r) => return Ok(r),
            Err(e) => {
                let code = e.raw_os_error().unwrap_or(0);
                if code == libc::ENOMEM && n > 8 {
                    n /= 2;
                    continue;
                }
                return Err(Unavailable {
                    errno: Some(code),
                    what: what(),
                    hint: setup_hint(code),
                });
            }
        }
    }
}

/// Opcode support via REGISTER_PROBE (Linux 5.6+).
pub fn probe_ops(ring: &IoUring) -> Result<Probe, Unavailable> {
    let mut p = Probe::new();
    ring.submitter()
        .register_probe(&mut p)
        .map_err(|e| Unavailable {
            errno: Some(e.raw_os_error().unwrap_or(0)),
            what: "io_uring_register(REGISTER_PROBE)".into(),
            hint: "the kernel is older than 5.6, ringmux's floor; fix: upgrade the kernel".into(),
        })?;
    Ok(p)
}

/// A ring fd registered with IORING_REGISTER_RING_FDS (5.18), entered by its index so
/// the kernel skips the fd lookup (fget/fput) on every io_uring_enter.
///
/// The io-uring crate keeps the registered index in the `Submitter` that registered
/// it, and `IoUring::submitter()` makes a fresh one on every call: so
/// `ring.submitter().register_ring_fd()` registers the fd, but every later enter
/// through the crate still passes the raw fd. This keeps the index and enters with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingIndex(u32);

/// `struct io_uring_rsrc_update` (include/uapi/linux/io_uring.h).
#[repr(C)]
struct RsrcUpdate {
    offset: u32,
    resv: u32,
    data: u64,
}

/// `struct io_uring_getevents_arg` (5.11; `min_wait_usec` was `pad` before 6.12).
#[repr(C)]
struct GeteventsArg {
    sigmask: u64,
    sigmask_sz: u32,
    min_wait_usec: u32,
    ts: u64,
}

const IORING_REGISTER_RING_FDS: libc::c_uint = 20;
const IORING_ENTER_GETEVENTS: libc::c_uint = 1;
const IORING_ENTER_EXT_ARG: libc::c_uint = 1 << 3;
const IORING_ENTER_REGISTERED_RING: libc::c_uint = 1 << 4;

/// Register `ring`'s fd in the calling thread's registered ring table (EINVAL before
/// 5.18: then enter by the raw fd as before).
pub fn register_ring_fd(ring: &IoUring) -> io::Result<RingIndex> {
    use std::os::fd::AsRawFd;
    let mut up = RsrcUpdate {
        offset: u32::MAX, // any free slot
        resv: 0,
        data: ring.as_raw_fd() as u64,
    };
    // SAFETY: `up` is a valid io_uring_rsrc_update for the call; the kernel writes the
    // chosen slot into `up.offset` and keeps no pointer to it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring.as_raw_fd(),
            IORING_REGISTER_RING_FDS,
            &mut up as *mut RsrcUpdate,
            1u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(RingIndex(up.offset))
}

/// io_uring_enter by the registered index: submit what the SQ holds and wait for
/// `want` completions, with an optional timeout and min_wait (µs, 6.12+; 0 = none).
/// Not for SQPOLL rings (the crate's enter handles their wake-up flag).
pub fn enter_registered(
    ring: &mut IoUring,
    idx: RingIndex,
    want: u32,
    timeout: Option<std::time::Duration>,
    min_wait_usec: u32,
) -> io::Result<usize> {
    let to_submit = ring.submission().len() as u32;
    let mut flags = IORING_ENTER_REGISTERED_RING;
    if want > 0 {
        flags |= IORING_ENTER_GETEVENTS;
    }
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let arg = ts.as_ref().map(|t| GeteventsArg {
        sigmask: 0,
        sigmask_sz: 0,
        min_wait_usec,
        ts: t as *const libc::timespec as u64,
    });
    let (argp, argsz) = match &arg {
        Some(a) => {
            flags |= IORING_ENTER_EXT_ARG;
            (
                a as *const GeteventsArg as *const libc::c_void,
                std::mem::size_of::<GeteventsArg>(),
            )
        }
        None => (std::ptr::null(), 0),
    };
    // SAFETY: `idx` names this ring in the calling thread's registered ring table; the
    // SQEs it submits reference memory their owner keeps until completion (the
    // caller's contract for every push); `arg` and the timespec it points to live on
    // this stack frame for the whole call, and the kernel keeps no pointer to them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_uring_enter,
            idx.0,
            to_submit,
            want,
            flags,
            argp,
            argsz,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}
