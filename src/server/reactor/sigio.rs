//! Signal-driven IO: no wait over a set of fds. Each socket is O_ASYNC with F_SETSIG,
//! so the kernel queues a real-time signal carrying the fd (`si_fd`) and the band
//! (POLL_IN, POLL_OUT...) whenever it becomes ready. The signal is blocked in the
//! loop's thread and taken with sigtimedwait (the wait), then a signalfd read takes
//! whatever else is queued, up to 64 per read. Routing is by fd.
//!
//! Edge-triggered: a signal says "something happened", once per event, so the loop
//! reads until EAGAIN, and data that arrived before O_ASYNC was set raised no signal
//! (the loop reads once at registration).
//!
//! The queue is bounded (RLIMIT_SIGPENDING). When it is full the kernel queues plain
//! SIGIO instead, which carries no fd: readiness was lost, so the loop rescans every
//! connection; these are counted as `sigio_overflows`. With several event loops each
//! socket's owner is its loop's thread (F_SETOWN_EX with F_OWNER_TID), so every loop
//! gets the signals of its own fds only.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use super::{Counts, Event, Interest, RESCAN, Readiness};
use crate::server::sys;

use crate::server::sys::syscall;

// Linux fcntl commands the libc crate lacks (include/uapi/asm-generic/fcntl.h).
const F_SETSIG: libc::c_int = 10;
const F_SETOWN_EX: libc::c_int = 15;
const F_OWNER_TID: libc::c_int = 0;

/// `struct f_owner_ex`.
#[repr(C)]
struct FOwnerEx {
    type_: libc::c_int,
    pid: libc::pid_t,
}

/// siginfo records per signalfd read.
const BATCH: usize = 64;

/// The real-time signal the server uses (one for the whole process; routed by fd).
pub fn rt_signal() -> libc::c_int {
    libc::SIGRTMIN() + 4
}

/// Block the rt signal and SIGIO in the calling thread (and the threads it spawns
/// later). Done by `serve` before any loop starts, so no signal for a socket can ever
/// reach a thread that would take its default action (terminate).
pub fn block_signals() -> io::Result<()> {
    let set = sigset();
    // SAFETY: `set` is a valid, initialised sigset_t on this frame; old set not wanted.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        Err(io::Error::from_raw_os_error(r))
    } else {
        Ok(())
    }
}

fn sigset() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the zeroed set; sigaddset with valid signal numbers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, rt_signal());
        libc::sigaddset(&mut set, libc::SIGIO);
        set
    }
}

/// Readiness from queued real-time signals (F_SETSIG), taken with sigtimedwait.
pub struct Sigio {
    set: libc::sigset_t,
    sfd: RawFd,
    tid: libc::pid_t,
    /// fd -> token of every registered fd.
    tokens: HashMap<RawFd, usize>,
    buf: Vec<libc::signalfd_siginfo>,
    /// The last batch was full: read the signalfd first next time.
    busy: bool,
    signals: u64,
    overflows: u64,
}

impl Sigio {
    fn fcntl(fd: RawFd, cmd: libc::c_int, arg: libc::c_long) -> io::Result<libc::c_int> {
        // SAFETY: fcntl with an integer argument: no memory is passed.
        syscall!(Fcntl, fcntl(fd, cmd, arg))
    }

    /// Route fd's readiness to this thread as our rt signal.
    fn arm(&self, fd: RawFd) -> io::Result<()> {
        let owner = FOwnerEx {
            type_: F_OWNER_TID,
            pid: self.tid,
        };
        // SAFETY: `owner` lives on this stack frame for the call; the kernel only reads it.
        syscall!(Fcntl, fcntl(fd, F_SETOWN_EX, &owner as *const FOwnerEx))?;
        Sigio::fcntl(fd, F_SETSIG, rt_signal() as libc::c_long)?;
        // F_SETFL changes only the status flags (O_ASYNC, O_NONBLOCK, O_APPEND...), and
        // every fd the loop watches is non-blocking: no F_GETFL needed.
        Sigio::fcntl(
            fd,
            libc::F_SETFL,
            (libc::O_ASYNC | libc::O_NONBLOCK) as libc::c_long,
        )
        .map(drop)
    }

    fn take(&mut self, n: usize, events: &mut Vec<Event>) {
        for si in &self.buf[..n] {
            self.signals += 1;
            if si.ssi_signo == libc::SIGIO as u32 {
                self.overflows += 1;
                events.push(RESCAN_ALL);
                continue;
            }
            let Some(&token) = self.tokens.get(&si.ssi_fd) else {
                continue;
            }; // closed since
            let band = si.ssi_band as libc::c_short;
            events.push(Event {
                token,
                readable: band & (libc::POLLIN | libc::POLLRDNORM | libc::POLLPRI) != 0,
                writable: band & (libc::POLLOUT | libc::POLLWRNORM) != 0,
                hup: band & (libc::POLLHUP | libc::POLLERR | libc::POLLRDHUP) != 0,
            });
        }
    }

    /// A non-blocking read of up to [`BATCH`] queued signals.
    fn read_batch(&mut self) -> io::Result<usize> {
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: `self.buf` is ours and holds `BATCH` siginfo records (`size * BATCH` bytes) for the call.
        match syscall!(
            Read,
            read(
                self.sfd,
                self.buf.as_mut_ptr() as *mut libc::c_void,
                size * BATCH
            )
        ) {
            Ok(n) => Ok(n as usize / size),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// The head of a `siginfo_t` for a SIGPOLL-style signal (F_SETSIG): three ints, then
/// the union whose sigpoll member is `{ long si_band; int si_fd; }`, aligned for a long
/// (the kernel's `__ARCH_SI_PREAMBLE_SIZE`). libc does not expose these two fields.
#[repr(C)]
struct SigPoll {
    _signo: libc::c_int,
    _errno: libc::c_int,
    _code: libc::c_int,
    band: libc::c_long,
    fd: libc::c_int,
}

const _: () = assert!(std::mem::size_of::<SigPoll>() <= std::mem::size_of::<libc::siginfo_t>());
const _: () = assert!(
    std::mem::offset_of!(SigPoll, band) == 3 * 4 + (std::mem::size_of::<libc::c_long>() - 4)
);

/// A plain SIGIO: the real-time queue overflowed and readiness was lost; the loop
/// must look at every descriptor.
const RESCAN_ALL: Event = Event {
    token: RESCAN,
    readable: true,
    writable: true,
    hup: false,
};

impl Readiness for Sigio {
    const NAME: &'static str = "sigio";
    const EDGE: bool = true;
    const READ_ON_REGISTER: bool = true;

    fn new() -> io::Result<Sigio> {
        block_signals()?; // already blocked by serve(); cheap insurance for this thread
        let set = sigset();
        // SAFETY: `set` lives on this stack frame for the call; fd -1 asks for a new signalfd.
        let sfd = syscall!(
            Signalfd,
            signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC)
        )?;
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::gettid() };
        // SAFETY: signalfd_siginfo is plain data; all-zero is a valid value.
        let zero: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        Ok(Sigio {
            set,
            sfd,
            tid,
            tokens: HashMap::new(),
            buf: vec![zero; BATCH],
            busy: false,
            signals: 0,
            overflows: 0,
        })
    }

    fn register(&mut self, fd: RawFd, token: usize, _interest: Interest) -> io::Result<()> {
        self.tokens.insert(fd, token);
        if let Err(e) = self.arm(fd) {
            self.tokens.remove(&fd);
            return Err(e);
        }
        Ok(())
    }

    /// Signals come for every kind of readiness: interest needs no change.
    fn modify(&mut self, fd: RawFd, token: usize, _interest: Interest) -> io::Result<()> {
        self.tokens.insert(fd, token);
        Ok(())
    }

    fn unregister(&mut self, fd: RawFd, _token: usize, closing: bool) -> io::Result<()> {
        self.tokens.remove(&fd);
        if !closing {
            Sigio::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK as libc::c_long)?;
        }
        Ok(())
    }

    fn wait(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        if self.busy {
            let n = self.read_batch()?;
            self.busy = n == BATCH;
            if n > 0 {
                self.take(n, events);
                return Ok(());
            }
        }
        let ts = timeout.map(|d| libc::timespec {
            tv_sec: d.as_secs() as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        });
        let tsp = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: siginfo_t is plain data; all-zero is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `self.set`, `info` and the timespec behind `tsp` (or null) are ours for the call; the kernel writes `info` only.
        match syscall!(RtSigtimedwait, sigtimedwait(&self.set, &mut info, tsp)) {
            Ok(sig) => {
                self.signals += 1;
                if sig == libc::SIGIO {
                    self.overflows += 1;
                    events.push(RESCAN_ALL);
                } else {
                    // SAFETY: `info` is a whole siginfo_t the kernel filled in; SigPoll is
                    // plain data no larger than it (checked at compile time below), and an
                    // F_SETSIG signal carries the sigpoll member of the union.
                    let head = unsafe {
                        std::ptr::read_unaligned(&info as *const libc::siginfo_t as *const SigPoll)
                    };
                    let (fd, band) = (head.fd, head.band as libc::c_short);
                    if let Some(&token) = self.tokens.get(&fd) {
                        events.push(Event {
                            token,
                            readable: band & (libc::POLLIN | libc::POLLRDNORM | libc::POLLPRI) != 0,
                            writable: band & (libc::POLLOUT | libc::POLLWRNORM) != 0,
                            hup: band & (libc::POLLHUP | libc::POLLERR | libc::POLLRDHUP) != 0,
                        });
                    }
                }
                // Whatever else is queued, in one read.
                let n = self.read_batch()?;
                self.busy = n == BATCH;
                self.take(n, events);
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(()), // timed out
            Err(e) => Err(e),
        }
    }

    fn take_counts(&mut self) -> Counts {
        Counts {
            signals: std::mem::take(&mut self.signals),
            overflows: std::mem::take(&mut self.overflows),
        }
    }
}

impl Drop for Sigio {
    fn drop(&mut self) {
        sys::close(self.sfd);
    }
}
