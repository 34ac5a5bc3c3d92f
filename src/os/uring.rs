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
    pub what: String,
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
