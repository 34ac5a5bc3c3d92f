//! The epoll driver: non-blocking sockets, edge-triggered, one send and one receive
//! scratch buffer for the whole thread (the core regenerates payload bytes, so a short
//! write loses nothing).

use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use super::engine::{Core, Driver};
use super::plan::{ErrKind, classify};
use super::sys::{self, EV_ERR, EV_IN, EV_OUT, Epoll};

const SCRATCH: usize = 64 * 1024;
const EVENTS: usize = 1024;

struct Sock {
    stream: Option<TcpStream>,
    fd: RawFd,
    writable: bool,
}

pub(crate) struct EpollDriver {
    epoll: Epoll,
    socks: Vec<Sock>,
    tx_buf: Vec<u8>,
    rx_buf: Vec<u8>,
    events: Vec<libc::epoll_event>,
}

impl EpollDriver {
    /// Register the connected streams (made non-blocking). Err: one line for the user.
    pub fn new(streams: Vec<TcpStream>, size: usize) -> Result<EpollDriver, String> {
        let epoll = Epoll::new().map_err(|e| format!("epoll_create1: {e}"))?;
        let mut socks = Vec::with_capacity(streams.len());
        for (ci, s) in streams.into_iter().enumerate() {
            s.set_nonblocking(true)
                .map_err(|e| format!("cannot make a socket non-blocking: {e}"))?;
            let fd = s.as_raw_fd();
            epoll
                .add(fd, ci as u64)
                .map_err(|e| format!("epoll_ctl: {e}"))?;
            socks.push(Sock {
                stream: Some(s),
                fd,
                writable: true,
            });
        }
        Ok(EpollDriver {
            epoll,
            socks,
            tx_buf: vec![0; SCRATCH.max(size.min(1 << 20))],
            rx_buf: vec![0; SCRATCH],
            events: vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS],
        })
    }

    /// Read until the socket is drained (edge-triggered). A short read means the receive
    /// queue was empty at that moment, and data arriving later raises a new edge, so no
    /// extra recv is spent to see EAGAIN. Bounded: the server can only owe what was sent;
    /// anything beyond is a mismatch that ends the connection.
    fn on_readable(&mut self, core: &mut Core, ci: usize, now: u64) -> Result<(), ErrKind> {
        let fd = self.socks[ci].fd;
        loop {
            match sys::recv(fd, &mut self.rx_buf) {
                Ok(0) => return Err(ErrKind::Reset),
                Ok(n) => {
                    core.on_bytes(ci, &self.rx_buf[..n], now)?;
                    if n < self.rx_buf.len() {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(classify(e.raw_os_error())),
            }
        }
    }
}

impl Driver for EpollDriver {
    fn send(&mut self, core: &mut Core, ci: usize, now: u64) {
        // Bounded: each pass writes bytes or returns; bytes allowed are at most
        // pipeline x size beyond what was already received.
        loop {
            let s = &mut self.socks[ci];
            if !s.writable {
                return; // EPOLLOUT will say when
            }
            let len = core.fill(ci, now, &mut self.tx_buf);
            if len == 0 {
                core.idle(ci);
                return;
            }
            match sys::send(s.fd, &self.tx_buf[..len]) {
                Ok(n) => {
                    // Short write: the send buffer is full; EPOLLOUT will say when not.
                    s.writable = n == len;
                    core.sent(ci, n, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => s.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return core.kill(ci, classify(e.raw_os_error()), 1),
            }
        }
    }

    fn poll(&mut self, core: &mut Core, wait_ns: u64) -> io::Result<()> {
        let mut events = std::mem::take(&mut self.events);
        let n = self.epoll.wait(&mut events, Duration::from_nanos(wait_ns));
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                self.events = events;
                return Err(e);
            }
        };
        let now = core.now();
        for ev in &events[..n] {
            let ci = ev.u64 as usize;
            let flags = ev.events;
            if !core.live(ci) {
                continue;
            }
            if flags & (EV_IN | EV_ERR) != 0 {
                if let Err(kind) = self.on_readable(core, ci, now) {
                    core.kill(ci, kind, 1);
                    continue;
                }
                if !core.live(ci) {
                    continue;
                }
            }
            if flags & EV_OUT != 0 {
                self.socks[ci].writable = true;
            }
            self.send(core, ci, now);
        }
        self.events = events;
        Ok(())
    }

    fn close(&mut self, ci: usize) {
        let s = &mut self.socks[ci];
        if let Some(stream) = s.stream.take() {
            let _ = self.epoll.delete(s.fd);
            drop(stream);
        }
    }

    fn finish(&mut self) {
        self.socks.clear();
    }
}
