//! Blocking IO, one connection at a time: a blocking accept, then blocking recv and
//! send until that client leaves, then the next accept. A second client waits in the
//! listen backlog (its connect succeeds, its bytes wait) until the first leaves. The
//! first model of the material, and the baseline every other one is measured against.
//!
//! Signals cannot interrupt the blocked calls (the handlers restart them), so a
//! supervisor thread (`core::Blocking`) answers SIGUSR1 and shuts the sockets down on
//! SIGTERM.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::thread;

use socket2::Socket;

use super::policy::accept::{self, AcceptFailure};
use super::policy::io as pio;
use super::policy::supervisor::{self, Supervisor};
use super::{LoopStats, Reporter, ServerConfig, Signals};

pub fn run(
    listener: Socket,
    cfg: &ServerConfig,
    signals: &Signals,
    reporter: &Reporter,
) -> io::Result<LoopStats> {
    let shared = Supervisor::new(listener.as_raw_fd(), cfg.faults)?;
    let acceptor = Mutex::new(LoopStats::default());
    shared.count_this_thread();
    let res = thread::scope(|s| {
        thread::Builder::new()
            .name("ringmux-supervisor".into())
            .spawn_scoped(s, || shared.supervise(cfg, signals, reporter, &acceptor))?;
        let r = serve(&shared, cfg, &acceptor);
        shared.serving_ended();
        r
    });
    let stats = shared.merged(&acceptor.lock().unwrap_or_else(|e| e.into_inner()));
    drop(listener);
    res.map(|_| stats)
}

fn serve(shared: &Supervisor, cfg: &ServerConfig, acceptor: &Mutex<LoopStats>) -> io::Result<()> {
    let mut scratch = vec![0u8; cfg.recv_buf];
    let conn_stats = Arc::new(Mutex::new(LoopStats::default()));
    while !shared.draining() {
        let mut a = acceptor.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let res = accept::accept(shared.listen_fd, false);
        let fd = match res {
            Ok(fd) => fd,
            Err(_) if shared.draining() => break, // the supervisor shut the listener down
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
        *acceptor.lock().unwrap_or_else(|e| e.into_inner()) = a;
        *conn_stats.lock().unwrap_or_else(|e| e.into_inner()) = LoopStats::default();
        let key = shared.enter(fd, conn_stats.clone());
        supervisor::serve_blocking(shared, fd, cfg, &mut scratch, &conn_stats);
        let s = conn_stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
        shared.leave(key, &s);
    }
    Ok(())
}
