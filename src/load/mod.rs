//! Load generator: drives any TCP echo server and records latency in HdrHistograms.
//! Never imports `server`.
//!
//! # Modes
//! - **Closed loop** (default): each connection keeps `pipeline` messages in flight and
//!   sends the next one when a reply is complete. Latency = reply fully received − actual
//!   send. Measures service time under a concurrency; hides stalls (coordinated omission).
//! - **Open loop** (`rate`): wrk2's method. Connection `i` of `N` sends message `k` at its
//!   intended time `(i/N + k) · N/rate` seconds after the start, with at most `pipeline`
//!   messages outstanding; it sends at `max(intended, a slot frees)`, so after a stall it
//!   catches up at once. Latency is recorded twice: from the intended time (corrected,
//!   what users of the server would see) and from the actual send (uncorrected).
//!
//! # Verification and errors
//! Every payload byte is a function of (connection, message, offset) ([`payload`]), so
//! every echoed byte is checked without storing what was sent. Mismatches, resets,
//! timeouts and connect failures are counted by kind; a reset or timed-out connection is
//! dropped, never reconnected, and the run stops early when none is left.
//!
//! # Time bounds
//! The run ends by `warmup + duration` (closed loop) or `warmup + duration + timeout`
//! (open loop: replies to messages intended inside the window are awaited that long),
//! whatever the server does. Connecting is bounded by `timeout` as a whole.
//!
//! # Threads and drivers
//! Connections are spread over `threads` workers (connection `i` on worker `i % T`), each
//! with its own io_uring or epoll, buffers and histograms. Workers hand over one
//! histogram pair per interval; the coordinator merges them (`Histogram::add`) into the
//! interval series and the totals. The driver ([`Driver`]) is chosen once before the
//! workers start ([`Driver::choose`]); both run the same protocol core (`engine`), so
//! schedules, verification and error counting do not depend on it.
//!
//! # In-process use (the bench)
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use ringmux::load::{self, LoadConfig, Mode, WindowEdge};
//!
//! let addr = "127.0.0.1:7878".parse().unwrap();
//! let mut cfg = LoadConfig::closed(addr, 50, 128, Duration::from_secs(5));
//! cfg.mode = Mode::Open { rate: 50_000.0 };
//! cfg.pin = vec![1];
//! // Called from the coordinating thread when the measured window opens and closes:
//! // sample the server's CPU time here.
//! cfg.on_window = Some(Arc::new(|edge| match edge {
//!     WindowEdge::Start => { /* read /proc/<server>/stat */ }
//!     WindowEdge::End => { /* read it again */ }
//! }));
//! let out = load::run(&cfg)?;
//! println!("{} msgs/s, p99 {} ns", out.result.msgs_per_s, out.result.latency.p99);
//! # anyhow::Ok(())
//! ```
//!
//! # Cost
//! Per message in closed loop at 50 connections: with io_uring a SEND and a RECV SQE and
//! a tenth of one `io_uring_enter`; with epoll one `send`, one `recv` and a share of one
//! `epoll_pwait2` (about 2.1 system calls). perf puts about 95% of the load generator's
//! CPU in the kernel's TCP path on loopback, so it costs about what a minimal echo server
//! costs per message (measured: 4.6 µs each, `benches/load_client.rs`); its own code is a
//! few percent. Open loop wakes the thread about once per message, which costs more.

mod config;
mod engine;
mod epoll;
mod idle;
mod output;
pub mod payload;
pub mod schedule;
mod sys;
mod uring;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;

pub use config::{LoadConfig, Mode, WindowEdge, WindowHook, parse_cpu_list, uncorrected_path};
use engine::{Plan, Report, Shared, Wire, WorkerResult, new_histogram};
pub use output::rate_line;
use schedule::Schedule;

use crate::cli::{DriverChoice, LoadArgs};
use crate::results::schema::{LOAD_SCHEMA, LoadErrors, LoadParams, LoadResult, Percentiles};
use crate::sysinfo::SysInfo;

/// The IO driver a run actually uses (see [`LoadConfig::driver`] for the choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// SEND/RECV submitted to an io_uring per worker (Linux 5.11+).
    Uring,
    /// Non-blocking send/recv on edge-triggered epoll readiness.
    Epoll,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::Uring => "uring",
            Driver::Epoll => "epoll",
        }
    }

    /// Decide once, before any worker starts. `auto`: io_uring when a ring with what the
    /// driver needs can be set up, else epoll after one warning line on stderr naming
    /// the reason and the fix. `uring` without it: that reason as the error.
    pub fn choose(choice: DriverChoice) -> anyhow::Result<Driver> {
        match choice {
            DriverChoice::Epoll => Ok(Driver::Epoll),
            DriverChoice::Uring => match uring::available() {
                Ok(()) => Ok(Driver::Uring),
                Err(e) => Err(anyhow::Error::new(e).context("--driver uring")),
            },
            DriverChoice::Auto => match uring::available() {
                Ok(()) => Ok(Driver::Uring),
                Err(e) => {
                    eprintln!("ringmux: warning: {e}; falling back to epoll for load");
                    Ok(Driver::Epoll)
                }
            },
        }
    }
}

/// One interval of the interval series (all threads merged).
#[derive(Debug, Clone)]
pub struct IntervalHists {
    /// Start of the interval, seconds since the epoch.
    pub start_unix_s: f64,
    pub length_s: f64,
    /// Same meaning as [`LoadOutcome::latency`].
    pub latency: Histogram<u64>,
    /// Open loop only: from the actual send time.
    pub uncorrected: Option<Histogram<u64>>,
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub struct LoadOutcome {
    pub result: LoadResult,
    /// Latency in ns: corrected (from the intended send time) in open loop, from the
    /// actual send in closed loop.
    pub latency: Histogram<u64>,
    /// Open loop only: latency from the actual send time.
    pub uncorrected: Option<Histogram<u64>>,
    /// One entry per interval from the start of the measured window, empty ones included.
    pub intervals: Vec<IntervalHists>,
}

/// `ringmux load`: run, write the files asked for, print the summary; exit 1 (one line
/// naming the error kinds) when errors were counted, unless `--allow-errors`.
pub fn load_cmd(a: LoadArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = LoadConfig::from_args(&a)?;
    // An hour's run is not lost to a typo in an output path: check them all first.
    output::check_paths(&a)?;
    // First Ctrl-C / SIGTERM: stop and report what ran. Second: exit at once (130).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())
            .context("installing a signal handler")?;
        signal_hook::flag::register(sig, stop.clone()).context("installing a signal handler")?;
    }
    cfg.stop = Some(stop);
    let outcome = run(&cfg)?;
    // The summary first: a file that cannot be written does not hide the figures.
    if !a.quiet {
        print!("{}", output::summary(&outcome));
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
    }
    let files = output::write_files(&a, &outcome)?;
    if !a.quiet {
        print!("{}", output::files_lines(&files));
    }
    let e = &outcome.result.errors;
    if e.total() > 0 && !a.allow_errors {
        bail!(
            "{} error(s) during the run: {} (use --allow-errors to exit 0 anyway)",
            e.total(),
            output::errors_line(e)
        );
    }
    if outcome.result.interrupted {
        // Files and summary cover what ran; the exit status says it was cut short.
        return Ok(ExitCode::from(130));
    }
    if a.require_rate && outcome.result.rate_kept == Some(false) {
        eprintln!(
            "ringmux: error: {}",
            output::rate_line(&outcome.result).trim()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Run one load test. Blocks for about `warmup + duration` (see the module docs for the
/// bounds). Errors only when the run could not happen at all (bad config, no connection
/// could be made, a thread could not be pinned); errors during the run are counted in
/// the result.
pub fn run(cfg: &LoadConfig) -> anyhow::Result<LoadOutcome> {
    cfg.validate()?;
    let driver = Driver::choose(cfg.driver)?;
    sys::raise_nofile_limit();
    // Before any active connection, so the active ones get the server's highest fds.
    let idle = idle::open(cfg.addr, cfg.idle_conns, cfg.timeout)?;
    let threads = usize::from(cfg.effective_threads());
    let plan = Arc::new(Plan {
        addr: cfg.addr,
        size: Wire::new(cfg.proto, cfg.size as usize).request_len(cfg.size as usize),
        wire: Wire::new(cfg.proto, cfg.size as usize),
        pipeline: cfg.pipeline,
        schedule: cfg.rate().map(|r| Schedule::new(r, cfg.conns)),
        warmup_ns: ns(cfg.warmup),
        end_ns: ns(cfg.warmup + cfg.duration),
        hard_stop_ns: ns(cfg.warmup + cfg.duration + cfg.timeout),
        timeout_ns: ns(cfg.timeout),
        interval_ns: ns(cfg.interval),
        connect_timeout: cfg.timeout,
        driver,
    });
    let shared = Arc::new(Shared::default());
    let (tx, rx) = mpsc::channel::<Report>();
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
            .spawn(move || engine::worker(ids, cpu, plan, shared, tx, srx))
            .context("cannot start a load thread")?;
        handles.push(h);
    }
    drop(tx);

    // Connect phase: every worker reports once.
    let mut connected = 0u64;
    let mut first_err = None;
    let mut fatal = None;
    for _ in 0..threads {
        match rx.recv() {
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
                fatal.get_or_insert_with(|| "a load thread ended before connecting".to_string());
                break;
            }
        }
    }
    let abort = |starts: Vec<mpsc::Sender<Option<Instant>>>,
                 handles: Vec<std::thread::JoinHandle<WorkerResult>>| {
        for s in starts {
            let _ = s.send(None);
        }
        for h in handles {
            let _ = h.join();
        }
    };
    if let Some(f) = fatal {
        abort(starts, handles);
        bail!("{f}");
    }
    if connected == 0 && !cfg.allow_errors {
        abort(starts, handles);
        match first_err {
            Some(e) => bail!("cannot connect to {}: {}", cfg.addr, strip_os_error(&e)),
            None => bail!("cannot connect to {}", cfg.addr),
        }
    }

    // Go. The base instant is warm-up start; the measured window is [warmup, end).
    let (base, base_unix) = match cfg.start_at {
        None => (
            Instant::now(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        ),
        Some(at) => match wait_for_start(at, cfg) {
            Ok(b) => (b, at),
            Err(e) => {
                abort(starts, handles);
                return Err(e);
            }
        },
    };
    for s in &starts {
        let _ = s.send(Some(base));
    }
    let hook = |edge| {
        if let Some(h) = &cfg.on_window {
            h(edge)
        }
    };
    let progress = output::Progress::new(
        cfg.progress && std::io::stderr().is_terminal(),
        cfg.warmup.as_secs_f64(),
        cfg.duration.as_secs_f64(),
    );
    let interval_s = cfg.interval.as_secs_f64();
    let mut series: Vec<(Histogram<u64>, Option<Histogram<u64>>)> = Vec::new();
    let mut started = false;
    let mut ended = false;
    let mut interrupted = false;
    let mut shown = 0u64; // intervals shown on the progress line
    let store = |series: &mut Vec<(Histogram<u64>, Option<Histogram<u64>>)>, r: Report| {
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
    };
    loop {
        let now = base.elapsed();
        if !started && now >= cfg.warmup {
            started = true;
            hook(WindowEdge::Start);
            progress.line(format!(
                "warm-up done: {} messages",
                shared
                    .warmup_done
                    .load(std::sync::atomic::Ordering::Relaxed)
            ));
        }
        if !ended && now >= cfg.warmup + cfg.duration {
            ended = true;
            hook(WindowEdge::End);
        }
        if handles.iter().all(|h| h.is_finished()) {
            break;
        }
        if !interrupted
            && cfg
                .stop
                .as_ref()
                .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
        {
            interrupted = true;
            shared
                .stop
                .store(true, std::sync::atomic::Ordering::Relaxed);
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
        match rx.recv_timeout(wait) {
            Ok(r) => store(&mut series, r),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Every worker is gone; join below.
                if handles.iter().all(|h| h.is_finished()) {
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
    let mut results = Vec::with_capacity(threads);
    for h in handles {
        results.push(
            h.join()
                .map_err(|_| anyhow::anyhow!("a load thread panicked"))?,
        );
    }
    while let Ok(r) = rx.try_recv() {
        store(&mut series, r);
    }
    // The intervals not shown yet (the last one ends with the run).
    while started && (shown as usize) < series.len() {
        let (l, u) = &series[shown as usize];
        progress.interval(shown, interval_s, Some(l), u.as_ref(), &shared.errors());
        shown += 1;
    }
    progress.finish();

    // Merge.
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
    let mut scheduled = 0u64;
    for r in &results {
        add_errors(&mut errors, &r.errors);
        messages += r.messages;
        warmup_messages += r.warmup_messages;
        missing += r.missing;
        scheduled += r.scheduled;
        cpu += r.cpu_in_window;
    }
    debug_assert_eq!(messages, latency.len());

    let (mut last_reply_ns, mut max_lag_ns, mut connect_refused) = (0u64, 0u64, 0u64);
    for r in &results {
        last_reply_ns = last_reply_ns.max(r.last_reply_ns);
        max_lag_ns = max_lag_ns.max(r.max_lag_ns);
        connect_refused += r.connect_refused;
    }
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
    let rate_kept = cfg.rate().map(|_| {
        if connected == 0 {
            return false;
        }
        let owed = scheduled as f64 * f64::from(cfg.my_conns()) / connected as f64;
        let target = owed / sched_window.as_secs_f64().max(1e-9);
        msgs_per_s >= 0.99 * target && max_lag_ns <= ns(cfg.max_lag)
    });
    let idle_closed = idle::closed(&idle);
    drop(idle);
    let start_unix_s = base_unix + cfg.warmup.as_secs_f64();
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
            threads: threads as u16,
            driver: driver.name().to_string(),
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
        idle_closed,
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

/// The latest a `--start-at` may lie ahead.
const MAX_START_AHEAD_S: f64 = 24.0 * 3600.0;

/// `--start-at`: sleep until the wall-clock time `at` (Ctrl-C still stops it) and return
/// the instant it stands for. A time already past is allowed while the run's window
/// still lies ahead: the schedule keeps its wall-clock times, so a late agent shows as
/// schedule lag instead of shifting its share.
fn wait_for_start(at: f64, cfg: &LoadConfig) -> anyhow::Result<Instant> {
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
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
        if cfg
            .stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
        {
            bail!("interrupted while waiting for --start-at");
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

fn add_errors(a: &mut LoadErrors, b: &LoadErrors) {
    a.mismatch += b.mismatch;
    a.reset += b.reset;
    a.timeout += b.timeout;
    a.connect += b.connect;
    a.other += b.other;
    for (k, v) in &b.status {
        *a.status.entry(*k).or_default() += v;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::LoadProto;
    use std::io::{Read, Write};
    use std::sync::Mutex;

    fn std_echo() -> std::net::SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut s = s;
                    let mut b = [0u8; 4096];
                    while let Ok(n @ 1..) = s.read(&mut b) {
                        if s.write_all(&b[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn in_process_run_calls_the_window_hook_in_order() {
        let addr = std_echo();
        let edges = Arc::new(Mutex::new(Vec::new()));
        let e2 = edges.clone();
        let t0 = Instant::now();
        let mut cfg = LoadConfig::closed(addr, 3, 64, Duration::from_millis(400));
        cfg.warmup = Duration::from_millis(200);
        cfg.threads = 2;
        cfg.on_window = Some(Arc::new(move |e| {
            e2.lock().unwrap().push((e, t0.elapsed()))
        }));
        let o = run(&cfg).unwrap();
        let edges = edges.lock().unwrap().clone();
        assert_eq!(
            edges.iter().map(|e| e.0).collect::<Vec<_>>(),
            vec![WindowEdge::Start, WindowEdge::End]
        );
        let window = edges[1].1 - edges[0].1;
        assert!(
            window >= Duration::from_millis(380) && window < Duration::from_millis(1500),
            "{window:?}"
        );
        assert_eq!(o.result.errors.total(), 0);
        assert!(o.result.messages > 0);
        assert_eq!(o.latency.len(), o.result.messages);
        assert!(o.uncorrected.is_none());
        // The interval series adds up to the totals.
        let sum: u64 = o.intervals.iter().map(|i| i.latency.len()).sum();
        assert_eq!(sum, o.result.messages);
        assert!(!o.intervals.is_empty());
    }

    /// The drivers this kernel can run (a skipped one is named).
    fn drivers() -> Vec<DriverChoice> {
        let mut v = vec![DriverChoice::Epoll];
        match uring::available() {
            Ok(()) => v.push(DriverChoice::Uring),
            Err(e) => println!("SKIPPED the io_uring driver: {e}"),
        }
        v
    }

    #[test]
    fn in_process_open_loop_counts_the_schedule() {
        let addr = std_echo();
        for driver in drivers() {
            let mut cfg = LoadConfig::closed(addr, 4, 100, Duration::from_millis(500));
            cfg.mode = Mode::Open { rate: 400.0 };
            cfg.warmup = Duration::from_millis(100);
            cfg.interval = Duration::from_millis(100);
            cfg.driver = driver;
            let o = run(&cfg).unwrap();
            // Exactly the messages intended in the window: 400/s x 0.5 s.
            assert_eq!(o.result.messages, 200, "{driver:?}: {:?}", o.result);
            assert_eq!(o.result.rate_kept, Some(true));
            assert_eq!(o.result.missing, Some(0));
            assert_eq!(o.uncorrected.as_ref().unwrap().len(), 200);
            // Late replies count in the window's last interval: exactly 5 intervals.
            assert_eq!(o.intervals.len(), 5);
            assert_eq!(o.result.params.driver, format!("{driver:?}").to_lowercase());
        }
    }

    /// A closed-loop run of 0.3 s on every driver: no error, at least `min` messages.
    fn clean_run_on_every_driver(conns: u32, size: u32, pipeline: u32, min: u64) {
        let addr = std_echo();
        for driver in drivers() {
            let mut cfg = LoadConfig::closed(addr, conns, size, Duration::from_millis(300));
            cfg.pipeline = pipeline;
            cfg.warmup = Duration::from_millis(50);
            cfg.driver = driver;
            let o = run(&cfg).unwrap();
            assert_eq!(
                o.result.errors.total(),
                0,
                "{driver:?}: {:?}",
                o.result.errors
            );
            assert!(
                o.result.messages >= min,
                "{driver:?}: {}",
                o.result.messages
            );
        }
    }

    #[test]
    fn more_connections_than_ring_entries() {
        // In unit tests the ring has 8 entries: 40 connections queue SQEs in the backlog
        // (and overflow the completion queue, which the kernel keeps).
        clean_run_on_every_driver(40, 64, 1, 40);
    }

    #[test]
    fn pipelined_big_messages_on_every_driver() {
        // Messages larger than a driver's buffers, several in flight: short sends and
        // split receives on both drivers, every byte verified.
        clean_run_on_every_driver(3, 200_000, 3, 3);
    }

    #[test]
    fn refused_connection_error_names_the_address() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = LoadConfig::closed(
            format!("127.0.0.1:{port}").parse().unwrap(),
            2,
            8,
            Duration::from_millis(100),
        );
        let e = run(&cfg).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("cannot connect to 127.0.0.1:{port}: Connection refused")
        );
    }

    /// A std server that feeds each connection's bytes to `serve` (bytes in, reply out,
    /// unconsumed bytes kept), one thread per connection.
    fn std_server<F>(serve: F) -> std::net::SocketAddr
    where
        F: Fn() -> Box<dyn FnMut(&[u8], &mut Vec<u8>) -> usize + Send> + Send + 'static,
    {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let mut f = serve();
                std::thread::spawn(move || {
                    let mut s = s;
                    let mut b = [0u8; 4096];
                    let mut pending = Vec::new();
                    while let Ok(n @ 1..) = s.read(&mut b) {
                        pending.extend_from_slice(&b[..n]);
                        let mut out = Vec::new();
                        let used = f(&pending, &mut out);
                        pending.drain(..used);
                        if s.write_all(&out).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    /// The server's own HTTP core behind a std socket.
    fn std_http() -> std::net::SocketAddr {
        std_server(|| {
            let mut st = crate::proto::ProtoState::new(crate::proto::Proto::Http);
            Box::new(move |input, out| {
                let mut bc = Vec::new();
                let mut fx = crate::proto::Effects {
                    reply: out,
                    broadcast: &mut bc,
                    close: false,
                };
                st.handle(input, &mut fx)
            })
        })
    }

    /// Answer every request head (GET, no body) with `reply`.
    fn std_http_fixed(reply: &'static [u8]) -> std::net::SocketAddr {
        std_server(move || {
            Box::new(move |input, out| {
                let mut used = 0;
                while let Some(p) = input[used..].windows(4).position(|w| w == b"\r\n\r\n") {
                    used += p + 4;
                    out.extend_from_slice(reply);
                }
                used
            })
        })
    }

    fn http_cfg(addr: std::net::SocketAddr, size: u32, driver: DriverChoice) -> LoadConfig {
        let mut cfg = LoadConfig::closed(addr, 3, size, Duration::from_millis(300));
        cfg.proto = LoadProto::Http;
        cfg.pipeline = 3;
        cfg.warmup = Duration::from_millis(50);
        cfg.driver = driver;
        cfg
    }

    #[test]
    fn http_get_and_post_verified_on_every_driver() {
        let addr = std_http();
        for driver in drivers() {
            // 0: GET /; 5000: a POST /echo body bigger than one read.
            for size in [0, 5000] {
                let o = run(&http_cfg(addr, size, driver)).unwrap();
                assert_eq!(
                    o.result.errors.total(),
                    0,
                    "{driver:?} size {size}: {:?}",
                    o.result.errors
                );
                assert!(
                    o.result.messages >= 3,
                    "{driver:?} size {size}: {}",
                    o.result.messages
                );
                assert_eq!(o.result.params.proto.as_deref(), Some("http"));
            }
        }
    }

    #[test]
    fn http_non_2xx_counted_by_status_and_bad_bodies_as_mismatch() {
        let addr = std_http_fixed(b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!");
        let o = run(&http_cfg(addr, 0, DriverChoice::Epoll)).unwrap();
        let n404 = o.result.errors.status.get(&404).copied().unwrap_or(0);
        assert!(n404 >= 3, "{:?}", o.result.errors);
        assert_eq!(o.result.messages, 0);
        assert_eq!(o.result.errors.total(), n404, "{:?}", o.result.errors);
        assert!(output::errors_line(&o.result.errors).contains("status 404 "));
        let addr = std_http_fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World?");
        let o = run(&http_cfg(addr, 0, DriverChoice::Epoll)).unwrap();
        assert!(o.result.errors.mismatch >= 3, "{:?}", o.result.errors);
        assert_eq!(o.result.messages, 0);
        // A reply without a Content-Length cannot be framed: the connection is dropped.
        let addr = std_http_fixed(b"HTTP/1.1 200 OK\r\n\r\nHello, World!");
        let o = run(&http_cfg(addr, 0, DriverChoice::Epoll)).unwrap();
        assert!(o.result.errors.mismatch >= 1, "{:?}", o.result.errors);
        assert_eq!(o.result.messages, 0);
    }

    #[test]
    fn upper_replies_verified_and_echo_is_a_mismatch() {
        let upper = std_server(|| {
            Box::new(|input, out| {
                out.extend(input.iter().map(u8::to_ascii_uppercase));
                input.len()
            })
        });
        for driver in drivers() {
            let mut cfg = LoadConfig::closed(upper, 2, 300, Duration::from_millis(300));
            cfg.proto = LoadProto::Upper;
            cfg.warmup = Duration::from_millis(50);
            cfg.driver = driver;
            let o = run(&cfg).unwrap();
            assert_eq!(
                o.result.errors.total(),
                0,
                "{driver:?}: {:?}",
                o.result.errors
            );
            assert!(o.result.messages > 0);
            // Against a plain echo the upper-cased check fails.
            cfg.addr = std_echo();
            let o = run(&cfg).unwrap();
            assert!(
                o.result.errors.mismatch > 0,
                "{driver:?}: {:?}",
                o.result.errors
            );
        }
    }
}
