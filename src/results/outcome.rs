//! What a load run produced, as data and as files: the [`LoadResult`] figures, the
//! latency histograms and the interval series, and how they are laid out on disk
//! (`.hgrm` pair, tagged `.hlog`, `.json`). `load` fills it; `bench` and `report` read
//! the files back.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use hdrhistogram::Histogram;

use super::hgrm::write_hgrm;
use super::hlog::{Hlog, HlogInterval, write_hlog};
use super::schema::LoadResult;

/// Interval-log tag of the open-loop latency from the intended send time.
pub const TAG_CORRECTED: &str = "corrected";
/// Interval-log tag of the open-loop latency from the actual send time.
pub const TAG_UNCORRECTED: &str = "uncorrected";

/// An empty latency histogram: nanoseconds, 3 significant digits, auto-resizing
/// (memory follows the largest value recorded).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is valid")
}

/// One interval of the interval series (all threads merged).
#[derive(Debug, Clone)]
pub struct IntervalHists {
    /// Start of the interval, seconds since the epoch.
    pub start_unix_s: f64,
    /// Interval length, seconds (the `--interval` of the run).
    pub length_s: f64,
    /// Same meaning as [`LoadOutcome::latency`].
    pub latency: Histogram<u64>,
    /// Open loop only: from the actual send time.
    pub uncorrected: Option<Histogram<u64>>,
}

/// Everything a load run produced.
#[derive(Debug, Clone)]
pub struct LoadOutcome {
    /// The figures written as `--json`.
    pub result: LoadResult,
    /// Latency in ns: corrected (from the intended send time) in open loop, from the
    /// actual send in closed loop.
    pub latency: Histogram<u64>,
    /// Open loop only: latency from the actual send time.
    pub uncorrected: Option<Histogram<u64>>,
    /// One entry per interval from the start of the measured window, empty ones included.
    pub intervals: Vec<IntervalHists>,
}

/// `path` with `.uncorrected` put before its extension: `run.hgrm` -> `run.uncorrected.hgrm`.
pub fn uncorrected_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.uncorrected.{}", ext.to_string_lossy()),
        None => format!("{stem}.uncorrected"),
    };
    path.with_file_name(name)
}

fn create(path: &Path) -> anyhow::Result<BufWriter<File>> {
    Ok(BufWriter::new(File::create(path).with_context(|| {
        format!("cannot write {}", path.display())
    })?))
}

impl LoadOutcome {
    /// The percentile distribution (ms) at `path`; in open loop the uncorrected one goes
    /// beside it with `.uncorrected` before the extension (`run.hgrm` ->
    /// `run.uncorrected.hgrm`). Returns the files written.
    pub fn write_hgrm(&self, path: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let mut written = vec![path.to_path_buf()];
        let mut w = create(path)?;
        write_hgrm(&mut w, &self.latency)
            .and_then(|_| w.flush())
            .with_context(|| format!("cannot write {}", path.display()))?;
        if let Some(u) = &self.uncorrected {
            let up = uncorrected_path(path);
            let mut w = create(&up)?;
            write_hgrm(&mut w, u)
                .and_then(|_| w.flush())
                .with_context(|| format!("cannot write {}", up.display()))?;
            written.push(up);
        }
        Ok(written)
    }

    /// The interval log ([`LoadOutcome::to_hlog`]), absolute start times.
    pub fn write_hlog(&self, path: &Path) -> anyhow::Result<()> {
        let log = self.to_hlog();
        let mut w = create(path)?;
        write_hlog(&mut w, &log)
            .and_then(|_| w.flush())
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// The [`LoadResult`] as pretty JSON.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let mut w = create(path)?;
        serde_json::to_writer_pretty(&mut w, &self.result)?;
        writeln!(w)?;
        w.flush()
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// The interval series as an interval log: open loop tags [`TAG_CORRECTED`] and
    /// [`TAG_UNCORRECTED`]; closed loop one untagged series.
    pub fn to_hlog(&self) -> Hlog {
        let mut intervals = Vec::new();
        for iv in &self.intervals {
            let interval = |tag: Option<&str>, hist: &Histogram<u64>| HlogInterval {
                tag: tag.map(str::to_string),
                start_unix_s: iv.start_unix_s,
                length_s: iv.length_s,
                hist: hist.clone(),
            };
            match &iv.uncorrected {
                Some(u) => {
                    intervals.push(interval(Some(TAG_CORRECTED), &iv.latency));
                    intervals.push(interval(Some(TAG_UNCORRECTED), u));
                }
                None => intervals.push(interval(None, &iv.latency)),
            }
        }
        Hlog {
            start_unix_s: self.result.start_unix_s,
            intervals,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncorrected_names() {
        assert_eq!(
            uncorrected_path(Path::new("run.hgrm")),
            Path::new("run.uncorrected.hgrm")
        );
        assert_eq!(
            uncorrected_path(Path::new("out/a.b.hgrm")),
            Path::new("out/a.b.uncorrected.hgrm")
        );
        assert_eq!(
            uncorrected_path(Path::new("dist")),
            Path::new("dist.uncorrected")
        );
    }
}
