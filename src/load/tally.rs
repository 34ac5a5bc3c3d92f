//! From what the workers and the coordinator gathered to the [`LoadOutcome`]: merged
//! histograms, totals, the measured window, whether the rate was kept, the interval
//! series and the [`LoadResult`] figures.

use std::time::Duration;

use anyhow::Context;

use super::config::LoadConfig;
use super::coordinator::Watched;
use super::plan::{Plan, ns};
use super::worker::DriverKind;
use crate::results::outcome::{IntervalHists, LoadOutcome, new_histogram};
use crate::results::schema::{LOAD_SCHEMA, LoadErrors, LoadParams, LoadResult, Percentiles};
use crate::sysinfo::SysInfo;

/// How a run went, besides what [`Watched`] holds.
pub(crate) struct Ran {
    pub driver: DriverKind,
    /// Connections established.
    pub connected: u64,
    /// The warm-up's start, UNIX seconds.
    pub base_unix: f64,
    /// Idle connections the server had closed by the end.
    pub idle_closed: u32,
}

/// Add up the run.
pub(crate) fn outcome(
    cfg: &LoadConfig,
    plan: &Plan,
    ran: Ran,
    watched: Watched,
) -> anyhow::Result<LoadOutcome> {
    let Watched {
        mut series,
        results,
        stopped,
        interrupted,
    } = watched;
    let open = cfg.rate().is_some();
    let mut latency = new_histogram();
    let mut uncorrected = open.then(new_histogram);
    for (l, u) in &series {
        latency.add(l).context("merging histograms")?;
        if let (Some(t), Some(u)) = (uncorrected.as_mut(), u.as_ref()) {
            t.add(u).context("merging histograms")?;
        }
    }
    let mut errors = LoadErrors::default();
    let (mut messages, mut warmup_messages, mut missing, mut cpu) =
        (0u64, 0u64, 0u64, Duration::ZERO);
    let (mut scheduled, mut last_reply_ns, mut max_lag_ns, mut connect_refused) =
        (0u64, 0u64, 0u64, 0u64);
    for r in &results {
        errors.add(&r.errors);
        messages += r.messages;
        warmup_messages += r.warmup_messages;
        missing += r.missing;
        scheduled += r.scheduled;
        cpu += r.cpu_in_window;
        last_reply_ns = last_reply_ns.max(r.last_reply_ns);
        max_lag_ns = max_lag_ns.max(r.max_lag_ns);
        connect_refused += r.connect_refused;
    }
    debug_assert_eq!(messages, latency.len());

    // The window: the full duration unless every connection was gone before its end
    // (closed loop) or the run was interrupted.
    let sched_window = if open && !interrupted {
        cfg.duration
    } else {
        stopped.saturating_sub(cfg.warmup).min(cfg.duration)
    };
    // Open loop: the real time from the first send intended in the window to the last
    // reply, so a server that needs 2 s for a 1 s schedule shows half the rate.
    let window = match plan.schedule {
        Some(s) if messages > 0 => {
            let first = cfg
                .my_conn_ids()
                .map(|c| s.intended(c, s.count_before(c, plan.warmup_ns)))
                .min()
                .unwrap_or(plan.warmup_ns);
            Duration::from_nanos(last_reply_ns.saturating_sub(first).max(1))
        }
        _ => sched_window,
    };
    let elapsed_s = window.as_secs_f64();
    let msgs_per_s = if elapsed_s > 0.0 {
        messages as f64 / elapsed_s
    } else {
        0.0
    };
    // Kept: the achieved rate is at least 99% of the schedule's (its count is rate x
    // duration up to the rounding of a message per connection, which must not flag a
    // short run at a low rate; connections that never connected owe their share), and
    // no send fell behind its intended time by more than the lag allowed.
    let connected = ran.connected;
    let rate_kept = cfg.rate().map(|_| {
        if connected == 0 {
            return false;
        }
        let owed = scheduled as f64 * f64::from(cfg.my_conns()) / connected as f64;
        let target = owed / sched_window.as_secs_f64().max(1e-9);
        msgs_per_s >= 0.99 * target && max_lag_ns <= ns(cfg.max_lag)
    });
    let start_unix_s = ran.base_unix + cfg.warmup.as_secs_f64();
    let interval_s = cfg.interval.as_secs_f64();
    // The interval series covers the schedule's window (late replies are in its last interval).
    let n_intervals = ((sched_window.as_secs_f64() / interval_s).ceil() as usize).max(series.len());
    while series.len() < n_intervals {
        series.push((new_histogram(), open.then(new_histogram)));
    }
    let intervals = series
        .into_iter()
        .enumerate()
        .map(|(k, (l, u))| IntervalHists {
            start_unix_s: start_unix_s + k as f64 * interval_s,
            length_s: interval_s,
            latency: l,
            uncorrected: u,
        })
        .collect();
    let result = LoadResult {
        schema: LOAD_SCHEMA.to_string(),
        params: LoadParams {
            addr: cfg.addr.to_string(),
            mode: cfg.mode_name().to_string(),
            conns: cfg.my_conns(),
            size: cfg.size,
            pipeline: cfg.pipeline,
            rate: cfg.my_rate(),
            duration_s: cfg.duration.as_secs_f64(),
            warmup_s: cfg.warmup.as_secs_f64(),
            threads: cfg.effective_threads(),
            driver: ran.driver.name().to_string(),
            proto: Some(cfg.proto.name().to_string()),
            timeout_s: Some(cfg.timeout.as_secs_f64()),
            agents: (cfg.agents > 1).then_some(cfg.agents),
            agent_id: (cfg.agents > 1).then_some(cfg.agent_id),
            start_at: cfg.start_at,
        },
        sys: SysInfo::collect(),
        start_unix_s,
        elapsed_s,
        messages,
        warmup_messages,
        msgs_per_s,
        mb_per_s: msgs_per_s * f64::from(cfg.size) / 1e6,
        rate_kept,
        latency: Percentiles::of(&latency),
        latency_uncorrected: uncorrected.as_ref().map(Percentiles::of),
        errors,
        load_cpu_ns_per_msg: (messages > 0).then(|| cpu.as_nanos() as f64 / messages as f64),
        missing: open.then_some(missing),
        interrupted,
        idle_conns: cfg.idle_conns,
        idle_closed: ran.idle_closed,
        max_lag_s: open.then(|| max_lag_ns as f64 / 1e9),
        max_lag_limit_s: open.then_some(cfg.max_lag.as_secs_f64()),
        conns_established: Some(u32::try_from(connected).unwrap_or(u32::MAX)),
        connect_refused,
    };
    Ok(LoadOutcome {
        result,
        latency,
        uncorrected,
        intervals,
    })
}
