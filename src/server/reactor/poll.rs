//! poll(2), level-triggered: the pollfd array is handed to the kernel on every wait,
//! so a wait costs O(watched fds), with no 1024 limit. The array is kept in step with
//! the connection table: one entry per registered fd, removed by swapping the last
//! entry in. An entry with no interest is negated (poll skips negative fds), so a
//! paused connection neither wakes the loop nor reports a hang-up it cannot act on.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use super::{Event, Interest, Readiness};
use crate::server::sys::syscall;
use crate::server::sys::timeout_ms;

/// Readiness from poll(2), level-triggered, over a pollfd array.
pub struct Poll {
    fds: Vec<libc::pollfd>,
    /// `tokens[i]` is the token of `fds[i]`.
    tokens: Vec<usize>,
    /// token -> index in `fds`.
    index: HashMap<usize, usize>,
}

fn entry(fd: RawFd, i: Interest) -> libc::pollfd {
    let mut events = 0;
    if i.read {
        events |= libc::POLLIN | libc::POLLRDHUP;
    }
    if i.write {
        events |= libc::POLLOUT;
    }
    // poll ignores a negative fd; !fd keeps fd 0 distinguishable and recoverable.
    let fd = if events == 0 { !fd } else { fd };
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

impl Readiness for Poll {
    const NAME: &'static str = "poll";
    const EDGE: bool = false;

    fn new() -> io::Result<Poll> {
        Ok(Poll {
            fds: Vec::new(),
            tokens: Vec::new(),
            index: HashMap::new(),
        })
    }

    fn register(&mut self, fd: RawFd, token: usize, interest: Interest) -> io::Result<()> {
        if self.index.contains_key(&token) {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        self.index.insert(token, self.fds.len());
        self.fds.push(entry(fd, interest));
        self.tokens.push(token);
        Ok(())
    }

    fn modify(&mut self, fd: RawFd, token: usize, interest: Interest) -> io::Result<()> {
        let i = *self
            .index
            .get(&token)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        self.fds[i] = entry(fd, interest);
        Ok(())
    }

    fn unregister(&mut self, _fd: RawFd, token: usize, _closing: bool) -> io::Result<()> {
        let i = self
            .index
            .remove(&token)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        self.fds.swap_remove(i);
        self.tokens.swap_remove(i);
        if i < self.fds.len() {
            self.index.insert(self.tokens[i], i);
        }
        Ok(())
    }

    fn wait(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        // SAFETY: `self.fds` is ours and not resized during the call; the kernel writes only the `revents` of its `len()` entries.
        let n = syscall!(
            Poll,
            poll(
                self.fds.as_mut_ptr(),
                self.fds.len() as libc::nfds_t,
                timeout_ms(timeout)
            )
        )? as usize;
        if n == 0 {
            return Ok(());
        }
        let hup = libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR;
        for (p, &token) in self.fds.iter().zip(&self.tokens) {
            let r = p.revents;
            if r != 0 {
                events.push(Event {
                    token,
                    readable: r & libc::POLLIN != 0,
                    writable: r & libc::POLLOUT != 0,
                    hup: r & hup != 0,
                });
            }
        }
        Ok(())
    }
}
