//! What `load` shows and writes: progress lines, the summary, .hgrm/.hlog/.json files.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{LoadOutcome, uncorrected_path};
use crate::cli::LoadArgs;
use crate::report::model::{LoadErrors, Percentiles};

/// A line per interval on stderr, only when enabled (terminal and not --quiet).
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(enabled: bool) -> Progress {
        let bar = enabled.then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(st) = ProgressStyle::with_template("{spinner} [{elapsed}] {msg}") {
                b.set_style(st);
            }
            b.enable_steady_tick(std::time::Duration::from_millis(200));
            b.set_message("warming up");
            b
        });
        Progress { bar }
    }

    pub fn line(&self, s: String) {
        if let Some(b) = &self.bar {
            b.println(s);
            b.set_message("measuring");
        }
    }

    pub fn interval(&self, k: u64, len_s: f64, l: Option<&Histogram<u64>>, u: Option<&Histogram<u64>>, e: &LoadErrors) {
        let Some(b) = &self.bar else { return };
        let n = l.map_or(0, |h| h.len());
        let q = |h: Option<&Histogram<u64>>, p: f64| h.filter(|h| !h.is_empty()).map_or("-".to_string(), |h| fmt_ns(h.value_at_quantile(p)));
        let mut s = format!("[{:>5.1}s] {:>10.0} msgs/s  p50 {:>9}  p99 {:>9}", (k + 1) as f64 * len_s, n as f64 / len_s, q(l, 0.5), q(l, 0.99));
        if u.is_some() {
            let _ = write!(s, "  (uncorrected p99 {})", q(u, 0.99));
        }
        let _ = write!(s, "  errors {}", e.total());
        b.set_message(format!("{n} msgs in the last interval"));
        b.println(s);
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Nanoseconds with a unit: "850ns", "12.34µs", "1.50ms", "1.002s".
pub fn fmt_ns(v: u64) -> String {
    let f = v as f64;
    if v < 1_000 {
        format!("{v}ns")
    } else if v < 1_000_000 {
        format!("{:.2}µs", f / 1e3)
    } else if v < 1_000_000_000 {
        format!("{:.2}ms", f / 1e6)
    } else {
        format!("{:.3}s", f / 1e9)
    }
}

/// "mismatch 1, reset 2" (kinds with a count only) or "none".
pub fn errors_line(e: &LoadErrors) -> String {
    let parts: Vec<String> = [("mismatch", e.mismatch), ("reset", e.reset), ("timeout", e.timeout), ("connect", e.connect), ("other", e.other)]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if parts.is_empty() { "none".to_string() } else { parts.join(", ") }
}

/// The human summary (wrk2 style).
pub fn summary(o: &LoadOutcome) -> String {
    let r = &o.result;
    let p = &r.params;
    let mut s = String::new();
    let rate = p.rate.map_or(String::new(), |x| format!(" at {x} msgs/s"));
    let _ = writeln!(
        s,
        "ringmux load: {} loop{rate}, {} conns, {} B, pipeline {}, {:.2} s measured after {:.2} s warm-up, {} thread(s), {} driver, {}",
        p.mode, p.conns, p.size, p.pipeline, r.elapsed_s, p.warmup_s, p.threads, p.driver, p.addr
    );
    type Pick = fn(&Percentiles) -> u64;
    let rows: [(&str, Pick); 9] = [
        ("p50", |x| x.p50),
        ("p75", |x| x.p75),
        ("p90", |x| x.p90),
        ("p99", |x| x.p99),
        ("p99.9", |x| x.p99_9),
        ("p99.99", |x| x.p99_99),
        ("p99.999", |x| x.p99_999),
        ("max", |x| x.max),
        ("min", |x| x.min),
    ];
    match &r.latency_uncorrected {
        Some(u) => {
            let _ = writeln!(s, "  Latency     {:>12} {:>12}", "corrected", "uncorrected");
            for (name, f) in rows {
                let _ = writeln!(s, "  {name:<10}  {:>12} {:>12}", fmt_ns(f(&r.latency)), fmt_ns(f(u)));
            }
            let _ = writeln!(s, "  {:<10}  {:>12} {:>12}", "mean", fmt_ns(r.latency.mean as u64), fmt_ns(u.mean as u64));
        }
        None => {
            let _ = writeln!(s, "  Latency     {:>12}", "service");
            for (name, f) in rows {
                let _ = writeln!(s, "  {name:<10}  {:>12}", fmt_ns(f(&r.latency)));
            }
            let _ = writeln!(s, "  {:<10}  {:>12}", "mean", fmt_ns(r.latency.mean as u64));
        }
    }
    let _ = writeln!(
        s,
        "  {} messages in {:.2} s: {:.1} msgs/s, {:.2} MB/s (+{} in warm-up)",
        r.messages, r.elapsed_s, r.msgs_per_s, r.mb_per_s, r.warmup_messages
    );
    if let Some(c) = r.load_cpu_ns_per_msg {
        let _ = writeln!(s, "  load generator CPU: {} per message", fmt_ns(c as u64));
    }
    let _ = writeln!(s, "  errors: {}", errors_line(&r.errors));
    if r.interrupted {
        let _ = writeln!(s, "  INTERRUPTED after {:.2} s of the {:.2} s asked", r.elapsed_s, p.duration_s);
    }
    if let (Some(false), Some(asked)) = (r.rate_kept, p.rate) {
        let _ = writeln!(
            s,
            "  RATE NOT KEPT: achieved {:.1} msgs/s of {asked} asked ({:+.1}%){}",
            r.msgs_per_s,
            (r.msgs_per_s / asked - 1.0) * 100.0,
            r.missing.map_or(String::new(), |m| format!("; {m} intended messages got no reply"))
        );
    }
    s
}

fn create(path: &Path) -> anyhow::Result<BufWriter<File>> {
    Ok(BufWriter::new(File::create(path).with_context(|| format!("cannot write {}", path.display()))?))
}

/// Write --hgrm, --hlog and --json.
pub fn write_files(a: &LoadArgs, o: &LoadOutcome) -> anyhow::Result<()> {
    if let Some(path) = &a.hgrm {
        o.write_hgrm(path)?;
    }
    if let Some(path) = &a.hlog {
        o.write_hlog(path)?;
    }
    if let Some(path) = &a.json {
        o.write_json(path)?;
    }
    Ok(())
}

impl LoadOutcome {
    /// The percentile distribution (ms) at `path`; in open loop the uncorrected one goes
    /// beside it with `.uncorrected` before the extension (`run.hgrm` ->
    /// `run.uncorrected.hgrm`). Returns the files written.
    pub fn write_hgrm(&self, path: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
        let mut written = vec![path.to_path_buf()];
        let mut w = create(path)?;
        shim::write_hgrm(&mut w, &self.latency).and_then(|_| w.flush()).with_context(|| format!("cannot write {}", path.display()))?;
        if let Some(u) = &self.uncorrected {
            let up = uncorrected_path(path);
            let mut w = create(&up)?;
            shim::write_hgrm(&mut w, u).and_then(|_| w.flush()).with_context(|| format!("cannot write {}", up.display()))?;
            written.push(up);
        }
        Ok(written)
    }

    /// The interval log (open loop: tags "corrected" and "uncorrected"; closed loop: one
    /// untagged series), absolute start times.
    pub fn write_hlog(&self, path: &Path) -> anyhow::Result<()> {
        let log = to_hlog(self);
        let mut w = create(path)?;
        shim::write_hlog(&mut w, &log).and_then(|_| w.flush()).with_context(|| format!("cannot write {}", path.display()))
    }

    /// The [`crate::report::model::LoadResult`] as pretty JSON.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let mut w = create(path)?;
        serde_json::to_writer_pretty(&mut w, &self.result)?;
        writeln!(w)?;
        w.flush().with_context(|| format!("cannot write {}", path.display()))
    }

    /// The human summary `load` prints.
    pub fn summary(&self) -> String {
        summary(self)
    }
}

/// The interval series as an interval log: open loop tags "corrected" and
/// "uncorrected"; closed loop one untagged series.
pub fn to_hlog(o: &LoadOutcome) -> shim::Hlog {
    let mut intervals = Vec::new();
    for iv in &o.intervals {
        match &iv.uncorrected {
            Some(u) => {
                intervals.push(shim::HlogInterval { tag: Some("corrected".into()), start_unix_s: iv.start_unix_s, length_s: iv.length_s, hist: iv.latency.clone() });
                intervals.push(shim::HlogInterval { tag: Some("uncorrected".into()), start_unix_s: iv.start_unix_s, length_s: iv.length_s, hist: u.clone() });
            }
            None => intervals.push(shim::HlogInterval { tag: None, start_unix_s: iv.start_unix_s, length_s: iv.length_s, hist: iv.latency.clone() }),
        }
    }
    shim::Hlog { start_unix_s: o.result.start_unix_s, intervals }
}

/// Stand-in for `crate::report::{hgrm, hlog}` (written on another branch with these exact
/// signatures). To switch over: replace this module with
/// `use crate::report::{hgrm::write_hgrm, hlog::{Hlog, HlogInterval, write_hlog}};`.
pub mod shim {
    use std::io::{self, Write};
    use std::time::{Duration, SystemTime};

    use hdrhistogram::Histogram;
    use hdrhistogram::serialization::V2DeflateSerializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};

    pub struct HlogInterval {
        pub tag: Option<String>,
        pub start_unix_s: f64,
        pub length_s: f64,
        pub hist: Histogram<u64>,
    }

    pub struct Hlog {
        pub start_unix_s: f64,
        pub intervals: Vec<HlogInterval>,
    }

    /// Percentile distribution in the HdrHistogram plotter format, values in ms.
    pub fn write_hgrm(w: &mut dyn Write, h: &Histogram<u64>) -> io::Result<()> {
        writeln!(w, "# latency in milliseconds (recorded in nanoseconds)")?;
        writeln!(w, "{:>12} {:>14} {:>10} {:>14}", "Value", "Percentile", "TotalCount", "1/(1-Percentile)")?;
        writeln!(w)?;
        let mut total = 0u64;
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let ms = v.value_iterated_to() as f64 / 1e6;
            if q < 1.0 {
                writeln!(w, "{ms:12.3} {q:14.12} {total:10} {:14.2}", 1.0 / (1.0 - q))?;
            } else {
                writeln!(w, "{ms:12.3} {q:14.12} {total:10}")?;
            }
        }
        writeln!(w, "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]", h.mean() / 1e6, h.stdev() / 1e6)?;
        writeln!(w, "#[Max     = {:12.3}, Total count    = {:12}]", h.max() as f64 / 1e6, h.len())?;
        writeln!(w, "#[Buckets = {:12}, SubBuckets     = {:12}]", h.buckets(), h.distinct_values())
    }

    pub fn write_hlog(w: &mut dyn Write, log: &Hlog) -> io::Result<()> {
        let mut ser = V2DeflateSerializer::new();
        let mut wr = w;
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(log.start_unix_s.max(0.0));
        writeln!(wr, "#[Histogram log format version 1.3]")?;
        let mut lw = IntervalLogWriterBuilder::new()
            .with_start_time(start)
            .with_max_value_divisor(1e6)
            .begin_log_with(&mut wr, &mut ser)?;
        lw.write_comment("\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"")?;
        for iv in &log.intervals {
            let tag = iv.tag.as_deref().and_then(Tag::new);
            lw.write_histogram(&iv.hist, Duration::from_secs_f64(iv.start_unix_s.max(0.0)), Duration::from_secs_f64(iv.length_s), tag)
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::IntervalHists;
    use crate::report::model::{LOAD_SCHEMA, LoadParams, LoadResult};
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    fn outcome() -> LoadOutcome {
        let mut intervals = Vec::new();
        let mut tot = Histogram::new(3).unwrap();
        let mut totu = Histogram::new(3).unwrap();
        for k in 0..3u64 {
            let mut l = Histogram::new(3).unwrap();
            let mut u = Histogram::new(3).unwrap();
            for i in 0..100 * (k + 1) {
                l.record(1_000 + i * 10_000 * (k + 1)).unwrap();
                u.record(1_000 + i).unwrap();
            }
            tot.add(&l).unwrap();
            totu.add(&u).unwrap();
            intervals.push(IntervalHists { start_unix_s: 1_700_000_000.5 + k as f64, length_s: 1.0, latency: l, uncorrected: Some(u) });
        }
        let result = LoadResult {
            schema: LOAD_SCHEMA.into(),
            params: LoadParams {
                addr: "127.0.0.1:1".into(),
                mode: "open".into(),
                conns: 1,
                size: 1,
                pipeline: 1,
                rate: Some(200.0),
                duration_s: 3.0,
                warmup_s: 0.0,
                threads: 1,
                driver: "epoll".into(),
                timeout_s: None,
            },
            sys: crate::sysinfo::SysInfo::collect(),
            start_unix_s: 1_700_000_000.5,
            elapsed_s: 3.0,
            messages: tot.len(),
            warmup_messages: 0,
            msgs_per_s: 200.0,
            mb_per_s: 0.0,
            rate_kept: Some(true),
            latency: Percentiles::of(&tot),
            latency_uncorrected: Some(Percentiles::of(&totu)),
            errors: LoadErrors::default(),
            load_cpu_ns_per_msg: None,
            missing: Some(0),
            interrupted: false,
        };
        LoadOutcome { result, latency: tot, uncorrected: Some(totu), intervals }
    }

    /// Standard base64 (with padding), enough for the test.
    fn b64(s: &str) -> Vec<u8> {
        let val = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 {c}"),
        };
        let mut out = Vec::new();
        for q in s.trim_end_matches('=').as_bytes().chunks(4) {
            let mut acc = 0u32;
            for (i, &c) in q.iter().enumerate() {
                acc |= u32::from(val(c)) << (18 - 6 * i);
            }
            out.extend_from_slice(&acc.to_be_bytes()[1..q.len()]);
        }
        out
    }

    #[test]
    fn hlog_decodes_back_to_the_same_counts() {
        let o = outcome();
        let mut buf = Vec::new();
        shim::write_hlog(&mut buf, &to_hlog(&o)).unwrap();
        let mut de = Deserializer::new();
        let (mut c, mut u, mut n) = (0u64, 0u64, 0);
        for e in IntervalLogIterator::new(&buf) {
            if let LogEntry::Interval(iv) = e.unwrap() {
                let bytes = b64(iv.encoded_histogram());
                let h: Histogram<u64> = de.deserialize(&mut &bytes[..]).unwrap();
                match iv.tag().map(|t| t.as_str()) {
                    Some("corrected") => c += h.len(),
                    Some("uncorrected") => u += h.len(),
                    t => panic!("unexpected tag {t:?}"),
                }
                n += 1;
            }
        }
        assert_eq!(n, 6);
        assert_eq!(c, o.latency.len());
        assert_eq!(u, o.uncorrected.as_ref().unwrap().len());
    }

    #[test]
    fn hgrm_ends_at_the_total_count() {
        let o = outcome();
        let mut buf = Vec::new();
        shim::write_hgrm(&mut buf, &o.latency).unwrap();
        let s = String::from_utf8(buf).unwrap();
        let last = s.lines().rev().find(|l| !l.starts_with('#') && l.split_whitespace().count() >= 3).unwrap();
        let cols: Vec<&str> = last.split_whitespace().collect();
        assert_eq!(cols[1], "1.000000000000");
        assert_eq!(cols[2].parse::<u64>().unwrap(), o.latency.len());
        // Values are milliseconds: the max is 300 x 30 µs ~ 8.97 ms.
        let max: f64 = cols[0].parse().unwrap();
        assert!((max - o.latency.max() as f64 / 1e6).abs() < 0.01, "{max}");
    }

    #[test]
    fn summary_names_units_and_rate() {
        let mut o = outcome();
        let s = summary(&o);
        assert!(s.contains("corrected") && s.contains("uncorrected") && s.contains("p99.999"), "{s}");
        assert!(s.contains("µs") || s.contains("ms"), "{s}");
        assert!(!s.contains("RATE NOT KEPT"), "{s}");
        o.result.rate_kept = Some(false);
        o.result.msgs_per_s = 150.0;
        assert!(summary(&o).contains("RATE NOT KEPT: achieved 150.0 msgs/s of 200 asked (-25.0%)"), "{}", summary(&o));
        assert_eq!(fmt_ns(999), "999ns");
        assert_eq!(fmt_ns(1_500), "1.50µs");
        assert_eq!(fmt_ns(2_345_678), "2.35ms");
        assert_eq!(fmt_ns(1_002_000_000), "1.002s");
    }
}
