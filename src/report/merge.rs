//! `ringmux merge`: add interval logs from several load processes into one.
//!
//! Intervals are aligned on absolute time: the slot length is the first input's first
//! interval length, slots start at the earliest interval start over all inputs, and an
//! interval goes to the slot its start falls in (with a 1% tolerance for clocks that
//! start a hair early). Histograms with the same tag in the same slot are added.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use hdrhistogram::Histogram;

use super::fmt;
use super::hlog::{Hlog, HlogInterval, read_hlog_file, write_hlog};

/// Merge the logs; returns the merged log (not yet written).
pub fn merge_logs(logs: &[Hlog]) -> anyhow::Result<Hlog> {
    let first = logs.iter().flat_map(|l| l.intervals.first()).next().context("the inputs hold no intervals")?;
    let slot = if first.length_s > 0.0 { first.length_s } else { 1.0 };
    let origin = logs.iter().flat_map(|l| l.intervals.iter()).map(|i| i.start_unix_s).fold(f64::INFINITY, f64::min);
    // (slot index, tag) -> histogram
    let mut acc: BTreeMap<(i64, Option<String>), Histogram<u64>> = BTreeMap::new();
    for iv in logs.iter().flat_map(|l| l.intervals.iter()) {
        let k = ((iv.start_unix_s - origin) / slot + 0.01).floor() as i64;
        let h = match acc.entry((k, iv.tag.clone())) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(new_hist()),
        };
        h.add(&iv.hist).map_err(|e| anyhow::anyhow!("cannot add histograms: {e:?}"))?;
    }
    let intervals = acc
        .into_iter()
        .map(|((k, tag), hist)| HlogInterval { tag, start_unix_s: origin + k as f64 * slot, length_s: slot, hist })
        .collect();
    Ok(Hlog { start_unix_s: origin, intervals })
}

/// An empty auto-resizing histogram (3 significant digits) to add others into.
pub fn new_hist() -> Histogram<u64> {
    let mut h = Histogram::<u64>::new(3).expect("3 significant digits is valid");
    h.auto(true);
    h
}

/// Per tag, the sum of all its intervals (None = untagged), in tag order.
pub fn totals_by_tag(log: &Hlog) -> anyhow::Result<BTreeMap<Option<String>, Histogram<u64>>> {
    let mut out: BTreeMap<Option<String>, Histogram<u64>> = BTreeMap::new();
    for iv in &log.intervals {
        out.entry(iv.tag.clone()).or_insert_with(new_hist).add(&iv.hist).map_err(|e| anyhow::anyhow!("cannot add histograms: {e:?}"))?;
    }
    Ok(out)
}

pub fn run(inputs: &[PathBuf], output: &std::path::Path) -> anyhow::Result<()> {
    anyhow::ensure!(!inputs.is_empty(), "no input logs given");
    let logs = inputs.iter().map(|p| read_hlog_file(p)).collect::<anyhow::Result<Vec<_>>>()?;
    let merged = merge_logs(&logs)?;
    let mut buf = Vec::new();
    write_hlog(&mut buf, &merged)?;
    std::fs::write(output, &buf).with_context(|| format!("cannot write {}", output.display()))?;

    let mut out = std::io::stdout().lock();
    let slots = merged.intervals.iter().map(|i| i.start_unix_s).fold(Vec::<f64>::new(), |mut v, s| {
        if v.last() != Some(&s) {
            v.push(s);
        }
        v
    });
    writeln!(
        out,
        "merged {} logs into {} ({} intervals of {:.3} s from {})",
        inputs.len(),
        output.display(),
        slots.len(),
        merged.intervals.first().map_or(0.0, |i| i.length_s),
        fmt::utc(merged.start_unix_s)
    )?;
    writeln!(out, "{:<14} {:>12} {:>10} {:>10} {:>10} {:>10}", "tag", "count", "p50", "p99", "p99.9", "max")?;
    for (tag, h) in totals_by_tag(&merged)? {
        let q = |p: f64| fmt::ns(h.value_at_quantile(p) as f64);
        writeln!(
            out,
            "{:<14} {:>12} {:>10} {:>10} {:>10} {:>10}",
            tag.as_deref().unwrap_or("(untagged)"),
            h.len(),
            q(0.5),
            q(0.99),
            q(0.999),
            fmt::ns(h.max() as f64)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(tag: &str, start: f64, n: u64, v: u64) -> HlogInterval {
        let mut h = Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3).unwrap();
        h.record_n(v, n).unwrap();
        HlogInterval { tag: Some(tag.into()), start_unix_s: start, length_s: 1.0, hist: h }
    }

    #[test]
    fn aligns_on_absolute_time_and_adds_same_tags() {
        let a = Hlog { start_unix_s: 100.0, intervals: vec![iv("c", 100.0, 10, 1000), iv("c", 101.0, 10, 2000), iv("u", 101.0, 1, 5)] };
        let b = Hlog { start_unix_s: 100.3, intervals: vec![iv("c", 100.3, 5, 3000), iv("c", 101.3, 5, 4000), iv("c", 102.3, 1, 9)] };
        let m = merge_logs(&[a, b]).unwrap();
        assert_eq!(m.start_unix_s, 100.0);
        let c: Vec<_> = m.intervals.iter().filter(|i| i.tag.as_deref() == Some("c")).map(|i| (i.start_unix_s, i.hist.len())).collect();
        assert_eq!(c, [(100.0, 15), (101.0, 15), (102.0, 1)]);
        let totals = totals_by_tag(&m).unwrap();
        assert_eq!(totals[&Some("c".to_string())].len(), 31);
        assert_eq!(totals[&Some("u".to_string())].len(), 1);
    }

    #[test]
    fn empty_inputs_are_an_error() {
        assert!(merge_logs(&[]).is_err());
        assert!(merge_logs(&[Hlog { start_unix_s: 1.0, intervals: vec![] }]).is_err());
    }
}
