//! `.hlog`: HdrHistogram interval log, format version 1.3, as Java's
//! `HistogramLogWriter` writes it and `HistogramLogReader` (Java, Python `hdrh`,
//! hdr-histogram-js) reads it.
//!
//! The hdrhistogram crate has an `interval_log` module, but its writer leaves out the
//! format-version line, the legend line and the human-readable date after StartTime,
//! and adds a non-standard `#[MaxValueDivisor]` line when the max is scaled; its
//! reader rejects lines it does not know. So this module writes the Java layout itself
//! and reads leniently; the histogram blobs still go through the crate's
//! `V2DeflateSerializer` and `Deserializer`.
//!
//! Timestamps are written relative to StartTime (the jHiccup convention). Reading,
//! an interval's absolute start is BaseTime + t when there is a BaseTime; else
//! StartTime + t when t is more than a year smaller than StartTime (Java's heuristic);
//! else t itself (absolute timestamps).

use std::io::{self, BufRead, Write};

use anyhow::Context;
use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};

use super::time::java_date;

/// One interval: a histogram of what was recorded from `start_unix_s` for `length_s`.
#[derive(Debug, Clone)]
pub struct HlogInterval {
    /// Series name (e.g. "corrected", "uncorrected"); no commas or whitespace.
    pub tag: Option<String>,
    /// Absolute start, seconds since the epoch.
    pub start_unix_s: f64,
    /// Interval length, seconds.
    pub length_s: f64,
    /// Values in nanoseconds.
    pub hist: Histogram<u64>,
}

/// A whole interval log.
#[derive(Debug, Clone)]
pub struct Hlog {
    /// Seconds since the epoch when recording started; interval timestamps are written
    /// relative to it.
    pub start_unix_s: f64,
    /// The intervals in file order.
    pub intervals: Vec<HlogInterval>,
}

const LEGEND: &str =
    "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"";
const YEAR_S: f64 = 365.25 * 86_400.0;

/// Write `log` as an HdrHistogram interval log (format 1.3, V2 + DEFLATE histograms).
pub fn write_hlog(w: &mut dyn Write, log: &Hlog) -> io::Result<()> {
    writeln!(w, "#[Logged with ringmux {}]", env!("CARGO_PKG_VERSION"))?;
    writeln!(w, "#[Histogram log format version 1.3]")?;
    writeln!(
        w,
        "#[StartTime: {:.3} (seconds since epoch), {}]",
        log.start_unix_s,
        java_date(log.start_unix_s)
    )?;
    writeln!(w, "{LEGEND}")?;
    let mut ser = V2DeflateSerializer::new();
    let mut blob = Vec::new();
    for iv in &log.intervals {
        if let Some(tag) = &iv.tag {
            if tag.is_empty() || tag.contains(|c: char| c == ',' || c.is_whitespace()) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("hlog tag {tag:?} must be non-empty without commas or spaces"),
                ));
            }
            write!(w, "Tag={tag},")?;
        }
        blob.clear();
        ser.serialize(&iv.hist, &mut blob)
            .map_err(|e| io::Error::other(format!("histogram serialization failed: {e:?}")))?;
        writeln!(
            w,
            "{:.3},{:.3},{:.3},{}",
            iv.start_unix_s - log.start_unix_s,
            iv.length_s,
            iv.hist.max() as f64 / 1e6,
            base64::engine::general_purpose::STANDARD.encode(&blob)
        )?;
    }
    Ok(())
}

/// Read an interval log as [`write_hlog`] writes it (and as other tools do).
pub fn read_hlog(r: &mut dyn BufRead) -> anyhow::Result<Hlog> {
    let mut start_time: Option<f64> = None;
    let mut base_time: Option<f64> = None;
    // (tag, raw timestamp, length, histogram); resolved once the headers are known
    let mut raw: Vec<(Option<String>, f64, f64, Histogram<u64>)> = Vec::new();
    let mut de = Deserializer::new();
    let mut saw_header = false;
    let mut line = String::new();
    let mut n = 0usize;
    loop {
        line.clear();
        n += 1;
        if r.read_line(&mut line)
            .with_context(|| format!("line {n}"))?
            == 0
        {
            break;
        }
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if let Some(rest) = t.strip_prefix("#[StartTime:") {
            start_time =
                Some(header_secs(rest).with_context(|| format!("line {n}: bad StartTime"))?);
            saw_header = true;
            continue;
        }
        if let Some(rest) = t.strip_prefix("#[BaseTime:") {
            base_time = Some(header_secs(rest).with_context(|| format!("line {n}: bad BaseTime"))?);
            saw_header = true;
            continue;
        }
        if t.starts_with('#') {
            saw_header |= t.starts_with("#[Histogram log format version");
            continue;
        }
        if t.starts_with("\"StartTimestamp\"") {
            saw_header = true;
            continue;
        }
        let iv = parse_interval(t, &mut de).with_context(|| {
            format!(
                "line {n}: not an interval log line ({})",
                crate::results::hgrm::truncate(t, 40)
            )
        })?;
        raw.push(iv);
    }
    if !saw_header && raw.is_empty() {
        anyhow::bail!("not an HdrHistogram interval log (no header, no intervals)");
    }
    let offset = match (base_time, start_time) {
        (Some(b), _) => Some(b),
        (None, Some(s)) => Some(s),
        (None, None) => None,
    };
    let intervals: Vec<HlogInterval> = raw
        .into_iter()
        .map(|(tag, ts, length_s, hist)| {
            let start_unix_s = match (base_time, offset) {
                (Some(b), _) => b + ts,
                (None, Some(s)) if ts < s - YEAR_S => s + ts,
                _ => ts,
            };
            HlogInterval {
                tag,
                start_unix_s,
                length_s,
                hist,
            }
        })
        .collect();
    let start_unix_s = start_time
        .or(base_time)
        .or_else(|| intervals.iter().map(|i| i.start_unix_s).reduce(f64::min))
        .unwrap_or(0.0);
    Ok(Hlog {
        start_unix_s,
        intervals,
    })
}

/// "1717590896.123 (seconds since epoch), Wed Jun ..." -> 1717590896.123
fn header_secs(rest: &str) -> anyhow::Result<f64> {
    let num = rest
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_end_matches([']', ',']);
    let v: f64 = num
        .parse()
        .with_context(|| format!("{num:?} is not a number"))?;
    anyhow::ensure!(v.is_finite(), "{num:?} is not finite");
    Ok(v)
}

fn parse_interval(
    t: &str,
    de: &mut Deserializer,
) -> anyhow::Result<(Option<String>, f64, f64, Histogram<u64>)> {
    let (tag, rest) = match t.strip_prefix("Tag=") {
        Some(r) => {
            let (tag, rest) = r.split_once(',').context("tag without fields")?;
            (Some(tag.to_string()), rest)
        }
        None => (None, t),
    };
    let f: Vec<&str> = rest.split(',').collect();
    anyhow::ensure!(
        f.len() == 4,
        "expected 4 comma-separated fields, found {}",
        f.len()
    );
    let num = |s: &str, what: &str| -> anyhow::Result<f64> {
        let v: f64 = s
            .trim()
            .parse()
            .with_context(|| format!("{what} {s:?} is not a number"))?;
        anyhow::ensure!(v.is_finite() && v >= 0.0, "{what} {s:?} is out of range");
        Ok(v)
    };
    let ts = num(f[0], "start timestamp")?;
    let len = num(f[1], "interval length")?;
    num(f[2], "interval max")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(f[3].trim())
        .context("histogram is not base64")?;
    let hist: Histogram<u64> = de
        .deserialize(&mut io::Cursor::new(&bytes))
        .map_err(|e| anyhow::anyhow!("histogram does not decode: {e:?}"))?;
    Ok((tag, ts, len, hist))
}

/// Read an interval log from a file, with the path in the error.
pub fn read_hlog_file(path: &std::path::Path) -> anyhow::Result<Hlog> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    read_hlog(&mut io::BufReader::new(f)).with_context(|| format!("{}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(base: u64, n: u64) -> Histogram<u64> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for i in 0..n {
            h.record(base + i * 997).unwrap();
        }
        h
    }

    fn sample() -> Hlog {
        let t0 = 1_717_590_896.25;
        let mut intervals = Vec::new();
        for k in 0..3 {
            for tag in ["corrected", "uncorrected"] {
                intervals.push(HlogInterval {
                    tag: Some(tag.into()),
                    start_unix_s: t0 + k as f64,
                    length_s: 1.0,
                    hist: hist(50_000 * (k + 1), 1000 + k * 10),
                });
            }
        }
        intervals.push(HlogInterval {
            tag: None,
            start_unix_s: t0 + 0.5,
            length_s: 2.0,
            hist: hist(10, 5),
        });
        Hlog {
            start_unix_s: t0,
            intervals,
        }
    }

    #[test]
    fn round_trip() {
        let log = sample();
        let mut buf = Vec::new();
        write_hlog(&mut buf, &log).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert!(text.contains("#[Histogram log format version 1.3]\n"));
        assert!(
            text.contains(
                "#[StartTime: 1717590896.250 (seconds since epoch), Wed Jun 05 12:34:56 UTC 2024]\n"
            ),
            "{text}"
        );
        assert!(text.contains(&format!("{LEGEND}\n")));
        assert!(text.contains("\nTag=corrected,1.000,1.000,"), "{text}");
        for l in text.lines().filter(|l| !l.starts_with(['#', '"'])) {
            assert!(l.rsplit(',').next().unwrap().starts_with("HISTF"), "{l}");
        }
        let back = read_hlog(&mut &buf[..]).unwrap();
        assert_eq!(back.start_unix_s, log.start_unix_s);
        assert_eq!(back.intervals.len(), log.intervals.len());
        for (a, b) in back.intervals.iter().zip(&log.intervals) {
            assert_eq!(a.tag, b.tag);
            assert!((a.start_unix_s - b.start_unix_s).abs() < 1e-3);
            assert_eq!(a.length_s, b.length_s);
            assert_eq!(a.hist.len(), b.hist.len());
            assert_eq!(a.hist.max(), b.hist.max());
        }
    }

    #[test]
    fn absolute_timestamps_without_start_time() {
        let log = sample();
        let mut buf = Vec::new();
        write_hlog(&mut buf, &log).unwrap();
        // rewrite as absolute timestamps with no StartTime
        let text = String::from_utf8(buf).unwrap();
        let mut abs = String::new();
        for l in text.lines() {
            if l.starts_with("#[StartTime") {
                continue;
            }
            if let Some(r) = l.strip_prefix("Tag=corrected,") {
                let (ts, rest) = r.split_once(',').unwrap();
                let ts: f64 = ts.parse().unwrap();
                abs.push_str(&format!(
                    "Tag=corrected,{:.3},{rest}\n",
                    ts + log.start_unix_s
                ));
            } else if !l.starts_with("Tag=") && !l.starts_with('#') && !l.starts_with('"') {
                continue;
            } else {
                abs.push_str(l);
                abs.push('\n');
            }
        }
        let back = read_hlog(&mut abs.as_bytes()).unwrap();
        let c: Vec<_> = back
            .intervals
            .iter()
            .filter(|i| i.tag.as_deref() == Some("corrected"))
            .collect();
        assert_eq!(c.len(), 3);
        assert!((c[2].start_unix_s - (log.start_unix_s + 2.0)).abs() < 1e-3);
        assert!((back.start_unix_s - log.start_unix_s).abs() < 1e-3 || back.start_unix_s < 1e9);
    }

    #[test]
    fn base_time_and_comments() {
        let log = sample();
        let mut buf = Vec::new();
        write_hlog(&mut buf, &log).unwrap();
        let text = String::from_utf8(buf).unwrap().replace(
            "#[Histogram log format version 1.3]\n",
            "#[Histogram log format version 1.3]\n# a comment\n#[BaseTime: 1717590900.250 (seconds since epoch)]\n",
        );
        let back = read_hlog(&mut text.as_bytes()).unwrap();
        assert!((back.intervals[0].start_unix_s - 1_717_590_900.25).abs() < 1e-3);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for bad in [
            "",
            "hello\n",
            "1.0,1.0,1.0,notbase64!!\n",
            "1.0,1.0,1.0,SElTVEY=\n",
            "Tag=x\n",
            "1,2,3\n",
            "#[StartTime: abc]\n",
        ] {
            assert!(read_hlog(&mut bad.as_bytes()).is_err(), "{bad:?}");
        }
        let mut log = sample();
        log.intervals[0].tag = Some("a b".into());
        assert!(write_hlog(&mut Vec::new(), &log).is_err());
    }
}
