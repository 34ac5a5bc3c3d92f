//! Synthetic measurements for the report tests: histograms, interval logs, bench
//! results with chosen figures, and the files they are read from.

use std::path::Path;

use hdrhistogram::Histogram;
use ringmux::results::hlog::{Hlog, write_hlog};
use ringmux::results::schema::{BENCH_SCHEMA, BenchResults, Cell, RunMetrics};
use ringmux::sysinfo::SysInfo;

/// Deterministic latency-like samples (ns): a body around `base` and a thin tail.
pub fn synth(seed: u64, n: usize, base: f64) -> Histogram<u64> {
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

/// The machine every fixture ran on.
pub fn sys() -> SysInfo {
    SysInfo {
        ringmux_version: "0.1.0".into(),
        kernel: "6.18.0-test".into(),
        cpu_model: "Test CPU @ 3.0GHz".into(),
        cores: 2,
        hostname: "testbox".into(),
    }
}

/// Write `log` as an .hlog file.
pub fn write_log(path: &Path, log: &Hlog) {
    let mut buf = Vec::new();
    write_hlog(&mut buf, log).unwrap();
    std::fs::write(path, buf).unwrap();
}

/// Figures of one run: throughput `thr`, p99 `p99` ns, the other percentiles from it.
pub fn metrics(thr: f64, p99: f64) -> RunMetrics {
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

/// A cell of `runs` runs of `m`, its spread a little around it.
pub fn cell(server: &str, mode: &str, conns: u32, m: RunMetrics, runs: usize) -> Cell {
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
        empty_runs: 0,
    }
}

/// A bench result on [`sys`] holding `cells`.
pub fn bench(cells: Vec<Cell>) -> BenchResults {
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

/// A cell whose runs have the given throughputs (p99 fixed), median and spread from them.
pub fn noisy_cell(thr: &[f64]) -> Cell {
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

/// Write `v` as pretty JSON.
pub fn write_json(path: &Path, v: &impl serde::Serialize) {
    std::fs::write(path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}
