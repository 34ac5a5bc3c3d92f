//! Blocking IO, one connection at a time: a blocking accept, then blocking recv and
//! send until that client leaves, then the next accept. A second client waits in the
//! listen backlog (its connect succeeds, its bytes wait) until the first leaves. The
//! first model of the material, and the baseline every other one is measured against.
//!
//! Signals cannot interrupt the blocked calls (the handlers restart them), so a
//! supervisor thread ([`Supervisor`]) answers SIGUSR1 and shuts the sockets down on
//! SIGTERM.

use std::io;
use std::sync::{Arc, Mutex};
use std::thread;

use socket2::Socket;

use super::config::ServerConfig;
use super::policy::supervisor::{self, Replies, Supervisor, lock};
use super::signals::Signals;
use super::stats::{LoopStats, Reporter};

pub fn run(
    listener: Socket,
    cfg: &ServerConfig,
    signals: &Signals,
    reporter: &Reporter,
) -> io::Result<LoopStats> {
    supervisor::run(listener, cfg, signals, reporter, serve)
}

fn serve<'s, 'e>(
    _: &'s thread::Scope<'s, 'e>,
    shared: &'e Supervisor,
    cfg: &'e ServerConfig,
    acceptor: &'e Mutex<LoopStats>,
) {
    let mut scratch = vec![0u8; cfg.recv_buf];
    let conn_stats = Arc::new(Mutex::new(LoopStats::default()));
    while let Some(fd) = shared.accept_next(cfg, acceptor) {
        *lock(&conn_stats) = LoopStats::default();
        let key = shared.enter(fd, conn_stats.clone());
        supervisor::serve_blocking(shared, fd, cfg, &mut scratch, &conn_stats, Replies::Send);
        let s = lock(&conn_stats).clone();
        shared.leave(key, &s);
    }
}
