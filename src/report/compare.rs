//! `ringmux compare BASE HEAD --max-regression p99=10%,throughput=5%`.
//!
//! Each file is a bench `results.json` or a load `--json` file (one cell, id "load").
//! Cells are matched by id and their medians compared metric by metric; the servers of
//! a `bench --idle-conns` run are entries too (id "SERVER/idle/cN", metric `memory`).

use std::io::Write;
use std::path::Path;

use super::fmt;
use super::model::{BENCH_SCHEMA, BenchResults, Cell, LOAD_SCHEMA, LoadResult, RunMetrics};

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
    Metric { name: "throughput", get: |f| run_of(f).map(|m| m.msgs_per_s), higher_is_better: true, show: thr },
    Metric { name: "p50", get: |f| run_of(f).map(|m| m.p50_ns), higher_is_better: false, show: fmt::ns },
    Metric { name: "p90", get: |f| run_of(f).map(|m| m.p90_ns), higher_is_better: false, show: fmt::ns },
    Metric { name: "p99", get: |f| run_of(f).map(|m| m.p99_ns), higher_is_better: false, show: fmt::ns },
    Metric { name: "p99.9", get: |f| run_of(f).map(|m| m.p99_9_ns), higher_is_better: false, show: fmt::ns },
    Metric { name: "p99.99", get: |f| run_of(f).map(|m| m.p99_99_ns), higher_is_better: false, show: fmt::ns },
    Metric { name: "max", get: |f| run_of(f).map(|m| m.max_ns), higher_is_better: false, show: fmt::ns },
    Metric { name: "cpu", get: |f| run_of(f).and_then(|m| m.cpu_ns_per_msg), higher_is_better: false, show: fmt::ns },
    Metric { name: "syscalls", get: |f| run_of(f).and_then(|m| m.syscalls_per_msg), higher_is_better: false, show: fmt::num },
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

/// Bad input: exit code 2.
fn bad(msg: impl Into<String>) -> anyhow::Error {
    crate::ExitError { code: 2, msg: msg.into() }.into()
}

/// Parse "p99=10%,throughput=5%" into (metric index, allowed fraction).
pub fn parse_limits(s: &str) -> anyhow::Result<Vec<(usize, f64)>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, val) = part.split_once('=').ok_or_else(|| bad(format!("--max-regression: {part:?} is not METRIC=PERCENT")))?;
        let name = name.trim();
        let idx = METRICS.iter().position(|m| m.name == name).ok_or_else(|| {
            let known: Vec<_> = METRICS.iter().map(|m| m.name).collect();
            bad(format!("--max-regression: unknown metric {name:?} (known: {})", known.join(", ")))
        })?;
        let v: f64 = val
            .trim()
            .trim_end_matches('%')
            .parse()
            .map_err(|_| bad(format!("--max-regression: {val:?} for {name} is not a percentage like 10%")))?;
        if !v.is_finite() || v < 0.0 {
            return Err(bad(format!("--max-regression: {val:?} for {name} must be a non-negative percentage")));
        }
        out.retain(|&(i, _)| i != idx);
        out.push((idx, v / 100.0));
    }
    Ok(out)
}

/// Read a results file of either schema as a list of cells (id, median metrics).
pub fn load_cells(path: &Path) -> anyhow::Result<Vec<(String, Figures)>> {
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("{}: not JSON: {e}", path.display())))?;
    let schema = v.get("schema").and_then(|s| s.as_str()).unwrap_or("");
    if schema == BENCH_SCHEMA {
        let r: BenchResults = serde_json::from_value(v).map_err(|e| bad(format!("{}: not a {BENCH_SCHEMA} file: {e}", path.display())))?;
        let idle = r.idle.into_iter().flat_map(|i| i.servers).map(|s| (s.id, Figures::Idle { bytes_per_conn: s.bytes_per_conn }));
        Ok(r.cells.into_iter().map(|c: Cell| (c.id, Figures::Run(c.median))).chain(idle).collect())
    } else if schema == LOAD_SCHEMA {
        let r: LoadResult = serde_json::from_value(v).map_err(|e| bad(format!("{}: not a {LOAD_SCHEMA} file: {e}", path.display())))?;
        Ok(vec![("load".to_string(), Figures::Run(load_metrics(&r)))])
    } else {
        Err(bad(format!("{}: schema {schema:?} is neither {BENCH_SCHEMA} nor {LOAD_SCHEMA}", path.display())))
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

/// One compared figure.
#[derive(Debug, Clone)]
pub struct Row {
    pub cell: String,
    pub metric: &'static str,
    pub base: Option<f64>,
    pub head: Option<f64>,
    /// (head - base) / base.
    pub change: Option<f64>,
    pub limit: Option<f64>,
    pub regressed: bool,
    pub show: fn(f64) -> String,
}

/// Relative change; None when it cannot be told (missing values, base 0 with head 0 is 0).
fn change(base: f64, head: f64) -> Option<f64> {
    if !base.is_finite() || !head.is_finite() {
        return None;
    }
    if base == 0.0 {
        return Some(if head == 0.0 { 0.0 } else { f64::INFINITY * head.signum() });
    }
    Some((head - base) / base.abs())
}

pub fn compare(base: &[(String, Figures)], head: &[(String, Figures)], limits: &[(usize, f64)]) -> Vec<Row> {
    let mut rows = Vec::new();
    for (id, b) in base {
        let Some((_, h)) = head.iter().find(|(hid, _)| hid == id) else { continue };
        for (mi, m) in METRICS.iter().enumerate() {
            let (bv, hv) = ((m.get)(b), (m.get)(h));
            if bv.is_none() && hv.is_none() {
                continue;
            }
            let ch = bv.zip(hv).and_then(|(x, y)| change(x, y));
            let limit = limits.iter().find(|(i, _)| *i == mi).map(|&(_, l)| l);
            let worse = ch.map(|c| if m.higher_is_better { -c } else { c });
            let regressed = matches!((worse, limit), (Some(w), Some(l)) if w > l + 1e-12);
            rows.push(Row { cell: id.clone(), metric: m.name, base: bv, head: hv, change: ch, limit, regressed, show: m.show });
        }
    }
    rows
}

fn verdict(r: &Row, higher_is_better: bool) -> &'static str {
    match (r.change, r.limit) {
        (None, _) => "n/a",
        (Some(_), _) if r.regressed => "REGRESSED",
        (Some(c), Some(_)) => {
            let better = if higher_is_better { c > 0.0 } else { c < 0.0 };
            if better { "ok (better)" } else { "ok" }
        }
        (Some(_), None) => "",
    }
}

pub fn run(base_path: &Path, head_path: &Path, limits: &str) -> anyhow::Result<std::process::ExitCode> {
    let limits = parse_limits(limits)?;
    let base = load_cells(base_path)?;
    let head = load_cells(head_path)?;
    let rows = compare(&base, &head, &limits);
    if rows.is_empty() {
        let ids = |v: &[(String, Figures)]| v.iter().map(|(i, _)| i.as_str()).collect::<Vec<_>>().join(", ");
        return Err(bad(format!("no common cells: base has [{}], head has [{}]", ids(&base), ids(&head))));
    }
    let mut out = std::io::stdout().lock();
    let table: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            let m = METRICS.iter().find(|m| m.name == r.metric).expect("row metric is known");
            [
                r.cell.clone(),
                r.metric.to_string(),
                r.base.map_or("–".into(), r.show),
                r.head.map_or("–".into(), r.show),
                r.change.map_or("–".into(), fmt::pct),
                r.limit.map_or(String::new(), |l| format!("{}{}%", if m.higher_is_better { "-" } else { "+" }, plain(l * 100.0))),
                verdict(r, m.higher_is_better).to_string(),
            ]
        })
        .collect();
    let header = ["cell", "metric", "base", "head", "change", "limit", "verdict"].map(String::from);
    let mut w = [0usize; 7];
    for row in std::iter::once(&header).chain(&table) {
        for (i, c) in row.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut last_cell = String::new();
    for (n, row) in std::iter::once(&header).chain(&table).enumerate() {
        let first = if n > 0 && row[0] == last_cell { String::new() } else { row[0].clone() };
        last_cell = row[0].clone();
        let mut line = format!("{:<w0$}  {:<w1$}", first, row[1], w0 = w[0], w1 = w[1]);
        for (i, c) in row.iter().enumerate().take(6).skip(2) {
            line.push_str(&format!("  {:>w$}", c, w = w[i]));
        }
        line.push_str(&format!("  {}", row[6]));
        writeln!(out, "{}", line.trim_end())?;
    }
    for (what, a, b) in [("base", &base, &head), ("head", &head, &base)] {
        let only: Vec<_> = a.iter().filter(|(i, _)| !b.iter().any(|(j, _)| j == i)).map(|(i, _)| i.as_str()).collect();
        if !only.is_empty() {
            writeln!(out, "only in {what} (not compared): {}", only.join(", "))?;
        }
    }
    let regressed: Vec<&Row> = rows.iter().filter(|r| r.regressed).collect();
    out.flush()?;
    if regressed.is_empty() {
        return Ok(std::process::ExitCode::SUCCESS);
    }
    for r in &regressed {
        eprintln!(
            "regression: {} {}: {} -> {} ({}, limit {}%)",
            r.cell,
            r.metric,
            r.base.map_or("–".into(), r.show),
            r.head.map_or("–".into(), r.show),
            r.change.map_or("–".into(), fmt::pct),
            plain(r.limit.unwrap_or(0.0) * 100.0)
        );
    }
    Ok(std::process::ExitCode::from(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(thr: f64, p99: f64) -> Figures {
        Figures::Run(RunMetrics { msgs_per_s: thr, p99_ns: p99, ..Default::default() })
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
        let bad: Vec<_> = rows.iter().filter(|r| r.regressed).map(|r| r.metric).collect();
        assert_eq!(bad, ["throughput"]);
        // p99 +11% regressed; throughput up is fine
        let rows = compare(&base, &[("a".into(), m(200_000.0, 111_000.0))], &limits);
        let bad: Vec<_> = rows.iter().filter(|r| r.regressed).map(|r| r.metric).collect();
        assert_eq!(bad, ["p99"]);
        // unlimited metrics never regress
        assert!(compare(&base, &[("a".into(), m(1.0, 1e12))], &[]).iter().all(|r| !r.regressed));
        // cpu/syscalls absent on both sides: no row
        assert!(rows.iter().all(|r| r.metric != "cpu"));
    }

    #[test]
    fn idle_memory_is_smaller_is_better() {
        let limits = parse_limits("memory=10%").unwrap();
        let idle = |b: f64| vec![("epoll/idle/c10000".to_string(), Figures::Idle { bytes_per_conn: b })];
        let rows = compare(&idle(100.0), &idle(105.0), &limits);
        assert_eq!(rows.len(), 1, "only the memory metric applies to an idle entry");
        assert!(!rows[0].regressed);
        let rows = compare(&idle(100.0), &idle(120.0), &limits);
        assert!(rows[0].regressed && rows[0].metric == "memory");
        assert!(!compare(&idle(100.0), &idle(50.0), &limits)[0].regressed);
    }
}
