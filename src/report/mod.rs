//! Pure steps over result files: report rendering, compare, merge. Imports no
//! backend and opens no socket; the file formats and schemas it reads live in
//! [`crate::results`].
//!
//! - this file: `ringmux report DIR` ([`report_cmd`]) and [`write_reports`], which the
//!   bench calls after a run.
//! - [`md`]: report.md, the headline and idle-memory tables (terminal, CI summary).
//! - [`matrix_line`]: the sentence that says how a bench ran (the matrix row).
//! - [`html`]: report.html, one self-contained page; [`charts`]: its plotters charts;
//!   [`series`]: the latency series that histogram files hold.
//! - [`models`]: the IO-model lab: slopes, the eight claims judged, their rendering.
//! - [`profile`]: `perf report` grouped by what an IO model can change; [`cost`]: the
//!   idle-cost and profile sections.
//! - [`pairs`]: the base-vs-head view of a paired bench (`bench --versus`).
//! - [`ci`]: exports for CI benchmark trackers.
//! - [`compare`]: two results files against regression limits (exit 0/1/2).
//! - [`loads`]: load results (`load --json`, a merged `merge DIR`) as a table.
//! - [`merge`]: interval logs from many load processes added on absolute time, or the
//!   files of `load --agents N` merged into one load result.
//! - [`fmt`]: numbers for humans, and HTML escaping; `input`: reading result files and
//!   the bad-input error (exit 2).

pub mod charts;
pub mod ci;
pub mod compare;
pub mod cost;
pub mod fmt;
pub mod html;
mod input;
pub mod loads;
pub mod matrix_line;
pub mod md;
pub mod merge;
pub mod models;
pub mod pairs;
pub mod profile;
pub mod series;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::results::schema::{BENCH_SCHEMA, BenchResults};
use input::{bad_input, read_json};

pub use md::headline_markdown;

/// `ringmux report DIR`: re-render the reports from DIR/results.json, or, in a folder
/// of `load` outputs without one, show the load results and draw the .hlog/.hgrm files
/// found there. `ringmux report X.json` (one load result, e.g. merged): X.html.
pub fn report_cmd(dir: &Path) -> anyhow::Result<ExitCode> {
    if dir.is_file() {
        return load_file_report(dir);
    }
    if !dir.is_dir() {
        return Err(bad_input(format!("{}: no such folder", dir.display())));
    }
    let path = dir.join("results.json");
    if !path.exists() {
        return files_report(dir)
            .map_err(|e| bad_input(format!("{e:#}")))
            .and_then(|r| r);
    }
    let read = || -> anyhow::Result<BenchResults> {
        let (v, schema) = read_json(&path)?;
        anyhow::ensure!(
            schema == BENCH_SCHEMA,
            "{}: schema {schema:?} is not {BENCH_SCHEMA}",
            path.display()
        );
        serde_json::from_value(v)
            .with_context(|| format!("{}: not a bench results file", path.display()))
    };
    let mut results = read().map_err(|e| bad_input(format!("{e:#}")))?;
    if let Some(m) = results.models.as_mut() {
        models::rejudge(m);
        print!("## IO models: Claims\n\n{}", models::claims_markdown(m));
    }
    let warnings = write_reports_inner(dir, &results)?;
    for w in &warnings {
        eprintln!("ringmux: warning: {w}");
    }
    if !results.cells.is_empty() {
        print!("{}", headline_markdown(&results));
    }
    if let Some(idle) = &results.idle {
        print!("{}", md::idle_markdown(idle));
    }
    println!("\nreport: {}", dir.join("report.html").display());
    Ok(ExitCode::SUCCESS)
}

/// `report DIR` without results.json. The outer error is bad input (exit 2); the
/// inner result is a failure to write (exit 1).
fn files_report(dir: &Path) -> anyhow::Result<anyhow::Result<ExitCode>> {
    let stems = series::histogram_files(dir)?;
    let loads = loads::loads_in(dir);
    anyhow::ensure!(
        !stems.is_empty() || !loads.is_empty(),
        "{}: neither results.json (from bench) nor load results or .hlog/.hgrm files (from load --json/--hlog/--hgrm) found",
        dir.display()
    );
    Ok(write_files_report(
        dir,
        &stems,
        &loads,
        &dir.join("report.html"),
    ))
}

/// `report X.json`: one load result (a merged one, or one agent's) and the histogram
/// files of its stem beside it, into X.html.
fn load_file_report(path: &Path) -> anyhow::Result<ExitCode> {
    let one = loads::read_load(path).map_err(|e| bad_input(format!("{e:#}")))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stems: Vec<_> = series::histogram_files(dir)
        .map_err(|e| bad_input(format!("{e:#}")))?
        .into_iter()
        .filter(|s| s.0 == one.0)
        .collect();
    write_files_report(dir, &stems, &[one], &path.with_extension("html"))
}

/// Write the page of load results and histogram files; print the table and its path.
fn write_files_report(
    dir: &Path,
    stems: &[series::StemFiles],
    loads: &[loads::NamedLoad],
    out: &Path,
) -> anyhow::Result<ExitCode> {
    let mut warnings = Vec::new();
    let html = html::files_report_html(dir, stems, loads, &mut warnings);
    std::fs::write(out, html).with_context(|| format!("cannot write {}", out.display()))?;
    for w in &warnings {
        eprintln!("ringmux: warning: {w}");
    }
    print!("{}", loads::loads_markdown(loads));
    let n: usize = stems.iter().map(|s| s.1.len() + s.2.len()).sum();
    println!(
        "{} load result(s), {n} histogram file(s), {} series",
        loads.len(),
        stems.len()
    );
    println!("report: {}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// Called by the bench orchestrator after a run: writes report.md, report.html, ci/github-action-benchmark.json, ci/bencher.json into `dir` from `results` and the histogram files named in each cell (paths relative to dir).
///
/// Unreadable histogram files do not fail the report: they are named in its notes.
pub fn write_reports(dir: &Path, results: &BenchResults) -> anyhow::Result<()> {
    write_reports_inner(dir, results).map(|_| ())
}

/// As [`write_reports`], returning the warnings (files that could not be read).
fn write_reports_inner(dir: &Path, results: &BenchResults) -> anyhow::Result<Vec<String>> {
    let write = |name: &str, bytes: &[u8]| -> anyhow::Result<()> {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&p, bytes).with_context(|| format!("cannot write {}", p.display()))
    };
    let mut warnings = Vec::new();
    let html = html::report_html(dir, results, &mut warnings);
    write("report.html", html.as_bytes())?;
    let mut files: Vec<String> = vec!["report.html".into(), "results.json".into()];
    for c in &results.cells {
        files.extend(c.hgrm.iter().chain(&c.hlog).cloned());
    }
    let mut mdtext = md::report_markdown(results, &files);
    if !warnings.is_empty() {
        mdtext.push_str("\n## Warnings\n\n");
        for w in &warnings {
            mdtext.push_str(&format!("- {}\n", w.replace('\n', " ")));
        }
    }
    write("report.md", mdtext.as_bytes())?;
    let json = |v: serde_json::Value| serde_json::to_vec_pretty(&v).expect("JSON values serialize");
    write(
        "ci/github-action-benchmark.json",
        &json(ci::gab_smaller(results)),
    )?;
    write(
        "ci/github-action-benchmark-bigger.json",
        &json(ci::gab_bigger(results)),
    )?;
    write("ci/bencher.json", &json(ci::bencher(results)))?;
    Ok(warnings)
}
