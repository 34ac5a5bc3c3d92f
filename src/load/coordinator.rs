//! The coordinating thread of a run: it starts the workers, gathers their connect
//! phase, waits for the start time, then watches the run (window hook, progress line,
//! interval hand-over, Ctrl-C) until every worker is done.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;

use super::config::{LoadConfig, WindowEdge};
use super::output::Progress;
use super::plan::{Plan, Report, Shared, WorkerResult};
use super::worker::{DriverKind, worker};
use crate::results::outcome::new_histogram;

/// The worker threads of a run, from spawn to join.
pub(crate) struct Workers {
    /// Per worker: the base instant to start from, or None to end without running.
    starts: Vec<mpsc::Sender<Option<Instant>>>,
    handles: Vec<JoinHandle<WorkerResult>>,
    reports: mpsc::Receiver<Report>,
}

impl Workers {
    /// Start one worker per effective thread: connection ids round robin, worker `t`
    /// pinned to `cfg.pin[t]` when given. Each connects, reports, then waits for [`Workers::go`].
    pub fn spawn(
        cfg: &LoadConfig,
        driver: DriverKind,
        plan: &Arc<Plan>,
        shared: &Arc<Shared>,
    ) -> anyhow::Result<Workers> {
        let threads = usize::from(cfg.effective_threads());
        let (tx, reports) = mpsc::channel::<Report>();
        let mut starts = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for t in 0..threads {
            let ids: Vec<u32> = cfg.my_conn_ids().skip(t).step_by(threads).collect();
            let (stx, srx) = mpsc::channel();
            starts.push(stx);
            let (plan, shared, tx) = (plan.clone(), shared.clone(), tx.clone());
            let cpu = cfg.pin.get(t).copied();
            let h = std::thread::Builder::new()
                .name(format!("ringmux-load-{t}"))
                .spawn(move || worker(ids, cpu, driver, plan, shared, tx, srx))
                .context("cannot start a load thread")?;
            handles.push(h);
        }
        Ok(Workers {
            starts,
            handles,
            reports,
        })
    }

    /// The connect phase: every worker reports once. Returns the connections made. Err,
    /// with every worker stopped: one cannot run at all, or no connection was made
    /// (unless `allow_errors`).
    pub fn connect_phase(&mut self, cfg: &LoadConfig) -> anyhow::Result<u64> {
        let mut connected = 0u64;
        let mut first_err = None;
        let mut fatal = None;
        for _ in 0..self.handles.len() {
            match self.reports.recv() {
                Ok(Report::Ready {
                    connected: c,
                    first_connect_error,
                    fatal: f,
                }) => {
                    connected += u64::from(c);
                    if first_err.is_none() {
                        first_err = first_connect_error;
                    }
                    if fatal.is_none() {
                        fatal = f;
                    }
                }
                Ok(Report::Interval { .. }) => {}
                Err(_) => {
                    fatal
                        .get_or_insert_with(|| "a load thread ended before connecting".to_string());
                    break;
                }
            }
        }
        if let Some(f) = fatal {
            self.abort();
            bail!("{f}");
        }
        if connected == 0 && !cfg.allow_errors {
            self.abort();
            match first_err {
                Some(e) => bail!("cannot connect to {}: {}", cfg.addr, strip_os_error(&e)),
                None => bail!("cannot connect to {}", cfg.addr),
            }
        }
        Ok(connected)
    }

    /// End every worker without running, and wait for them.
    pub fn abort(&mut self) {
        for s in self.starts.drain(..) {
            let _ = s.send(None);
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }

    /// Start the run: `base` is the instant the warm-up starts.
    pub fn go(&self, base: Instant) {
        for s in &self.starts {
            let _ = s.send(Some(base));
        }
    }

    fn all_finished(&self) -> bool {
        self.handles.iter().all(|h| h.is_finished())
    }
}

/// The instant the warm-up starts, and that time in UNIX seconds: now, or `--start-at`.
pub(crate) fn start_time(cfg: &LoadConfig) -> anyhow::Result<(Instant, f64)> {
    match cfg.start_at {
        None => Ok((Instant::now(), unix_now())),
        Some(at) => Ok((wait_for_start(at, cfg)?, at)),
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The interval series as the workers hand it over: interval `k`'s histograms
/// (latency, uncorrected), every worker's added in.
pub(crate) type Series = Vec<(Histogram<u64>, Option<Histogram<u64>>)>;

fn store(series: &mut Series, r: Report) {
    if let Report::Interval {
        k,
        latency,
        uncorrected,
    } = r
    {
        let k = k as usize;
        while series.len() <= k {
            series.push((
                new_histogram(),
                uncorrected.as_ref().map(|_| new_histogram()),
            ));
        }
        let (l, u) = &mut series[k];
        let _ = l.add(&latency);
        if let (Some(u), Some(x)) = (u.as_mut(), uncorrected.as_ref()) {
            let _ = u.add(x);
        }
    }
}

/// What the coordinator saw of a run.
pub(crate) struct Watched {
    pub series: Series,
    /// Every worker's result.
    pub results: Vec<WorkerResult>,
    /// When the workers were done (or the loop saw them all gone), since base.
    pub stopped: Duration,
    /// Stopped early by `cfg.stop`.
    pub interrupted: bool,
}

/// Watch the run from `base` until every worker is done: call the window hook at each
/// edge (both are always called, once), show a progress line per interval, collect
/// the interval series, pass a stop request on. Err: a worker panicked.
pub(crate) fn watch(
    cfg: &LoadConfig,
    shared: &Shared,
    workers: Workers,
    base: Instant,
) -> anyhow::Result<Watched> {
    let hook = |edge| {
        if let Some(h) = &cfg.on_window {
            h(edge)
        }
    };
    let progress = Progress::new(
        cfg.progress && std::io::stderr().is_terminal(),
        cfg.warmup.as_secs_f64(),
        cfg.duration.as_secs_f64(),
    );
    let interval_s = cfg.interval.as_secs_f64();
    let mut series = Series::new();
    let mut started = false;
    let mut ended = false;
    let mut interrupted = false;
    let mut shown = 0u64; // intervals shown on the progress line
    loop {
        let now = base.elapsed();
        if !started && now >= cfg.warmup {
            started = true;
            hook(WindowEdge::Start);
            progress.line(format!(
                "warm-up done: {} messages",
                shared.warmup_done.load(Ordering::Relaxed)
            ));
        }
        if !ended && now >= cfg.warmup + cfg.duration {
            ended = true;
            hook(WindowEdge::End);
        }
        if workers.all_finished() {
            break;
        }
        if !interrupted && cfg.stopped() {
            interrupted = true;
            shared.stop.store(true, Ordering::Relaxed);
            progress.line("interrupted: stopping".to_string());
        }
        // Progress: interval k is shown a little after it ends, once workers handed it over.
        let show_at =
            cfg.warmup + cfg.interval.mul_f64((shown + 1) as f64) + Duration::from_millis(30);
        if started && now >= show_at {
            let (l, u) = series
                .get(shown as usize)
                .map_or((None, None), |(l, u)| (Some(l), u.as_ref()));
            progress.interval(shown, interval_s, l, u, &shared.errors());
            shown += 1;
        }
        let mut next = show_at;
        if !started {
            next = next.min(cfg.warmup);
        }
        if !ended {
            next = next.min(cfg.warmup + cfg.duration);
        }
        let wait = next
            .saturating_sub(now)
            .clamp(Duration::from_millis(1), Duration::from_millis(20));
        match workers.reports.recv_timeout(wait) {
            Ok(r) => store(&mut series, r),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Every worker is gone; join below.
                if workers.all_finished() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    let stopped = base.elapsed();
    if !started {
        hook(WindowEdge::Start);
    }
    if !ended {
        hook(WindowEdge::End);
    }
    let mut results = Vec::with_capacity(workers.handles.len());
    for h in workers.handles {
        results.push(
            h.join()
                .map_err(|_| anyhow::anyhow!("a load thread panicked"))?,
        );
    }
    while let Ok(r) = workers.reports.try_recv() {
        store(&mut series, r);
    }
    // The intervals not shown yet (the last one ends with the run).
    while started && (shown as usize) < series.len() {
        let (l, u) = &series[shown as usize];
        progress.interval(shown, interval_s, Some(l), u.as_ref(), &shared.errors());
        shown += 1;
    }
    progress.finish();
    Ok(Watched {
        series,
        results,
        stopped,
        interrupted,
    })
}

/// The latest a `--start-at` may lie ahead.
const MAX_START_AHEAD_S: f64 = 24.0 * 3600.0;

/// `--start-at`: sleep until the wall-clock time `at` (Ctrl-C still stops it) and return
/// the instant it stands for. A time already past is allowed while the run's window
/// still lies ahead: the schedule keeps its wall-clock times, so a late agent shows as
/// schedule lag instead of shifting its share.
fn wait_for_start(at: f64, cfg: &LoadConfig) -> anyhow::Result<Instant> {
    let now_unix = unix_now();
    let now = Instant::now();
    let ahead = at - now_unix;
    if ahead > MAX_START_AHEAD_S {
        bail!("--start-at {at}: {ahead:.0} s from now (at most {MAX_START_AHEAD_S:.0} s)");
    }
    if ahead < 0.0 {
        let late = Duration::from_secs_f64(-ahead);
        if late >= cfg.warmup + cfg.duration {
            bail!(
                "--start-at {at}: {:.1} s ago, the run would be over already",
                -ahead
            );
        }
        return now
            .checked_sub(late)
            .context("--start-at: too far in the past for this clock");
    }
    let target = now + Duration::from_secs_f64(ahead);
    loop {
        let left = target.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(target);
        }
        if cfg.stopped() {
            bail!("interrupted while waiting for --start-at");
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

/// "Connection refused (os error 111)" -> "Connection refused".
fn strip_os_error(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}
