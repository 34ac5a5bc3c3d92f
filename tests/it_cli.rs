//! The command line as a newcomer meets it: bad usage exits 2 with one line in every
//! subcommand, addresses are IP:PORT with a hint for host names, old option spellings
//! still work, and a closed stdout ends the process quietly.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{BIN, Running, run_bounded, scratch_dir};

/// Run ringmux with stdin closed; kill it after `limit`. (exit code, stdout, stderr).
fn run(args: &[&str], limit: Duration) -> (Option<i32>, String, String) {
    let r = run_bounded(args, limit);
    (r.code(), r.stdout, r.stderr)
}

#[test]
fn bad_usage_exits_2_in_every_subcommand() {
    let d = scratch_dir("cli-bad-usage");
    let empty = d.to_str().unwrap();
    let missing = d.join("nope.hlog");
    let missing = missing.to_str().unwrap();
    let out = d.join("out.hlog");
    let out = out.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        // Late checks: the values parse, the combination or the machine refuses them.
        (&["load", "--duration", "0"], "--duration must be above 0"),
        (&["load", "--rate", "0"], "--rate 0"),
        (
            &["load", "--cpus", "1000"],
            "CPU 1000 is not available to this process",
        ),
        (
            &["load", "--pin", "1000"],
            "CPU 1000 is not available to this process",
        ),
        (
            &["serve", "--addr", "127.0.0.1:0", "--cpus", "1000"],
            "CPU 1000 is not available",
        ),
        (
            &["bench", "--backends", "nope", "--out", empty],
            "unknown backend 'nope'",
        ),
        (
            &["bench", "--duration", "0"],
            "out of range (0.2 to 3600 s)",
        ),
        (&["bench", "--repeat", "0"], "--repeat"),
        (&["report", missing], "no such folder"),
        (&["report", empty], "neither results.json"),
        (&["merge", missing, "-o", out], "nope.hlog: no such file"),
        (&["compare", missing, missing], "nope.hlog"),
        // Parse errors (clap's own exit 2).
        (&["load", "--conns", "0"], "--conns"),
        (&["serve", "--backend", "nope"], "--backend"),
    ];
    for (args, want) in cases {
        let (code, stdout, stderr) = run(args, Duration::from_secs(20));
        assert_eq!(
            code,
            Some(2),
            "ringmux {args:?} must exit 2 (bad usage); stderr: {stderr}"
        );
        assert!(
            stderr.contains(want),
            "ringmux {args:?}: expected {want:?} in stderr: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "ringmux {args:?}: {stderr}");
        assert!(
            stdout.is_empty(),
            "ringmux {args:?}: nothing may run: {stdout}"
        );
        if !stderr.starts_with("error:") {
            // Ours (clap's errors carry a usage block): exactly one line.
            assert_eq!(
                stderr.trim_end().lines().count(),
                1,
                "ringmux {args:?}: one line expected: {stderr}"
            );
            assert!(
                stderr.starts_with("ringmux: error: "),
                "ringmux {args:?}: {stderr}"
            );
        }
    }
}

#[test]
fn addr_is_ip_port_and_a_host_name_gets_a_hint() {
    for sub in ["serve", "load"] {
        let (code, _, stderr) = run(&[sub, "--addr", "localhost:7878"], Duration::from_secs(10));
        assert_eq!(code, Some(2), "{sub}: {stderr}");
        assert!(
            stderr.contains("'localhost:7878' is not IP:PORT: use 127.0.0.1:7878"),
            "{sub}: {stderr}"
        );
        assert!(
            !stderr.contains("invalid socket address syntax"),
            "{sub}: {stderr}"
        );
        let (_, help, _) = run(&[sub, "--help"], Duration::from_secs(10));
        assert!(help.contains("--addr <IP:PORT>"), "{sub} --help: {help}");
    }
}

#[test]
fn help_states_defaults_and_ranges() {
    let (code, help, _) = run(&["bench", "--help"], Duration::from_secs(10));
    assert_eq!(code, Some(0));
    for want in [
        "0.2 to 3600 [default: 1.0]",
        "warm-up of 0.3 s",
        "0.2 to 3600",
        "1 to 100 [default: 3",
        "[alias: --output]",
        "[alias: --threads]",
    ] {
        assert!(help.contains(want), "bench --help lacks {want:?}: {help}");
    }
    let (_, help, _) = run(&["load", "--help"], Duration::from_secs(10));
    for want in [
        "--cpus <LIST>",
        "[alias: --pin]",
        "[default: 10]",
        "[default: 1]",
    ] {
        assert!(help.contains(want), "load --help lacks {want:?}: {help}");
    }
    let (_, help, _) = run(&["serve", "--help"], Duration::from_secs(10));
    assert!(
        help.contains("--json <FILE>") && help.contains("[alias: --stats-json]"),
        "serve --help: {help}"
    );
}

/// `ringmux probe | true`: stdout is a pipe whose reader is gone before ringmux writes.
/// The process must end without a panic message (status 141, as if killed by SIGPIPE).
#[test]
fn closed_stdout_ends_quietly() {
    for args in [&["probe"][..], &["--help"], &["bench", "--help"]] {
        let (r, w) = std::io::pipe().unwrap();
        drop(r); // the reader is gone: every write gets EPIPE
        let child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(w)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Its stderr is read as it comes; only the exit is waited for.
        let done =
            Running::adopt(child, format!("ringmux {args:?}")).finish(Duration::from_secs(20));
        let (status, err) = (done.status, done.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "ringmux {args:?} on a closed stdout: {err}"
        );
        assert!(
            status.code() == Some(141) || status.code() == Some(0),
            "ringmux {args:?}: {status:?} {err}"
        );
    }
}
