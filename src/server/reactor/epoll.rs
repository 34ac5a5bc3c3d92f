//! epoll(7), edge-triggered: the kernel keeps the interest set and a ready list, so
//! a wait costs O(ready), and epoll_ctl changes interest. EPOLLRDHUP reports a
//! queued FIN with the readiness.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use super::{Event, Interest, Readiness};
use crate::server::sys;
use crate::server::sys::syscall;
use crate::server::sys::timeout_ms;

const EVENTS: usize = 512;

/// Readiness from edge-triggered epoll.
pub struct Epoll {
    epfd: RawFd,
    buf: Vec<libc::epoll_event>,
}

fn bits(i: Interest) -> u32 {
    let mut b = (libc::EPOLLRDHUP | libc::EPOLLET) as u32;
    if i.read {
        b |= libc::EPOLLIN as u32;
    }
    if i.write {
        b |= libc::EPOLLOUT as u32;
    }
    b
}

impl Epoll {
    fn ctl(&self, op: i32, fd: RawFd, events: u32, token: usize) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events,
            u64: token as u64,
        };
        // SAFETY: `ev` lives on this stack frame for the call; the kernel copies it.
        syscall!(EpollCtl, epoll_ctl(self.epfd, op, fd, &mut ev)).map(drop)
    }
}

impl Readiness for Epoll {
    const NAME: &'static str = "epoll";
    const EDGE: bool = true;
    const REPORTS_RDHUP: bool = true;

    fn new() -> io::Result<Epoll> {
        // SAFETY: no memory is passed; the new fd is owned by the returned Epoll.
        let epfd = syscall!(EpollCreate, epoll_create1(libc::EPOLL_CLOEXEC))?;
        Ok(Epoll {
            epfd,
            buf: vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS],
        })
    }

    fn register(&mut self, fd: RawFd, token: usize, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, bits(interest), token)
    }

    fn modify(&mut self, fd: RawFd, token: usize, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, bits(interest), token)
    }

    fn unregister(&mut self, fd: RawFd, token: usize, closing: bool) -> io::Result<()> {
        if closing {
            return Ok(()); // close(2) removes the fd from the set
        }
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, token)
    }

    fn wait(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        // SAFETY: `self.buf` is ours with room for `EVENTS` entries; the kernel writes at most that many.
        let n = syscall!(
            EpollWait,
            epoll_wait(
                self.epfd,
                self.buf.as_mut_ptr(),
                EVENTS as i32,
                timeout_ms(timeout)
            )
        )? as usize;
        let hup = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        events.extend(self.buf[..n].iter().map(|e| Event {
            token: e.u64 as usize,
            readable: e.events & libc::EPOLLIN as u32 != 0,
            writable: e.events & libc::EPOLLOUT as u32 != 0,
            hup: e.events & hup != 0,
        }));
        Ok(())
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        sys::close(self.epfd);
    }
}
