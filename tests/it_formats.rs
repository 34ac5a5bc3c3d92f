//! The measurement files through the real binary: `.hgrm` (golden), `.hlog` (round
//! trip, and read back by an independent decoder), `merge`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hdrhistogram::Histogram;
use ringmux::results::hgrm::write_hgrm;
use ringmux::results::hlog::{Hlog, HlogInterval, read_hlog};

use crate::util::fixtures::{synth, write_log};
use crate::util::{Running, run_bounded, scratch_dir};

const LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- .hgrm

#[test]
fn hgrm_golden() {
    let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
    for v in 1..=1000u64 {
        h.record(v * 10_000).unwrap(); // 10 µs .. 10 ms
    }
    h.record_n(25_000_000, 3).unwrap(); // 25 ms x3
    h.record(1_000_000_000).unwrap(); // 1 s
    let mut buf = Vec::new();
    write_hgrm(&mut buf, &h).unwrap();
    let text = String::from_utf8(buf).unwrap();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden.hgrm");
    if std::env::var_os("RINGMUX_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &text).unwrap();
    }
    let want = std::fs::read_to_string(&golden)
        .expect("tests/data/golden.hgrm (regenerate with RINGMUX_UPDATE_GOLDEN=1)");
    assert_eq!(
        text, want,
        "hgrm output changed; if intended, regenerate with RINGMUX_UPDATE_GOLDEN=1"
    );

    // The rules the plotter relies on.
    let data: Vec<&str> = text
        .lines()
        .skip(2)
        .take_while(|l| !l.starts_with('#'))
        .collect();
    let (last, body) = data.split_last().unwrap();
    let mut prev = -1.0;
    for l in body {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(f.len(), 4, "{l:?}");
        let p: f64 = f[1].parse().unwrap();
        assert!(p > prev, "{l:?}");
        prev = p;
    }
    let f: Vec<&str> = last.split_whitespace().collect();
    assert_eq!(f.len(), 3, "{last:?}");
    assert_eq!(f[1], "1.000000000000");
    assert_eq!(f[2], h.len().to_string());
    assert!(
        text.lines()
            .skip(2)
            .all(|l| l.starts_with('#') || matches!(l.split_whitespace().count(), 3 | 4))
    );
}

// ---------------------------------------------------------------- .hlog

fn sample_log(t0: f64, seed: u64, n_intervals: usize) -> Hlog {
    let mut intervals = Vec::new();
    for k in 0..n_intervals {
        intervals.push(HlogInterval {
            tag: Some("corrected".into()),
            start_unix_s: t0 + k as f64,
            length_s: 1.0,
            hist: synth(seed + k as u64, 2000, 40_000.0),
        });
        intervals.push(HlogInterval {
            tag: Some("uncorrected".into()),
            start_unix_s: t0 + k as f64,
            length_s: 1.0,
            hist: synth(seed + 100 + k as u64, 2000, 30_000.0),
        });
    }
    Hlog {
        start_unix_s: t0,
        intervals,
    }
}

#[test]
fn hlog_round_trip_file() {
    let d = scratch_dir("report-hlog-rt");
    let log = sample_log(1_700_000_000.5, 1, 4);
    write_log(&d.join("a.hlog"), &log);
    let back = read_hlog(&mut std::io::BufReader::new(
        std::fs::File::open(d.join("a.hlog")).unwrap(),
    ))
    .unwrap();
    assert_eq!(back.intervals.len(), log.intervals.len());
    for (a, b) in back.intervals.iter().zip(&log.intervals) {
        assert_eq!(a.tag, b.tag);
        assert_eq!(a.hist.len(), b.hist.len());
        assert_eq!(a.hist.max(), b.hist.max());
        assert!((a.start_unix_s - b.start_unix_s).abs() < 1e-3);
    }
}

/// Decode our .hlog with an independent implementation: the PyPI `hdrhistogram` package.
#[test]
fn hlog_decodes_with_python_hdrh() {
    let have = Command::new("python3")
        .args(["-c", "import hdrh.log"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have {
        if std::env::var_os("CI").is_some() {
            panic!(
                "python3 with the `hdrhistogram` package (module hdrh) is required in CI: pip install hdrhistogram"
            );
        }
        crate::util::record_skip(
            "hlog python cross-check",
            "-",
            "python hdrhistogram not installed",
        );
        return;
    }
    let d = scratch_dir("report-hlog-py");
    let log = sample_log(1_700_000_000.25, 7, 3);
    let path = d.join("py.hlog");
    write_log(&path, &log);
    let script = r#"
import sys
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader
ref = HdrHistogram(1, 60 * 1000 * 1000 * 1000, 3)
r = HistogramLogReader(sys.argv[1], ref)
rows = []
while True:
    h = r.get_next_interval_histogram()
    if h is None:
        break
    rows.append((h.get_total_count(), h.get_value_at_percentile(99.0), h.get_max_value(), h.get_start_time_stamp() / 1000.0))
start = r.get_start_time_sec()  # known once the header was read
for n, (count, p99, mx, ts) in enumerate(rows):
    print(n, count, p99, mx, ts - start)
print("start", start)
"#;
    let o = Running::spawn(Command::new("python3").args(["-c", script, path.to_str().unwrap()]))
        .finish(LIMIT);
    assert!(o.status.success(), "python failed:\n{}", o.explain());
    let out = o.stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), log.intervals.len() + 1, "{out}");
    for (line, iv) in lines.iter().zip(&log.intervals) {
        let f: Vec<f64> = line
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(f[1] as u64, iv.hist.len(), "total count: {line}");
        let p99 = iv.hist.value_at_quantile(0.99);
        assert!(
            iv.hist.equivalent(f[2] as u64, p99),
            "p99 python {} vs rust {p99}: {line}",
            f[2]
        );
        assert!(
            iv.hist.equivalent(f[3] as u64, iv.hist.max()),
            "max: {line}"
        );
        assert!(
            (f[4] - (iv.start_unix_s - log.start_unix_s)).abs() < 2e-3,
            "start offset: {line}"
        );
    }
    let start: f64 = lines
        .last()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!((start - log.start_unix_s).abs() < 1e-3, "{out}");
}

// ---------------------------------------------------------------- merge

#[test]
fn merge_sums_counts() {
    let d = scratch_dir("report-merge");
    let a = sample_log(1_700_000_000.0, 1, 3);
    let b = sample_log(1_700_000_000.4, 50, 3);
    write_log(&d.join("a.hlog"), &a);
    write_log(&d.join("b.hlog"), &b);
    let out = d.join("m.hlog");
    let (pa, pb) = (d.join("a.hlog"), d.join("b.hlog"));
    let args = [
        "merge",
        pa.to_str().unwrap(),
        pb.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    let o = run_bounded(&args, LIMIT);
    assert!(o.status.success(), "{}", o.explain());
    assert!(
        o.stdout.contains("corrected") && o.stdout.contains("p99"),
        "{}",
        o.explain()
    );
    let m = read_hlog(&mut std::io::BufReader::new(
        std::fs::File::open(&out).unwrap(),
    ))
    .unwrap();
    let total = |l: &Hlog, tag: &str| {
        l.intervals
            .iter()
            .filter(|i| i.tag.as_deref() == Some(tag))
            .map(|i| i.hist.len())
            .sum::<u64>()
    };
    for tag in ["corrected", "uncorrected"] {
        assert_eq!(total(&m, tag), total(&a, tag) + total(&b, tag), "{tag}");
    }
    // aligned on absolute time: 3 slots per tag
    assert_eq!(
        m.intervals
            .iter()
            .filter(|i| i.tag.as_deref() == Some("corrected"))
            .count(),
        3
    );
    assert_eq!(m.start_unix_s, a.start_unix_s);
    // The output may not be one of the inputs: refused with one line, the input kept.
    let before = std::fs::read(&pa).unwrap();
    let clash = [
        "merge",
        pa.to_str().unwrap(),
        pb.to_str().unwrap(),
        "-o",
        pa.to_str().unwrap(),
    ];
    let o = run_bounded(&clash, LIMIT);
    assert_eq!(o.code(), Some(2), "{}", o.explain());
    assert_eq!(o.stderr.trim_end().lines().count(), 1, "{}", o.explain());
    assert_eq!(
        std::fs::read(&pa).unwrap(),
        before,
        "the input was overwritten"
    );
}

#[test]
fn merge_bad_input_is_one_line_error() {
    let d = scratch_dir("report-merge-bad");
    std::fs::write(d.join("junk.hlog"), "this is not a log\n").unwrap();
    let out = d.join("o.hlog");
    let o_s = out.to_str().unwrap();
    let missing = d.join("missing.hlog");
    let junk = d.join("junk.hlog");
    for args in [
        vec!["merge", missing.to_str().unwrap(), "-o", o_s],
        vec!["merge", junk.to_str().unwrap(), "-o", o_s],
        vec!["merge", "-o", o_s],
    ] {
        let o = run_bounded(&args, LIMIT);
        assert!(!o.status.success(), "{}", o.explain());
        let err = &o.stderr;
        assert!(!err.contains("panicked"), "{}", o.explain());
        if args.len() == 4 {
            assert_eq!(err.trim_end().lines().count(), 1, "{}", o.explain());
        }
    }
}
