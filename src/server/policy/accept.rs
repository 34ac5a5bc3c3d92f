//! Accepting: errors and back-off, the counted accept4, --max-conns, and refusing
//! descriptors a mechanism cannot watch.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crate::server::config::ServerConfig;
use crate::server::stats::LoopStats;
use crate::server::sys;
use crate::server::sys::syscall;

/// Back-off after EMFILE/ENFILE/ENOBUFS/ENOMEM on accept.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// What to do after a failed accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptFailure {
    /// Nothing queued (EAGAIN): wait for readiness.
    Empty,
    /// Out of descriptors or memory: stop accepting for [`ACCEPT_BACKOFF`]; the
    /// backlog keeps the clients waiting.
    BackOff,
    /// One connection failed (ECONNABORTED, EPROTO, EINTR...): try the next.
    Next,
}

/// Classify and count an accept error.
pub fn accept_failed(e: &io::Error, stats: &mut LoopStats) -> AcceptFailure {
    failed(e.raw_os_error().unwrap_or(0), stats)
}

/// Classify and count a failed accept by its errno (a syscall's, or an ACCEPT
/// completion's): every back-off counts in `accept_backoffs`, every failure but an
/// empty queue, an interruption or a cancel in `accept_errors`.
pub fn failed(errno: i32, stats: &mut LoopStats) -> AcceptFailure {
    match errno {
        libc::EAGAIN => AcceptFailure::Empty,
        libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
            stats.accept_errors += 1;
            stats.accept_backoffs += 1;
            AcceptFailure::BackOff
        }
        libc::EINTR | libc::ECANCELED => AcceptFailure::Next,
        _ => {
            stats.accept_errors += 1; // ECONNABORTED, EPROTO, ...
            AcceptFailure::Next
        }
    }
}

/// accept4 on `listen_fd`, the new socket non-blocking or not, counted.
pub fn accept(listen_fd: RawFd, nonblocking: bool) -> io::Result<RawFd> {
    let flags = libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: null address and length: the kernel writes no peer address; the new fd is the caller's.
    syscall!(
        Accept4,
        accept4(listen_fd, std::ptr::null_mut(), std::ptr::null_mut(), flags)
    )
}

/// A new connection is in: count it, set TCP_NODELAY.
pub fn accepted(fd: RawFd, stats: &mut LoopStats) {
    stats.accepted += 1;
    let _ = sys::set_nodelay(fd);
}

/// Refusals of descriptors a mechanism cannot watch (select: fd >= FD_SETSIZE),
/// with one warning line per burst (a refusal after a quiet second starts a burst).
#[derive(Debug, Default)]
pub struct Refusals {
    last: Option<Instant>,
}

const BURST_GAP: Duration = Duration::from_secs(1);

impl Refusals {
    /// Close `fd` at once (it was never watched) and count it.
    pub fn refuse(&mut self, fd: RawFd, limit: RawFd, why: &str, stats: &mut LoopStats) {
        super::close_counted(fd, stats);
        stats.refused_fd_setsize += 1;
        let now = Instant::now();
        if self.last.is_none_or(|t| now.duration_since(t) > BURST_GAP) {
            eprintln!(
                "ringmux: warning: refusing connections on fd >= {limit} ({why}); \
                 counted as refused_fd_setsize, the others are served"
            );
        }
        self.last = Some(now);
    }
}

/// --max-conns: true when a new connection must be refused with `live` already in
/// (the caller closes it at once); counted.
pub fn refuse_max_conns(cfg: &ServerConfig, live: usize, fd: RawFd, stats: &mut LoopStats) -> bool {
    if cfg.max_conns.is_some_and(|m| live >= m) {
        super::close_counted(fd, stats);
        stats.refused_max_conns += 1;
        return true;
    }
    false
}
