//! The latency series in histogram files: a folder's .hgrm/.hlog files grouped by
//! stem, and what one series' files hold (percentile spectrum, latency over time),
//! ready for the charts.

use std::path::Path;

use anyhow::Context;
use hdrhistogram::Histogram;

use super::merge::new_hist;
use crate::results::hgrm::{HgrmPoint, points_of, read_hgrm};
use crate::results::hlog::{Hlog, read_hlog_file};

/// The latency series a cell's (or a file stem's) histogram files hold, ready to draw.
#[derive(Default)]
pub struct CellData {
    /// (1/(1-p), latency ns), without the final 100% point.
    pub spectrum: Vec<(f64, f64)>,
    /// (seconds since the log's start, p50, p99, max) in ns, from the first run's .hlog.
    pub timeline: Vec<(f64, f64, f64, f64)>,
    /// Where the spectrum came from, for the caption.
    pub source: String,
}

/// The tag that holds the latency to show: "corrected" if present, else untagged,
/// else the first tag seen.
fn main_tag(log: &Hlog) -> Option<Option<String>> {
    let tags: Vec<&Option<String>> = log.intervals.iter().map(|i| &i.tag).collect();
    if tags.iter().any(|t| t.as_deref() == Some("corrected")) {
        return Some(Some("corrected".into()));
    }
    if tags.iter().any(|t| t.is_none()) {
        return Some(None);
    }
    tags.first().map(|t| (*t).clone())
}

/// Read what the histogram files of series `id` hold (paths relative to `dir`: its
/// interval logs, else its first readable .hgrm). Problems become warnings naming `id`,
/// never a failed report.
pub fn load_series(
    dir: &Path,
    id: &str,
    hgrm: &[String],
    hlog: &[String],
    warnings: &mut Vec<String>,
) -> CellData {
    let mut d = CellData::default();
    let mut merged: Option<Histogram<u64>> = None;
    let mut logs_ok = 0;
    for (i, rel) in hlog.iter().enumerate() {
        match read_hlog_file(&dir.join(rel)) {
            Ok(log) => {
                let tag = main_tag(&log);
                let sel = log
                    .intervals
                    .iter()
                    .filter(|iv| Some(&iv.tag) == tag.as_ref());
                let acc = merged.get_or_insert_with(new_hist);
                for iv in sel.clone() {
                    if let Err(e) = acc.add(&iv.hist) {
                        warnings.push(format!("{}: {rel}: cannot add histograms: {e:?}", id));
                    }
                }
                if i == 0 {
                    d.timeline = sel
                        .filter(|iv| !iv.hist.is_empty())
                        .map(|iv| {
                            let h = &iv.hist;
                            (
                                iv.start_unix_s - log.start_unix_s + iv.length_s,
                                h.value_at_quantile(0.5) as f64,
                                h.value_at_quantile(0.99) as f64,
                                h.max() as f64,
                            )
                        })
                        .collect();
                }
                logs_ok += 1;
            }
            Err(e) => warnings.push(format!("{}: {e:#}", id)),
        }
    }
    let from_points = |pts: &[HgrmPoint]| -> Vec<(f64, f64)> {
        pts.iter()
            .filter(|p| p.percentile < 1.0)
            .map(|p| (1.0 / (1.0 - p.percentile), p.value_ms * 1e6))
            .collect()
    };
    if let Some(h) = merged.filter(|h| !h.is_empty()) {
        d.spectrum = from_points(&points_of(&h));
        d.source = format!("{logs_ok} interval log(s) merged, {} samples", h.len());
        return d;
    }
    // No usable interval log: fall back to the first readable .hgrm.
    for rel in hgrm {
        match std::fs::read_to_string(dir.join(rel))
            .map_err(anyhow::Error::from)
            .and_then(|t| read_hgrm(&t))
        {
            Ok(pts) => {
                d.spectrum = from_points(&pts);
                d.source = rel.to_string();
                if hgrm.len() > 1 {
                    d.source.push_str(&format!(" (run 1 of {})", hgrm.len()));
                }
                return d;
            }
            Err(e) => warnings.push(format!("{}: {rel}: {e:#}", id)),
        }
    }
    d
}

/// One series of a folder of `load` outputs: (file stem, its .hgrm files, its .hlog files).
pub type StemFiles = (String, Vec<String>, Vec<String>);

/// The histogram files of a folder grouped by stem, in name order.
pub fn histogram_files(dir: &Path) -> anyhow::Result<Vec<StemFiles>> {
    let mut out: Vec<StemFiles> = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".hgrm") || n.ends_with(".hlog"))
        .collect();
    names.sort();
    for n in names {
        let (stem, ext) = n.rsplit_once('.').unwrap_or((&n, ""));
        let i = match out.iter().position(|s| s.0 == stem) {
            Some(i) => i,
            None => {
                out.push((stem.to_string(), Vec::new(), Vec::new()));
                out.len() - 1
            }
        };
        if ext == "hgrm" {
            out[i].1.push(n.clone())
        } else {
            out[i].2.push(n.clone())
        }
    }
    Ok(out)
}
