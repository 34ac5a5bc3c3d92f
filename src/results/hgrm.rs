//! `.hgrm`: the percentile distribution as Java's
//! `Histogram.outputPercentileDistribution(out, 5, 1e6)` prints it (wrk2 and the
//! HdrHistogram web plotter read this). Histograms are recorded in nanoseconds and
//! printed in milliseconds.

use std::io::{self, Write};

use hdrhistogram::Histogram;

/// Percentile steps per halving of the remaining distance to 100%, as the Java default.
const TICKS_PER_HALF: u32 = 5;
/// Nanoseconds per printed unit (milliseconds).
const SCALE: f64 = 1e6;

/// Percentile distribution in the HdrHistogram plotter (.hgrm, Java HistogramLogProcessor/wrk2 dialect) format; histogram recorded in ns, values printed in ms.
pub fn write_hgrm(w: &mut dyn Write, h: &Histogram<u64>) -> io::Result<()> {
    writeln!(
        w,
        "{:>12} {:>14} {:>10} {:>14}",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    writeln!(w)?;
    let mut total = 0u64;
    for v in h.iter_quantiles(TICKS_PER_HALF) {
        total += v.count_since_last_iteration();
        let value = v.value_iterated_to() as f64 / SCALE;
        let q = v.quantile_iterated_to();
        if q < 1.0 {
            writeln!(
                w,
                "{value:12.3} {q:14.12} {total:10} {:14.2}",
                1.0 / (1.0 - q)
            )?;
        } else {
            writeln!(w, "{value:12.3} {q:14.12} {total:10}")?;
        }
    }
    let (mean, sd) = if h.is_empty() {
        (0.0, 0.0)
    } else {
        (h.mean() / SCALE, h.stdev() / SCALE)
    };
    writeln!(w, "#[Mean    = {mean:12.3}, StdDeviation   = {sd:12.3}]")?;
    writeln!(
        w,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / SCALE,
        h.len()
    )?;
    writeln!(
        w,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_bucket_count(h.sigfig())
    )?;
    writeln!(
        w,
        "# Values are in milliseconds (recorded in nanoseconds, divided by 1e6)."
    )?;
    Ok(())
}

/// What Java prints as SubBuckets: the smallest power of two covering 2·10^sigfig.
fn sub_bucket_count(sigfig: u8) -> u64 {
    let largest = 2 * 10u64.pow(u32::from(sigfig));
    largest.next_power_of_two().max(2)
}

/// One data line of an `.hgrm` file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HgrmPoint {
    /// The value at this percentile, milliseconds.
    pub value_ms: f64,
    /// The percentile as a fraction (0.99 for p99, 1.0 on the last line).
    pub percentile: f64,
    /// Values recorded at or below `value_ms`.
    pub total_count: u64,
}

/// Read the data lines of an `.hgrm` file (4-field lines, and the final 3-field 100% line).
/// Comment lines (`#`), the header and blank lines are skipped; anything else is an error.
pub fn read_hgrm(text: &str) -> anyhow::Result<Vec<HgrmPoint>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with("Value") {
            continue;
        }
        let f: Vec<&str> = t.split_whitespace().collect();
        let parsed = (f.len() == 3 || f.len() == 4)
            .then(|| {
                Some((
                    f[0].parse::<f64>().ok()?,
                    f[1].parse::<f64>().ok()?,
                    f[2].parse::<u64>().ok()?,
                ))
            })
            .flatten();
        match parsed {
            Some((value_ms, percentile, total_count)) => out.push(HgrmPoint {
                value_ms,
                percentile,
                total_count,
            }),
            None => anyhow::bail!(
                "line {}: not an .hgrm data line: {:?}",
                i + 1,
                truncate(t, 60)
            ),
        }
    }
    Ok(out)
}

/// The same points computed from a histogram (for cells that only have an `.hlog`).
pub fn points_of(h: &Histogram<u64>) -> Vec<HgrmPoint> {
    let mut total = 0;
    h.iter_quantiles(TICKS_PER_HALF)
        .map(|v| {
            total += v.count_since_last_iteration();
            HgrmPoint {
                value_ms: v.value_iterated_to() as f64 / SCALE,
                percentile: v.quantile_iterated_to(),
                total_count: total,
            }
        })
        .collect()
}

pub(crate) fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Histogram<u64> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for i in 1..=10_000u64 {
            h.record(i * 1_000).unwrap(); // 1 µs .. 10 ms
        }
        h.record(250_000_000).unwrap(); // one 250 ms outlier
        h
    }

    #[test]
    fn shape_of_lines() {
        let h = sample();
        let mut buf = Vec::new();
        write_hgrm(&mut buf, &h).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines.next().unwrap(), "");
        let data: Vec<&str> = lines.clone().take_while(|l| !l.starts_with('#')).collect();
        assert!(data.len() > 20, "{text}");
        let (last, body) = data.split_last().unwrap();
        let mut prev = -1.0;
        for l in body {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 4, "line {l:?}");
            let p: f64 = f[1].parse().unwrap();
            assert!(p > prev, "percentiles must increase: {l:?}");
            prev = p;
        }
        let f: Vec<&str> = last.split_whitespace().collect();
        assert_eq!(f, ["250.085", "1.000000000000", "10001"]);
        let pts = read_hgrm(&text).unwrap();
        assert_eq!(pts.len(), data.len());
        assert_eq!(pts.last().unwrap().total_count, h.len());
        assert!(
            text.contains("#[Max     =      250.085, Total count    =        10001]"),
            "{text}"
        );
        assert!(text.contains("SubBuckets     =         2048]"), "{text}");
    }

    #[test]
    fn empty_histogram_has_header_and_footer_only() {
        let h = Histogram::<u64>::new(3).unwrap();
        let mut buf = Vec::new();
        write_hgrm(&mut buf, &h).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(read_hgrm(&text).unwrap().is_empty());
        assert!(text.contains("Total count    =            0"));
    }

    #[test]
    fn points_match_file() {
        let h = sample();
        let mut buf = Vec::new();
        write_hgrm(&mut buf, &h).unwrap();
        let from_file = read_hgrm(std::str::from_utf8(&buf).unwrap()).unwrap();
        let computed = points_of(&h);
        assert_eq!(from_file.len(), computed.len());
        for (a, b) in from_file.iter().zip(&computed) {
            assert!((a.value_ms - b.value_ms).abs() < 1e-3 && a.total_count == b.total_count);
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(read_hgrm("hello world\n").is_err());
    }
}
