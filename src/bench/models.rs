//! `bench --preset models`: the IO-model lab. Sweeps that test the claims of
//! MODELS.md, every model where it applies, interleaved (A B A B ...) within each
//! repeat, on the bench's own machinery (fresh pinned server per run, `ringmux load`
//! pinned apart, server counters from SIGUSR1 snapshots).
//!
//! - A: 1 active connection (closed loop) plus N idle ones, opened by the bench and
//!   accepted before the load connects, so the active socket has the highest fd.
//! - B: one connection, every backend.
//! - C: 1..1000 active connections: threads, epoll, uring, poll.
//! - D: select holding more than 1024 fds; busypoll and epoll with 100 idle
//!   connections and no traffic; sigio under a burst with a small RLIMIT_SIGPENDING.
//!
//! The figures go to results.json (`models`), the verdicts are computed by
//! [`crate::report::models::judge`].

use std::fs;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::plan::{Plan, Shape};
use super::proc::{
    Rss, RunningServer, ensure_nofile, load_cmd, read_load_result, start_server, stats_snapshot,
    wait_load, wait_load_watching,
};
use super::quiet::open_silent;
use super::spec::ServerSpec;
use crate::report::models::{ModelPoint, ModelRun, ModelsResults, judge, slopes};
use crate::results::schema::{BenchResults, LoadResult};

/// RLIMIT_SIGPENDING given to the sigio server for the burst: small enough that a
/// burst of ready connections overflows the real-time signal queue.
pub const SIGPENDING_LIMIT: u64 = 8;
/// Connections held by select in sweep D (past FD_SETSIZE = 1024).
const SELECT_PAST: u32 = 1100;
/// Idle connections of the quiet case (sweep D).
const QUIET_IDLE: u32 = 100;

/// The sweeps' sizes, full or `--quick`.
struct Sizes {
    select_idle: Vec<u32>,
    idle: Vec<u32>,
    a_backends: Vec<&'static str>,
    b_backends: Vec<&'static str>,
    c_conns: Vec<u32>,
    c_backends: Vec<&'static str>,
    quiet_s: f64,
    burst_conns: u32,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        Sizes {
            select_idle: if quick {
                vec![0, 900]
            } else {
                vec![0, 64, 256, 900]
            },
            idle: if quick {
                vec![0, 2000]
            } else {
                vec![0, 64, 256, 1000, 4000, 10000]
            },
            a_backends: vec!["select", "poll", "epoll", "sigio", "uring"],
            b_backends: vec![
                "blocking", "threads", "busypoll", "select", "poll", "epoll", "sigio", "uring",
            ],
            c_conns: if quick {
                vec![1, 100]
            } else {
                vec![1, 10, 100, 1000]
            },
            c_backends: vec!["threads", "epoll", "uring", "poll"],
            quiet_s: if quick { 1.0 } else { 5.0 },
            burst_conns: if quick { 200 } else { 500 },
        }
    }
}

fn loadavg() -> Vec<f64> {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// VmRSS of a process in KiB (0 when gone).
fn rss_kib(pid: u32) -> u64 {
    Rss::of(pid).map_or(0, |r| r.vm_kib)
}

fn num(j: &serde_json::Value, k: &str) -> f64 {
    j[k].as_f64().unwrap_or(0.0)
}

/// The counters of the models between two snapshots.
fn counters(r: &mut ModelRun, a: &serde_json::Value, b: &serde_json::Value) {
    let d = |k: &str| (num(b, k) - num(a, k)).max(0.0) as u64;
    r.refused_fd_setsize = d("refused_fd_setsize");
    r.sigio_signals = d("sigio_signals");
    r.sigio_overflows = d("sigio_overflows");
    r.busypoll_eagain = d("busypoll_eagain");
    r.threads_peak = num(b, "threads_peak") as u64;
}

/// A measured run's figures: the load's result, and the server's cost per message
/// and model counters between snapshots `a` and `b`. With no message there is no
/// per-message figure (they stay 0 and the run has no data, `ModelPoint::has_data`).
fn measured(r: &LoadResult, a: &serde_json::Value, b: &serde_json::Value) -> ModelRun {
    let m = crate::report::compare::load_metrics(r);
    let mut run = ModelRun {
        msgs: r.messages,
        msgs_per_s: m.msgs_per_s,
        p50_ns: m.p50_ns,
        p99_ns: m.p99_ns,
        errors: m.errors,
        ..Default::default()
    };
    if r.messages > 0 {
        let msgs = r.messages as f64;
        run.cpu_ns_per_msg = (cpu_s(b) - cpu_s(a)).max(0.0) * 1e9 / msgs;
        run.syscalls_per_msg =
            Some((num(b, "syscalls_total") - num(a, "syscalls_total")).max(0.0) / msgs);
        run.ctx_per_msg = (ctx(b) - ctx(a)).max(0.0) / msgs;
    }
    counters(&mut run, a, b);
    run
}

fn cpu_s(j: &serde_json::Value) -> f64 {
    num(j, "cpu_user_s") + num(j, "cpu_sys_s")
}

fn ctx(j: &serde_json::Value) -> f64 {
    num(j, "ctx_voluntary") + num(j, "ctx_involuntary")
}

/// `n` connections that only connect (no byte sent), accepted by the server before
/// this returns (its `connections_accepted` plus refusals reach `base + n`).
fn hold_idle(srv: &RunningServer, n: u32, base: u64) -> anyhow::Result<Vec<TcpStream>> {
    let mut v = Vec::with_capacity(n as usize);
    for i in 0..n {
        v.push(
            TcpStream::connect_timeout(&srv.addr, Duration::from_secs(5))
                .with_context(|| format!("idle connection {} of {n}", i + 1))?,
        );
    }
    let stats = srv.stats.as_ref().context("no stats file")?;
    let t0 = Instant::now();
    loop {
        let j = stats_snapshot(srv.child.id(), stats)?;
        let seen = num(&j, "connections_accepted") as u64 + num(&j, "refused_fd_setsize") as u64;
        if seen >= base + u64::from(n) {
            return Ok(v);
        }
        if t0.elapsed() > Duration::from_secs(20) {
            bail!(
                "the server accepted {seen} of {} connections within 20 s",
                base + u64::from(n)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One measured point run: fresh server, idle connections held, warm-up, measured
/// closed-loop load with `conns` connections, counters around it.
fn measure(
    plan: &Plan,
    backend: &str,
    conns: u32,
    idle: u32,
    stem: &str,
    profile: bool,
) -> anyhow::Result<(ModelRun, Option<String>, Option<f64>)> {
    let srv = start_server(plan, &ServerSpec::ringmux(backend), stem)?;
    let stats = srv.stats.clone().context("no stats file")?;
    let pid = srv.child.id();
    // The readiness probe of start_server was one accepted connection.
    let held = hold_idle(&srv, idle, 1)?;
    let shape = Shape::closed(conns);
    let limit = Duration::from_secs_f64(plan.cfg.duration + plan.cfg.warmup + 60.0);
    // Before the warm-up: what the server keeps per connection once it has seen
    // `conns` of them (a grown connection table) counts as theirs.
    let rss_before = rss_kib(pid);
    if plan.cfg.warmup > 0.0 {
        wait_load(
            load_cmd(plan, srv.addr, &shape, None, plan.cfg.warmup),
            "warm-up load",
            limit,
        )?;
    }
    let a = stats_snapshot(pid, &stats)?;
    let json = plan.out.join("runs").join(format!("{stem}.json"));
    let mut cmd = load_cmd(plan, srv.addr, &shape, None, plan.cfg.duration);
    cmd.arg("--json").arg(&json);
    let perf = plan.out.join("runs").join(format!("{stem}.perf.data"));
    let rec = if profile {
        Some(super::profile::Recording::start(
            &[pid],
            plan.server_cpus.as_deref(),
            &perf,
        )?)
    } else {
        None
    };
    let mut peak = rss_before;
    wait_load_watching(cmd, "load", limit, Duration::from_millis(50), || {
        peak = peak.max(rss_kib(pid));
    })?;
    let b = stats_snapshot(pid, &stats)?;
    let one = |each: Vec<anyhow::Result<_>>| each.into_iter().next().context("no profile")?;
    let net = match rec.map(|r| r.finish().and_then(one)) {
        Some(Ok(p)) => p.groups.get(crate::report::profile::NETWORK).copied(),
        Some(Err(e)) => {
            eprintln!("ringmux: warning: {stem}: no profile: {e:#}");
            None
        }
        None => None,
    };
    drop(held);
    drop(srv);
    let r = read_load_result(&json)?;
    let run = ModelRun {
        rss_before_kib: rss_before,
        rss_peak_kib: peak,
        ..measured(&r, &a, &b)
    };
    Ok((run, b["features"].as_str().map(str::to_string), net))
}

/// D: select holding `SELECT_PAST` connections; then, those closed, one client served.
fn select_past(plan: &Plan, stem: &str) -> anyhow::Result<ModelRun> {
    let srv = start_server(plan, &ServerSpec::ringmux("select"), stem)?;
    let stats = srv.stats.clone().context("no stats file")?;
    let pid = srv.child.id();
    let a = stats_snapshot(pid, &stats)?;
    let held = hold_idle(&srv, SELECT_PAST, 1)?;
    let b = stats_snapshot(pid, &stats)?;
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let json = plan.out.join("runs").join(format!("{stem}.json"));
    let mut cmd = load_cmd(
        plan,
        srv.addr,
        &Shape::closed(1),
        None,
        plan.cfg.duration.min(1.0),
    );
    cmd.arg("--json").arg(&json);
    let served = wait_load(cmd, "load after the refusals", Duration::from_secs(30));
    drop(srv);
    let mut run = ModelRun::default();
    counters(&mut run, &a, &b);
    match served {
        Ok(()) => {
            let r = read_load_result(&json)?;
            let m = crate::report::compare::load_metrics(&r);
            run.msgs = r.messages;
            run.msgs_per_s = m.msgs_per_s;
            run.p50_ns = m.p50_ns;
            run.p99_ns = m.p99_ns;
            run.errors = m.errors;
        }
        Err(e) => {
            eprintln!("ringmux: warning: select after refusing fds >= 1024: {e:#}");
            run.errors = 1;
        }
    }
    Ok(run)
}

/// D: `QUIET_IDLE` silent connections (each round-tripped once), no traffic for `secs`.
fn quiet(plan: &Plan, backend: &str, secs: f64, stem: &str) -> anyhow::Result<ModelRun> {
    let srv = start_server(plan, &ServerSpec::ringmux(backend), stem)?;
    let stats = srv.stats.clone().context("no stats file")?;
    let pid = srv.child.id();
    let held = open_silent(srv.addr, QUIET_IDLE, plan.cfg.proto)?;
    std::thread::sleep(Duration::from_millis(200));
    let a = stats_snapshot(pid, &stats)?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let b = stats_snapshot(pid, &stats)?;
    let wall = t0.elapsed().as_secs_f64();
    drop(held);
    drop(srv);
    let mut run = ModelRun {
        cpu_share: Some((cpu_s(&b) - cpu_s(&a)).max(0.0) / wall),
        ..Default::default()
    };
    counters(&mut run, &a, &b);
    Ok(run)
}

/// D: sigio with a small RLIMIT_SIGPENDING under a burst of `conns` connections.
fn sigio_burst(plan: &Plan, conns: u32, stem: &str) -> anyhow::Result<ModelRun> {
    let srv = start_server(plan, &ServerSpec::ringmux("sigio"), stem)?;
    let stats = srv.stats.clone().context("no stats file")?;
    let pid = srv.child.id();
    let lim = libc::rlimit {
        rlim_cur: SIGPENDING_LIMIT,
        rlim_max: SIGPENDING_LIMIT,
    };
    // SAFETY: `lim` is a live rlimit for the call; prlimit(2) on our own child only
    // reads it (the old-limit pointer is null).
    if unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_SIGPENDING,
            &lim,
            std::ptr::null_mut(),
        )
    } != 0
    {
        bail!(
            "prlimit(RLIMIT_SIGPENDING) on the sigio server: {}",
            std::io::Error::last_os_error()
        );
    }
    let a = stats_snapshot(pid, &stats)?;
    let json = plan.out.join("runs").join(format!("{stem}.json"));
    let mut cmd = load_cmd(
        plan,
        srv.addr,
        &Shape::closed(conns),
        None,
        plan.cfg.duration,
    );
    cmd.arg("--json").arg(&json);
    wait_load(
        cmd,
        "burst load",
        Duration::from_secs_f64(plan.cfg.duration + 60.0),
    )?;
    let b = stats_snapshot(pid, &stats)?;
    drop(srv);
    let r = read_load_result(&json)?;
    Ok(measured(&r, &a, &b))
}

fn add(
    points: &mut Vec<ModelPoint>,
    sweep: &str,
    backend: &str,
    conns: u32,
    idle: u32,
    features: Option<String>,
    run: ModelRun,
) {
    match points
        .iter_mut()
        .find(|p| p.sweep == sweep && p.backend == backend && p.conns == conns && p.idle == idle)
    {
        Some(p) => {
            p.features = p.features.take().or(features);
            p.runs.push(run);
        }
        None => points.push(ModelPoint {
            sweep: sweep.into(),
            backend: backend.into(),
            features,
            conns,
            idle,
            runs: vec![run],
            median: ModelRun::default(),
        }),
    }
}

/// Run the lab, write results.json and the reports into `plan.out`.
/// `base` has the lab's run lengths ([`super::RunLengths`]) and its servers are left
/// aside: each sweep names its own.
pub fn run(base: &Plan) -> anyhow::Result<BenchResults> {
    let quick = base.cfg.quick;
    let sz = Sizes::new(quick);
    let plan = Plan {
        servers: Vec::new(),
        ..base.clone()
    };
    let max_idle = sz
        .idle
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(SELECT_PAST)
        .max(sz.c_conns.iter().copied().max().unwrap_or(0));
    ensure_nofile(u64::from(max_idle) + 256).context("bench --preset models")?;
    let start_unix_s = super::create_out(&plan)?;
    let loadavg_start = loadavg();
    let profile = plan.profile;
    let mut points: Vec<ModelPoint> = Vec::new();
    let mut net: Vec<(String, Vec<f64>)> = Vec::new();
    let mut notes = plan.notes.clone();
    let mut no_data: Vec<String> = Vec::new();
    // The schedule of one repeat: (sweep, backend, conns, idle), interleaved: every
    // backend at one level before the next level.
    let mut sched: Vec<(&str, &str, u32, u32)> = Vec::new();
    let levels: Vec<u32> = {
        let mut l: Vec<u32> = sz.select_idle.iter().chain(&sz.idle).copied().collect();
        l.sort();
        l.dedup();
        l
    };
    for &i in &levels {
        for &b in &sz.a_backends {
            let ok = if b == "select" {
                sz.select_idle.contains(&i)
            } else {
                sz.idle.contains(&i)
            };
            if ok {
                sched.push(("A", b, 1, i));
            }
        }
    }
    for &b in &sz.b_backends {
        sched.push(("B", b, 1, 0));
    }
    for &c in &sz.c_conns {
        for &b in &sz.c_backends {
            sched.push(("C", b, c, 0));
        }
    }
    let mut progress = super::Progress::new((sched.len() + 4) * plan.cfg.repeat as usize);
    let mut step = |what: &str, rep: u32| progress.step(&format!("models {what}"), rep);
    for rep in 0..plan.cfg.repeat {
        for &(sweep, b, c, i) in &sched {
            let id = format!("{sweep}/{b}/c{c}+idle{i}");
            step(&id, rep);
            let stem = format!("models-{}-r{}", id.replace(['/', '+'], "_"), rep + 1);
            let prof = profile && sweep == "B" && (b == "epoll" || b == "uring");
            let tried = super::empty::retry_noted(
                &id,
                rep,
                &mut notes,
                |_| measure(&plan, b, c, i, &stem, prof),
                |(r, ..)| super::empty::measured_nothing(r.msgs, r.errors),
            )
            .with_context(|| format!("run {id}"))?;
            if tried.no_data() {
                no_data.push(format!("{id} run {}", rep + 1));
            }
            let (run, features, share) = tried.run;
            if run.errors > 0 {
                notes.push(format!("{id} run {}: {} load errors", rep + 1, run.errors));
            }
            if let Some(s) = share {
                match net.iter_mut().find(|x| x.0 == b) {
                    Some(x) => x.1.push(s),
                    None => net.push((b.to_string(), vec![s])),
                }
            }
            add(&mut points, sweep, b, c, i, features, run);
        }
        step("D/select past 1024 fds", rep);
        let r =
            select_past(&plan, &format!("models-D-select-r{}", rep + 1)).context("run D/select")?;
        add(&mut points, "D-select", "select", 1, SELECT_PAST, None, r);
        for b in ["busypoll", "epoll"] {
            step(&format!("D/{b} quiet"), rep);
            let r = quiet(
                &plan,
                b,
                sz.quiet_s,
                &format!("models-D-quiet-{b}-r{}", rep + 1),
            )
            .with_context(|| format!("run D/{b} quiet"))?;
            add(&mut points, "D-quiet", b, 0, QUIET_IDLE, None, r);
        }
        step("D/sigio burst", rep);
        let tried = super::empty::retry_noted(
            "D/sigio burst",
            rep,
            &mut notes,
            |_| {
                sigio_burst(
                    &plan,
                    sz.burst_conns,
                    &format!("models-D-sigio-r{}", rep + 1),
                )
            },
            |r| super::empty::measured_nothing(r.msgs, r.errors),
        )
        .context("run D/sigio burst")?;
        if tried.no_data() {
            no_data.push(format!("D/sigio burst run {}", rep + 1));
        }
        add(
            &mut points,
            "D-sigio",
            "sigio",
            sz.burst_conns,
            0,
            None,
            tried.run,
        );
    }
    for p in &mut points {
        p.median = p.median_of_data();
    }
    if !no_data.is_empty() {
        eprintln!(
            "ringmux: warning: {} measured 0 messages and 0 errors, twice: no data (see the claims and the notes in results.json)",
            no_data.join(", ")
        );
    }
    if !profile {
        notes.push("no --profile: the network-stack share (claim 8's bound) was not measured; add --profile (needs perf)".into());
    }
    notes.push(format!(
        "sweep A: the idle connections are opened by the bench (connect only) and accepted before the load connects, so the active socket has the highest fd; \
         threads are left out of sweep A (a thread per idle connection measures no readiness call). Sweep D sigio: RLIMIT_SIGPENDING {SIGPENDING_LIMIT} set on the server (prlimit) to provoke overflows"
    ));
    let mut m = ModelsResults {
        quick,
        repeat: plan.cfg.repeat,
        duration_s: plan.cfg.duration,
        size: plan.cfg.size,
        loadavg_start,
        loadavg_end: loadavg(),
        slopes: slopes(&points),
        points,
        sigpending_limit: Some(SIGPENDING_LIMIT),
        net_stack_share: net
            .into_iter()
            .map(|(b, v)| (b, v.iter().sum::<f64>() / v.len().max(1) as f64))
            .collect(),
        claims: Vec::new(),
    };
    m.claims = judge(&m);
    let args = serde_json::json!({
        "preset": "models", "quick": quick, "repeat": plan.cfg.repeat, "duration_s": plan.cfg.duration, "warmup_s": plan.cfg.warmup,
        "size": plan.cfg.size, "server_cpus": plan.server_cpus, "load_cpus": plan.load_cpus, "profile": profile,
    });
    let results = BenchResults {
        notes,
        models: Some(m),
        ..super::results(start_unix_s, args)
    };
    super::write_results(&plan, &results)?;
    Ok(results)
}
