//! select(2), level-triggered: two fd bitmaps of FD_SETSIZE (1024) bits are rebuilt
//! and scanned up to the highest watched fd on every wait, so a wait costs
//! O(highest fd). An fd of 1024 or more cannot be put in an fd_set (glibc's FD_SET
//! would write past it): [`Readiness::fd_limit`] tells the loop to refuse such
//! connections, and `register` refuses them too.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use super::{Event, Interest, Readiness};
use crate::server::sys::syscall;

/// The size of an fd_set in bits (1024): the first fd select(2) cannot watch.
pub const FD_SETSIZE: RawFd = libc::FD_SETSIZE as RawFd;

/// Readiness from select(2), level-triggered, fds below FD_SETSIZE only.
pub struct Select {
    /// By fd: the token and interest of a watched fd.
    slots: Vec<Option<(usize, Interest)>>,
    /// One more than the highest watched fd.
    nfds: RawFd,
}

fn empty_set() -> libc::fd_set {
    // SAFETY: fd_set is plain data; all-zero is the empty set (what FD_ZERO writes).
    unsafe { std::mem::zeroed() }
}

impl Select {
    fn check(fd: RawFd) -> io::Result<usize> {
        if !(0..FD_SETSIZE).contains(&fd) {
            return Err(io::Error::other(format!(
                "select: fd {fd} is outside an fd_set (FD_SETSIZE {FD_SETSIZE})"
            )));
        }
        Ok(fd as usize)
    }
}

impl Readiness for Select {
    const NAME: &'static str = "select";
    const EDGE: bool = false;

    fn new() -> io::Result<Select> {
        Ok(Select {
            slots: vec![None; FD_SETSIZE as usize],
            nfds: 0,
        })
    }

    fn fd_limit(&self) -> Option<RawFd> {
        Some(FD_SETSIZE)
    }

    fn register(&mut self, fd: RawFd, token: usize, interest: Interest) -> io::Result<()> {
        let i = Select::check(fd)?;
        self.slots[i] = Some((token, interest));
        self.nfds = self.nfds.max(fd + 1);
        Ok(())
    }

    fn modify(&mut self, fd: RawFd, token: usize, interest: Interest) -> io::Result<()> {
        let i = Select::check(fd)?;
        self.slots[i] = Some((token, interest));
        Ok(())
    }

    fn unregister(&mut self, fd: RawFd, _token: usize, _closing: bool) -> io::Result<()> {
        let i = Select::check(fd)?;
        self.slots[i] = None;
        while self.nfds > 0 && self.slots[self.nfds as usize - 1].is_none() {
            self.nfds -= 1;
        }
        Ok(())
    }

    fn wait(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        let (mut rd, mut wr) = (empty_set(), empty_set());
        let n = self.nfds as usize;
        for (fd, s) in self.slots[..n].iter().enumerate() {
            if let Some((_, i)) = s {
                // SAFETY: fd < nfds <= FD_SETSIZE (checked at register), so FD_SET
                // writes inside the sets, which live on this stack frame.
                unsafe {
                    if i.read {
                        libc::FD_SET(fd as RawFd, &mut rd);
                    }
                    if i.write {
                        libc::FD_SET(fd as RawFd, &mut wr);
                    }
                }
            }
        }
        let mut tv = timeout.map(|d| libc::timeval {
            tv_sec: d.as_secs() as libc::time_t,
            tv_usec: d.subsec_micros() as libc::suseconds_t,
        });
        let tvp = tv
            .as_mut()
            .map_or(std::ptr::null_mut(), |t| t as *mut libc::timeval);
        // SAFETY: `rd`, `wr` and the timeval behind `tvp` (or null) live on this stack frame for the call; `nfds` <= FD_SETSIZE.
        let ready = syscall!(
            Select,
            select(self.nfds, &mut rd, &mut wr, std::ptr::null_mut(), tvp)
        )?;
        if ready == 0 {
            return Ok(());
        }
        for (fd, s) in self.slots[..n].iter().enumerate() {
            if let Some((token, _)) = s {
                // SAFETY: fd < FD_SETSIZE: FD_ISSET reads inside the sets.
                let (r, w) = unsafe {
                    (
                        libc::FD_ISSET(fd as RawFd, &rd),
                        libc::FD_ISSET(fd as RawFd, &wr),
                    )
                };
                if r || w {
                    // select folds hang-ups and errors into readable: the read tells.
                    events.push(Event {
                        token: *token,
                        readable: r,
                        writable: w,
                        hup: false,
                    });
                }
            }
        }
        Ok(())
    }
}
