//! `ringmux bench` end to end: the quick default matrix against real servers (and the
//! reference peers when built), two server threads, the idle-connections bench.

use std::time::Duration;

use std::path::Path;

use ringmux::results::schema::BenchResults;

use crate::util::{Finished, Variant, peers_dir, run_bounded};

/// `ringmux ARGS`, a bench writing into `out`, to its end (at most `limit`) and exit 0:
/// the run and the results.json it wrote.
fn bench(args: &[&str], out: &Path, limit: Duration) -> (Finished, BenchResults) {
    let run = run_bounded(args, limit);
    assert!(run.status.success(), "bench failed\n{}", run.explain());
    let r = serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap())
        .unwrap_or_else(|e| panic!("results.json does not parse ({e})\n{}", run.explain()));
    (run, r)
}

/// `--server-threads 2`: ringmux servers run two event loops, the merged SIGUSR1
/// snapshots still give their syscall counts, and results.json records the threads.
#[test]
fn bench_with_two_server_threads() {
    let out = std::env::temp_dir().join(format!("ringmux-bench-t2-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let out_s = out.to_str().unwrap();
    let args = [
        "bench",
        "--quick",
        "--backends",
        "uring,epoll",
        "--conns",
        "20",
        "--duration",
        "0.3",
        "--server-threads",
        "2",
        "--no-peers",
        "--out",
        out_s,
    ];
    let (_, r) = bench(&args, &out, Duration::from_secs(120));
    assert_eq!(r.args["server_threads"], 2, "{}", r.args);
    assert!(
        r.notes.iter().any(|n| n.contains("2 event loops")),
        "{:?}",
        r.notes
    );
    let mut ringmux_cells = 0;
    for c in &r.cells {
        if c.server == "epoll" || c.server.starts_with("uring") {
            ringmux_cells += 1;
            assert_eq!(c.server_threads, Some(2), "{}", c.id);
            assert!(
                c.median.syscalls_per_msg.is_some_and(|v| v > 0.0),
                "{}: no syscalls from the merged snapshots",
                c.id
            );
        } else {
            assert_eq!(c.server_threads, None, "{}: not a ringmux server", c.id);
        }
        assert_eq!(c.median.errors, 0, "{}", c.id);
    }
    assert!(
        ringmux_cells >= 2,
        "{:?}",
        r.cells.iter().map(|c| &c.id).collect::<Vec<_>>()
    );
    // The servers' own stats files say two loops served.
    let stats: Vec<_> = std::fs::read_dir(out.join("runs"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".server.json"))
        .collect();
    assert!(!stats.is_empty(), "no server stats files");
    for e in stats {
        let j: serde_json::Value =
            serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
        assert_eq!(j["threads"], 2, "{}: {j}", e.path().display());
        assert_eq!(
            j["per_thread"].as_array().map(Vec::len),
            Some(2),
            "{}",
            e.path().display()
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// `bench --quick` end to end: real servers, real load, results.json valid, one
/// SVG per chart in a report.html that needs no network.
#[test]
fn quick_bench_end_to_end() {
    let out = std::env::temp_dir().join(format!("ringmux-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let out_s = out.to_str().unwrap();
    // The reference peers: the peers crate's binaries beside ringmux, built once by
    // the tests when missing (`peers_dir`).
    let peers = match peers_dir() {
        Ok(_) => true,
        Err(why) => {
            eprintln!(
                "quick_bench_end_to_end: no reference peers ({why}): running with --no-peers"
            );
            false
        }
    };
    let mut args = vec![
        "bench",
        "--quick",
        "--duration",
        "0.5",
        "--conns",
        "1,50",
        "--out",
        out_s,
    ];
    if !peers {
        args.push("--no-peers");
    }
    let (run, r) = bench(&args, &out, Duration::from_secs(180));
    assert!(
        !run.stderr.contains("building the reference peers"),
        "the peers were there: nothing to build\n{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("| server |") && run.stdout.contains("report.html"),
        "{}",
        run.stdout
    );

    assert_eq!(r.schema, "ringmux.bench/1");
    let servers: std::collections::BTreeSet<&str> =
        r.cells.iter().map(|c| c.server.as_str()).collect();
    assert!(servers.contains("epoll"), "{servers:?}");
    if peers {
        // The default matrix compares with the peers a Rust user would pick, and says
        // which versions ran.
        assert!(
            servers.contains("tokio") && servers.contains("monoio"),
            "{servers:?}"
        );
        assert!(
            r.args["peers"]["monoio"]
                .as_str()
                .is_some_and(|v| v.starts_with("monoio 0.")),
            "{}",
            r.args
        );
    }
    let modes: std::collections::BTreeSet<&str> = r.cells.iter().map(|c| c.mode.as_str()).collect();
    assert!(
        modes.contains("closed") && modes.contains("open"),
        "{modes:?}"
    );
    for c in &r.cells {
        let m = &c.median;
        assert!(m.msgs_per_s > 0.0 && m.p99_ns > 0.0, "{}: {m:?}", c.id);
        assert_eq!(m.errors, 0, "{}", c.id);
        assert!(
            m.cpu_ns_per_msg.is_some_and(|v| v > 0.0),
            "{}: no server CPU",
            c.id
        );
        if c.server == "epoll" || c.server.starts_with("uring") {
            assert!(
                m.syscalls_per_msg.is_some_and(|v| v > 0.0),
                "{}: ringmux must report syscalls",
                c.id
            );
        }
        for f in c.hgrm.iter().chain(&c.hlog) {
            assert!(out.join(f).is_file(), "{}: missing {f}", c.id);
        }
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let svgs = html.matches("<svg").count();
    // Per shape: one spectrum, one timeline, and one small bar chart for each of
    // throughput, CPU and syscalls per message.
    let shapes: std::collections::BTreeSet<String> = r
        .cells
        .iter()
        .map(|c| c.id.split_once('/').unwrap().1.to_string())
        .collect();
    assert_eq!(svgs, shapes.len() * 5, "SVG charts in report.html");
    // At least 10 intervals per run for the latency-over-time chart (0.5 s runs).
    assert_eq!(r.args["interval_s"], 0.05, "{}", r.args);
    let log = ringmux::results::hlog::read_hlog_file(&out.join(&r.cells[0].hlog[0])).unwrap();
    assert!(
        log.intervals.len() >= 10,
        "{} intervals in a 0.5 s run",
        log.intervals.len()
    );
    if peers {
        assert!(
            html.contains("monoio 0."),
            "the peer's version is in the report"
        );
    }
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http") && !html.contains("<script"),
        "report.html must open offline"
    );
    for f in [
        "report.md",
        "ci/github-action-benchmark.json",
        "ci/bencher.json",
    ] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// `bench --idle-conns 500 --quick`: every server measured, results.json carries
/// the idle section, report.md and report.html the table, compare the metric.
#[test]
fn idle_bench_end_to_end() {
    let out = std::env::temp_dir().join(format!("ringmux-bench-idle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let (run, r) = bench(
        &[
            "bench",
            "--idle-conns",
            "500",
            "--quick",
            "--backends",
            "uring,epoll",
            "--no-peers",
            "--out",
            out.to_str().unwrap(),
        ],
        &out,
        Duration::from_secs(120),
    );
    assert!(
        run.stdout
            .contains("| server | features | conns | bytes/conn")
            && run.stdout.contains("report.html"),
        "{}",
        run.stdout
    );

    assert_eq!(r.schema, "ringmux.bench/1");
    assert!(
        r.cells.is_empty(),
        "an idle run measures no throughput matrix"
    );
    let idle = r.idle.as_ref().expect("results.json has the idle section");
    assert_eq!((idle.conns, idle.round_trip_bytes), (500, 16));
    let planned: Vec<String> = serde_json::from_value(r.args["servers"].clone()).unwrap();
    let measured: Vec<&str> = idle.servers.iter().map(|s| s.server.as_str()).collect();
    assert_eq!(planned, measured, "one idle entry per planned server");
    assert!(measured.contains(&"epoll"), "{measured:?}");
    // A plain `uring` stands for every level the kernel has.
    if Variant::UringBaseline.available().is_ok() {
        assert!(measured.contains(&"uring:baseline"), "{measured:?}");
    }
    if Variant::UringFastpoll.available().is_ok() {
        assert!(measured.contains(&"uring:fastpoll"), "{measured:?}");
    }
    for s in &idle.servers {
        assert_eq!(s.runs.len(), 1, "{}: --quick is one repeat", s.id);
        assert_eq!(s.id, format!("{}/idle/c500", s.server));
        let run = &s.runs[0];
        assert!(
            run.rss_before_kib > 0 && run.rss_after_kib > 0,
            "{}: {run:?}",
            s.id
        );
        assert!(
            run.server_open >= 500,
            "{}: server reported {} open",
            s.id,
            run.server_open
        );
        assert!(
            s.bytes_per_conn.is_finite() && s.bytes_per_conn == run.bytes_per_conn,
            "{}: {s:?}",
            s.id
        );
        if s.server.starts_with("uring") {
            assert_eq!(
                s.features.as_deref(),
                s.server.strip_prefix("uring:"),
                "{}",
                s.id
            );
        }
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Idle connections: resident memory"), "{md}");
    assert!(
        md.contains("| server | features | conns | bytes/conn median [min–max] |"),
        "{md}"
    );
    assert!(
        md.contains("not in the process's RSS"),
        "the report must say kernel socket memory is not counted: {md}"
    );
    for s in &idle.servers {
        assert!(md.contains(&format!("| {} |", s.server)), "{md}");
    }
    assert!(
        !md.contains("## Results"),
        "no empty throughput table: {md}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Idle connections: resident memory"));
    assert_eq!(
        html.matches("<svg").count(),
        1,
        "one chart: bytes per connection"
    );
    let gab: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("ci/github-action-benchmark.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(gab.as_array().unwrap().len(), idle.servers.len());

    let results = out.join("results.json");
    let cmp = run_bounded(
        &[
            "compare",
            results.to_str().unwrap(),
            results.to_str().unwrap(),
            "--max-regression",
            "memory=10%",
        ],
        Duration::from_secs(20),
    );
    assert!(
        cmp.status.success(),
        "compare an idle run with itself\n{}",
        cmp.explain()
    );
    assert_eq!(
        cmp.stdout
            .lines()
            .filter(|l| l.contains(" memory "))
            .count(),
        idle.servers.len(),
        "{}",
        cmp.stdout
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// More connections than descriptors or local ports allow: one line, no panic.
#[test]
fn idle_bench_too_many_connections_is_one_line() {
    let out = std::env::temp_dir().join(format!("ringmux-bench-idle-big-{}", std::process::id()));
    let Finished {
        status,
        stdout,
        stderr,
        ..
    } = run_bounded(
        &[
            "bench",
            "--idle-conns",
            "100000",
            "--backends",
            "epoll",
            "--no-peers",
            "--out",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(1), "{stdout}\n{stderr}");
    let last = stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with("ringmux: error: --idle-conns 100000: needs"),
        "{stderr}"
    );
    assert!(
        last.contains("RLIMIT_NOFILE") || last.contains("ip_local_port_range"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!out.join("results.json").exists());
    let _ = std::fs::remove_dir_all(&out);
}
