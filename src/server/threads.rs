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

use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use socket2::Socket;

use super::core::{self, AcceptFailure, Blocking};
use super::{LoopStats, Reporter, ServerConfig, Signals};

/// Stack of each connection thread, in bytes (stated in `--help`).
pub const STACK_SIZE: usize = 64 * 1024;

pub fn run(listener: Socket, cfg: &ServerConfig, signals: &Signals, reporter: &Reporter) -> io::Result<LoopStats> {
    let shared = Blocking::new(listener.as_raw_fd(), cfg.faults)?;
    let acceptor = Mutex::new(LoopStats::default());
    shared.count_this_thread();
    let res = thread::scope(|s| {
        thread::Builder::new()
            .name("ringmux-supervisor".into())
            .spawn_scoped(s, || shared.supervise(cfg, signals, reporter, &acceptor))?;
        let r = accept_loop(s, &shared, cfg, &acceptor);
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
    shared: &'e Blocking,
    cfg: &'e ServerConfig,
    acceptor: &'e Mutex<LoopStats>,
) -> io::Result<()> {
    let cap = cfg.max_threads.max(1);
    while !shared.draining() {
        // At the cap, accept nothing: the client waits in the backlog.
        shared.wait_below(cap);
        if shared.draining() {
            break;
        }
        let mut a = acceptor.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let fd = match core::accept(shared.listen_fd, false) {
            Ok(fd) => fd,
            Err(_) if shared.draining() => break,
            Err(e) => {
                let backoff = core::accept_failed(&e, &mut a) == AcceptFailure::BackOff;
                *acceptor.lock().unwrap_or_else(|e| e.into_inner()) = a;
                if backoff {
                    core::sleep(core::ACCEPT_BACKOFF);
                }
                continue;
            }
        };
        core::accepted(fd, &mut a);
        if core::refuse_max_conns(cfg, shared.live(), fd, &mut a) {
            *acceptor.lock().unwrap_or_else(|e| e.into_inner()) = a;
            continue;
        }
        let stats = Arc::new(Mutex::new(LoopStats::default()));
        let key = shared.enter(fd, stats.clone());
        let body = move || {
            shared.count_this_thread();
            let mut scratch = vec![0u8; cfg.recv_buf];
            core::serve_blocking(shared, fd, cfg, &mut scratch, &stats);
            let st = stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
            shared.leave(key, &st);
        };
        match thread::Builder::new().stack_size(STACK_SIZE).spawn_scoped(s, body) {
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
                core::sleep(core::ACCEPT_BACKOFF);
                continue;
            }
        }
        *acceptor.lock().unwrap_or_else(|e| e.into_inner()) = a;
    }
    Ok(())
}
