//! `compare` and `report` through the real binary, over result files made here with
//! chosen figures.

use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use ringmux::results::hgrm::write_hgrm;
use ringmux::results::hlog::{Hlog, HlogInterval};
use ringmux::results::schema::{BenchResults, LOAD_SCHEMA, RunMetrics};

use crate::util::fixtures::{bench, cell, metrics, noisy_cell, synth, sys, write_json, write_log};
use crate::util::{run_bounded, scratch_dir};

const LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- compare

fn compare(d: &Path, base: &str, head: &str, limits: &str) -> (Option<i32>, String) {
    let (b, h) = (d.join(base), d.join(head));
    let args = [
        "compare",
        b.to_str().unwrap(),
        h.to_str().unwrap(),
        "--max-regression",
        limits,
    ];
    let o = run_bounded(&args, LIMIT);
    let s = o.explain();
    assert!(!s.contains("panicked"), "{s}");
    (o.code(), s)
}

#[test]
fn compare_exit_codes() {
    let d = scratch_dir("report-compare");
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

    // A cell whose every run measured nothing (bench left them out and counted them)
    // is not a 0 to judge: it is named as not compared, not as a collapse.
    let mut empty = cell("epoll", "closed", 50, RunMetrics::default(), 0);
    empty.empty_runs = 3;
    write_json(
        &d.join("empty.json"),
        &bench(vec![
            cell("uring", "closed", 50, metrics(100_000.0, 200_000.0), 3),
            empty,
        ]),
    );
    let (c, s) = compare(&d, "base.json", "empty.json", "p99=10%,throughput=5%");
    assert_eq!(c, Some(0), "{s}");
    assert!(
        s.contains("only in base (not compared): epoll/closed/c50/s128")
            && !s.contains("regression:"),
        "{s}"
    );

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
    let d = scratch_dir("report-compare-load");
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

#[test]
fn compare_sees_noise_strict_and_fingerprints() {
    let d = scratch_dir("report-compare-noise");
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
    let o = run_bounded(&args, LIMIT);
    assert_eq!(o.code(), Some(1), "{}", o.explain());
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
    let d = scratch_dir("report-report");
    let r = fixture(&d);
    let args = ["report", d.to_str().unwrap()];
    let o = run_bounded(&args, LIMIT);
    assert!(o.status.success(), "{}", o.explain());
    assert!(o.stdout.contains("| uring |"), "{}", o.explain());
    assert!(o.stderr.is_empty(), "no warnings expected: {}", o.explain());
    check_report(&d, &r);
}

#[test]
fn write_reports_api_and_missing_files() {
    let d = scratch_dir("report-report-api");
    let mut r = fixture(&d);
    ringmux::report::write_reports(&d, &r).unwrap();
    check_report(&d, &r);
    // Missing histogram files make warnings, not a failed report.
    r.cells[0].hlog = vec!["hist/nope.hlog".into()];
    r.cells[0].hgrm = vec!["hist/nope.hgrm".into()];
    write_json(&d.join("results.json"), &r);
    let args = ["report", d.to_str().unwrap()];
    let o = run_bounded(&args, LIMIT);
    assert!(o.status.success(), "{}", o.explain());
    assert!(o.stderr.contains("nope"), "{}", o.explain());
    let md = ringmux::report::headline_markdown(&r);
    assert_eq!(md.lines().count(), 2 + r.cells.len());
}

/// `report DIR` on a folder of `load` outputs (no results.json): a spectrum of every
/// series and a timeline per interval log.
#[test]
fn report_on_load_outputs() {
    let d = scratch_dir("report-report-loads");
    let src = scratch_dir("report-report-loads-src");
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
    let o = run_bounded(&args, LIMIT);
    assert!(o.status.success(), "{}", o.explain());
    assert!(
        o.stdout.contains("5 histogram file(s), 3 series"),
        "{}",
        o.explain()
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
    let empty = scratch_dir("report-report-loads-empty");
    let args = ["report", empty.to_str().unwrap()];
    let o = run_bounded(&args, LIMIT);
    assert_eq!(o.code(), Some(2), "{}", o.explain());
    assert!(o.stderr.contains("neither results.json"), "{}", o.explain());
}

#[test]
fn report_bad_input() {
    let d = scratch_dir("report-report-bad");
    for (content, what) in [
        (None, "missing"),
        (Some("{"), "not JSON"),
        (Some(r#"{"schema":"ringmux.load/1"}"#), "wrong schema"),
    ] {
        if let Some(c) = content {
            std::fs::write(d.join("results.json"), c).unwrap();
        }
        let args = ["report", d.to_str().unwrap()];
        let o = run_bounded(&args, LIMIT);
        assert_eq!(
            o.code(),
            Some(2),
            "{what}: bad input exits 2: {}",
            o.explain()
        );
        let err = &o.stderr;
        assert_eq!(err.trim_end().lines().count(), 1, "{what}: {}", o.explain());
        assert!(!err.contains("panicked"));
    }
}
