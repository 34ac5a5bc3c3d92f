//! Thread-per-core: `serve --threads N [--pin] [--cpus LIST]`.
//!
//! N independent event loops, each on its own thread with its own listening socket
//! (SO_REUSEPORT on one address, see [`super::listener::bind_group`]) and its own
//! io_uring ring or epoll instance. They share no lock while serving: the kernel
//! picks the loop of each new connection when it lands in one listener's backlog,
//! and that loop owns the connection to the end. What they do share is off the hot
//! path: the stop flag and snapshot counter (atomics, [`super::SignalHub`]), and the
//! [`super::StatsBoard`] each loop writes its counts to on SIGUSR1 and once at its end.
//!
//! Loop 0 runs on the calling (main) thread with the ring that decided the backend,
//! so `--threads 1` starts no thread at all. Loops 1..N set up their own ring and pin
//! themselves on their own thread, and report ready before any loop serves: a ring
//! that cannot be set up fails the whole server before the start line. A loop that
//! fails or panics later stops the others, and the server exits with its error.
//!
//! (Named `percore`, not `threads`: DESIGN.md keeps `threads.rs` for a future
//! thread-per-connection IO model.)

use std::sync::Arc;
use std::sync::mpsc;
use std::thread;

use anyhow::{Context, anyhow, bail};
use socket2::Socket;

use super::config::{Backend, ServerConfig};
use super::signals::{SignalHub, Signals};
use super::stats::{Reporter, StatsBoard};
use super::sys;
use super::uring::Ring;
use super::{blocking, busypoll, reactor, threads, uring};

/// Run every loop until a stop signal (or a loop's failure); `announce` is called once
/// all of them are ready, before any serves. Their counts end up on `board`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    cfg: &ServerConfig,
    backend: Backend,
    ring: Option<Ring>,
    listeners: Vec<Socket>,
    signals: Vec<Signals>,
    hub: Arc<SignalHub>,
    board: &Arc<StatsBoard>,
    announce: impl FnOnce(),
) -> anyhow::Result<()> {
    let n = listeners.len();
    assert_eq!(n, signals.len(), "one wake pipe per listener");
    let mut loops = listeners.into_iter().zip(signals).enumerate();
    let (_, (listener0, signals0)) = loops.next().expect("at least one loop");
    let reporter0 = Reporter::new(0, &signals0, board.clone());

    // Loops 1..n: pin, set up the ring, say ready, wait for the word to go.
    let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<()>>();
    let mut workers = Vec::with_capacity(n.saturating_sub(1));
    for (i, (listener, signals)) in loops {
        let (go_tx, go_rx) = mpsc::channel::<bool>();
        let (cfg, hub, ready) = (cfg.clone(), hub.clone(), ready_tx.clone());
        let reporter = Reporter::new(i, &signals, board.clone());
        let body = move || -> anyhow::Result<()> {
            let ring = match prepare(i, n, &cfg, backend) {
                Ok(r) => {
                    let _ = ready.send(Ok(()));
                    r
                }
                Err(e) => {
                    reporter.finish(None);
                    let _ = ready.send(Err(e));
                    return Ok(());
                }
            };
            drop(ready);
            if go_rx.recv() != Ok(true) {
                reporter.finish(None);
                return Ok(()); // another loop could not start
            }
            run_loop(
                i, n, backend, ring, listener, &cfg, &signals, &reporter, &hub,
            )
        };
        let handle = thread::Builder::new()
            .name(format!("ringmux-loop-{i}"))
            .spawn(body)
            .with_context(|| format!("cannot start the thread of event loop {i}"))?;
        workers.push((handle, go_tx));
    }
    drop(ready_tx);
    let mut failure: Option<anyhow::Error> = None;
    for _ in 1..n {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(_) => {
                failure.get_or_insert(anyhow!("an event-loop thread ended while starting"));
                break;
            }
        }
    }
    // Pin loop 0 (this thread) after spawning, so no loop inherits its CPU by accident.
    if failure.is_none()
        && let Some(cpu) = cfg.cpus.as_ref().map(|c| c[0])
        && let Err(e) = sys::pin_current_thread(cpu)
    {
        failure = Some(anyhow!("event loop 0: cannot pin to CPU {cpu}: {e}"));
    }
    if let Some(e) = failure {
        for (handle, go) in workers {
            let _ = go.send(false);
            let _ = handle.join();
        }
        return Err(e);
    }

    announce();
    for (_, go) in &workers {
        let _ = go.send(true);
    }
    let first = run_loop(
        0, n, backend, ring, listener0, cfg, &signals0, &reporter0, &hub,
    );
    let mut result = first;
    for (i, (handle, _)) in workers.into_iter().enumerate() {
        let r = handle
            .join()
            .unwrap_or_else(|_| Err(anyhow!("event loop {} panicked", i + 1)));
        if result.is_ok() {
            result = r;
        }
    }
    result
}

/// On a loop's own thread, before it serves: pin it, set up its ring.
fn prepare(
    i: usize,
    n: usize,
    cfg: &ServerConfig,
    backend: Backend,
) -> anyhow::Result<Option<Ring>> {
    if let Some(cpu) = cfg.cpus.as_ref().map(|c| c[i]) {
        sys::pin_current_thread(cpu)
            .map_err(|e| anyhow!("event loop {i}: cannot pin to CPU {cpu}: {e}"))?;
    }
    let Backend::Uring(level) = backend else {
        return Ok(None);
    };
    // The level loop 0 got, pinned: every loop serves the same way.
    let mut pinned = cfg.clone();
    pinned.features = level.into();
    let ring = Ring::setup(&pinned).map_err(|e| {
        anyhow!("event loop {i} of {n}: {e} (each loop sets up its own ring: fewer --threads or a smaller --ring-entries may fit)")
    })?;
    if ring.features.level != level {
        bail!(
            "event loop {i} of {n}: io_uring gave feature level {:?}, loop 0 got {level:?}",
            ring.features.level
        );
    }
    Ok(Some(ring))
}

/// If a loop ends in error or panics, it publishes its end (so snapshots are not held
/// up) and stops the others: the server fails as a whole.
struct StopOthersUnlessDisarmed<'a> {
    hub: &'a SignalHub,
    reporter: &'a Reporter,
    armed: bool,
}

impl Drop for StopOthersUnlessDisarmed<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.reporter.finish(None);
            self.hub.stop_all();
        }
    }
}

/// Run loop `i` on this thread to its end; its final counts go to the board.
#[allow(clippy::too_many_arguments)]
fn run_loop(
    i: usize,
    n: usize,
    backend: Backend,
    ring: Option<Ring>,
    listener: Socket,
    cfg: &ServerConfig,
    signals: &Signals,
    reporter: &Reporter,
    hub: &SignalHub,
) -> anyhow::Result<()> {
    let mut guard = StopOthersUnlessDisarmed {
        hub,
        reporter,
        armed: true,
    };
    let res = match (backend, ring) {
        (Backend::Uring(_), Some(ring)) => uring::run(ring, listener, cfg, signals, reporter),
        (Backend::Uring(_), None) => unreachable!("a uring loop always has its ring"),
        (Backend::Epoll, _) => {
            reactor::run::<reactor::epoll::Epoll>(listener, cfg, signals, reporter)
        }
        (Backend::Poll, _) => reactor::run::<reactor::poll::Poll>(listener, cfg, signals, reporter),
        (Backend::Select, _) => {
            reactor::run::<reactor::select::Select>(listener, cfg, signals, reporter)
        }
        (Backend::Sigio, _) => {
            reactor::run::<reactor::sigio::Sigio>(listener, cfg, signals, reporter)
        }
        (Backend::Threads, _) => threads::run(listener, cfg, signals, reporter),
        (Backend::Blocking, _) => blocking::run(listener, cfg, signals, reporter),
        (Backend::Busypoll, _) => busypoll::run(listener, cfg, signals, reporter),
    };
    let stats = match res {
        Ok(s) => s,
        Err(e) if n == 1 => return Err(anyhow::Error::new(e).context("event loop failed")),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("event loop {i} of {n} failed")));
        }
    };
    guard.armed = false;
    reporter.finish(Some(&stats));
    Ok(())
}
