//! One load test, from a validated configuration to its outcome: the steps in order.

use std::sync::Arc;

use super::config::LoadConfig;
use super::coordinator::{Workers, start_time, watch};
use super::idle;
use super::plan::{Plan, Shared};
use super::sys;
use super::tally::{self, Ran};
use super::worker::DriverKind;
use crate::results::outcome::LoadOutcome;

/// Run one load test. Blocks for about `warmup + duration` (see the module docs for the
/// bounds). Errors only when the run could not happen at all (bad config, no connection
/// could be made, a thread could not be pinned); errors during the run are counted in
/// the result.
pub fn run(cfg: &LoadConfig) -> anyhow::Result<LoadOutcome> {
    cfg.validate()?;
    let driver = DriverKind::choose(cfg.driver)?;
    sys::raise_nofile_limit();
    // Before any active connection, so the active ones get the server's highest fds.
    let idle = idle::open(cfg.addr, cfg.idle_conns, cfg.timeout)?;
    let plan = Arc::new(Plan::new(cfg));
    let shared = Arc::new(Shared::default());
    let mut workers = Workers::spawn(cfg, driver, &plan, &shared)?;
    let connected = workers.connect_phase(cfg)?;
    // Go. The base instant is warm-up start; the measured window is [warmup, end).
    let (base, base_unix) = match start_time(cfg) {
        Ok(start) => start,
        Err(e) => {
            workers.abort();
            return Err(e);
        }
    };
    workers.go(base);
    let watched = watch(cfg, &shared, workers, base)?;
    let ran = Ran {
        driver,
        connected,
        base_unix,
        idle_closed: idle::closed(&idle),
    };
    drop(idle);
    tally::outcome(cfg, &plan, ran, watched)
}
