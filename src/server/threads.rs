//! A blocking thread per connection: the acceptor blocks in accept and starts a thread
//! for each connection, which blocks in recv and send until its client leaves. Simple
//! code, paid for in memory (a stack per connection) and context switches.
//!
//! Each thread gets a [`STACK_SIZE`] stack (Rust's default is 2 MiB of address space).
//! `--max-threads` caps the live threads: at the cap the acceptor stops accepting, so a
//! new client waits in the listen backlog until a thread ends.
//!
//! Syscall counts are per thread: every connection thread's counts stay readable
//! after it exits (`core::Blocking` keeps the handles), so snapshots and the exit
//! summary add every thread up. A supervisor thread answers SIGUSR1 and drains on
//! SIGTERM by shutting the sockets down under the blocked threads.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use socket2::Socket;

use super::policy::accept::{self, AcceptFailure};
use super::policy::io as pio;
use super::sys::syscall;
use super::policy::supervisor::{self, Supervisor};
use super::{LoopStats, Reporter, ServerConfig, Signals};

/// Stack of each connection thread, in bytes (stated in `--help`).
pub const STACK_SIZE: usize = 64 * 1024;

pub fn run(
    listener: Socket,
    cfg: &ServerConfig,
    signals: &Signals,
    reporter: &Reporter,
) -> io::Result<LoopStats> {
    let shared = Supervisor::new(listener.as_raw_fd(), cfg.faults)?;
    let acceptor = Mutex::new(LoopStats::default());
    let room = ChatRoom::new(cfg.outbox_cap);
    shared.count_this_thread();
    let res = thread::scope(|s| {
        thread::Builder::new()
            .name("ringmux-supervisor".into())
            .spawn_scoped(s, || shared.supervise(cfg, signals, reporter, &acceptor))?;
        let r = accept_loop(s, &shared, cfg, &acceptor, &room);
        // The connection threads end once their clients leave or the drain shuts them.
        let mut live = shared.live();
        while live > 0 {
            shared.wait_below(live);
            live = shared.live();
            if shared.draining() && live > 0 {
                thread::sleep(Duration::from_millis(5));
            }
        }
        shared.serving_ended();
        r
    });
    let stats = shared.merged(&acceptor.lock().unwrap_or_else(|e| e.into_inner()));
    drop(listener);
    res.map(|_| stats)
}

fn accept_loop<'s, 'e: 's>(
    s: &'s thread::Scope<'s, 'e>,
    shared: &'e Supervisor,
    cfg: &'e ServerConfig,
    acceptor: &'e Mutex<LoopStats>,
    room: &'e ChatRoom,
) -> io::Result<()> {
    let cap = cfg.max_threads.max(1);
    while !shared.draining() {
        // At the cap, accept nothing: the client waits in the backlog.
        shared.wait_below(cap);
        if shared.draining() {
            break;
        }
        let mut a = acceptor.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let fd = match accept::accept(shared.listen_fd, false) {
            Ok(fd) => fd,
            Err(_) if shared.draining() => break,
            Err(e) => {
                let backoff = accept::accept_failed(&e, &mut a) == AcceptFailure::BackOff;
                *acceptor.lock().unwrap_or_else(|e| e.into_inner()) = a;
                if backoff {
                    pio::sleep(accept::ACCEPT_BACKOFF);
                }
                continue;
            }
        };
        accept::accepted(fd, &mut a);
        if accept::refuse_max_conns(cfg, shared.live(), fd, &mut a) {
            *acceptor.lock().unwrap_or_else(|e| e.into_inner()) = a;
            continue;
        }
        let stats = Arc::new(Mutex::new(LoopStats::default()));
        let key = shared.enter(fd, stats.clone());
        let body = move || {
            let counted = shared.count_this_thread();
            if cfg.proto == crate::proto::Proto::Chat {
                serve_chat(room, fd, cfg, &stats);
            } else {
                let mut scratch = vec![0u8; cfg.recv_buf];
                supervisor::serve_blocking(shared, fd, cfg, &mut scratch, &stats);
            }
            let st = stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
            shared.leave(key, &st);
            shared.retire_thread(counted);
        };
        match thread::Builder::new()
            .stack_size(STACK_SIZE)
            .spawn_scoped(s, body)
        {
            Ok(_) => {
                a.threads_started += 1;
                a.threads_peak = a.threads_peak.max(shared.live() as u64);
            }
            Err(_) => {
                // No thread (EAGAIN: a thread limit or memory): close it, back off.
                a.accept_errors += 1;
                a.accept_backoffs += 1;
                shared.leave(key, &LoopStats::default());
                *acceptor.lock().unwrap_or_else(|e| e.into_inner()) = a;
                pio::sleep(accept::ACCEPT_BACKOFF);
                continue;
            }
        }
        *acceptor.lock().unwrap_or_else(|e| e.into_inner()) = a;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Chat on threads: each connection thread owns its connection, and broadcasts cross
// threads through one shared room: an inbox per connection under one mutex, and a
// wake socket per thread polled together with the connection's socket. The sender
// appends to every other inbox and wakes its thread; it never waits for a reader. A
// receiver moves its inbox into its outbox only while that outbox is under the cap,
// so a reader that does not read leaves its inbox to grow, and the broadcast that
// would put the inbox over `--outbox-cap` while the outbox is full too marks it dropped
// (closed without flushing, counted in slow_receivers_dropped); a thread that was
// only not scheduled in time may hold up to HARD_INBOX caps in its inbox. The connection's socket is non-blocking here:
// a send never blocks the thread that must also take its inbox.

struct Inbox {
    bytes: Vec<u8>,
    dropped: bool,
    /// The thread found its outbox at the cap when it last looked: it is not sending.
    blocked: bool,
    /// Write end of the thread's wake socket.
    wake: std::os::unix::net::UnixStream,
}

/// An inbox over the cap is dropped only if its thread's outbox is full too (the peer
/// does not read); one that merely was not scheduled yet may hold this many caps.
const HARD_INBOX: usize = 8;

/// Every chat connection's inbox, one per server.
pub struct ChatRoom {
    inboxes: Mutex<slab::Slab<Inbox>>,
    cap: usize,
}

impl ChatRoom {
    pub fn new(cap: usize) -> ChatRoom {
        ChatRoom {
            inboxes: Mutex::new(slab::Slab::new()),
            cap,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, slab::Slab<Inbox>> {
        self.inboxes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Append `bytes` from `from` to every other inbox; returns the receivers dropped.
    fn broadcast(&self, from: usize, bytes: &[u8]) -> u64 {
        if bytes.is_empty() {
            return 0;
        }
        let mut dropped = 0;
        for (k, ib) in self.lock().iter_mut() {
            if k == from || ib.dropped {
                continue;
            }
            let over = ib.bytes.len() + bytes.len();
            if (over > self.cap && ib.blocked) || over > HARD_INBOX * self.cap {
                ib.dropped = true;
                ib.bytes = Vec::new();
                dropped += 1;
            } else {
                ib.bytes.extend_from_slice(bytes);
            }
            super::sys::wake(ib.wake.as_raw_fd());
        }
        dropped
    }
}

/// Serve one chat connection on this thread until it ends (see above).
pub fn serve_chat(
    room: &ChatRoom,
    fd: std::os::fd::RawFd,
    cfg: &ServerConfig,
    stats: &Mutex<LoopStats>,
) {
    use super::conn::Conn;
    use super::policy::io::{Flush, Recv};
    let Ok((wake_r, wake_w)) = std::os::unix::net::UnixStream::pair() else {
        return;
    };
    let _ = wake_r.set_nonblocking(true);
    let _ = wake_w.set_nonblocking(true);
    // The socket is this thread's until `shared.leave` after we return.
    let _ = syscall!(Fcntl, fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK));
    let key = room.lock().insert(Inbox {
        bytes: Vec::new(),
        dropped: false,
        blocked: false,
        wake: wake_w,
    });
    let mut conn = Conn::with_guests(cfg.proto, &cfg.guests);
    let mut s = LoopStats::default();
    let mut faults = cfg.faults;
    let mut scratch = vec![0u8; cfg.recv_buf];
    conn.on_open();
    s.slow_receivers_dropped += room.broadcast(key, &conn.take_broadcast());
    let mut last_input = std::time::Instant::now();
    let mut dropped = false;
    // Each turn blocks in poll, so the loop is bounded by the peer's and the room's events.
    loop {
        // Take the inbox while the outbox has room; a dropped one closes now.
        {
            let mut rooms = room.lock();
            let ib = &mut rooms[key];
            ib.blocked = conn.owed_len() >= cfg.outbox_cap;
            if ib.dropped {
                dropped = true;
            } else if !ib.bytes.is_empty() && conn.owed_len() < cfg.outbox_cap {
                conn.push_broadcast(&ib.bytes);
                ib.bytes.clear();
            }
        }
        if dropped {
            break;
        }
        if conn.owed_len() > 0 && pio::flush(fd, &mut conn, &mut faults, &mut s) == Flush::Failed {
            break;
        }
        lock_stats(stats, &s);
        if conn.finished() {
            break;
        }
        let read =
            !(conn.read_eof || conn.close_after_flush || super::policy::over_cap(&conn, 0, cfg.outbox_cap));
        let mut fds = [
            libc::pollfd {
                fd,
                events: (if read { libc::POLLIN } else { 0 })
                    | (if conn.owed_len() > 0 {
                        libc::POLLOUT
                    } else {
                        0
                    }),
                revents: 0,
            },
            libc::pollfd {
                fd: wake_r.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let timeout = cfg
            .idle_timeout
            .map(|i| i.saturating_sub(last_input.elapsed()));
        match syscall!(
            Poll,
            poll(fds.as_mut_ptr(), 2, super::sys::timeout_ms(timeout))
        ) {
            Ok(0) if cfg.idle_timeout.is_some_and(|i| last_input.elapsed() >= i) => {
                s.idle_timeouts += 1;
                break;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
        if fds[1].revents != 0 {
            let mut b = [0u8; 64];
            while (&wake_r).read(&mut b).is_ok_and(|n| n > 0) {}
        }
        if fds[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 && read {
            match pio::recv(fd, &mut scratch, &mut conn, &mut faults, &mut s) {
                Recv::Data(_) => {
                    last_input = std::time::Instant::now();
                    s.slow_receivers_dropped += room.broadcast(key, &conn.take_broadcast());
                }
                Recv::Eof | Recv::WouldBlock | Recv::Interrupted => {}
                Recv::Failed => break,
            }
        } else if fds[0].revents & (libc::POLLHUP | libc::POLLERR) != 0 && conn.owed_len() > 0 {
            // The peer is gone while we owe it bytes: the next send fails.
            if pio::flush(fd, &mut conn, &mut faults, &mut s) == Flush::Failed {
                break;
            }
        }
    }
    room.lock().remove(key);
    s.slow_receivers_dropped += room.broadcast(key, &conn.on_close());
    lock_stats(stats, &s);
}

fn lock_stats(stats: &Mutex<LoopStats>, s: &LoopStats) {
    stats
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone_from(s);
}
