//! `ringmux load` as a command: a validated [`LoadCommand`] in, the run, then its
//! summary, its files and its exit status. The command line is turned into a
//! [`LoadCommand`] by the CLI (`cli::LoadArgs::command`); nothing here knows of clap.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, bail};

use super::config::LoadConfig;
use super::output::{errors_line, rate_line, summary};
use super::run::run;
use crate::results::outcome::{LoadOutcome, uncorrected_path};

/// Where `ringmux load` writes its result files (none by default).
#[derive(Debug, Clone, Default)]
pub struct OutputFiles {
    /// The percentile distribution (.hgrm); in open loop the uncorrected one goes
    /// beside it ([`uncorrected_path`]).
    pub hgrm: Option<PathBuf>,
    /// The interval log (.hlog).
    pub hlog: Option<PathBuf>,
    /// Every figure and parameter ([`crate::results::schema::LoadResult`]).
    pub json: Option<PathBuf>,
}

/// `ringmux load` as a whole: the run, and what is done with its outcome.
#[derive(Debug, Clone)]
pub struct LoadCommand {
    /// The run itself.
    pub config: LoadConfig,
    /// Where the outcome is written (none, some or all of the files).
    pub files: OutputFiles,
    /// No summary (and no progress line: `config.progress` is off too).
    pub quiet: bool,
    /// Open loop: exit 1 when the rate was not kept.
    pub require_rate: bool,
}

/// `ringmux load`: run, write the files asked for, print the summary; exit 1 (one line
/// naming the error kinds) when errors were counted, unless `allow_errors`.
pub fn load_cmd(cmd: LoadCommand) -> anyhow::Result<ExitCode> {
    let LoadCommand {
        mut config,
        files,
        quiet,
        require_rate,
    } = cmd;
    // An hour's run is not lost to a typo in an output path: check them all first.
    check_paths(&files, config.rate().is_some())?;
    // First Ctrl-C / SIGTERM: stop and report what ran. Second: exit at once (130).
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())
            .context("installing a signal handler")?;
        signal_hook::flag::register(sig, stop.clone()).context("installing a signal handler")?;
    }
    config.stop = Some(stop);
    let outcome = run(&config)?;
    // The summary first: a file that cannot be written does not hide the figures.
    if !quiet {
        print!("{}", summary(&outcome));
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
    }
    let written = write_files(&files, &outcome)?;
    if !quiet {
        print!("{}", files_lines(&written));
    }
    let e = &outcome.result.errors;
    if e.total() > 0 && !config.allow_errors {
        bail!(
            "{} error(s) during the run: {} (use --allow-errors to exit 0 anyway)",
            e.total(),
            errors_line(e)
        );
    }
    if outcome.result.interrupted {
        // Files and summary cover what ran; the exit status says it was cut short.
        return Ok(ExitCode::from(130));
    }
    if require_rate && outcome.result.rate_kept == Some(false) {
        eprintln!("ringmux: error: {}", rate_line(&outcome.result).trim());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Every output path the run will write (`open`: the uncorrected .hgrm too), checked
/// before it starts: its folder exists and a file can be created there (one created
/// for the check is removed again).
fn check_paths(files: &OutputFiles, open: bool) -> anyhow::Result<()> {
    let mut paths: Vec<PathBuf> = Vec::new();
    if let Some(p) = &files.hgrm {
        paths.push(p.clone());
        if open {
            paths.push(uncorrected_path(p));
        }
    }
    paths.extend(files.hlog.iter().cloned());
    paths.extend(files.json.iter().cloned());
    for p in &paths {
        if p.is_dir() {
            bail!("cannot write {}: it is a directory", p.display());
        }
        let existed = p.exists();
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(p)
            .with_context(|| format!("cannot write {}", p.display()))?;
        if !existed {
            let _ = std::fs::remove_file(p);
        }
    }
    Ok(())
}

/// Write the .hgrm, .hlog and .json files asked for; returns every file written, with
/// what it holds.
fn write_files(
    files: &OutputFiles,
    o: &LoadOutcome,
) -> anyhow::Result<Vec<(PathBuf, &'static str)>> {
    let mut out = Vec::new();
    if let Some(path) = &files.hgrm {
        let what = [
            "percentile distribution in ms, for the HdrHistogram plotter",
            "the same, uncorrected",
        ];
        out.extend(o.write_hgrm(path)?.into_iter().zip(what));
    }
    if let Some(path) = &files.hlog {
        o.write_hlog(path)?;
        out.push((
            path.clone(),
            "interval log, for HistogramLogAnalyzer, ringmux merge and ringmux report DIR",
        ));
    }
    if let Some(path) = &files.json {
        o.write_json(path)?;
        out.push((
            path.clone(),
            "all figures and parameters, for ringmux compare",
        ));
    }
    Ok(out)
}

/// The "files:" lines `load` prints after its summary.
fn files_lines(files: &[(PathBuf, &str)]) -> String {
    let mut s = String::new();
    if !files.is_empty() {
        s.push_str("  files:\n");
        for (p, what) in files {
            let _ = writeln!(s, "    {}: {what}", p.display());
        }
    }
    s
}
