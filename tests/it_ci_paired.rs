//! scripts/ci-bench.sh --paired: head and the merge-base benched in one run and gated
//! on each other; a merge-base that cannot be built is exit 2 with one line.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::{BIN, Finished, Running, record_skip, scratch_dir};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn git(dir: &Path, args: &[&str]) -> Finished {
    Running::spawn(
        Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(dir),
    )
    .finish(Duration::from_secs(60))
}

/// A fresh clone of this checkout's history, or None (recorded as a skip) outside one.
fn clone(test: &str) -> Option<PathBuf> {
    let d = scratch_dir(test);
    let c = d.join("clone");
    let o = Running::try_spawn(
        Command::new("git")
            .args(["clone", "-q", "--no-hardlinks"])
            .arg(root())
            .arg(&c),
    )
    .ok()?
    .finish(Duration::from_secs(120));
    if !o.status.success() {
        record_skip(test, "-", "not in a git checkout (git clone failed)");
        return None;
    }
    // The script under test is this checkout's, whatever is committed.
    std::fs::copy(
        root().join("scripts/ci-bench.sh"),
        c.join("scripts/ci-bench.sh"),
    )
    .unwrap();
    Some(c)
}

/// The merge-base's Cargo.toml does not parse: the build fails at once and the script
/// says so in one line, exit 2, before any bench ran.
#[test]
fn ci_bench_paired_exits_2_when_the_merge_base_cannot_be_built() {
    let test = "ci_bench_paired_exits_2_when_the_merge_base_cannot_be_built";
    let Some(c) = clone("ci-paired-broken") else {
        return;
    };
    std::fs::write(c.join("Cargo.toml"), "this is [not a manifest\n").unwrap();
    let o = git(&c, &["commit", "-qam", "broken base"]);
    assert!(o.status.success(), "{}", o.explain());
    let broken = git(&c, &["rev-parse", "HEAD"]).stdout.trim().to_string();
    let o = git(&c, &["checkout", "-q", "HEAD~1", "--", "Cargo.toml"]);
    assert!(o.status.success(), "{}", o.explain());
    let o = git(&c, &["commit", "-qam", "head fixes it"]);
    assert!(o.status.success(), "{}", o.explain());
    let out = c.join("bench-out/ci");
    let o = Running::spawn(
        Command::new("bash")
            .arg(c.join("scripts/ci-bench.sh"))
            .args(["--paired"])
            .arg(&out)
            .env("RINGMUX_BASE_REF", &broken)
            .env("RINGMUX_BIN", BIN)
            .env_remove("RINGMUX_BASE_BIN")
            .env_remove("GITHUB_STEP_SUMMARY"),
    )
    .finish(Duration::from_secs(300));
    assert_eq!(o.code(), Some(2), "{}", o.explain());
    let lines: Vec<&str> = o.stderr.trim_end().lines().collect();
    assert_eq!(lines.len(), 1, "{}", o.explain());
    assert!(
        lines[0].contains("cannot build the merge-base") && lines[0].contains(&broken[..12]),
        "{}",
        o.explain()
    );
    assert!(!out.exists(), "no bench ran\n{}", o.explain());
    assert_eq!(
        git(&c, &["worktree", "list"]).stdout.lines().count(),
        1,
        "the base worktree is removed"
    );
    let _ = test;
}

/// The paired gate end to end (the base binary given, so nothing is built): the same
/// build on both sides passes; a head slowed by 2 ms of CPU work per message (the fault
/// layer, which the base wrapper turns off) fails the gate on throughput, exit 1.
#[test]
fn ci_bench_paired_gates_head_against_base_in_one_run() {
    let Some(c) = clone("ci-paired-gate") else {
        return;
    };
    let base = c.join("base.sh");
    std::fs::write(
        &base,
        format!("#!/bin/sh\nexec env -u RINGMUX_FAULTS {BIN} \"$@\"\n"),
    )
    .unwrap();
    let o =
        Running::spawn(Command::new("chmod").arg("+x").arg(&base)).finish(Duration::from_secs(5));
    assert!(o.status.success());
    let run = |faults: Option<&str>, out: &str| -> Finished {
        let mut cmd = Command::new("bash");
        cmd.arg(c.join("scripts/ci-bench.sh"))
            .arg("--paired")
            .arg(c.join(out))
            .env("RINGMUX_BASE_REF", "HEAD")
            .env("RINGMUX_BIN", BIN)
            .env("RINGMUX_BASE_BIN", &base)
            .env("RINGMUX_REPEAT", "3")
            .env("RINGMUX_OPEN_RATE", "1000")
            .env(
                "RINGMUX_BENCH_ARGS",
                "--backends epoll --conns 5 --duration 0.3",
            )
            .env("RINGMUX_MAX_REGRESSION", "throughput=50%")
            .env_remove("GITHUB_STEP_SUMMARY");
        match faults {
            Some(f) => cmd.env("RINGMUX_FAULTS", f),
            None => cmd.env_remove("RINGMUX_FAULTS"),
        };
        Running::spawn(&mut cmd).finish(Duration::from_secs(300))
    };
    let o = run(None, "same");
    assert_eq!(o.code(), Some(0), "{}", o.explain());
    let summary = std::fs::read_to_string(c.join("same/summary.md")).unwrap();
    assert!(
        summary.contains("paired in this run with the merge-base")
            && summary.contains("Base vs head"),
        "{summary}"
    );
    let o = run(Some("input-work-ns=2000000"), "slow");
    assert_eq!(o.code(), Some(1), "{}", o.explain());
    assert!(
        o.stdout
            .contains("regression: epoll/closed/c5/s128 throughput")
            || o.stderr
                .contains("regression: epoll/closed/c5/s128 throughput"),
        "{}",
        o.explain()
    );
}

/// scripts/gate-power.sh on a tiny matrix: the same build twice passes, a head with an
/// extra getppid per message fails on syscalls (per message, so the count rises by
/// exactly one), and the summary and runs.tsv say so; bad arguments are exit 2.
#[test]
fn gate_power_counts_false_alarms_and_catches() {
    let d = scratch_dir("gate-power");
    let run = |args: &[&str]| -> Finished {
        Running::spawn(
            Command::new("bash")
                .arg(root().join("scripts/gate-power.sh"))
                .args(args)
                .env("RINGMUX_BIN", BIN)
                .env(
                    "RINGMUX_BENCH_ARGS",
                    "--quick --backends epoll --conns 5 --duration 0.2 --repeat 3 --open-rate 1000 --no-peers --quiet-secs 0",
                )
                .env("RINGMUX_MAX_REGRESSION", "syscalls=5%")
                .env_remove("RINGMUX_FAULTS"),
        )
        .finish(Duration::from_secs(300))
    };
    let out = d.join("gp");
    let o = run(&[
        "--rounds",
        "1",
        "--out",
        out.to_str().unwrap(),
        "aa=",
        "sys=extra-syscalls=1",
    ]);
    assert_eq!(o.code(), Some(0), "{}", o.explain());
    let runs = std::fs::read_to_string(out.join("runs.tsv")).unwrap();
    let lines: Vec<Vec<&str>> = runs.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 2, "{runs}");
    assert_eq!(lines[0][..3], ["aa", "1", "0"], "{runs}");
    assert_eq!(lines[1][..3], ["sys", "1", "1"], "{runs}");
    assert!(
        lines[1][3].contains("epoll/closed/c5/s128 syscalls"),
        "{runs}"
    );
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        summary.contains("| aa | `(none)` | 1 | 0 | none |")
            && summary.contains("| sys | `extra-syscalls=1` | 1 | 1 |"),
        "{summary}"
    );
    for bad in [&["--rounds", "0", "aa="][..], &["aa"], &[]] {
        let o = run(bad);
        assert_eq!(o.code(), Some(2), "{bad:?}: {}", o.explain());
        assert_eq!(o.stderr.trim_end().lines().count(), 1, "{}", o.explain());
    }
}
