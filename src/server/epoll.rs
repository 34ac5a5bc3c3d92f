//! The reactor: edge-triggered epoll. Wait for readiness, then do the reads and
//! writes ourselves until EAGAIN. EPOLLOUT is armed only while a connection owes
//! bytes the socket would not take; reads go into one scratch buffer shared by every
//! connection, so an idle connection owns no read buffer.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use slab::Slab;
use socket2::Socket;

use super::conn::Conn;
use super::sys::{self, SyscallCounts};
use super::{LoopStats, Reporter, ServerConfig, Signals};
use crate::syscall;

const LISTENER: u64 = u64::MAX;
const SIGNAL: u64 = u64::MAX - 1;
/// Reads per connection per turn before yielding to others (fairness under load).
const READS_PER_TURN: usize = 16;
/// Accepts per turn.
const ACCEPTS_PER_TURN: usize = 256;
/// Back-off after EMFILE/ENFILE/ENOBUFS/ENOMEM on accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);
const EVENTS: usize = 512;

struct EConn {
    fd: RawFd,
    conn: Conn,
    /// EPOLLOUT is in the interest set.
    out_armed: bool,
    /// Reading stopped because the outbox is over its cap.
    read_paused: bool,
    /// Still has unread input after its turn (edge-triggered: no new edge will come).
    in_ready: bool,
}

struct Reactor<'a> {
    epfd: RawFd,
    listen_fd: RawFd,
    conns: Slab<EConn>,
    scratch: Vec<u8>,
    ready: Vec<usize>,
    stats: LoopStats,
    cfg: &'a ServerConfig,
    accept_paused_until: Option<Instant>,
    accepting: bool,
    faults: super::fault::Faults,
}

fn ctl(epfd: RawFd, op: i32, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    syscall!(EpollCtl, epoll_ctl(epfd, op, fd, &mut ev)).map(drop)
}

const CONN_EVENTS: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32;

pub fn run(listener: Socket, cfg: &ServerConfig, signals: &Signals, reporter: &Reporter) -> io::Result<LoopStats> {
    let epfd = syscall!(EpollCtl, epoll_create1(libc::EPOLL_CLOEXEC))?;
    let mut r = Reactor {
        epfd,
        listen_fd: listener.as_raw_fd(),
        conns: Slab::new(),
        scratch: vec![0u8; cfg.recv_buf],
        ready: Vec::new(),
        stats: LoopStats::default(),
        cfg,
        accept_paused_until: None,
        accepting: true,
        faults: cfg.faults,
    };
    let res = r.event_loop(signals, reporter);
    for c in r.conns.drain() {
        sys::close(c.fd);
    }
    sys::close(epfd);
    drop(listener);
    r.stats.syscalls = SyscallCounts::this_thread();
    res.map(|_| r.stats)
}

impl Reactor<'_> {
    fn event_loop(&mut self, signals: &Signals, reporter: &Reporter) -> io::Result<()> {
        ctl(self.epfd, libc::EPOLL_CTL_ADD, self.listen_fd, (libc::EPOLLIN | libc::EPOLLET) as u32, LISTENER)?;
        ctl(self.epfd, libc::EPOLL_CTL_ADD, signals.fd(), libc::EPOLLIN as u32, SIGNAL)?;
        let mut events: Vec<libc::epoll_event> = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        let mut drain_deadline: Option<Instant> = None;
        loop {
            if let Some(d) = drain_deadline {
                if self.conns.is_empty() {
                    return Ok(());
                }
                if Instant::now() >= d {
                    self.stats.forced_closed += self.conns.len() as u64;
                    let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
                    for k in keys {
                        self.close(k);
                    }
                    return Ok(());
                }
            }
            let timeout_ms = self.wait_timeout(drain_deadline);
            let n = match syscall!(EpollWait, epoll_wait(self.epfd, events.as_mut_ptr(), EVENTS as i32, timeout_ms)) {
                Ok(n) => n as usize,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(e) => return Err(e),
            };
            for ev in &events[..n] {
                let (bits, data) = (ev.events, ev.u64);
                match data {
                    LISTENER => self.accept_all(),
                    SIGNAL => {
                        signals.drain();
                        if signals.take_snapshot_request() {
                            self.stats.syscalls = SyscallCounts::this_thread();
                            reporter.snapshot(&self.stats);
                        }
                        if signals.stop_requested() && drain_deadline.is_none() {
                            drain_deadline = Some(Instant::now() + self.cfg.drain_timeout);
                            self.begin_drain();
                        }
                    }
                    key => self.on_conn_event(key as usize, bits),
                }
            }
            if let Some(t) = self.accept_paused_until
                && Instant::now() >= t {
                    self.accept_paused_until = None;
                    self.accept_all();
                }
            // Connections that still had input after their turn.
            // Keys pushed while these run go to the fresh `self.ready` for next turn.
            let mut ready = std::mem::take(&mut self.ready);
            for key in ready.drain(..) {
                if let Some(c) = self.conns.get_mut(key) {
                    c.in_ready = false;
                    self.on_readable(key, true);
                }
            }
            if self.ready.is_empty() {
                self.ready = ready; // keep the allocation
            }
        }
    }

    fn wait_timeout(&self, drain_deadline: Option<Instant>) -> i32 {
        if !self.ready.is_empty() {
            return 0;
        }
        let now = Instant::now();
        let until = [drain_deadline, self.accept_paused_until].into_iter().flatten().min();
        match until {
            None => -1,
            // Round up so we never wake just before the deadline; but a deadline that
            // has passed (more accepts queued) means no wait at all.
            Some(t) => {
                let d = t.saturating_duration_since(now);
                if d.is_zero() { 0 } else { d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32 }
            }
        }
    }

    fn accept_all(&mut self) {
        if !self.accepting || self.accept_paused_until.is_some() {
            return;
        }
        for _ in 0..ACCEPTS_PER_TURN {
            let res = syscall!(
                Accept4,
                accept4(self.listen_fd, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            );
            match res {
                Ok(fd) => self.add_conn(fd),
                Err(e) => match e.raw_os_error() {
                    Some(libc::EAGAIN) => return,
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                        // Out of descriptors or memory: stop accepting for a moment
                        // instead of spinning; the backlog keeps the clients waiting.
                        self.stats.accept_errors += 1;
                        self.stats.accept_backoffs += 1;
                        self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                        return;
                    }
                    _ => self.stats.accept_errors += 1, // ECONNABORTED, EPROTO, EINTR...
                },
            }
        }
        // More may be queued: edge-triggered, so come back without waiting.
        self.accept_paused_until = Some(Instant::now());
    }

    fn add_conn(&mut self, fd: RawFd) {
        self.stats.accepted += 1;
        let _ = sys::set_nodelay(fd);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if ctl(self.epfd, libc::EPOLL_CTL_ADD, fd, CONN_EVENTS, key as u64).is_err() {
            sys::close(fd);
            self.stats.closed += 1;
            return;
        }
        entry.insert(EConn { fd, conn: Conn::new(self.cfg.proto), out_armed: false, read_paused: false, in_ready: false });
        // Data that arrived before registration raises an edge at EPOLL_CTL_ADD (the
        // socket is already readable then), so no read is needed here.
    }

    fn on_conn_event(&mut self, key: usize, bits: u32) {
        if !self.conns.contains(key) {
            return;
        }
        if bits & (libc::EPOLLOUT as u32) != 0 && !self.flush(key) {
            return;
        }
        let hup = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        if bits & hup != 0 {
            self.on_readable(key, true);
        } else if bits & libc::EPOLLIN as u32 != 0 {
            self.on_readable(key, false);
        }
    }

    /// Read until EAGAIN (or the outbox cap, or the per-turn bound), feeding the
    /// protocol; then flush.
    ///
    /// `greedy` false: stop at a short read, like nginx. The socket was empty at that
    /// moment and any later data or FIN raises a new edge; a FIN that was already
    /// queued shows as EPOLLRDHUP in this event, and then the caller passes greedy.
    fn on_readable(&mut self, key: usize, greedy: bool) {
        let cap = self.cfg.outbox_cap;
        let mut turns = 0;
        loop {
            let Some(c) = self.conns.get_mut(key) else { return };
            if c.conn.read_eof || c.conn.close_after_flush {
                break;
            }
            if c.conn.owed_len() >= cap {
                c.read_paused = true;
                break;
            }
            if turns == READS_PER_TURN {
                // Fairness: let the others run, come back next turn without an edge.
                if !c.in_ready {
                    c.in_ready = true;
                    self.ready.push(key);
                }
                break;
            }
            turns += 1;
            let fd = c.fd;
            let buf = &mut self.scratch;
            match syscall!(Recv, recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0)) {
                Ok(0) => {
                    c.conn.read_eof = true;
                    break;
                }
                Ok(_) if self.faults.recv_reset.hit() => {
                    // Injected: as if the peer had reset (the bytes are dropped).
                    self.stats.faults_injected += 1;
                    self.close(key);
                    return;
                }
                Ok(n) => {
                    let n = n as usize;
                    self.stats.bytes_in += n as u64;
                    c.conn.on_input(&self.scratch[..n]);
                    if n < self.scratch.len() && !greedy {
                        break;
                    }
                    if c.conn.owed_len() >= cap / 2 && !self.flush(key) {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close(key);
                    return;
                }
            }
        }
        self.flush(key);
    }

    /// Write owed bytes until EAGAIN. Returns false when the connection was closed.
    fn flush(&mut self, key: usize) -> bool {
        let cap = self.cfg.outbox_cap;
        let Some(c) = self.conns.get_mut(key) else { return false };
        let mut bound = 0;
        while c.conn.owed_len() > 0 && bound < 1024 {
            bound += 1;
            let owed = c.conn.owed();
            let mut len = owed.len();
            if len > 1 && self.faults.send_short.hit() {
                self.stats.faults_injected += 1;
                len /= 2; // injected short send
            }
            match syscall!(Send, send(c.fd, owed.as_ptr() as *const libc::c_void, len, libc::MSG_NOSIGNAL)) {
                Ok(n) => {
                    self.stats.bytes_out += n as u64;
                    c.conn.advance(n as usize);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close(key);
                    return false;
                }
            }
        }
        let owes = c.conn.owed_len() > 0;
        if owes != c.out_armed {
            let events = if owes { CONN_EVENTS | libc::EPOLLOUT as u32 } else { CONN_EVENTS };
            if ctl(self.epfd, libc::EPOLL_CTL_MOD, c.fd, events, key as u64).is_err() {
                self.close(key);
                return false;
            }
            c.out_armed = owes;
        }
        if c.conn.finished() {
            self.close(key);
            return false;
        }
        if c.read_paused && c.conn.owed_len() < cap {
            // Backpressure released: the input left in the socket raises no new edge,
            // so read it now (via the ready list, to keep the stack flat).
            c.read_paused = false;
            if !c.in_ready {
                c.in_ready = true;
                self.ready.push(key);
            }
        }
        true
    }

    fn close(&mut self, key: usize) {
        if let Some(c) = self.conns.try_remove(key) {
            // close() removes the fd from the epoll set.
            sys::close(c.fd);
            self.stats.closed += 1;
        }
    }

    /// Stop accepting and reading; close what owes nothing, flush the rest.
    fn begin_drain(&mut self) {
        if self.accepting {
            self.accepting = false;
            let _ = ctl(self.epfd, libc::EPOLL_CTL_DEL, self.listen_fd, 0, 0);
        }
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for k in keys {
            if let Some(c) = self.conns.get_mut(k) {
                c.conn.read_eof = true;
            }
            self.flush(k);
        }
    }
}
