//! A blocking thread per connection: the acceptor blocks in accept and starts a thread
//! for each connection, which blocks in recv and send until its client leaves. Simple
//! code, paid for in memory (a stack per connection) and context switches.
//!
//! Each thread gets a [`STACK_SIZE`] stack (Rust's default is 2 MiB of address space).
//! `--max-threads` caps the live connections: at the cap the acceptor stops accepting,
//! so a new client waits in the listen backlog until a thread ends.
//!
//! Syscall counts are per thread: every connection thread's counts stay readable
//! after it exits ([`Supervisor`] keeps them), so snapshots and the exit summary add
//! every thread up. A supervisor thread answers SIGUSR1 and drains on SIGTERM by
//! shutting the sockets down under the blocked threads.
//!
//! Chat: a thread blocked in recv cannot also send what others broadcast, so a chat
//! connection has a second thread, its writer, which sends its replies and the
//! broadcasts in the order they came (the room: [`crate::server::policy::hub`]). The
//! reader posts its broadcasts to the room and waits while its outbox is at the cap;
//! a receiver whose outbox would go over it is dropped, never waited for.

use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::thread;

use socket2::Socket;

use super::config::ServerConfig;
use super::conn::Conn;
use super::policy::io::{Flush, flush};
use super::policy::supervisor::{self, Replies, Supervisor, lock};
use super::signals::Signals;
use super::stats::{LoopStats, Reporter};
use super::sys;
use crate::proto::Proto;

/// Stack of each connection thread, in bytes (stated in `--help`).
pub const STACK_SIZE: usize = 64 * 1024;

pub fn run(
    listener: Socket,
    cfg: &ServerConfig,
    signals: &Signals,
    reporter: &Reporter,
) -> io::Result<LoopStats> {
    supervisor::run(listener, cfg, signals, reporter, accept_loop)
}

fn accept_loop<'s, 'e>(
    s: &'s thread::Scope<'s, 'e>,
    shared: &'e Supervisor,
    cfg: &'e ServerConfig,
    acceptor: &'e Mutex<LoopStats>,
) {
    let cap = cfg.max_threads.max(1);
    loop {
        // At the cap, accept nothing: the client waits in the backlog.
        shared.wait_below(cap);
        let Some(fd) = shared.accept_next(cfg, acceptor) else {
            return;
        };
        let stats = Arc::new(Mutex::new(LoopStats::default()));
        let key = shared.enter(fd, stats.clone());
        let body = move || {
            let counted = shared.count_this_thread();
            let mut scratch = vec![0u8; cfg.recv_buf];
            if cfg.proto == Proto::Chat {
                serve_chat(s, shared, key, fd, cfg, &mut scratch, &stats);
            } else {
                supervisor::serve_blocking(shared, fd, cfg, &mut scratch, &stats, Replies::Send);
            }
            let st = lock(&stats).clone();
            shared.leave(key, &st);
            shared.retire_thread(counted);
        };
        let started = thread::Builder::new()
            .stack_size(STACK_SIZE)
            .spawn_scoped(s, body);
        let mut a = lock(acceptor);
        if started.is_ok() {
            a.threads_started += 1;
            a.threads_peak = a.threads_peak.max(shared.live() as u64);
        } else {
            // No thread (EAGAIN: a thread limit or memory): close it, back off.
            a.accept_errors += 1;
            a.accept_backoffs += 1;
            drop(a);
            shared.leave(key, &LoopStats::default());
            super::policy::io::sleep(super::policy::accept::ACCEPT_BACKOFF);
        }
    }
}

/// One chat connection: this thread reads, a writer thread sends (see the top).
fn serve_chat<'s, 'e>(
    s: &'s thread::Scope<'s, 'e>,
    shared: &'e Supervisor,
    key: usize,
    fd: RawFd,
    cfg: &'e ServerConfig,
    scratch: &mut [u8],
    stats: &Mutex<LoopStats>,
) {
    let room = &*cfg.room;
    let id = room.join_conn(fd, cfg.outbox_cap);
    let written = Arc::new(Mutex::new(LoopStats::default()));
    shared.add_stats(key, written.clone());
    let w = written.clone();
    let writer = thread::Builder::new()
        .stack_size(STACK_SIZE)
        .spawn_scoped(s, move || {
            let counted = shared.count_this_thread();
            write_loop(shared, room, id, fd, &w);
            shared.retire_thread(counted);
        });
    match writer {
        Ok(writer) => {
            supervisor::serve_blocking(shared, fd, cfg, scratch, stats, Replies::Room(room, id));
            room.close(id); // the writer sends what is left, then ends
            let _ = writer.join();
        }
        Err(_) => lock(stats).accept_errors += 1, // no thread for the writer: close it
    }
    room.leave(id);
    // The writer's counts end up in the connection's.
    lock(stats).merge(&std::mem::take(&mut *lock(&written)));
}

/// The writer: send what the room queued for member `id`, in order, until there is no
/// more (the reader closed, or the connection was dropped).
fn write_loop(
    shared: &Supervisor,
    room: &super::policy::hub::Hub,
    id: usize,
    fd: RawFd,
    stats: &Mutex<LoopStats>,
) {
    // Used as an outbox only: the counted, fault-injected send works on a Conn.
    let mut out = Conn::new(Proto::Echo);
    let mut s = LoopStats::default();
    while let Some(bytes) = room.next_send(id) {
        out.push_broadcast(&bytes);
        while out.owed_len() > 0 {
            let mut faults = shared.take_faults();
            let r = flush(fd, &mut out, &mut faults, &mut s);
            shared.put_faults(faults);
            lock(stats).clone_from(&s);
            if r == Flush::Failed {
                // The peer is gone: the reader stops too, and nothing more is queued.
                room.abandon(id);
                sys::shutdown_rdwr(fd);
                return;
            }
        }
    }
}
