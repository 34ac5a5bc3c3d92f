//! Signals: SIGINT/SIGTERM stop every loop, SIGUSR1 asks for a stats snapshot. The
//! process holds one [`SignalHub`]; each event loop its own [`Signals`] (a wake pipe it
//! watches beside its sockets).

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use super::sys::{self, syscall};

/// The process's signal state, with one wake pipe per event loop.
///
/// SIGINT/SIGTERM set one stop flag; SIGUSR1 bumps a request counter. Either then
/// writes a byte to every loop's own wake pipe, so every loop wakes, whichever thread
/// the kernel ran the handler on. A counter, not a flag: each loop must tell by itself
/// whether a request is new to it, and two quick SIGUSR1s may reach a loop as one
/// wake, yet the snapshot must cover the newest request.
///
/// One handler action per signal wakes all loops (rather than signal-hook's pipe
/// helper once per loop and signal), so a loop costs two fds, not four. Other threads wake a loop
/// the same way ([`Signals::waker`]).
pub struct SignalHub {
    stop: Arc<AtomicBool>,
    /// Write ends of the loops' wake pipes. The handler actions hold them too, so they
    /// stay open as long as an action may run.
    wakers: Arc<Vec<UnixStream>>,
}

fn wake_all(wakers: &[UnixStream]) {
    for w in wakers {
        sys::wake(w.as_raw_fd());
    }
}

impl SignalHub {
    /// Install the handlers; returns the hub and each loop's [`Signals`].
    pub fn install(loops: usize) -> io::Result<(SignalHub, Vec<Signals>)> {
        use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let mut wakers = Vec::with_capacity(loops);
        let mut reads = Vec::with_capacity(loops);
        for _ in 0..loops.max(1) {
            let (read, write) = UnixStream::pair()?;
            read.set_nonblocking(true)?;
            write.set_nonblocking(true)?;
            wakers.push(write);
            reads.push(read);
        }
        let wakers = Arc::new(wakers);
        let each = reads
            .into_iter()
            .enumerate()
            .map(|(index, read)| Signals {
                read,
                wakers: wakers.clone(),
                index,
                stop: stop.clone(),
                requests: requests.clone(),
                seen: Arc::new(AtomicUsize::new(0)),
            })
            .collect();
        for sig in [SIGINT, SIGTERM] {
            let (stop, w) = (stop.clone(), wakers.clone());
            // SAFETY: the action runs inside the signal handler and does only
            // async-signal-safe things: an atomic store, then send(2) on fds the
            // closure keeps open (signal-hook saves and restores errno around it).
            unsafe {
                signal_hook::low_level::register(sig, move || {
                    stop.store(true, Ordering::SeqCst);
                    wake_all(&w);
                })
            }?;
        }
        let (r, w) = (requests.clone(), wakers.clone());
        // SAFETY: as above: a lock-free atomic add, then send(2) on fds kept open.
        unsafe {
            signal_hook::low_level::register(SIGUSR1, move || {
                r.fetch_add(1, Ordering::SeqCst);
                wake_all(&w);
            })
        }?;
        Ok((SignalHub { stop, wakers }, each))
    }

    /// Stop every loop as SIGTERM would (a loop failed: the server fails as a whole).
    pub fn stop_all(&self) {
        self.stop.store(true, Ordering::SeqCst);
        wake_all(&self.wakers);
    }
}

/// One event loop's view of the signals: its own wake pipe, which it watches, and the
/// shared stop flag and snapshot counter.
pub struct Signals {
    read: UnixStream,
    /// Every loop's wake pipe write end, and which one is this loop's.
    wakers: Arc<Vec<UnixStream>>,
    index: usize,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    /// The newest snapshot request this loop has taken (shared with its [`Reporter`](super::Reporter)).
    seen: Arc<AtomicUsize>,
}

impl Signals {
    /// The read end of this loop's wake pipe: the descriptor the loop watches (non-blocking).
    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Empty the wake pipe until EAGAIN (bounded: it is non-blocking, and each signal
    /// adds one byte; edge-triggered waits need it empty).
    pub fn drain(&self) {
        let mut buf = [0u8; 256];
        for _ in 0..4096 {
            // SAFETY: `buf` lives on this stack frame for the call and is `buf.len()` bytes long.
            match syscall!(
                Read,
                read(self.fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len())
            ) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
    }

    /// The loop's record of the newest snapshot request it took, for its
    /// [`Reporter`](super::Reporter) to tag what it publishes with.
    pub(super) fn seen(&self) -> Arc<AtomicUsize> {
        self.seen.clone()
    }

    /// SIGINT or SIGTERM came: the loop should drain and end.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Wake this loop as a signal would (its serving side ended, or another loop
    /// posted to its chat inbox).
    pub fn wake(&self) {
        self.waker().wake();
    }

    /// A handle another thread may keep to wake this loop.
    pub fn waker(&self) -> Waker {
        Waker {
            wakers: self.wakers.clone(),
            index: self.index,
        }
    }

    /// Block until this loop is woken (the byte is taken) or `timeout` passes: for the
    /// models with no event loop, whose supervisor has nothing else to wait for. The
    /// pipe is made blocking for the read, with the timeout as SO_RCVTIMEO.
    pub fn wait(&self, timeout: Option<Duration>) {
        if timeout.is_some_and(|t| t.is_zero()) {
            return;
        }
        let r = &self.read;
        if r.set_nonblocking(false).is_ok() && r.set_read_timeout(timeout).is_ok() {
            let mut b = [0u8; 1];
            let _ = (&self.read).read(&mut b);
        }
        let _ = r.set_nonblocking(true);
    }

    /// A SIGUSR1 is pending for this loop (without taking it).
    pub fn take_snapshot_request_peek(&self) -> bool {
        self.requests.load(Ordering::Relaxed) != self.seen.load(Ordering::Relaxed)
    }

    /// True once per new SIGUSR1 (several quick ones may count as one).
    pub fn take_snapshot_request(&self) -> bool {
        let now = self.requests.load(Ordering::SeqCst);
        if now == self.seen.load(Ordering::Relaxed) {
            return false;
        }
        self.seen.store(now, Ordering::Relaxed);
        true
    }
}

/// Wakes one loop from any thread (see [`Signals::waker`]).
#[derive(Clone)]
pub struct Waker {
    wakers: Arc<Vec<UnixStream>>,
    index: usize,
}

impl Waker {
    /// Wake the loop (one byte down its pipe; a full pipe already holds a wake-up).
    pub fn wake(&self) {
        wake_all(&self.wakers[self.index..=self.index]);
    }
}

impl std::fmt::Debug for Waker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Waker(loop {})", self.index)
    }
}
