//! Integration tests for the reporting side: file formats, `report`, `compare`, `merge`,
//! driving the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hdrhistogram::Histogram;
use ringmux::results::hgrm::write_hgrm;
use ringmux::results::hlog::{Hlog, HlogInterval, read_hlog, write_hlog};
use ringmux::results::schema::{BENCH_SCHEMA, BenchResults, Cell, LOAD_SCHEMA, RunMetrics};
use ringmux::sysinfo::SysInfo;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringmux")
}

fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("run ringmux")
}

fn show(args: &[&str], o: &Output) -> String {
    format!(
        "command: ringmux {}\nstatus: {:?}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A fresh empty folder under the target dir (no tempfile crate needed).
fn tmpdir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("it_report")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Deterministic latency-like samples (ns): a body around `base` and a thin tail.
fn synth(seed: u64, n: usize, base: f64) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    for _ in 0..n {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let u = ((x >> 11) as f64) / ((1u64 << 53) as f64);
        // exponential-ish tail: base * (1 + -ln(1-u))^2
        let v = base * (1.0 - (1.0 - u).ln()).powi(2);
        h.record(v as u64).unwrap();
    }
    h
}

fn sys() -> SysInfo {
    SysInfo {
        ringmux_version: "0.1.0".into(),
        kernel: "6.18.0-test".into(),
        cpu_model: "Test CPU @ 3.0GHz".into(),
        cores: 2,
        hostname: "testbox".into(),
    }
}

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

fn write_log(path: &Path, log: &Hlog) {
    let mut buf = Vec::new();
    write_hlog(&mut buf, log).unwrap();
    std::fs::write(path, buf).unwrap();
}

#[test]
fn hlog_round_trip_file() {
    let d = tmpdir("hlog_rt");
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
    let d = tmpdir("hlog_py");
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
    let o = Command::new("python3")
        .args(["-c", script, path.to_str().unwrap()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "python failed:\n{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
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
    let d = tmpdir("merge");
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
    let o = run(&args);
    assert!(o.status.success(), "{}", show(&args, &o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("corrected") && stdout.contains("p99"),
        "{}",
        show(&args, &o)
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
}

#[test]
fn merge_bad_input_is_one_line_error() {
    let d = tmpdir("merge_bad");
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
        let o = run(&args);
        assert!(!o.status.success(), "{}", show(&args, &o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{}", show(&args, &o));
        if args.len() == 4 {
            assert_eq!(err.trim_end().lines().count(), 1, "{}", show(&args, &o));
        }
    }
}

// ---------------------------------------------------------------- compare

fn metrics(thr: f64, p99: f64) -> RunMetrics {
    RunMetrics {
        msgs_per_s: thr,
        mb_per_s: thr * 128.0 / 1e6,
        p50_ns: p99 / 4.0,
        p90_ns: p99 / 2.0,
        p99_ns: p99,
        p99_9_ns: p99 * 2.0,
        p99_99_ns: p99 * 3.0,
        max_ns: p99 * 10.0,
        cpu_ns_per_msg: Some(8000.0),
        syscalls_per_msg: Some(2.1),
        ctx_switches_per_msg: Some(0.01),
        errors: 0,
        load_cpu_ns_per_msg: None,
        server_busy: None,
    }
}

fn cell(server: &str, mode: &str, conns: u32, m: RunMetrics, runs: usize) -> Cell {
    let mut lo = m.clone();
    lo.msgs_per_s *= 0.97;
    lo.p99_ns *= 0.9;
    let mut hi = m.clone();
    hi.msgs_per_s *= 1.02;
    hi.p99_ns *= 1.2;
    Cell {
        id: format!("{server}/{mode}/c{conns}/s128"),
        server: server.into(),
        features: (server == "uring").then(|| "fastpoll".into()),
        server_threads: (server != "tokio").then_some(1),
        mode: mode.into(),
        conns,
        size: 128,
        pipeline: 1,
        rate: None,
        runs: vec![m.clone(); runs],
        median: m,
        min: lo,
        max: hi,
        hgrm: vec![],
        hlog: vec![],
        profile: None,
    }
}

fn bench(cells: Vec<Cell>) -> BenchResults {
    BenchResults {
        schema: BENCH_SCHEMA.into(),
        sys: sys(),
        start_unix_s: 1_700_000_000.0,
        args: serde_json::json!({"backends": ["uring", "epoll"], "conns": [1, 50]}),
        cells,
        notes: vec!["closed loop; client and server pinned to different CPUs".into()],
        idle: None,
        quiet: vec![],
        models: None,
    }
}

fn write_json(path: &Path, v: &impl serde::Serialize) {
    std::fs::write(path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

fn compare(d: &Path, base: &str, head: &str, limits: &str) -> (Option<i32>, String) {
    let (b, h) = (d.join(base), d.join(head));
    let args = [
        "compare",
        b.to_str().unwrap(),
        h.to_str().unwrap(),
        "--max-regression",
        limits,
    ];
    let o = run(&args);
    let s = show(&args, &o);
    assert!(!s.contains("panicked"), "{s}");
    (o.status.code(), s)
}

#[test]
fn compare_exit_codes() {
    let d = tmpdir("compare");
    write_json(
        &d.join("base.json"),
        &bench(vec![
            cell("uring", "closed", 50, metrics(100_000.0, 200_000.0), 3),
            cell("epoll", "closed", 50, metrics(95_000.0, 220_000.0), 3),
        ]),
    );
    // within limits: throughput -3%, p99 +8%
    write_json(
        &d.join("ok.json"),
        &bench(vec![
            cell("uring", "closed", 50, metrics(97_000.0, 216_000.0), 3),
            cell("epoll", "closed", 50, metrics(95_000.0, 200_000.0), 3),
        ]),
    );
    // throughput -10% on uring
    write_json(
        &d.join("slow.json"),
        &bench(vec![
            cell("uring", "closed", 50, metrics(90_000.0, 200_000.0), 3),
            cell("epoll", "closed", 50, metrics(95_000.0, 220_000.0), 3),
        ]),
    );
    // p99 +30% on epoll
    write_json(
        &d.join("tail.json"),
        &bench(vec![
            cell("uring", "closed", 50, metrics(100_000.0, 200_000.0), 3),
            cell("epoll", "closed", 50, metrics(95_000.0, 290_000.0), 3),
        ]),
    );
    write_json(
        &d.join("other.json"),
        &bench(vec![cell("threads", "closed", 50, metrics(1.0, 1.0), 1)]),
    );
    std::fs::write(d.join("garbage.json"), "{not json").unwrap();
    std::fs::write(
        d.join("schema.json"),
        r#"{"schema":"someone.else/9","cells":[]}"#,
    )
    .unwrap();

    let (c, s) = compare(&d, "base.json", "ok.json", "p99=10%,throughput=5%");
    assert_eq!(c, Some(0), "{s}");
    assert!(
        s.contains("uring/closed/c50/s128") && s.contains("throughput") && s.contains("verdict"),
        "{s}"
    );

    let (c, s) = compare(&d, "base.json", "slow.json", "p99=10%,throughput=5%");
    assert_eq!(c, Some(1), "{s}");
    assert!(
        s.contains("regression: uring/closed/c50/s128 throughput"),
        "{s}"
    );

    let (c, s) = compare(&d, "base.json", "tail.json", "p99=10%,throughput=5%");
    assert_eq!(c, Some(1), "{s}");
    assert!(s.contains("regression: epoll/closed/c50/s128 p99"), "{s}");
    // the same run with a looser limit passes
    assert_eq!(compare(&d, "base.json", "tail.json", "p99=50%").0, Some(0));

    for (base, head, limits) in [
        ("base.json", "ok.json", "p99=abc"),
        ("base.json", "ok.json", "latency=10%"),
        ("base.json", "missing.json", "p99=10%"),
        ("base.json", "garbage.json", "p99=10%"),
        ("schema.json", "base.json", "p99=10%"),
        ("base.json", "other.json", "p99=10%"),
    ] {
        let (c, s) = compare(&d, base, head, limits);
        assert_eq!(c, Some(2), "{s}");
        let stderr = s.split("stderr:\n").nth(1).unwrap_or("");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "one-line error expected: {s}"
        );
    }
}

#[test]
fn compare_load_files() {
    let d = tmpdir("compare_load");
    let load = |thr: f64, p99: u64| {
        serde_json::json!({
            "schema": LOAD_SCHEMA,
            "params": {"addr": "127.0.0.1:7878", "mode": "closed", "conns": 50, "size": 128, "pipeline": 1, "rate": null,
                       "duration_s": 10.0, "warmup_s": 1.0, "threads": 1, "driver": "epoll"},
            "sys": sys(),
            "start_unix_s": 1_700_000_000.0, "elapsed_s": 10.0, "messages": 1_000_000u64, "warmup_messages": 1000u64,
            "msgs_per_s": thr, "mb_per_s": 12.8, "rate_kept": null,
            "latency": {"count": 1_000_000u64, "min": 1000u64, "mean": 50000.0, "p50": 40000u64, "p75": 50000u64, "p90": 60000u64,
                        "p99": p99, "p99_9": p99 * 2, "p99_99": p99 * 3, "p99_999": p99 * 4, "max": p99 * 10},
            "latency_uncorrected": null,
            "errors": {"mismatch": 0, "reset": 0, "timeout": 0, "connect": 0, "other": 0}
        })
    };
    write_json(&d.join("a.json"), &load(100_000.0, 100_000));
    write_json(&d.join("b.json"), &load(101_000.0, 105_000));
    write_json(&d.join("c.json"), &load(101_000.0, 150_000));
    let (c, s) = compare(&d, "a.json", "b.json", "p99=10%,throughput=5%");
    assert_eq!(c, Some(0), "{s}");
    assert!(s.contains("load"), "{s}");
    assert!(
        s.contains("cannot see noise"),
        "a single load file is one value per side\n{s}"
    );
    let (c, s) = compare(&d, "a.json", "c.json", "p99=10%,throughput=5%");
    assert_eq!(c, Some(1), "{s}");
}

/// A cell whose runs have the given throughputs (p99 fixed), median and spread from them.
fn noisy_cell(thr: &[f64]) -> Cell {
    let runs: Vec<RunMetrics> = thr.iter().map(|&t| metrics(t, 200_000.0)).collect();
    let mut sorted = thr.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut c = cell(
        "epoll",
        "closed",
        50,
        metrics(sorted[sorted.len() / 2], 200_000.0),
        0,
    );
    c.min = metrics(sorted[0], 200_000.0);
    c.max = metrics(sorted[sorted.len() - 1], 200_000.0);
    c.runs = runs;
    c
}

#[test]
fn compare_sees_noise_strict_and_fingerprints() {
    let d = tmpdir("compare_noise");
    write_json(
        &d.join("base.json"),
        &bench(vec![noisy_cell(&[100_000.0, 80_000.0, 120_000.0])]),
    );
    // Median -10%, runs overlapping the base's: inconclusive, exit 0; --strict: exit 1.
    write_json(
        &d.join("noisy.json"),
        &bench(vec![noisy_cell(&[90_000.0, 118_000.0, 75_000.0])]),
    );
    // Every run far below: a regression whose interval lies beyond the limit.
    write_json(
        &d.join("slow.json"),
        &bench(vec![noisy_cell(&[50_000.0, 52_000.0, 55_000.0])]),
    );
    let (c, s) = compare(&d, "base.json", "noisy.json", "throughput=5%");
    assert_eq!(c, Some(0), "{s}");
    assert!(
        s.contains("inconclusive") && s.contains("95% interval") && s.contains("3/3"),
        "{s}"
    );
    let (b, h) = (d.join("base.json"), d.join("noisy.json"));
    let args = [
        "compare",
        b.to_str().unwrap(),
        h.to_str().unwrap(),
        "--max-regression",
        "throughput=5%",
        "--strict",
    ];
    let o = run(&args);
    assert_eq!(o.status.code(), Some(1), "{}", show(&args, &o));
    let (c, s) = compare(&d, "base.json", "slow.json", "throughput=5%");
    assert_eq!(c, Some(1), "{s}");
    assert!(
        s.contains("REGRESSION")
            && s.contains("regression: epoll/closed/c50/s128 throughput")
            && s.contains("95% interval ["),
        "{s}"
    );
    assert!(!s.contains("warning"), "same machine: no warning\n{s}");
    // Another machine: a warning naming what differs (the verdict stands).
    let mut other = bench(vec![noisy_cell(&[100_000.0, 80_000.0, 120_000.0])]);
    other.sys.cores = 64;
    other.sys.kernel = "6.1.0".into();
    write_json(&d.join("other.json"), &other);
    let (c, s) = compare(&d, "base.json", "other.json", "throughput=5%");
    assert_eq!(c, Some(0), "{s}");
    assert!(
        s.contains("warning: the results come from different machines")
            && s.contains("cores \"2\" -> \"64\"")
            && s.contains("kernel"),
        "{s}"
    );
    // One run per side: single values, and a note saying noise is not seen.
    write_json(
        &d.join("one.json"),
        &bench(vec![cell(
            "epoll",
            "closed",
            50,
            metrics(100_000.0, 200_000.0),
            1,
        )]),
    );
    let (c, s) = compare(&d, "one.json", "one.json", "throughput=5%");
    assert_eq!(c, Some(0), "{s}");
    assert!(s.contains("cannot see noise"), "{s}");
}

// ---------------------------------------------------------------- report

/// A results folder: 2 servers x 2 shapes, 2 runs each, real .hgrm and .hlog files.
fn fixture(d: &Path) -> BenchResults {
    std::fs::create_dir_all(d.join("hist")).unwrap();
    let mut cells = Vec::new();
    let mut seed = 1;
    for (mode, conns) in [("closed", 1u32), ("closed", 50)] {
        for (server, base, thr) in [
            ("uring", 30_000.0, 120_000.0),
            ("epoll", 36_000.0, 110_000.0),
        ] {
            let base = base * (1.0 + conns as f64 / 25.0);
            let mut c = cell(server, mode, conns, metrics(thr, base * 9.0), 2);
            if server == "epoll" {
                c.median.cpu_ns_per_msg = Some(9100.0);
                c.median.syscalls_per_msg = Some(3.2);
            }
            for run in 0..2 {
                let stem = format!("hist/{server}-{mode}-c{conns}-r{run}");
                let t0 = 1_700_000_000.0 + seed as f64 * 20.0;
                let mut log = Hlog {
                    start_unix_s: t0,
                    intervals: vec![],
                };
                let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
                for k in 0..8 {
                    seed += 1;
                    let mut h = synth(seed, 3000, base);
                    if k == 5 && server == "epoll" {
                        h.record_n(base as u64 * 400, 3).unwrap(); // a stall
                    }
                    total.add(&h).unwrap();
                    log.intervals.push(HlogInterval {
                        tag: Some("corrected".into()),
                        start_unix_s: t0 + k as f64,
                        length_s: 1.0,
                        hist: h,
                    });
                }
                write_log(&d.join(format!("{stem}.hlog")), &log);
                let mut buf = Vec::new();
                write_hgrm(&mut buf, &total).unwrap();
                std::fs::write(d.join(format!("{stem}.hgrm")), buf).unwrap();
                c.hgrm.push(format!("{stem}.hgrm"));
                c.hlog.push(format!("{stem}.hlog"));
            }
            cells.push(c);
        }
    }
    let r = bench(cells);
    write_json(&d.join("results.json"), &r);
    r
}

fn check_report(d: &Path, r: &BenchResults) {
    let html = std::fs::read_to_string(d.join("report.html")).unwrap();
    // 2 shapes: 2 spectra + 2 timelines + one small bar chart per shape for each of
    // throughput, CPU and syscalls per message (each shape on its own axis).
    assert_eq!(
        html.matches("<svg").count(),
        2 + 2 + 2 * 3,
        "one <svg> per chart"
    );
    // The matrix reads as a sentence, not as raw JSON.
    assert!(
        html.contains("<b>Matrix.</b>") && !html.contains("Matrix: <code>{"),
        "matrix as a sentence"
    );
    // The results table fits: the shape row carries mode/conns/size, not every row.
    assert!(
        html.contains("closed loop · ") && html.contains("<th class=n>syscalls / msg</th>"),
        "results table columns"
    );
    for bad in [
        "src=\"http",
        "href=\"http",
        "<script",
        "url(http",
        "@import",
    ] {
        assert!(
            !html.contains(bad),
            "report.html must be self-contained, found {bad:?}"
        );
    }
    assert!(
        !html.contains("http://")
            || html.matches("http://").count()
                == html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count(),
        "only the SVG namespace may mention http://"
    );
    assert!(!html.contains("https://"));
    assert!(
        html.contains("99.9%") && html.contains("Test CPU"),
        "percentile axis and machine facts"
    );
    let md = std::fs::read_to_string(d.join("report.md")).unwrap();
    assert!(md.contains("| server | features | mode |"), "{md}");
    for c in &r.cells {
        assert!(md.contains(&format!("| {} |", c.server)), "{md}");
    }
    assert!(
        md.contains("6.18.0-test") && md.contains("Versus epoll"),
        "{md}"
    );
    let gab: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("ci/github-action-benchmark.json")).unwrap())
            .unwrap();
    let arr = gab.as_array().unwrap();
    assert_eq!(arr.len(), r.cells.len() * 3);
    assert!(
        arr.iter()
            .all(|e| e["name"].is_string() && e["unit"].is_string() && e["value"].is_number())
    );
    let big: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.join("ci/github-action-benchmark-bigger.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(big.as_array().unwrap().len(), r.cells.len());
    let bencher: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("ci/bencher.json")).unwrap()).unwrap();
    let t = &bencher[&r.cells[0].id]["throughput"];
    assert!(t["value"].as_f64().unwrap() >= t["lower_value"].as_f64().unwrap());
    assert!(t["upper_value"].as_f64().unwrap() >= t["value"].as_f64().unwrap());
    assert!(bencher[&r.cells[0].id]["latency_p99_ns"]["value"].is_number());
}

#[test]
fn report_cmd_renders_fixture() {
    let d = tmpdir("report");
    let r = fixture(&d);
    let args = ["report", d.to_str().unwrap()];
    let o = run(&args);
    assert!(o.status.success(), "{}", show(&args, &o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("| uring |"),
        "{}",
        show(&args, &o)
    );
    assert!(
        o.stderr.is_empty(),
        "no warnings expected: {}",
        show(&args, &o)
    );
    check_report(&d, &r);
}

#[test]
fn write_reports_api_and_missing_files() {
    let d = tmpdir("report_api");
    let mut r = fixture(&d);
    ringmux::report::write_reports(&d, &r).unwrap();
    check_report(&d, &r);
    // Missing histogram files make warnings, not a failed report.
    r.cells[0].hlog = vec!["hist/nope.hlog".into()];
    r.cells[0].hgrm = vec!["hist/nope.hgrm".into()];
    write_json(&d.join("results.json"), &r);
    let args = ["report", d.to_str().unwrap()];
    let o = run(&args);
    assert!(o.status.success(), "{}", show(&args, &o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nope"),
        "{}",
        show(&args, &o)
    );
    let md = ringmux::report::headline_markdown(&r);
    assert_eq!(md.lines().count(), 2 + r.cells.len());
}

/// `report DIR` on a folder of `load` outputs (no results.json): a spectrum of every
/// series and a timeline per interval log.
#[test]
fn report_on_load_outputs() {
    let d = tmpdir("report_loads");
    let src = tmpdir("report_loads_src");
    let r = fixture(&src);
    // Keep only the histogram files, under the names `load --hlog/--hgrm` would use.
    let mut stems = Vec::new();
    for c in r.cells.iter().take(2) {
        let stem = c.server.replace(':', "_");
        std::fs::copy(src.join(&c.hlog[0]), d.join(format!("{stem}.hlog"))).unwrap();
        std::fs::copy(src.join(&c.hgrm[0]), d.join(format!("{stem}.hgrm"))).unwrap();
        stems.push(stem);
    }
    std::fs::copy(src.join(&r.cells[2].hgrm[0]), d.join("only-hgrm.hgrm")).unwrap();
    let args = ["report", d.to_str().unwrap()];
    let o = run(&args);
    assert!(o.status.success(), "{}", show(&args, &o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("5 histogram file(s), 3 series"),
        "{}",
        show(&args, &o)
    );
    let html = std::fs::read_to_string(d.join("report.html")).unwrap();
    // One spectrum with every series, one timeline per interval log.
    assert_eq!(html.matches("<svg").count(), 1 + 2, "{html}");
    for s in stems.iter().map(String::as_str).chain(["only-hgrm"]) {
        assert!(
            html.contains(&format!(">{s}<")) || html.contains(&format!("\n{s}\n")),
            "series {s} missing"
        );
    }
    // A folder with neither results.json nor histograms is bad input.
    let empty = tmpdir("report_loads_empty");
    let args = ["report", empty.to_str().unwrap()];
    let o = run(&args);
    assert_eq!(o.status.code(), Some(2), "{}", show(&args, &o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("neither results.json"),
        "{}",
        show(&args, &o)
    );
}

#[test]
fn report_bad_input() {
    let d = tmpdir("report_bad");
    for (content, what) in [
        (None, "missing"),
        (Some("{"), "not JSON"),
        (Some(r#"{"schema":"ringmux.load/1"}"#), "wrong schema"),
    ] {
        if let Some(c) = content {
            std::fs::write(d.join("results.json"), c).unwrap();
        }
        let args = ["report", d.to_str().unwrap()];
        let o = run(&args);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{what}: bad input exits 2: {}",
            show(&args, &o)
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{what}: {}",
            show(&args, &o)
        );
        assert!(!err.contains("panicked"));
    }
}
