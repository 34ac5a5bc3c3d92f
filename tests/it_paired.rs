//! The bench's processes and pairs: external servers stopped as a whole process group
//! (wrappers without exec, strace), base against head in one run (`--versus`), and
//! `compare --pair` inside one results file.

use std::time::{Duration, Instant};

use crate::util::{BIN, Finished, assert_usage_error, run_bounded, scratch_dir};

/// Live processes whose command line mentions `marker` (zombies excluded).
fn processes_with(marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(marker) {
            out.push(format!("{pid}: {cmd}"));
        }
    }
    out
}

/// The processes naming `marker` still alive after a short wait (which only absorbs
/// /proc showing an exiting process for a moment).
fn left_over(marker: &str) -> Vec<String> {
    let t0 = Instant::now();
    let mut left = processes_with(marker);
    while !left.is_empty() && t0.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(50));
        left = processes_with(marker);
    }
    left
}

/// A wrapper script that starts the server without `exec` (so the shell stays its
/// parent), and the same server under `strace -f`: after a two-repeat bench no process
/// of either is left, and every run measured the server (not the idle wrapper).
#[test]
fn external_servers_stop_with_their_whole_group() {
    let d = scratch_dir("paired-external");
    let marker = d.join("marker");
    std::fs::create_dir_all(&marker).unwrap();
    let wrap = d.join("wrap.sh");
    std::fs::write(
        &wrap,
        format!(
            "#!/bin/sh\n# starts the server as a child, no exec, as CI wrappers often do\n{BIN} serve --quiet --backend epoll --addr \"$1\" --json {}/wrapped.json\necho wrapper done\n",
            marker.display()
        ),
    )
    .unwrap();
    let mut externals = vec![format!("wrapped=sh {} {{addr}}", wrap.display())];
    let strace = std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if strace {
        externals.push(format!(
            "traced=strace -f -qq -o /dev/null {BIN} serve --quiet --backend epoll --addr {{addr}} --json {}/traced.json",
            marker.display()
        ));
    } else {
        println!("skipped: the strace variant (strace not installed)");
    }
    let out = d.join("out");
    let mut args = vec![
        "bench".to_string(),
        "--quick".into(),
        "--backends".into(),
        "epoll".into(),
        "--conns".into(),
        "5".into(),
        "--duration".into(),
        "0.3".into(),
        "--repeat".into(),
        "2".into(),
        "--quiet-secs".into(),
        "0".into(),
        "--out".into(),
        out.to_str().unwrap().into(),
    ];
    for e in &externals {
        args.push("--external".into());
        args.push(e.clone());
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_bounded(&argv, Duration::from_secs(180));
    assert!(run.status.success(), "{}", run.explain());
    // The group is reaped before the bench moves on, so this holds at once.
    let left = left_over(marker.to_str().unwrap());
    assert!(
        left.is_empty(),
        "outlived the bench: {left:?}\n{}",
        run.explain()
    );
    // The wrapped server was measured: its CPU (the group's, not the idle shell's).
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let cells = r["cells"].as_array().unwrap();
    for name in ["wrapped"].into_iter().chain(strace.then_some("traced")) {
        let c = cells
            .iter()
            .find(|c| c["server"] == name)
            .unwrap_or_else(|| panic!("no {name} cell\n{}", run.explain()));
        let cpu = c["median"]["cpu_ns_per_msg"].as_f64().unwrap_or(0.0);
        assert!(cpu > 0.0, "{name}: no server CPU measured: {}", c["median"]);
    }
}

/// `bench --quick` at 5 connections on `backends` into `out`, with `extra`: it must
/// succeed; its output and results.json.
fn small_bench(
    out: &std::path::Path,
    backends: &str,
    duration: &str,
    repeat: &str,
    extra: &[&str],
) -> (Finished, serde_json::Value) {
    let mut args = vec![
        "bench",
        "--quick",
        "--backends",
        backends,
        "--conns",
        "5",
        "--duration",
        duration,
        "--repeat",
        repeat,
        "--quiet-secs",
        "0",
        "--no-peers",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--out", out.to_str().unwrap()]);
    let run = run_bounded(&args, Duration::from_secs(180));
    assert!(run.status.success(), "{}", run.explain());
    let r = serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    (run, r)
}

/// `bench --versus BIN`: each ringmux server also runs from the base binary, named
/// `SERVER@base`, base and head back to back in each repeat and in alternating order
/// (base first in repeat 1, head first in repeat 2); the report shows the base-vs-head
/// view; `compare --pair` judges the pair inside results.json.
#[test]
fn versus_runs_base_and_head_interleaved() {
    let d = scratch_dir("paired-versus");
    let out = d.join("out");
    let (run, r) = small_bench(&out, "epoll", "0.3", "2", &["--versus", BIN]);
    assert!(
        run.stdout.contains("### Base vs head")
            && run.stdout.contains("| epoll/closed/c5/s128 | 2/2 |"),
        "no base-vs-head view\n{}",
        run.explain()
    );
    let cells = r["cells"].as_array().unwrap();
    let servers: Vec<&str> = cells
        .iter()
        .map(|c| c["server"].as_str().unwrap())
        .collect();
    assert!(
        servers.contains(&"epoll@base") && servers.contains(&"epoll"),
        "{servers:?}"
    );
    // The order: when each closed-loop run's load started (its own result file).
    let start = |server: &str, rep: u32| -> f64 {
        let p = out
            .join("runs")
            .join(format!("{server}_closed_c5_s128-r{rep}.json"));
        let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        j["start_unix_s"].as_f64().unwrap()
    };
    assert!(
        start("epoll@base", 1) < start("epoll", 1),
        "repeat 1: base first"
    );
    assert!(
        start("epoll", 2) < start("epoll@base", 2),
        "repeat 2: head first"
    );
    assert!(
        start("epoll@base", 1) < start("epoll", 2),
        "repeats in order"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Base vs head"), "no view in report.html");
    // The same build on both sides, judged with no limit: every row ok or unjudged.
    assert_pair_passes(&out, "@base", "epoll/closed/c5/s128");
}

/// `bench --versus BIN --versus-mode together`: base and head serve at the same time,
/// each with its own load, in every repeat; both keep their runs, pair by pair, with the
/// server's CPU of each; results.json and the report say how they ran. The mode is bad
/// usage without --versus, or with --idle-conns.
#[test]
fn versus_together_runs_base_and_head_at_once() {
    let d = scratch_dir("paired-together");
    let out = d.join("out");
    let (run, r) = small_bench(
        &out,
        "epoll",
        "0.4",
        "3",
        &["--versus", BIN, "--versus-mode", "together"],
    );
    assert!(
        run.stdout.contains("which ran together")
            && run.stdout.contains("| epoll/closed/c5/s128 | 3/3 |"),
        "no base-vs-head view of a together run\n{}",
        run.explain()
    );
    assert_eq!(r["args"]["versus_mode"], "together", "{}", r["args"]);
    for c in r["cells"].as_array().unwrap() {
        let runs = c["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 3, "{}: {} runs", c["id"], runs.len());
        for run in runs {
            assert!(
                run["cpu_ns_per_msg"].as_f64().unwrap() > 0.0
                    && run["msgs_per_s"].as_f64().unwrap() > 0.0,
                "{}: a run without server CPU or messages: {run}",
                c["id"]
            );
        }
    }
    assert_ran_together(&out, "epoll@base", "epoll", 5, 3);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("which ran together"),
        "report.html does not say how they ran"
    );

    let bad = [
        (
            vec!["bench", "--quick", "--versus-mode", "together"],
            "--versus-mode together pairs the builds of --versus: give --versus BASE",
        ),
        (
            vec!["bench", "--quick", "--versus-mode", "alternate"],
            "--versus-mode alternate pairs the builds of --versus: give --versus BASE",
        ),
        (
            vec![
                "bench",
                "--idle-conns",
                "10",
                "--versus",
                BIN,
                "--versus-mode",
                "together",
            ],
            "--versus-mode together applies to the throughput matrix, not to --idle-conns",
        ),
    ];
    for (args, msg) in bad {
        assert_usage_error(&args, &[msg]);
    }
}

/// `compare OUT/results.json --pair PAIR` with no real limit: exit 0, and `cell` judged.
fn assert_pair_passes(out: &std::path::Path, pair: &str, cell: &str) {
    let results = out.join("results.json");
    let o = run_bounded(
        &[
            "compare",
            results.to_str().unwrap(),
            "--pair",
            pair,
            "--max-regression",
            "throughput=1000%",
        ],
        Duration::from_secs(20),
    );
    assert_eq!(o.code(), Some(0), "{}", o.explain());
    assert!(o.stdout.contains(cell), "{}", o.explain());
}

/// Every run of `a` and of `b` (servers of one bench folder `out`, at `conns`
/// connections, `reps` repeats), in both shapes of `--quick`, ran at the same time: the
/// two loads' windows (each run's own result file) overlap by more than 0.3 s.
fn assert_ran_together(out: &std::path::Path, a: &str, b: &str, conns: u32, reps: u32) {
    let window = |server: &str, shape: &str, rep: u32| -> (f64, f64) {
        let p = out
            .join("runs")
            .join(format!("{server}_{shape}_c{conns}_s128-r{rep}.json"));
        let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let s = j["start_unix_s"].as_f64().unwrap();
        (s, s + j["elapsed_s"].as_f64().unwrap())
    };
    for shape in ["closed", "open"] {
        let prefix = format!("{b}_{shape}");
        let suffix = format!("_c{conns}_s128-r1.json");
        let names: Vec<String> = std::fs::read_dir(out.join("runs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&prefix) && n.ends_with(&suffix))
            .collect();
        let Some(name) = names.first() else {
            panic!("no {shape} run of {b} in runs/");
        };
        // `closed` or `open-RATE`: the shape part of the file name.
        let shape = name
            .trim_start_matches(&format!("{b}_"))
            .trim_end_matches(&suffix)
            .to_string();
        for rep in 1..=reps {
            let (sa, ea) = window(a, &shape, rep);
            let (sb, eb) = window(b, &shape, rep);
            let overlap = ea.min(eb) - sa.max(sb);
            assert!(
                overlap > 0.3,
                "{shape} repeat {rep}: {a} [{sa:.3}, {ea:.3}] and {b} [{sb:.3}, {eb:.3}] overlap only {overlap:.3} s"
            );
        }
    }
}

/// `bench --together`: the servers of every cell run at the same time, each with its
/// own load, so a pair of them judged by `compare --pair` met the same noise; bad usage
/// with --versus, --idle-conns or --preset.
#[test]
fn together_runs_every_server_of_a_cell_at_once() {
    let d = scratch_dir("together");
    let out = d.join("out");
    let (_, r) = small_bench(&out, "epoll,poll", "0.4", "3", &["--together"]);
    assert_eq!(r["args"]["together"], true, "{}", r["args"]);
    assert!(
        r["notes"].to_string().contains("ran together (--together)"),
        "no note says how the servers ran: {}",
        r["notes"]
    );
    assert_ran_together(&out, "epoll", "poll", 5, 3);
    assert_pair_passes(&out, "epoll,poll", "poll/closed/c5/s128");

    let bad = [
        (
            vec!["bench", "--quick", "--together", "--versus", BIN],
            "--together runs different servers at once; with --versus, --versus-mode together runs each base with its head",
        ),
        (
            vec!["bench", "--together", "--idle-conns", "10"],
            "--together applies to the throughput matrix, not to --idle-conns",
        ),
        (
            vec!["bench", "--together", "--preset", "models"],
            "--preset models chooses its own servers and loads: leave out --together",
        ),
    ];
    for (args, msg) in bad {
        assert_usage_error(&args, &[msg]);
    }
}

/// `compare FILE --pair BASE,HEAD` on made-up results: a clear drop of the head is a
/// regression (exit 1), equal sides pass (exit 0), a bad pair is bad input (exit 2),
/// and --pair with a second file is refused by the command line. A limit scoped to a
/// backend or family beats the unscoped one; an unknown scope is one line, exit 2.
#[test]
fn compare_pair_judges_inside_one_file() {
    use crate::util::fixtures::{bench, noisy_cell};
    let d = scratch_dir("paired-compare");
    let cell = |server: &str, thr: &[f64]| {
        let mut c = noisy_cell(thr);
        c.id = c.id.replacen("epoll", server, 1);
        c.server = server.into();
        c
    };
    let write = |name: &str, head: &[f64]| {
        let p = d.join(name);
        let r = bench(vec![
            cell("epoll@base", &[100_000.0, 101_000.0, 99_000.0]),
            cell("epoll", head),
        ]);
        std::fs::write(&p, serde_json::to_vec_pretty(&r).unwrap()).unwrap();
        p
    };
    let cmp_with = |p: &std::path::Path, pair: &str, limits: &str| {
        run_bounded(
            &[
                "compare",
                p.to_str().unwrap(),
                "--pair",
                pair,
                "--max-regression",
                limits,
            ],
            Duration::from_secs(20),
        )
    };
    let cmp = |p: &std::path::Path, pair: &str| cmp_with(p, pair, "throughput=5%");
    let slow = write("slow.json", &[80_000.0, 81_000.0, 79_000.0]);
    for pair in ["epoll@base,epoll", "@base"] {
        let o = cmp(&slow, pair);
        assert_eq!(o.code(), Some(1), "{}", o.explain());
        assert!(
            o.stderr
                .contains("regression: epoll/closed/c50/s128 throughput"),
            "{}",
            o.explain()
        );
        assert!(
            o.stdout.contains("[-20%, -20%]"),
            "the paired bootstrap interval: {}",
            o.explain()
        );
    }
    // The head is 20% slower: its backend's limit, then its family's, decide.
    for (limits, code) in [
        ("throughput=50%,throughput@epoll=5%", 1),
        ("throughput=5%,throughput@readiness=30%", 0),
        (
            "throughput=5%,throughput@readiness=30%,throughput@epoll=10%",
            1,
        ),
        ("throughput@uring=5%", 0),
    ] {
        let o = cmp_with(&slow, "@base", limits);
        assert_eq!(o.code(), Some(code), "{limits}: {}", o.explain());
    }
    let o = cmp_with(&slow, "@base", "throughput@epol=5%");
    assert_eq!(o.code(), Some(2), "{}", o.explain());
    assert!(
        o.stderr.contains("unknown scope \"epol\"") && o.stderr.trim_end().lines().count() == 1,
        "{}",
        o.explain()
    );
    let same = write("same.json", &[100_000.0, 101_000.0, 99_000.0]);
    assert_eq!(cmp(&same, "@base").code(), Some(0));
    let o = cmp(&same, "epoll@base,uring");
    assert_eq!(o.code(), Some(2), "{}", o.explain());
    assert_eq!(o.stderr.trim_end().lines().count(), 1, "{}", o.explain());
    let o = run_bounded(
        &[
            "compare",
            same.to_str().unwrap(),
            slow.to_str().unwrap(),
            "--pair",
            "@base",
        ],
        Duration::from_secs(20),
    );
    assert_eq!(o.code(), Some(2), "{}", o.explain());
}

/// A bench stopped by SIGTERM (or a Ctrl-C, which reaches only the bench's own process
/// group now that each server has one) stops the server group and the load process
/// it was running, and exits 128 + 15, long before the 60 s run would have ended.
#[test]
fn a_signalled_bench_stops_its_servers_and_loads() {
    use crate::util::Running;
    let d = scratch_dir("paired-signal");
    let out = d.join("out");
    let mut cmd = std::process::Command::new(BIN);
    cmd.args([
        "bench",
        "--backends",
        "epoll",
        "--conns",
        "5",
        "--duration",
        "60",
    ])
    .args(["--repeat", "1", "--quiet-secs", "0", "--no-peers", "--out"])
    .arg(&out);
    let bench = Running::spawn(&mut cmd);
    // The server and the load both name files under `out` on their command lines.
    let marker = out.to_str().unwrap();
    let running = |what: &str| {
        processes_with(marker)
            .iter()
            .any(|p| p.contains(&format!("ringmux {what}")))
    };
    let t0 = Instant::now();
    while !(running("serve") && running("load")) && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        running("serve") && running("load"),
        "no server and load: {:?}",
        processes_with(marker)
    );
    // SAFETY: kill(2) on the bench process this test spawned.
    unsafe { libc::kill(bench.child.id() as i32, libc::SIGTERM) };
    let done = bench.finish(Duration::from_secs(30));
    assert_eq!(done.code(), Some(128 + 15), "{}", done.explain());
    assert!(
        done.stderr.contains("bench interrupted"),
        "{}",
        done.explain()
    );
    let t0 = Instant::now();
    let mut left = processes_with(marker);
    while !left.is_empty() && t0.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(50));
        left = processes_with(marker);
    }
    assert!(
        left.is_empty(),
        "outlived the bench: {left:?}\n{}",
        done.explain()
    );
}
