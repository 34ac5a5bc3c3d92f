//! `ringmux bench --client tokio`: every cell's load driven by the tokio reference
//! client (the peers crate's `tokio_echo_client`), and what it refuses.

use std::time::Duration;

use ringmux::results::schema::BenchResults;

use crate::util::{Finished, peers_dir, record_skip, run_bounded};

/// A tiny matrix on epoll driven by the tokio client: every cell has messages and no
/// error, results.json, report.md and the notes name the client, and the server's
/// figures are measured as with ringmux's load.
#[test]
fn tokio_client_drives_the_matrix() {
    if let Err(why) = peers_dir() {
        record_skip("tokio_client_drives_the_matrix", "-", &why);
        return;
    }
    let out = std::env::temp_dir().join(format!("ringmux-bench-tokio-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = run_bounded(
        &[
            "bench",
            "--quick",
            "--client",
            "tokio",
            "--backends",
            "epoll",
            "--no-peers",
            "--conns",
            "1,20",
            "--duration",
            "0.5",
            "--quiet-secs",
            "0",
            "--out",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    assert!(run.status.success(), "bench failed\n{}", run.explain());
    let r: BenchResults = serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap())
        .unwrap_or_else(|e| panic!("results.json does not parse ({e})\n{}", run.explain()));
    assert_eq!(r.args["client"], "tokio", "{}", r.args);
    assert!(
        r.notes.iter().any(|n| n.contains("tokio reference client")),
        "{:?}",
        r.notes
    );
    let modes: std::collections::BTreeSet<&str> = r.cells.iter().map(|c| c.mode.as_str()).collect();
    assert!(
        modes.contains("closed") && modes.contains("open"),
        "{modes:?}"
    );
    for c in &r.cells {
        let m = &c.median;
        assert!(
            m.msgs_per_s > 0.0 && m.p50_ns > 0.0 && m.p99_ns >= m.p50_ns,
            "{}: {m:?}",
            c.id
        );
        assert_eq!(m.errors, 0, "{}", c.id);
        assert!(
            m.cpu_ns_per_msg.is_some_and(|v| v > 0.0)
                && m.syscalls_per_msg.is_some_and(|v| v > 0.0),
            "{}: the server's figures are measured whatever the client: {m:?}",
            c.id
        );
        if c.mode == "open" {
            assert!(c.rate.is_some_and(|r| r > 0.0), "{}", c.id);
        }
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("the tokio reference client"), "{md}");
    assert!(
        run.stdout.contains("tokio reference client"),
        "{}",
        run.stdout
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// What the tokio client cannot do is refused before anything runs: one line, exit 2.
#[test]
fn tokio_client_refuses_what_it_cannot_do() {
    for (extra, says) in [
        (&["--proto", "upper"][..], "--client tokio speaks echo only"),
        (&["--idle-conns", "10"][..], "leave out --idle-conns"),
        (&["--preset", "models"][..], "leave out --client"),
    ] {
        let out = std::env::temp_dir().join(format!(
            "ringmux-bench-tokio-no-{}-{}",
            extra[0].trim_start_matches('-'),
            std::process::id()
        ));
        let mut args = vec![
            "bench",
            "--client",
            "tokio",
            "--backends",
            "epoll",
            "--no-peers",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let Finished {
            status,
            stdout,
            stderr,
            ..
        } = run_bounded(&args, Duration::from_secs(20));
        assert_eq!(status.code(), Some(2), "{args:?}\n{stdout}\n{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line\n{stderr}");
        assert!(
            stderr.starts_with("ringmux: error: ") && stderr.contains(says),
            "{args:?}: expected {says:?}\n{stderr}"
        );
        assert!(!out.exists(), "{args:?}: nothing written");
    }
}
