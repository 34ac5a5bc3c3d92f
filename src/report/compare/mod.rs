//! `ringmux compare BASE HEAD --max-regression p99=10%,throughput=5% [--strict]`.
//!
//! Each file is a bench `results.json` or a load `--json` file (one cell, id "load").
//! Or one file and `--pair BASE,HEAD`: a `bench --versus` run's `SERVER@base` cells
//! against its `SERVER` cells ([`run_pairs`]).
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
//!
//! With `--pair`, run i of the base and run i of the head ran back to back: the change
//! is the median of the per-pair changes and the bootstrap resamples whole pairs
//! ([`bootstrap_paired`]), so noise the two runs of a pair shared cancels out.
//!
//! - [`entries`]: reading the two files.
//! - [`metrics`]: the metrics.
//! - [`limits`]: the `--max-regression` limits, per metric and per backend or family.
//! - [`verdict`]: the change, its interval and the verdict per figure.
//! - [`pairs`]: `--pair`: base and head cells taken from one results file.
//! - this file: the command, its table and notes.

pub mod entries;
pub mod limits;
pub mod metrics;
pub mod pairs;
pub mod verdict;

use std::io::Write;
use std::path::Path;

pub use entries::{Entry, Figures, Fingerprint, load_cells, load_entries, load_metrics};
pub use limits::{Limit, Scope, limit_for, parse_limits};
pub use metrics::{METRICS, Metric};
pub use verdict::{
    MIN_RUNS, RESAMPLES, Row, Verdict, bootstrap, bootstrap_paired, compare, compare_entries,
    compare_pairs, judge, paired_change,
};

use super::fmt;
use super::input::bad_input;

/// "10", "2.5", "0.125": a percentage as the user wrote it, without float noise.
fn plain(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
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
    judge_and_show(rows, &base, &head, &bfp.diff(&hfp), strict)
}

/// `compare RESULTS --pair BASE,HEAD` (repeatable; `--pair @base` pairs every
/// `SERVER@base` with `SERVER`): the pairs' cells inside one results file (a bench
/// run with `--versus`) judged as `run` judges two files, same limits, verdicts and
/// exit codes; the change and its interval are paired, run by run
/// ([`compare_pairs`]). One file, one machine: no fingerprint to differ.
pub fn run_pairs(
    path: &Path,
    pairs: &[String],
    limits: &str,
    strict: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let limits = parse_limits(limits)?;
    let (_, entries) = load_entries(path)?;
    let (base, head) = pairs::split(&entries, pairs)?;
    let rows = compare_pairs(&base, &head, &limits);
    judge_and_show(rows, &base, &head, &[], strict)
}

/// The table, the notes and the exit code of a comparison (`machines`: how the two
/// sides' machines or builds differ, warned about when not empty).
fn judge_and_show(
    rows: Vec<Row>,
    base: &[(String, Entry)],
    head: &[(String, Entry)],
    machines: &[String],
    strict: bool,
) -> anyhow::Result<std::process::ExitCode> {
    if rows.is_empty() {
        let ids = |v: &[(String, Entry)]| {
            v.iter()
                .map(|(i, _)| i.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(bad_input(format!(
            "no common cells: base has [{}], head has [{}]",
            ids(base),
            ids(head)
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
    for (what, a, b) in [("base", base, head), ("head", head, base)] {
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
    for (id, b) in base {
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
    if !machines.is_empty() {
        eprintln!(
            "ringmux: warning: the results come from different machines or builds: {}",
            machines.join(", ")
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
