//! The matrix: every server in every shape, interleaved (A B A B ...) within each
//! repeat, closed-loop shapes first (the open loop runs at a fraction of their peak);
//! each run a fresh server, a warm-up, and the measured load with the server's counters
//! read just before and after it. With `--versus-mode together`, each base and its head
//! are one run: both servers at once, each with its own load ([`run_group`]); with
//! `--together`, every server of the cell is. Cells keep every run and their median with min and
//! max. A run whose load measured nothing is run once more, and if still empty, kept
//! out of the cell's runs and counted in `empty_runs` ([`super::empty`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::config::VersusMode;
use super::peers::{PEERS, locked_version};
use super::plan::{Plan, Shape};
use super::proc::{children_cpu_s, load_cmd, read_load_result, start_server, wait_load};
use super::profile;
use super::quiet::quiet_rows;
use super::spec::ServerSpec;
use super::tokio_client;
use crate::report::profile::Profile;
use crate::results::schema::{BenchResults, Cell, RunMetrics};
use crate::results::stats::median;

/// Run the matrix, write results.json and the reports into `plan.out`.
pub fn run(plan: &Plan) -> anyhow::Result<BenchResults> {
    let start_unix_s = super::create_out(plan)?;
    let mut cells: BTreeMap<(usize, usize), Cell> = BTreeMap::new();
    let mut progress =
        super::Progress::new(plan.shapes.len() * plan.servers.len() * plan.cfg.repeat as usize);
    let mut notes = plan.notes.clone();
    // Closed-loop shapes first: open loop runs at a fraction of their measured peak.
    let (closed, open): (Vec<usize>, Vec<usize>) =
        (0..plan.shapes.len()).partition(|&i| plan.shapes[i].rate_fraction.is_none());
    let mut peak: Option<f64> = None;
    let mut profiles: BTreeMap<(usize, usize), Vec<Profile>> = BTreeMap::new();
    for phase in [closed, open] {
        for rep in 0..plan.cfg.repeat {
            for &si in &phase {
                let shape = &plan.shapes[si];
                let rate = match shape.rate_fraction {
                    Some(_) if shape.open_rate.is_some() => shape.open_rate,
                    Some(f) => {
                        let p = peak.context("no closed-loop run to take the peak from")?;
                        Some((p * f).max(100.0).round())
                    }
                    None => None,
                };
                for group in super::versus::groups(
                    &plan.servers,
                    rep,
                    plan.cfg.versus_mode(),
                    plan.cfg.together,
                ) {
                    let ids: Vec<String> = group
                        .iter()
                        .map(|&vi| {
                            format!("{}/{}", plan.servers[vi].name(), shape.id(plan.cfg.size))
                        })
                        .collect();
                    for id in &ids {
                        progress.step(id, rep);
                    }
                    let stems: Vec<String> =
                        ids.iter().map(|id| super::run_stem(id, rep)).collect();
                    let specs: Vec<&ServerSpec> =
                        group.iter().map(|&vi| &plan.servers[vi]).collect();
                    let label = ids.join(" + ");
                    // Servers run together keep their runs in step: when one of them
                    // measured nothing, the whole group runs again, and has no data.
                    let tried = super::empty::retry_noted(
                        &label,
                        rep,
                        &mut notes,
                        |_| run_group(plan, &specs, shape, rate, &stems),
                        |o| o.iter().any(|r| r.nothing),
                    )
                    .with_context(|| format!("run {label}"))?;
                    let no_data = tried.no_data();
                    for ((&vi, (id, stem)), outcome) in
                        group.iter().zip(ids.iter().zip(&stems)).zip(tried.run)
                    {
                        let server = &plan.servers[vi];
                        let RunOutcome {
                            metrics: m,
                            features,
                            profile: prof,
                            note,
                            ..
                        } = outcome;
                        if m.errors > 0 {
                            notes.push(format!("{id} run {}: {} load errors", rep + 1, m.errors));
                        }
                        if let Some(n) = note {
                            notes.push(format!("{id} run {}: {n}", rep + 1));
                        }
                        let cell = cells.entry((si, vi)).or_insert_with(|| Cell {
                            id: id.clone(),
                            server: server.name(),
                            features: features.clone(),
                            server_threads: matches!(server, ServerSpec::Ringmux { .. })
                                .then_some(plan.cfg.server_threads),
                            mode: shape.mode.to_string(),
                            conns: shape.conns,
                            size: plan.cfg.size,
                            pipeline: shape.pipeline,
                            rate,
                            runs: Vec::new(),
                            median: RunMetrics::default(),
                            min: RunMetrics::default(),
                            max: RunMetrics::default(),
                            hgrm: Vec::new(),
                            hlog: Vec::new(),
                            profile: None,
                            empty_runs: 0,
                        });
                        if no_data {
                            cell.empty_runs += 1;
                            continue;
                        }
                        match prof {
                            Some(Ok(p)) => profiles.entry((si, vi)).or_default().push(p),
                            Some(Err(e)) => {
                                notes.push(format!("{id} run {}: no profile: {e:#}", rep + 1))
                            }
                            None => {}
                        }
                        cell.runs.push(m);
                        // The tokio client writes no histogram files, only its percentiles.
                        if plan.client.is_none() {
                            cell.hgrm.push(format!("runs/{stem}.hgrm"));
                            cell.hlog.push(format!("runs/{stem}.hlog"));
                        }
                    }
                }
            }
            if peak.is_none() || rep + 1 == plan.cfg.repeat {
                peak = closed_peak(plan, &cells);
            }
        }
    }
    if plan.cfg.together {
        notes.push("every cell's servers ran together (--together): all at once on the server CPUs, each with its own load on the load CPUs, so each figure is of a server that had its share of the server CPUs; read the ratios between servers".into());
    }
    if plan.cfg.versus.is_some() && plan.cfg.versus_mode() == VersusMode::Together {
        notes.push("base and head ran together (--versus-mode together): both served at once on the server CPUs, each with its own load on the load CPUs, so each figure is of a server that had about half the server CPUs; read the ratios of base and head".into());
    }
    if let Some(r) = plan.shapes.iter().find_map(|s| s.open_rate) {
        notes.push(format!("open loop at a fixed {r:.0} msgs/s (--open-rate)"));
    } else if let Some(p) = peak {
        notes.push(format!("open loop at 50% of the peak closed-loop rate of the slowest ringmux backend ({p:.0} msgs/s)"));
    }
    for (k, p) in &profiles {
        if let Some(c) = cells.get_mut(k) {
            c.profile = crate::report::profile::combine(p);
        }
    }
    let quiet = if plan.cfg.quiet_secs > 0.0 {
        quiet_rows(plan, &mut notes)?
    } else {
        Vec::new()
    };
    let mut cells: Vec<Cell> = cells.into_values().collect();
    for c in &mut cells {
        let (med, min, max) = summarize(&c.runs);
        c.median = med;
        c.min = min;
        c.max = max;
    }
    let args = serde_json::json!({
            "backends": plan.cfg.backends, "conns": plan.cfg.conns, "size": plan.cfg.size, "proto": plan.cfg.proto.name(), "duration_s": plan.cfg.duration,
            "warmup_s": plan.cfg.warmup, "repeat": plan.cfg.repeat, "quick": plan.cfg.quick,
            "servers": plan.servers.iter().map(|s| s.name()).collect::<Vec<_>>(),
            "server_cpu": plan.server_cpus.as_ref().and_then(|c| c.first()), "server_cpus": plan.server_cpus,
            "server_threads": plan.cfg.server_threads, "load_cpus": plan.load_cpus,
            "interval_s": plan.interval, "client": plan.cfg.client.name(),
            "versus_mode": plan.cfg.versus.as_ref().map(|_| plan.cfg.versus_mode().name()),
            "together": plan.cfg.together,
            "peers": PEERS.iter().filter(|p| plan.servers.iter().any(|s| s.name() == p.0))
                .map(|p| (p.0.to_string(), serde_json::json!(format!("{} {}", p.2, locked_version(p.2).unwrap_or_else(|| "?".into())))))
                .collect::<serde_json::Map<_, _>>(),
    });
    let results = BenchResults {
        cells,
        notes,
        quiet,
        ..super::results(start_unix_s, args)
    };
    super::write_results(plan, &results)?;
    Ok(results)
}

/// The highest closed-loop (unpipelined) median rate of the slowest ringmux backend.
fn closed_peak(plan: &Plan, cells: &BTreeMap<(usize, usize), Cell>) -> Option<f64> {
    let mut per_server: BTreeMap<usize, f64> = BTreeMap::new();
    for (&(si, vi), c) in cells {
        let s = &plan.shapes[si];
        if s.rate_fraction.is_some()
            || c.runs.is_empty()
            || s.pipeline > 1
            || !matches!(plan.servers[vi], ServerSpec::Ringmux { .. })
        {
            continue;
        }
        let [med, ..] = spread(c.runs.iter().map(|r| r.msgs_per_s).collect());
        let e = per_server.entry(vi).or_insert(0.0);
        *e = e.max(med);
    }
    per_server.values().copied().reduce(f64::min)
}

/// [median, min, max] of a non-empty list of values.
pub fn spread(mut v: Vec<f64>) -> [f64; 3] {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    [median(&mut v), min, max]
}

/// Per-metric median, min and max over runs (errors: their sum, min and max); with no
/// run, nothing (zeros, which the report shows as "no data" for a cell without runs).
fn summarize(runs: &[RunMetrics]) -> (RunMetrics, RunMetrics, RunMetrics) {
    if runs.is_empty() {
        return Default::default();
    }
    fn pick(runs: &[RunMetrics], f: impl Fn(&RunMetrics) -> f64) -> [f64; 3] {
        spread(runs.iter().map(f).collect())
    }
    fn pick_opt(runs: &[RunMetrics], f: impl Fn(&RunMetrics) -> Option<f64>) -> [Option<f64>; 3] {
        let v: Vec<f64> = runs.iter().filter_map(f).collect();
        if v.is_empty() {
            return [None; 3];
        }
        spread(v).map(Some)
    }
    let mut out: [RunMetrics; 3] = Default::default();
    macro_rules! set {
        ($($f:ident),*) => { $( let v = pick(runs, |r| r.$f); for i in 0..3 { out[i].$f = v[i]; } )* };
    }
    macro_rules! set_opt {
        ($($f:ident),*) => { $( let v = pick_opt(runs, |r| r.$f); for i in 0..3 { out[i].$f = v[i]; } )* };
    }
    set!(
        msgs_per_s, mb_per_s, p50_ns, p90_ns, p99_ns, p99_9_ns, p99_99_ns, max_ns
    );
    set_opt!(
        cpu_ns_per_msg,
        syscalls_per_msg,
        ctx_switches_per_msg,
        load_cpu_ns_per_msg,
        server_busy
    );
    let errs: Vec<u64> = runs.iter().map(|r| r.errors).collect();
    out[0].errors = errs.iter().sum();
    out[1].errors = errs.iter().copied().min().unwrap_or(0);
    out[2].errors = errs.iter().copied().max().unwrap_or(0);
    let [a, b, c] = out;
    (a, b, c)
}

/// One run: its figures, the io_uring features the server ran with, its CPU profile
/// (when asked), whether its load measured nothing, and a note about the load (the
/// tokio client's rate not kept).
struct RunOutcome {
    metrics: RunMetrics,
    features: Option<String>,
    profile: Option<anyhow::Result<Profile>>,
    nothing: bool,
    note: Option<String>,
}

/// One run of each server in `specs`, all at once (one server, or a base and its head
/// with `--versus-mode together`): fresh servers, a warm-up, then the measured loads,
/// one per server and started together, with each server's counters read just before
/// and after them.
fn run_group(
    plan: &Plan,
    specs: &[&ServerSpec],
    shape: &Shape,
    rate: Option<f64>,
    stems: &[String],
) -> anyhow::Result<Vec<RunOutcome>> {
    let srvs = specs
        .iter()
        .zip(stems)
        .map(|(spec, stem)| start_server(plan, spec, stem))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let limit = Duration::from_secs_f64(plan.cfg.duration + plan.cfg.warmup + 30.0);
    // The load of one server: ringmux's, or the tokio client's (`--client tokio`).
    let load = |addr, duration: f64| match &plan.client {
        Some(bin) => tokio_client::command(
            bin,
            plan.load_cpus.clone(),
            addr,
            plan.cfg.size,
            shape,
            rate,
            duration,
        ),
        None => load_cmd(plan, addr, shape, rate, duration),
    };
    if plan.cfg.warmup > 0.0 {
        let warm = srvs.iter().map(|s| load(s.addr, plan.cfg.warmup)).collect();
        wait_loads(warm, "warm-up load", limit)?;
    }
    let runs = plan.out.join("runs");
    let run_file = |stem: &str, ext: &str| -> PathBuf { runs.join(format!("{stem}.{ext}")) };
    let mut cmds = Vec::with_capacity(srvs.len());
    for (srv, stem) in srvs.iter().zip(stems) {
        let mut cmd = load(srv.addr, plan.cfg.duration);
        cmd.arg("--json").arg(run_file(stem, "json"));
        if plan.client.is_none() {
            cmd.args(["--interval", &plan.interval.to_string()])
                .arg("--hgrm")
                .arg(run_file(stem, "hgrm"))
                .arg("--hlog")
                .arg(run_file(stem, "hlog"));
        }
        cmds.push(cmd);
    }
    let before = srvs
        .iter()
        .map(|s| s.counters())
        .collect::<anyhow::Result<Vec<_>>>()?;
    let recording = plan.profile.then(|| {
        let pids: Vec<u32> = srvs.iter().map(|s| s.child.id()).collect();
        let data = run_file(&stems[0], "perf.data");
        profile::Recording::start(&pids, plan.server_cpus.as_deref(), &data)
    });
    let cpu0 = children_cpu_s();
    let wall0 = Instant::now();
    wait_loads(cmds, "load", limit)?;
    let load_cpu = children_cpu_s() - cpu0;
    let after = srvs
        .iter()
        .map(|s| s.counters())
        .collect::<anyhow::Result<Vec<_>>>()?;
    let wall = wall0.elapsed().as_secs_f64();
    // One profile (or the reason there is none) per server, in `srvs` order.
    let profiles: Vec<Option<anyhow::Result<Profile>>> = match recording {
        None => srvs.iter().map(|_| None).collect(),
        Some(rec) => match rec.and_then(profile::Recording::finish) {
            Ok(each) => each.into_iter().map(Some).collect(),
            Err(e) => {
                let why = format!("{e:#}");
                srvs.iter()
                    .map(|_| Some(Err(anyhow::anyhow!("{why}"))))
                    .collect()
            }
        },
    };
    let features = srvs
        .iter()
        .zip(specs)
        .map(|(srv, spec)| srv.uring_features(spec))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for srv in srvs {
        srv.stop()?;
    }
    let mut read = Vec::with_capacity(stems.len());
    for stem in stems {
        let json = run_file(stem, "json");
        read.push(match plan.client {
            Some(_) => tokio_client::read_result(&json)?,
            None => {
                let r = read_load_result(&json)?;
                (crate::report::compare::load_metrics(&r), r.messages, None)
            }
        });
    }
    // The loads' CPU time is known only for all of them together (the children waited
    // for): each run is given the group's load CPU per message.
    let all_msgs = read.iter().map(|r| r.1).sum::<u64>().max(1) as f64;
    let mut out = Vec::with_capacity(read.len());
    for ((((m, messages, note), (b, a)), features), prof) in read
        .into_iter()
        .zip(before.iter().zip(&after))
        .zip(features)
        .zip(profiles)
    {
        let mut m = m;
        let msgs = messages.max(1) as f64;
        let cpu = (a.cpu_s - b.cpu_s).max(0.0);
        m.cpu_ns_per_msg = Some(cpu * 1e9 / msgs);
        m.syscalls_per_msg = match (b.syscalls, a.syscalls) {
            (Some(x), Some(y)) => Some(y.saturating_sub(x) as f64 / msgs),
            _ => None,
        };
        m.ctx_switches_per_msg = Some(a.ctx.saturating_sub(b.ctx) as f64 / msgs);
        m.load_cpu_ns_per_msg = Some(load_cpu * 1e9 / all_msgs);
        // The load process's own start-up is inside `wall`: a slight underestimate.
        m.server_busy = (wall > 0.0).then(|| cpu / wall);
        let nothing = super::empty::measured_nothing(messages, m.errors);
        out.push(RunOutcome {
            metrics: m,
            features,
            profile: prof,
            nothing,
            note,
        });
    }
    Ok(out)
}

/// Run load processes to their ends, all at once, each within `limit`; the first error.
fn wait_loads(cmds: Vec<Command>, what: &str, limit: Duration) -> anyhow::Result<()> {
    if cmds.len() == 1 {
        let c = cmds.into_iter().next().expect("one command");
        return wait_load(c, what, limit);
    }
    std::thread::scope(|s| {
        let waits: Vec<_> = cmds
            .into_iter()
            .map(|c| s.spawn(move || wait_load(c, what, limit)))
            .collect();
        waits
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("{what}: its waiter panicked")))
            })
            .collect::<anyhow::Result<Vec<()>>>()
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_summary() {
        assert_eq!(spread(vec![3.0, 1.0, 2.0]), [2.0, 1.0, 3.0]);
        assert_eq!(spread(vec![4.0, 1.0, 2.0, 3.0]), [2.5, 1.0, 4.0]);
        let runs: Vec<RunMetrics> = [10.0, 30.0, 20.0]
            .iter()
            .map(|&x| RunMetrics {
                msgs_per_s: x,
                syscalls_per_msg: Some(x / 10.0),
                errors: 1,
                ..Default::default()
            })
            .collect();
        let (med, min, max) = summarize(&runs);
        assert_eq!(
            (med.msgs_per_s, min.msgs_per_s, max.msgs_per_s),
            (20.0, 10.0, 30.0)
        );
        assert_eq!(
            (
                med.syscalls_per_msg,
                min.syscalls_per_msg,
                max.syscalls_per_msg
            ),
            (Some(2.0), Some(1.0), Some(3.0))
        );
        assert_eq!(med.cpu_ns_per_msg, None);
        assert_eq!(med.errors, 3);
        // A cell whose every run measured nothing: no figure, and nothing infinite
        // (JSON has no infinity).
        let (med, min, max) = summarize(&[]);
        assert!(med == RunMetrics::default() && min == med && max == med);
    }
}
