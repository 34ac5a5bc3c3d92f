//! `ringmux load` against small echo servers of the tests' own (`util::echo`): closed
//! loop counting and verification, every error it counts (mismatch, reset, timeout,
//! refused connects), bad input, the driver choice and its fallback, output paths.
//! Every run-time test runs once per driver (`driver_test!`: epoll and io_uring), one
//! load at a time (`serial`), with a deadline; traffic stays on 127.0.0.1.

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use crate::driver_test;
use crate::util::echo::{Behaviour, Drv, echo_server, load, serial, u};
use crate::util::{BIN, record_skip, run_load, strace_available, strace_inject};

driver_test!(closed_loop_counts_and_verifies, |d| {
    let _g = serial();
    let addr = echo_server(Behaviour::default()).to_string();
    let r = load(
        d,
        &[
            "--addr",
            &addr,
            "--conns",
            "6",
            "--threads",
            "2",
            "--pipeline",
            "4",
            "--size",
            "300",
            "--duration",
            "1",
            "--warmup",
            "0.3",
        ],
        Duration::from_secs(20),
    );
    assert_eq!(r.code(), Some(0), "{}", r.explain());
    let j = r.json();
    assert_eq!(j["schema"], "ringmux.load/1");
    assert_eq!(j["params"]["mode"], "closed");
    assert_eq!(j["params"]["driver"], d.name(), "{}", r.explain());
    assert_eq!(u(j, "params.threads"), 2);
    let n = u(j, "messages");
    assert!(n > 100, "too few messages\n{}", r.explain());
    assert_eq!(
        u(j, "latency.count"),
        n,
        "every completed message recorded once"
    );
    assert!(u(j, "warmup_messages") > 0, "{}", r.explain());
    assert_eq!(
        u(j, "errors.mismatch")
            + u(j, "errors.reset")
            + u(j, "errors.timeout")
            + u(j, "errors.connect"),
        0,
        "{}",
        r.explain()
    );
    assert!(j["latency_uncorrected"].is_null());
    assert!(
        r.stdout.contains("p99.999") && r.stdout.contains("msgs/s"),
        "{}",
        r.explain()
    );
    assert!(
        r.stdout.contains(&format!("{} driver", d.name())),
        "the summary names the driver\n{}",
        r.explain()
    );
    assert!(r.stderr.is_empty(), "no warning expected\n{}", r.explain());
});

driver_test!(big_messages_split_across_reads_and_writes, |d| {
    let _g = serial();
    let addr = echo_server(Behaviour::default()).to_string();
    let r = load(
        d,
        &[
            "--addr",
            &addr,
            "--conns",
            "2",
            "--pipeline",
            "3",
            "--size",
            "1000000",
            "--duration",
            "1",
            "--warmup",
            "0",
        ],
        Duration::from_secs(20),
    );
    assert_eq!(r.code(), Some(0), "{}", r.explain());
    assert!(u(r.json(), "messages") >= 4, "{}", r.explain());
});

driver_test!(corrupted_byte_is_a_mismatch, |d| {
    let _g = serial();
    let addr = echo_server(Behaviour {
        corrupt_at: Some(5_000),
        ..Default::default()
    })
    .to_string();
    let r = load(
        d,
        &[
            "--addr",
            &addr,
            "--conns",
            "2",
            "--duration",
            "1",
            "--warmup",
            "0.2",
            "--quiet",
        ],
        Duration::from_secs(20),
    );
    assert_eq!(r.code(), Some(1), "{}", r.explain());
    assert!(r.stderr.contains("mismatch 1"), "{}", r.explain());
    assert_eq!(
        r.stderr.trim().lines().count(),
        1,
        "one error line\n{}",
        r.explain()
    );
    assert_eq!(u(r.json(), "errors.mismatch"), 1);
    // The other messages were fine and recorded.
    assert!(u(r.json(), "messages") > 10);
    // --allow-errors: same run, exit 0.
    let addr = echo_server(Behaviour {
        corrupt_at: Some(777),
        ..Default::default()
    })
    .to_string();
    let r = load(
        d,
        &[
            "--addr",
            &addr,
            "--conns",
            "1",
            "--duration",
            "0.5",
            "--warmup",
            "0",
            "--quiet",
            "--allow-errors",
        ],
        Duration::from_secs(20),
    );
    assert_eq!(r.code(), Some(0), "{}", r.explain());
    assert_eq!(u(r.json(), "errors.mismatch"), 1);
});

driver_test!(
    resets_are_counted_and_the_run_stops_when_all_connections_are_gone,
    |d| {
        let _g = serial();
        let addr = echo_server(Behaviour {
            close_after: Some(128 * 50),
            ..Default::default()
        })
        .to_string();
        let r = load(
            d,
            &[
                "--addr",
                &addr,
                "--conns",
                "3",
                "--duration",
                "30",
                "--warmup",
                "0",
                "--quiet",
            ],
            Duration::from_secs(15),
        );
        assert_eq!(r.code(), Some(1), "{}", r.explain());
        assert!(
            r.elapsed < Duration::from_secs(10),
            "should stop early\n{}",
            r.explain()
        );
        assert_eq!(u(r.json(), "errors.reset"), 3, "{}", r.explain());
        assert!(r.stderr.contains("reset 3"), "{}", r.explain());
        assert_eq!(u(r.json(), "messages"), 150, "{}", r.explain());
    }
);

driver_test!(
    a_server_that_never_answers_times_out_within_the_bound,
    |d| {
        let _g = serial();
        let addr = echo_server(Behaviour {
            mute: true,
            ..Default::default()
        })
        .to_string();
        // Open loop: the run may wait for replies up to warmup + duration + timeout = 2 s.
        let r = load(
            d,
            &[
                "--addr",
                &addr,
                "--conns",
                "2",
                "--rate",
                "100",
                "--duration",
                "1",
                "--warmup",
                "0.5",
                "--timeout",
                "0.5",
                "--quiet",
            ],
            Duration::from_secs(15),
        );
        assert_eq!(r.code(), Some(1), "{}", r.explain());
        assert!(r.elapsed < Duration::from_secs(5), "{}", r.explain());
        assert!(u(r.json(), "errors.timeout") >= 2, "{}", r.explain());
        assert!(r.stderr.contains("timeout"), "{}", r.explain());
        assert_eq!(r.json()["rate_kept"], false);
        // Closed loop: ends at warmup + duration.
        let r = load(
            d,
            &[
                "--addr",
                &addr,
                "--conns",
                "2",
                "--duration",
                "1",
                "--warmup",
                "0",
                "--timeout",
                "0.3",
                "--quiet",
            ],
            Duration::from_secs(15),
        );
        assert_eq!(r.code(), Some(1), "{}", r.explain());
        assert!(r.elapsed < Duration::from_secs(4), "{}", r.explain());
        assert_eq!(u(r.json(), "errors.timeout"), 2, "{}", r.explain());
    }
);

driver_test!(connection_refused_is_one_line, |d| {
    let _g = serial();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let r = load(
        d,
        &["--addr", &addr, "--conns", "3", "--duration", "1"],
        Duration::from_secs(15),
    );
    assert_eq!(r.code(), Some(1), "{}", r.explain());
    assert_eq!(
        r.stderr.trim(),
        format!("ringmux: error: cannot connect to {addr}: Connection refused"),
        "{}",
        r.explain()
    );
});

driver_test!(bad_input_is_one_line_and_no_panic, |d| {
    let _g = serial();
    for (args, needle) in [
        (&["--rate", "0"][..], "--rate"),
        (&["--pin", "abc"], "--cpus 'abc'"),
        (&["--pin", "5-2"], "backwards"),
        (&["--duration", "0"], "--duration"),
        (
            &["--cpus", "1000", "--addr", "127.0.0.1:9"],
            "CPU 1000 is not available to this process",
        ),
        (
            &["--threads", "2", "--conns", "2", "--pin", "0"],
            "give one CPU per thread",
        ),
    ] {
        let r = load(d, args, Duration::from_secs(10));
        assert_eq!(r.code(), Some(2), "bad usage exits 2\n{}", r.explain());
        assert!(r.code().is_some(), "killed by a signal?\n{}", r.explain());
        assert!(
            r.stderr.contains(needle),
            "expected {needle:?}\n{}",
            r.explain()
        );
        assert!(!r.stderr.contains("panicked"), "{}", r.explain());
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.explain());
    }
});

/// The default driver is io_uring where the kernel has what it needs, and the JSON and
/// the summary say which one ran.
#[test]
fn auto_driver_is_uring_when_available_and_reported() {
    let _g = serial();
    let addr = echo_server(Behaviour::default()).to_string();
    let mut cmd = Command::new(BIN);
    cmd.args([
        "load",
        "--addr",
        &addr,
        "--conns",
        "4",
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
    ]);
    let r = run_load(cmd, Duration::from_secs(15));
    assert_eq!(r.code(), Some(0), "{}", r.explain());
    let expect = if Drv::Uring.available().is_ok() {
        "uring"
    } else {
        "epoll"
    };
    assert_eq!(r.json()["params"]["driver"], expect, "{}", r.explain());
    assert!(
        r.stdout.contains(&format!("{expect} driver")),
        "{}",
        r.explain()
    );
    if expect == "uring" {
        assert!(r.stderr.is_empty(), "{}", r.explain());
        // Asked for by name: the same.
        let r = load(
            Drv::Uring,
            &[
                "--addr",
                &addr,
                "--conns",
                "2",
                "--duration",
                "0.2",
                "--warmup",
                "0",
                "--quiet",
            ],
            Duration::from_secs(15),
        );
        assert_eq!(r.code(), Some(0), "{}", r.explain());
        assert_eq!(r.json()["params"]["driver"], "uring", "{}", r.explain());
    }
}

/// io_uring_setup failing (injected with strace): `auto` runs on epoll after one warning
/// line naming the errno; `--driver uring` stops with that reason in one line.
#[test]
fn io_uring_unavailable_auto_falls_back_and_uring_fails() {
    if !strace_available() {
        return;
    }
    let _g = serial();
    let addr = echo_server(Behaviour::default()).to_string();
    let under_strace = |errno: &str, driver: &str| {
        let mut c = strace_inject("io_uring_setup", &format!("error={errno}"));
        c.args([
            BIN,
            "load",
            "--driver",
            driver,
            "--addr",
            &addr,
            "--conns",
            "2",
            "--duration",
            "0.3",
            "--warmup",
            "0",
            "--quiet",
        ]);
        c
    };
    let r = run_load(under_strace("EPERM", "auto"), Duration::from_secs(20));
    assert_eq!(r.code(), Some(0), "{}", r.explain());
    assert_eq!(r.json()["params"]["driver"], "epoll", "{}", r.explain());
    assert_eq!(
        r.stderr.trim().lines().count(),
        1,
        "one warning line\n{}",
        r.explain()
    );
    assert!(
        r.stderr.contains("warning")
            && r.stderr.contains("EPERM")
            && r.stderr.contains("falling back to epoll"),
        "{}",
        r.explain()
    );
    for (errno, hint) in [("EPERM", "io_uring_disabled"), ("ENOSYS", "5.6")] {
        let r = run_load(under_strace(errno, "uring"), Duration::from_secs(20));
        assert_eq!(r.code(), Some(1), "{}", r.explain());
        assert_eq!(
            r.stderr.trim().lines().count(),
            1,
            "one error line\n{}",
            r.explain()
        );
        assert!(
            r.stderr
                .starts_with("ringmux: error: --driver uring: io_uring unavailable"),
            "{}",
            r.explain()
        );
        assert!(
            r.stderr.contains(errno) && r.stderr.contains(hint),
            "{}",
            r.explain()
        );
        assert!(r.json.is_none(), "no result without a run\n{}", r.explain());
    }
}

/// A port nobody listens on: every connect is refused. Without --allow-errors: one
/// error line, exit 1. With it: the run is reported (0 of N established, N refused).
#[test]
fn refused_connects_are_counted_and_allowed() {
    let _g = serial();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let r = load(
        Drv::Epoll,
        &[
            "--addr",
            &addr,
            "--conns",
            "3",
            "--duration",
            "0.2",
            "--warmup",
            "0",
        ],
        Duration::from_secs(15),
    );
    assert_eq!(r.code(), Some(1), "{}", r.explain());
    assert!(
        r.stderr.contains("cannot connect") && r.json.is_none(),
        "{}",
        r.explain()
    );
    let r = load(
        Drv::Epoll,
        &[
            "--addr",
            &addr,
            "--conns",
            "3",
            "--duration",
            "0.2",
            "--warmup",
            "0",
            "--allow-errors",
        ],
        Duration::from_secs(15),
    );
    assert_eq!(r.code(), Some(0), "{}", r.explain());
    let j = r.json();
    assert_eq!(u(j, "conns_established"), 0, "{}", r.explain());
    assert_eq!(u(j, "connect_refused"), 3, "{}", r.explain());
    assert_eq!(u(j, "errors.connect"), 3, "{}", r.explain());
    assert!(
        r.stdout
            .contains("0 established of 3 requested (3 refused)"),
        "{}",
        r.explain()
    );
}

/// Output paths are checked before the run (no connect is even tried), and a file that
/// fails to write still leaves the summary printed.
#[test]
fn output_paths_checked_first_and_summary_survives_a_failed_write() {
    let _g = serial();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(BIN);
    cmd.args([
        "load",
        "--addr",
        &nowhere,
        "--duration",
        "30",
        "--hlog",
        "/nonexistent-dir/x.hlog",
    ]);
    let r = run_load(cmd, Duration::from_secs(10));
    assert_eq!(r.code(), Some(1), "{}", r.explain());
    assert!(
        r.stderr.contains("cannot write /nonexistent-dir/x.hlog") && !r.stderr.contains("connect"),
        "{}",
        r.explain()
    );
    assert!(r.elapsed < Duration::from_secs(5), "{}", r.explain());

    if !std::path::Path::new("/dev/full").exists() {
        record_skip("load failed-write half", "-", "no /dev/full");
        return;
    }
    let addr = echo_server(Behaviour::default()).to_string();
    let mut cmd = Command::new(BIN);
    cmd.args([
        "load",
        "--addr",
        &addr,
        "--conns",
        "2",
        "--duration",
        "0.2",
        "--warmup",
        "0",
        "--hgrm",
        "/dev/full",
    ]);
    let r = run_load(cmd, Duration::from_secs(15));
    assert_eq!(r.code(), Some(1), "{}", r.explain());
    assert!(
        r.stdout.contains("messages in") && r.stdout.contains("p99"),
        "summary printed\n{}",
        r.explain()
    );
    assert!(
        r.stderr.contains("cannot write /dev/full"),
        "{}",
        r.explain()
    );
}
