//! The server: pick the backend, run it, report.
//!
//! Every backend exposes the same entry, `run(listener, &cfg, &signals, ...) ->
//! io::Result<LoopStats>`; [`percore::run`] picks one with a plain `match` on
//! [`Backend`], the one list of every IO model ([`config`]). The readiness models share
//! one loop ([`reactor`]) over a mechanism each; every policy they share lives once in
//! [`policy`].
//!
//! Thread-per-core (`--threads N`, [`percore`]): N such loops, each on its own thread
//! with its own SO_REUSEPORT listener and its own ring or epoll instance. A loop sees
//! only its own [`Signals`] (wake pipe) and [`Reporter`] (its slot for stats); the
//! process's figures are the loops' [`LoopStats`] summed ([`stats`]).
//!
//! The rooms every backend shares ([`config`], [`features`], [`signals`], [`stats`])
//! import no backend; [`serve`] and [`percore`] are where backends are chosen.

pub mod blocking;
pub mod busypoll;
pub mod config;
pub mod conn;
pub mod fault;
pub mod features;
pub mod listener;
pub mod percore;
pub mod policy;
pub mod reactor;
pub mod signals;
pub mod stats;
pub mod sys;
pub mod threads;
pub mod uring;

use std::io::{self, Write};
use std::sync::Arc;

use anyhow::Context;

pub use config::{Backend, BackendChoice, ServerConfig};
pub use features::{FeatureChoice, FeatureLevel, RingFeatures, WaitMode};
pub use signals::{SignalHub, Signals, Waker};
pub use stats::{LoopStats, Reporter, StatsBoard, StatsReport, ThreadReport};

use crate::error::ExitError;

/// Choose the backend, bind, run until a stop signal, report.
pub fn serve(cfg: ServerConfig) -> anyhow::Result<StatsReport> {
    let (hub, signals) =
        SignalHub::install(cfg.threads).context("cannot install signal handlers")?;
    // Decide the backend before binding, so a failed `--backend uring` leaves no
    // socket behind and `auto` prints its one warning first. This ring serves loop 0;
    // every other loop sets up its own.
    let ring = match cfg.backend {
        BackendChoice::Uring => Some(uring::Ring::setup(&cfg).map_err(anyhow::Error::new)?),
        BackendChoice::Auto => match uring::Ring::setup(&cfg) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("ringmux: warning: {e}; falling back to epoll");
                None
            }
        },
        _ => None,
    };
    let backend = match &ring {
        Some(r) => Backend::Uring(r.features.level),
        None => Backend::from_choice(cfg.backend).unwrap_or(Backend::Epoll),
    };
    if !backend.has_event_loop() && cfg.threads > 1 {
        anyhow::bail!(ExitError {
            code: 2,
            msg: format!(
                "--threads {} does not apply to --backend {}: it has no event loop to run per core (use --threads 1)",
                cfg.threads,
                backend.name()
            )
        });
    }
    if backend == Backend::Sigio {
        // Before any loop thread exists, so every thread inherits the mask.
        reactor::sigio::block_signals().context("sigio: cannot block its signals")?;
    }
    let uring_features = ring.as_ref().map(|r| r.features);
    // io_uring sockets stay blocking (the ring polls them), and so do the blocking
    // models' listeners; the readiness models need non-blocking ones.
    let listeners = listener::bind_group(
        cfg.addr,
        cfg.threads,
        cfg.backlog,
        backend.nonblocking_listener(),
    )
    .with_context(|| format!("cannot listen on {}", cfg.addr))?;
    let addr = listeners[0]
        .local_addr()?
        .as_socket()
        .context("listener has no inet address")?;
    // The threads model's stack size is its own fact; the board only records it.
    let stack = (backend == Backend::Threads).then_some(threads::STACK_SIZE);
    let board = Arc::new(StatsBoard::new(
        backend,
        uring_features,
        stack,
        cfg.clone(),
        addr,
    ));
    // Printed once every loop is ready to serve.
    let announce = || {
        if !cfg.quiet {
            let cpus = cfg.cpus.as_ref().map_or(String::new(), |c| {
                format!(" cpus={}", crate::os::cpus::format_cpu_list(c))
            });
            println!(
                "ringmux: serving {} on {addr} backend={} features={} threads={}{cpus} pid={}",
                cfg.proto.name(),
                backend.name(),
                backend.features().map_or("-", |f| f.name()),
                cfg.threads,
                std::process::id()
            );
            if let Some(f) = &uring_features {
                println!("ringmux: io_uring {}", f.summary());
            }
            if cfg.faults.any() {
                println!(
                    "ringmux: fault injection on: {}",
                    std::env::var(fault::ENV).unwrap_or_default()
                );
            }
        }
    };
    if let Some(c) = fault::set_slowdowns(&cfg.faults)
        && !cfg.quiet
    {
        println!(
            "ringmux: input-work: {} iterations per message ({:.3} ns each, calibrated)",
            c.iters_per_msg, c.ns_per_iter
        );
    }
    percore::run(
        &cfg,
        backend,
        ring,
        listeners,
        signals,
        Arc::new(hub),
        &board,
        announce,
    )?;
    let report = board.report(true);
    if !cfg.quiet {
        let mut out = io::stdout().lock();
        stats::print_summary(&report, &mut out)?;
        out.flush()?;
    }
    board.write_json(&report).with_context(|| {
        format!(
            "cannot write {}",
            cfg.stats_json.as_ref().unwrap().display()
        )
    })?;
    Ok(report)
}
