//! `ringmux compare BASE HEAD --max-regression p99=10%,throughput=5% [--strict]`.
//!
//! Each file is a bench `results.json` or a load `--json` file (one cell, id "load").
//! Cells are matched by id; the servers of a `bench --idle-conns` run are entries too
//! (id "SERVER/idle/cN", metric `memory`).
//!
//! # Noise
//! With at least [`MIN_RUNS`] per-run values on both sides (`bench --repeat K`), each
//! metric gets the change of the medians and a 95% bootstrap interval for it
//! ([`bootstrap`]: both sides resampled with replacement, [`RESAMPLES`] times, fixed
//! seed, so the same files always give the same interval), and a verdict against the
//! limit: `regression` (the whole interval is worse than the limit), `improvement` (the
//! whole interval is better than minus the limit), `ok` (no value in the interval is
//! worse than the limit), else `inconclusive`. With fewer runs the single (median)
//! values are compared as before, and the output says it cannot see noise.
//!
//! Open-loop cells are not judged on throughput: their rate is an input.

use std::io::Write;
use std::path::Path;

use super::{bad_input, fmt, read_json};
use crate::results::schema::{
    BENCH_SCHEMA, BenchResults, Cell, LOAD_SCHEMA, LoadResult, RunMetrics,
};
use crate::results::stats::median;

/// What `compare` reads of one entry: a matrix cell's medians, or a server's median
/// resident bytes per idle connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Figures {
    Run(RunMetrics),
    Idle { bytes_per_conn: f64 },
}

fn run_of(f: &Figures) -> Option<&RunMetrics> {
    match f {
        Figures::Run(m) => Some(m),
        Figures::Idle { .. } => None,
    }
}

/// A metric `compare` knows: its name on the command line, where it lives, and which
/// direction is better.
pub struct Metric {
    pub name: &'static str,
    pub get: fn(&Figures) -> Option<f64>,
    pub higher_is_better: bool,
    /// How to print a value of it.
    pub show: fn(f64) -> String,
}

fn thr(v: f64) -> String {
    format!("{}/s", fmt::si(v))
}

pub const METRICS: &[Metric] = &[
    Metric {
        name: "throughput",
        get: |f| run_of(f).map(|m| m.msgs_per_s),
        higher_is_better: true,
        show: thr,
    },
    Metric {
        name: "p50",
        get: |f| run_of(f).map(|m| m.p50_ns),
        higher_is_better: false,
        show: fmt::ns,
    },
    Metric {
        name: "p90",
        get: |f| run_of(f).map(|m| m.p90_ns),
        higher_is_better: false,
        show: fmt::ns,
    },
    Metric {
        name: "p99",
        get: |f| run_of(f).map(|m| m.p99_ns),
        higher_is_better: false,
        show: fmt::ns,
    },
    Metric {
        name: "p99.9",
        get: |f| run_of(f).map(|m| m.p99_9_ns),
        higher_is_better: false,
        show: fmt::ns,
    },
    Metric {
        name: "p99.99",
        get: |f| run_of(f).map(|m| m.p99_99_ns),
        higher_is_better: false,
        show: fmt::ns,
    },
    Metric {
        name: "max",
        get: |f| run_of(f).map(|m| m.max_ns),
        higher_is_better: false,
        show: fmt::ns,
    },
    Metric {
        name: "cpu",
        get: |f| run_of(f).and_then(|m| m.cpu_ns_per_msg),
        higher_is_better: false,
        show: fmt::ns,
    },
    Metric {
        name: "syscalls",
        get: |f| run_of(f).and_then(|m| m.syscalls_per_msg),
        higher_is_better: false,
        show: fmt::num,
    },
    Metric {
        name: "memory",
        get: |f| match f {
            Figures::Idle { bytes_per_conn } => Some(*bytes_per_conn),
            Figures::Run(_) => None,
        },
        higher_is_better: false,
        show: fmt::bytes,
    },
];

/// "10", "2.5", "0.125": a percentage as the user wrote it, without float noise.
fn plain(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Parse "p99=10%,throughput=5%" into (metric index, allowed fraction).
pub fn parse_limits(s: &str) -> anyhow::Result<Vec<(usize, f64)>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, val) = part.split_once('=').ok_or_else(|| {
            bad_input(format!("--max-regression: {part:?} is not METRIC=PERCENT"))
        })?;
        let name = name.trim();
        let idx = METRICS.iter().position(|m| m.name == name).ok_or_else(|| {
            let known: Vec<_> = METRICS.iter().map(|m| m.name).collect();
            bad_input(format!(
                "--max-regression: unknown metric {name:?} (known: {})",
                known.join(", ")
            ))
        })?;
        let v: f64 = val.trim().trim_end_matches('%').parse().map_err(|_| {
            bad_input(format!(
                "--max-regression: {val:?} for {name} is not a percentage like 10%"
            ))
        })?;
        if !v.is_finite() || v < 0.0 {
            return Err(bad_input(format!(
                "--max-regression: {val:?} for {name} must be a non-negative percentage"
            )));
        }
        out.retain(|&(i, _)| i != idx);
        out.push((idx, v / 100.0));
    }
    Ok(out)
}

/// Read a results file of either schema as a list of cells (id, median metrics).
pub fn load_cells(path: &Path) -> anyhow::Result<Vec<(String, Figures)>> {
    Ok(load_entries(path)?
        .1
        .into_iter()
        .map(|(id, e)| (id, e.median))
        .collect())
}

/// Read a results file of either schema: its machine and its entries.
pub fn load_entries(path: &Path) -> anyhow::Result<(Fingerprint, Vec<(String, Entry)>)> {
    let (v, schema) = read_json(path).map_err(|e| bad_input(format!("{e:#}")))?;
    if schema == BENCH_SCHEMA {
        let r: BenchResults = serde_json::from_value(v).map_err(|e| {
            bad_input(format!(
                "{}: not a {BENCH_SCHEMA} file: {e}",
                path.display()
            ))
        })?;
        let fp = Fingerprint::of(&r.sys);
        let idle = r.idle.into_iter().flat_map(|i| i.servers).map(|s| {
            let f = Figures::Idle {
                bytes_per_conn: s.bytes_per_conn,
            };
            let runs = s
                .runs
                .iter()
                .map(|x| Figures::Idle {
                    bytes_per_conn: x.bytes_per_conn,
                })
                .collect();
            let io = s.id.split('/').next().unwrap_or("").to_string();
            (
                s.id,
                Entry {
                    median: f,
                    runs,
                    open_rate: None,
                    io,
                },
            )
        });
        let cells = r.cells.into_iter().map(|c: Cell| {
            let io = match &c.features {
                Some(f) => format!("{}:{f}", c.server),
                None => c.server.clone(),
            };
            let e = Entry {
                median: Figures::Run(c.median),
                runs: c.runs.into_iter().map(Figures::Run).collect(),
                open_rate: if c.mode == "open" {
                    c.rate.or(Some(f64::NAN))
                } else {
                    None
                },
                io,
            };
            (c.id, e)
        });
        Ok((fp, cells.chain(idle).collect()))
    } else if schema == LOAD_SCHEMA {
        let r: LoadResult = serde_json::from_value(v)
            .map_err(|e| bad_input(format!("{}: not a {LOAD_SCHEMA} file: {e}", path.display())))?;
        let m = Figures::Run(load_metrics(&r));
        let e = Entry {
            median: m.clone(),
            runs: vec![m],
            open_rate: r.params.rate,
            io: format!("load:{}", r.params.driver),
        };
        Ok((Fingerprint::of(&r.sys), vec![("load".to_string(), e)]))
    } else {
        Err(bad_input(format!(
            "{}: schema {schema:?} is neither {BENCH_SCHEMA} nor {LOAD_SCHEMA}",
            path.display()
        )))
    }
}

/// A load result's figures as bench metrics.
pub fn load_metrics(r: &LoadResult) -> RunMetrics {
    let l = &r.latency;
    RunMetrics {
        msgs_per_s: r.msgs_per_s,
        mb_per_s: r.mb_per_s,
        p50_ns: l.p50 as f64,
        p90_ns: l.p90 as f64,
        p99_ns: l.p99 as f64,
        p99_9_ns: l.p99_9 as f64,
        p99_99_ns: l.p99_99 as f64,
        max_ns: l.max as f64,
        cpu_ns_per_msg: None,
        syscalls_per_msg: None,
        ctx_switches_per_msg: None,
        errors: r.errors.total(),
        load_cpu_ns_per_msg: None,
        server_busy: None,
    }
}

/// The fewest per-run values on each side for a verdict with an interval.
pub const MIN_RUNS: usize = 3;
/// Bootstrap resamples.
pub const RESAMPLES: usize = 2000;
const SEED: u64 = 0x5EED_2026_0013;

/// Every figure `compare` reads of one entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The medians (bench) or the single values (load).
    pub median: Figures,
    /// One per run (bench: `runs[]`; load: the one run).
    pub runs: Vec<Figures>,
    /// Open loop: the asked rate (throughput is then an input, not a result).
    pub open_rate: Option<f64>,
    /// The IO model of this entry: "uring:full", "epoll", a load driver "load:uring".
    pub io: String,
}

/// The machine a results file was measured on: CPU model, cores, kernel, ringmux version.
#[derive(Debug, Clone, PartialEq)]
pub struct Fingerprint(pub Vec<(&'static str, String)>);

impl Fingerprint {
    pub fn of(sys: &crate::sysinfo::SysInfo) -> Fingerprint {
        Fingerprint(vec![
            ("cpu", sys.cpu_model.clone()),
            ("cores", sys.cores.to_string()),
            ("kernel", sys.kernel.clone()),
            ("ringmux", sys.ringmux_version.clone()),
        ])
    }

    /// "kernel 6.1 -> 6.18, cores 2 -> 4", or empty when the same.
    pub fn diff(&self, other: &Fingerprint) -> Vec<String> {
        self.0
            .iter()
            .zip(&other.0)
            .filter(|(a, b)| a.1 != b.1)
            .map(|(a, b)| format!("{} {:?} -> {:?}", a.0, a.1, b.1))
            .collect()
    }
}

/// What the verdict on one figure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Worse than the limit (the whole interval, or the single value without noise).
    Regression,
    /// Better than minus the limit.
    Improvement,
    /// Within the limit.
    Ok,
    /// The interval straddles the limit: cannot tell.
    Inconclusive,
    /// No limit on this metric: shown, not judged.
    Unjudged,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Regression => "REGRESSION",
            Verdict::Improvement => "improvement",
            Verdict::Ok => "ok",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Unjudged => "",
        }
    }
}

/// One compared figure.
#[derive(Debug, Clone)]
pub struct Row {
    pub cell: String,
    pub metric: &'static str,
    pub base: Option<f64>,
    pub head: Option<f64>,
    /// (head - base) / base, of the medians.
    pub change: Option<f64>,
    /// 95% bootstrap interval of the change (None: fewer than MIN_RUNS on a side).
    pub interval: Option<(f64, f64)>,
    /// Per-run values on (base, head).
    pub runs: (usize, usize),
    pub limit: Option<f64>,
    pub verdict: Verdict,
    pub regressed: bool,
    pub show: fn(f64) -> String,
}

/// Relative change; None when it cannot be told (missing values, base 0 with head 0 is 0).
fn change(base: f64, head: f64) -> Option<f64> {
    if !base.is_finite() || !head.is_finite() {
        return None;
    }
    if base == 0.0 {
        return Some(if head == 0.0 {
            0.0
        } else {
            f64::INFINITY * head.signum()
        });
    }
    Some((head - base) / base.abs())
}

/// A small deterministic generator (xorshift64*) for the bootstrap.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

/// 95% percentile-bootstrap interval of the relative change of the medians, head
/// against base: both samples resampled with replacement [`RESAMPLES`] times with a
/// fixed seed. None when a side is empty or a change cannot be told (base 0).
pub fn bootstrap(base: &[f64], head: &[f64]) -> Option<(f64, f64)> {
    if base.is_empty() || head.is_empty() {
        return None;
    }
    let mut rng = Rng(SEED);
    let (mut b, mut h) = (vec![0.0; base.len()], vec![0.0; head.len()]);
    let mut changes = Vec::with_capacity(RESAMPLES);
    for _ in 0..RESAMPLES {
        for x in b.iter_mut() {
            *x = base[rng.below(base.len())];
        }
        for x in h.iter_mut() {
            *x = head[rng.below(head.len())];
        }
        changes.push(change(median(&mut b), median(&mut h))?);
    }
    changes.sort_by(f64::total_cmp);
    let at = |q: f64| changes[((q * (RESAMPLES - 1) as f64).round() as usize).min(RESAMPLES - 1)];
    Some((at(0.025), at(0.975)))
}

/// The verdict on a change interval `[lo, hi]` against `limit`, in the metric's "worse"
/// direction (a point when there is no noise to see).
pub fn judge(lo: f64, hi: f64, limit: Option<f64>, higher_is_better: bool) -> Verdict {
    let Some(l) = limit else {
        return Verdict::Unjudged;
    };
    let (wlo, whi) = if higher_is_better {
        (-hi, -lo)
    } else {
        (lo, hi)
    };
    let eps = 1e-12;
    if wlo > l + eps {
        Verdict::Regression
    } else if whi < -l - eps {
        Verdict::Improvement
    } else if whi <= l + eps {
        Verdict::Ok
    } else {
        Verdict::Inconclusive
    }
}

/// Compare medians only (no per-run values): the single-value comparison.
pub fn compare(
    base: &[(String, Figures)],
    head: &[(String, Figures)],
    limits: &[(usize, f64)],
) -> Vec<Row> {
    let wrap = |v: &[(String, Figures)]| -> Vec<(String, Entry)> {
        v.iter()
            .map(|(i, f)| {
                (
                    i.clone(),
                    Entry {
                        median: f.clone(),
                        runs: vec![f.clone()],
                        open_rate: None,
                        io: String::new(),
                    },
                )
            })
            .collect()
    };
    compare_entries(&wrap(base), &wrap(head), limits)
}

/// Compare entry by entry, metric by metric (see the module docs for the verdicts).
pub fn compare_entries(
    base: &[(String, Entry)],
    head: &[(String, Entry)],
    limits: &[(usize, f64)],
) -> Vec<Row> {
    let mut rows = Vec::new();
    for (id, b) in base {
        let Some((_, h)) = head.iter().find(|(hid, _)| hid == id) else {
            continue;
        };
        let open = b.open_rate.is_some() || h.open_rate.is_some();
        for (mi, m) in METRICS.iter().enumerate() {
            if open && m.name == "throughput" {
                continue;
            }
            let (bv, hv) = ((m.get)(&b.median), (m.get)(&h.median));
            if bv.is_none() && hv.is_none() {
                continue;
            }
            let ch = bv.zip(hv).and_then(|(x, y)| change(x, y));
            let limit = limits.iter().find(|(i, _)| *i == mi).map(|&(_, l)| l);
            let per_run = |e: &Entry| -> Vec<f64> {
                e.runs
                    .iter()
                    .filter_map(m.get)
                    .filter(|v| v.is_finite())
                    .collect()
            };
            let (br, hr) = (per_run(b), per_run(h));
            let interval = if br.len() >= MIN_RUNS && hr.len() >= MIN_RUNS {
                bootstrap(&br, &hr)
            } else {
                None
            };
            let verdict = match (interval, ch) {
                (Some((lo, hi)), _) => judge(lo, hi, limit, m.higher_is_better),
                (None, Some(c)) => judge(c, c, limit, m.higher_is_better),
                (None, None) => Verdict::Unjudged,
            };
            let regressed = verdict == Verdict::Regression;
            rows.push(Row {
                cell: id.clone(),
                metric: m.name,
                base: bv,
                head: hv,
                change: ch,
                interval,
                runs: (br.len(), hr.len()),
                limit,
                verdict,
                regressed,
                show: m.show,
            });
        }
    }
    rows
}

/// `compare` as the command runs it: exit 0 ok, 1 regression (or, with `strict`, an
/// inconclusive verdict), 2 bad input.
pub fn run(
    base_path: &Path,
    head_path: &Path,
    limits: &str,
    strict: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let limits = parse_limits(limits)?;
    let (bfp, base) = load_entries(base_path)?;
    let (hfp, head) = load_entries(head_path)?;
    let rows = compare_entries(&base, &head, &limits);
    if rows.is_empty() {
        let ids = |v: &[(String, Entry)]| {
            v.iter()
                .map(|(i, _)| i.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(bad_input(format!(
            "no common cells: base has [{}], head has [{}]",
            ids(&base),
            ids(&head)
        )));
    }
    let mut out = std::io::stdout().lock();
    let table: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            let m = METRICS
                .iter()
                .find(|m| m.name == r.metric)
                .expect("row metric is known");
            [
                r.cell.clone(),
                r.metric.to_string(),
                r.base.map_or("–".into(), r.show),
                r.head.map_or("–".into(), r.show),
                r.change.map_or("–".into(), fmt::pct),
                r.interval.map_or("–".into(), |(lo, hi)| {
                    format!("[{}, {}]", fmt::pct(lo), fmt::pct(hi))
                }),
                format!("{}/{}", r.runs.0, r.runs.1),
                r.limit.map_or(String::new(), |l| {
                    format!(
                        "{}{}%",
                        if m.higher_is_better { "-" } else { "+" },
                        plain(l * 100.0)
                    )
                }),
                r.verdict.name().to_string(),
            ]
        })
        .collect();
    let header = [
        "cell",
        "metric",
        "base",
        "head",
        "change",
        "95% interval",
        "runs",
        "limit",
        "verdict",
    ]
    .map(String::from);
    let mut w = [0usize; 9];
    for row in std::iter::once(&header).chain(&table) {
        for (i, c) in row.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut last_cell = String::new();
    for (n, row) in std::iter::once(&header).chain(&table).enumerate() {
        let first = if n > 0 && row[0] == last_cell {
            String::new()
        } else {
            row[0].clone()
        };
        last_cell = row[0].clone();
        let mut line = format!("{:<w0$}  {:<w1$}", first, row[1], w0 = w[0], w1 = w[1]);
        for (i, c) in row.iter().enumerate().take(8).skip(2) {
            line.push_str(&format!("  {:>w$}", c, w = w[i]));
        }
        line.push_str(&format!("  {}", row[8]));
        writeln!(out, "{}", line.trim_end())?;
    }
    for (what, a, b) in [("base", &base, &head), ("head", &head, &base)] {
        let only: Vec<_> = a
            .iter()
            .filter(|(i, _)| !b.iter().any(|(j, _)| j == i))
            .map(|(i, _)| i.as_str())
            .collect();
        if !only.is_empty() {
            writeln!(out, "only in {what} (not compared): {}", only.join(", "))?;
        }
    }
    // Notes: noise not seen, open loop, IO models and machines that differ.
    let few: Vec<&str> = {
        let mut v: Vec<&str> = rows
            .iter()
            .filter(|r| r.interval.is_none() && r.change.is_some())
            .map(|r| r.cell.as_str())
            .collect();
        v.dedup();
        v
    };
    if !few.is_empty() {
        writeln!(
            out,
            "note: fewer than {MIN_RUNS} runs per side for {}: single values compared, which cannot see noise (no interval; bench --repeat {MIN_RUNS} or more gives one)",
            few.join(", ")
        )?;
    }
    for (id, b) in &base {
        let Some((_, h)) = head.iter().find(|(hid, _)| hid == id) else {
            continue;
        };
        if b.open_rate.is_some() || h.open_rate.is_some() {
            let r = |x: Option<f64>| {
                x.filter(|v| v.is_finite())
                    .map_or("?".to_string(), |v| format!("{v:.0}"))
            };
            let same = matches!((b.open_rate, h.open_rate), (Some(x), Some(y)) if (x - y).abs() <= 1e-9 * x.abs().max(1.0));
            let extra = if same {
                String::new()
            } else {
                " and the rates differ, so its latencies are not comparable (fix it with bench --open-rate R)".to_string()
            };
            writeln!(
                out,
                "note: {id} is open loop at {} -> {} msgs/s: throughput is an input, not judged{extra}",
                r(b.open_rate),
                r(h.open_rate)
            )?;
        }
        if b.io != h.io {
            eprintln!(
                "ringmux: warning: {id}: IO model differs: {:?} -> {:?}",
                b.io, h.io
            );
        }
    }
    let d = bfp.diff(&hfp);
    if !d.is_empty() {
        eprintln!(
            "ringmux: warning: the results come from different machines or builds: {}",
            d.join(", ")
        );
    }
    out.flush()?;
    let regressed: Vec<&Row> = rows.iter().filter(|r| r.regressed).collect();
    let inconclusive = rows
        .iter()
        .filter(|r| r.verdict == Verdict::Inconclusive)
        .count();
    for r in &regressed {
        eprintln!(
            "regression: {} {}: {} -> {} ({}{}, limit {}%)",
            r.cell,
            r.metric,
            r.base.map_or("–".into(), r.show),
            r.head.map_or("–".into(), r.show),
            r.change.map_or("–".into(), fmt::pct),
            r.interval.map_or(String::new(), |(lo, hi)| format!(
                ", 95% interval [{}, {}]",
                fmt::pct(lo),
                fmt::pct(hi)
            )),
            plain(r.limit.unwrap_or(0.0) * 100.0)
        );
    }
    if !regressed.is_empty() {
        return Ok(std::process::ExitCode::from(1));
    }
    if inconclusive > 0 {
        if strict {
            eprintln!("ringmux: {inconclusive} inconclusive verdict(s) and --strict: failing");
            return Ok(std::process::ExitCode::from(1));
        }
        eprintln!(
            "ringmux: {inconclusive} inconclusive verdict(s): the noise is larger than the limit there (exit 0; --strict fails on them)"
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(thr: f64, p99: f64) -> Figures {
        Figures::Run(RunMetrics {
            msgs_per_s: thr,
            p99_ns: p99,
            ..Default::default()
        })
    }

    #[test]
    fn limits_parse() {
        let l = parse_limits("p99=10%,throughput=5").unwrap();
        assert_eq!(l, [(3, 0.10), (0, 0.05)]);
        assert!(parse_limits("").unwrap().is_empty());
        for bad in ["p99=abc", "latency=10%", "p99", "p99=-5%", "p99=nan"] {
            let e = parse_limits(bad).unwrap_err();
            assert_eq!(crate::exit_code_of(&e), 2, "{bad}");
        }
    }

    #[test]
    fn regression_directions() {
        let limits = parse_limits("p99=10%,throughput=5%").unwrap();
        let base = vec![("a".to_string(), m(100_000.0, 100_000.0))];
        // throughput -4% ok, p99 +9% ok
        let rows = compare(&base, &[("a".into(), m(96_000.0, 109_000.0))], &limits);
        assert!(rows.iter().all(|r| !r.regressed));
        // throughput -6% regressed; p99 -50% is better
        let rows = compare(&base, &[("a".into(), m(94_000.0, 50_000.0))], &limits);
        let bad: Vec<_> = rows
            .iter()
            .filter(|r| r.regressed)
            .map(|r| r.metric)
            .collect();
        assert_eq!(bad, ["throughput"]);
        // p99 +11% regressed; throughput up is fine
        let rows = compare(&base, &[("a".into(), m(200_000.0, 111_000.0))], &limits);
        let bad: Vec<_> = rows
            .iter()
            .filter(|r| r.regressed)
            .map(|r| r.metric)
            .collect();
        assert_eq!(bad, ["p99"]);
        // unlimited metrics never regress
        assert!(
            compare(&base, &[("a".into(), m(1.0, 1e12))], &[])
                .iter()
                .all(|r| !r.regressed)
        );
        // cpu/syscalls absent on both sides: no row
        assert!(rows.iter().all(|r| r.metric != "cpu"));
    }

    #[test]
    fn idle_memory_is_smaller_is_better() {
        let limits = parse_limits("memory=10%").unwrap();
        let idle = |b: f64| {
            vec![(
                "epoll/idle/c10000".to_string(),
                Figures::Idle { bytes_per_conn: b },
            )]
        };
        let rows = compare(&idle(100.0), &idle(105.0), &limits);
        assert_eq!(
            rows.len(),
            1,
            "only the memory metric applies to an idle entry"
        );
        assert!(!rows[0].regressed);
        let rows = compare(&idle(100.0), &idle(120.0), &limits);
        assert!(rows[0].regressed && rows[0].metric == "memory");
        assert!(!compare(&idle(100.0), &idle(50.0), &limits)[0].regressed);
    }

    fn entry(thr: &[f64], p99: &[f64], open: Option<f64>) -> Entry {
        let runs: Vec<Figures> = thr.iter().zip(p99).map(|(&t, &p)| m(t, p)).collect();
        let mut t = thr.to_vec();
        let mut p = p99.to_vec();
        Entry {
            median: m(median(&mut t), median(&mut p)),
            runs,
            open_rate: open,
            io: "epoll".into(),
        }
    }

    #[test]
    fn bootstrap_is_deterministic_and_covers_the_runs() {
        let (b, h) = ([100.0, 104.0, 98.0, 101.0], [90.0, 93.0, 91.0, 95.0]);
        let a = bootstrap(&b, &h).unwrap();
        assert_eq!(a, bootstrap(&b, &h).unwrap(), "fixed seed: same interval");
        // Every resampled median lies between the extremes: -10% .. -3% or so.
        assert!(
            a.0 >= 90.0 / 104.0 - 1.0 - 1e-12 && a.1 <= 95.0 / 98.0 - 1.0 + 1e-12,
            "{a:?}"
        );
        assert!(a.0 < a.1 && a.1 < 0.0, "{a:?}");
        // Identical runs: a point.
        assert_eq!(bootstrap(&[5.0; 3], &[6.0; 3]).unwrap(), (0.2, 0.2));
        assert!(bootstrap(&[], &[1.0]).is_none());
    }

    #[test]
    fn verdicts_from_intervals() {
        // throughput (higher is better), limit 5%
        assert_eq!(judge(-0.20, -0.08, Some(0.05), true), Verdict::Regression);
        assert_eq!(judge(-0.20, 0.02, Some(0.05), true), Verdict::Inconclusive);
        assert_eq!(judge(-0.03, 0.04, Some(0.05), true), Verdict::Ok);
        assert_eq!(judge(0.06, 0.20, Some(0.05), true), Verdict::Improvement);
        // p99 (lower is better), limit 10%
        assert_eq!(judge(0.11, 0.30, Some(0.10), false), Verdict::Regression);
        assert_eq!(judge(0.05, 0.30, Some(0.10), false), Verdict::Inconclusive);
        assert_eq!(judge(-0.3, -0.2, Some(0.10), false), Verdict::Improvement);
        assert_eq!(judge(0.5, 0.6, None, false), Verdict::Unjudged);
    }

    #[test]
    fn noise_makes_a_drop_inconclusive_and_a_clear_one_a_regression() {
        let limits = parse_limits("throughput=5%").unwrap();
        let base = vec![(
            "a".to_string(),
            entry(&[100.0, 80.0, 120.0], &[1e5; 3], None),
        )];
        // The median drops 10%, but the runs overlap: inconclusive, not a regression.
        let noisy = vec![(
            "a".to_string(),
            entry(&[90.0, 118.0, 75.0], &[1e5; 3], None),
        )];
        let r = compare_entries(&base, &noisy, &limits);
        let t = r.iter().find(|r| r.metric == "throughput").unwrap();
        assert_eq!(t.verdict, Verdict::Inconclusive, "{t:?}");
        assert!(!t.regressed && t.interval.is_some() && t.runs == (3, 3));
        // Every head run is far below every base run: a regression.
        let slow = vec![("a".to_string(), entry(&[50.0, 55.0, 52.0], &[1e5; 3], None))];
        let r = compare_entries(&base, &slow, &limits);
        let t = r.iter().find(|r| r.metric == "throughput").unwrap();
        assert_eq!(t.verdict, Verdict::Regression, "{t:?}");
        assert!(t.interval.unwrap().1 < -0.05);
    }

    #[test]
    fn fewer_runs_fall_back_to_single_values_and_open_loop_throughput_is_not_judged() {
        let limits = parse_limits("throughput=5%,p99=10%").unwrap();
        let base = vec![("a".to_string(), entry(&[100.0, 100.0], &[1e5, 1e5], None))];
        let head = vec![("a".to_string(), entry(&[90.0, 90.0], &[1e5, 1e5], None))];
        let r = compare_entries(&base, &head, &limits);
        let t = r.iter().find(|r| r.metric == "throughput").unwrap();
        assert!(
            t.interval.is_none() && t.regressed,
            "2 runs: single values compared: {t:?}"
        );
        // Open loop: the throughput is the asked rate; only latency is judged.
        let base = vec![(
            "o".to_string(),
            entry(&[1000.0; 3], &[1e5; 3], Some(1000.0)),
        )];
        let head = vec![(
            "o".to_string(),
            entry(&[500.0; 3], &[1.5e5; 3], Some(1000.0)),
        )];
        let r = compare_entries(&base, &head, &limits);
        assert!(r.iter().all(|r| r.metric != "throughput"));
        assert!(r.iter().any(|r| r.metric == "p99" && r.regressed));
    }
}
