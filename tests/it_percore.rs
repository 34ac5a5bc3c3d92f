//! Thread-per-core (`--threads N`, SO_REUSEPORT, one loop per CPU) on every backend
//! with an event loop; the others refuse it in one line. `--pin` and `--cpus`, a later
//! loop's ring failing.

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::backend_test;
use crate::util::{
    BIN, Running, Server, Variant, allowed_cpus, assert_drains, assert_threads_refused,
    assert_usage_error, payload, proc_status, read_json, read_varied, record_skip, run_bounded,
    scratch_dir, serve_args, wait_until, with_rlimit,
};

/// `--threads 2 --stats-json DIR/stats.json` in a fresh folder: the server, the folder
/// and the stats file; None once the refusal is asserted (no event loop to run twice).
fn start_two_loops(v: Variant, tag: &str) -> Option<(Server, PathBuf, PathBuf)> {
    if !v.has_event_loop() {
        assert_threads_refused(v, &["--threads", "2"]);
        return None;
    }
    let dir = scratch_dir(&format!("{tag}-{v:?}"));
    let json = dir.join("stats.json");
    let srv = Server::start(
        v,
        &["--threads", "2", "--stats-json", json.to_str().unwrap()],
    );
    Some((srv, dir, json))
}

/// Each loop's accepted count from a stats file's per_thread list.
fn per_thread_accepted(j: &serde_json::Value) -> Vec<u64> {
    j["per_thread"]
        .as_array()
        .unwrap_or_else(|| panic!("no per_thread in {j}"))
        .iter()
        .map(|t| t["connections_accepted"].as_u64().unwrap())
        .collect()
}

backend_test!(threads_two_echo_200_connections_on_both_loops, |v| {
    let Some((srv, dir, json)) = start_two_loops(v, "t2echo") else {
        return;
    };
    assert!(srv.start_line.contains("threads=2"), "{}", srv.start_line);
    let mut conns: Vec<TcpStream> = (0..200).map(|_| srv.connect()).collect();
    let mut sent = 0u64;
    for round in 0..2u64 {
        for (i, c) in conns.iter_mut().enumerate() {
            let m = payload(round * 1000 + i as u64, 100 + i * 37);
            c.write_all(&m).unwrap();
            sent += m.len() as u64;
        }
        for (i, c) in conns.iter_mut().enumerate() {
            let want = payload(round * 1000 + i as u64, 100 + i * 37);
            assert!(
                read_varied(c, want.len()) == want,
                "{v:?}: conn {i} round {round}: echo differs"
            );
        }
    }
    drop(conns);
    let st = srv.stop_ok(Duration::from_secs(10));
    assert!(
        st.stdout.contains("accepted=200 closed=200")
            && st.stdout.contains("per thread: connections"),
        "{v:?}: {}",
        st.stdout
    );
    let j = read_json(&json);
    assert_eq!(j["threads"], 2, "{v:?}: {j}");
    assert_eq!(j["bytes_in"], sent, "{v:?}: merged bytes_in");
    let per = per_thread_accepted(&j);
    assert_eq!(per.len(), 2, "{v:?}: {j}");
    assert_eq!(per.iter().sum::<u64>(), 200, "{v:?}: {per:?}");
    // SO_REUSEPORT hashes each connection's ports: 200 on one loop would be 2^-199.
    assert!(
        per.iter().all(|&n| n > 0),
        "{v:?}: a loop got no connection: {per:?}"
    );
    println!("{v:?}: SO_REUSEPORT spread 200 connections as {per:?}");
    let _ = std::fs::remove_dir_all(&dir);
});

backend_test!(threads_two_sigterm_drains_every_loop, |v| {
    let Some((srv, dir, json)) = start_two_loops(v, "t2term") else {
        return;
    };
    let addr = srv.addr.to_string();
    // A second thread-per-core server must not join this one's SO_REUSEPORT group.
    let mut args = vec!["serve", "--addr", addr.as_str(), "--threads", "2"];
    args.extend(v.args());
    let out = run_bounded(&args, Duration::from_secs(20));
    assert_eq!(
        out.code(),
        Some(1),
        "{v:?}: a second server on {addr} should fail\n{}",
        out.explain()
    );
    assert!(
        out.stderr.contains("in use") && out.stderr.lines().count() == 1,
        "{v:?}\n{}",
        out.explain()
    );

    let mut conns = srv.connect_echoed(50, 100);
    // Connections still open at SIGTERM, on both loops: each loop drains its own.
    assert_drains(srv, &mut conns, 50);
    let j = read_json(&json);
    assert_eq!(
        (j["final"].as_bool(), j["threads"].as_u64()),
        (Some(true), Some(2)),
        "{v:?}: {j}"
    );
    assert_eq!(j["connections_accepted"], 50);
    assert_eq!(j["connections_closed"], 50);
    let per = per_thread_accepted(&j);
    assert!(
        per.len() == 2 && per.iter().all(|&n| n > 0),
        "{v:?}: {per:?}"
    );
    // Every listener is gone: the port can be bound at once.
    std::net::TcpListener::bind(&addr)
        .unwrap_or_else(|e| panic!("{v:?}: {addr} still bound after exit: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
});

backend_test!(threads_two_sigusr1_writes_one_merged_snapshot, |v| {
    let Some((srv, dir, json)) = start_two_loops(v, "t2snap") else {
        return;
    };
    let mut conns: Vec<TcpStream> = (0..40).map(|_| srv.connect()).collect();
    let echo_round = |conns: &mut Vec<TcpStream>| {
        for c in conns.iter_mut() {
            c.write_all(b"0123456789").unwrap();
        }
        for c in conns.iter_mut() {
            assert_eq!(read_varied(c, 10), b"0123456789");
        }
    };
    echo_round(&mut conns);
    srv.signal(libc::SIGUSR1);
    // Read it the moment it appears, as the bench does: a file written before both
    // loops published would show here.
    let t0 = Instant::now();
    while !json.exists() && t0.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_micros(200));
    }
    let j = read_json(&json);
    assert_eq!(
        (j["final"].as_bool(), j["threads"].as_u64()),
        (Some(false), Some(2)),
        "{v:?}: {j}"
    );
    assert_eq!(j["snapshot_request"], 1, "{v:?}: {j}");
    // Written only once both loops published: neither loop's share is missing.
    assert_eq!(j["connections_accepted"], 40, "{v:?}: {j}");
    assert_eq!(j["bytes_in"], 400, "{v:?}: {j}");
    let per = per_thread_accepted(&j);
    assert!(
        per.len() == 2 && per.iter().sum::<u64>() == 40 && per.iter().all(|&n| n > 0),
        "{v:?}: {per:?}"
    );
    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files,
        ["stats.json"],
        "{v:?}: one merged file, no per-loop or temp files"
    );

    // A burst of signals (coalesced by the kernel and by the loops) leaves no loop
    // waiting for the other: the next request is still answered, with new counts.
    for _ in 0..20 {
        srv.signal(libc::SIGUSR1);
    }
    echo_round(&mut conns);
    let _ = std::fs::remove_file(&json);
    srv.signal(libc::SIGUSR1);
    let fresh = wait_until(Duration::from_secs(5), || {
        // Late answers to the burst may land first; the answer to the last signal holds round 2.
        std::fs::read(&json)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|j| j["bytes_in"] == 800)
    });
    assert!(
        fresh,
        "{v:?}: no snapshot after the burst covers the second round"
    );
    let j = read_json(&json);
    assert!(j["snapshot_request"].as_u64().unwrap() >= 2, "{v:?}: {j}");
    // Still serving after the snapshots.
    echo_round(&mut conns);
    srv.stop_ok(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
});

backend_test!(pin_with_bad_cpus_fails_in_one_line, |v| {
    let n_allowed = allowed_cpus().len();
    let too_many = (n_allowed + 1).to_string();
    let cases: [(&[&str], &str); 5] = [
        (
            &["--threads", "2", "--cpus", "0,1023"],
            "CPU 1023 is not available",
        ),
        (&["--pin", "--cpus", "0,x"], "not a CPU number"),
        (
            &["--threads", "3", "--cpus", "0-1"],
            "lists 2 CPU(s) for --threads 3",
        ),
        (
            &["--threads", &too_many, "--pin"],
            "is not available to this process",
        ),
        (&["--cpus", "5-2"], "runs backwards"),
    ];
    for (extra, want) in cases {
        assert_usage_error(&serve_args(v, extra), &[want]);
    }
});

backend_test!(threads_two_pin_puts_each_loop_on_its_cpu, |v| {
    let allowed = allowed_cpus();
    if allowed.len() < 2 {
        record_skip(
            "threads_two_pin_puts_each_loop_on_its_cpu",
            &format!("{v:?}"),
            &format!("needs 2 CPUs, this process may use {allowed:?}"),
        );
        return;
    }
    // Plain --pin where CPUs 0 and 1 are ours (this 2-core box), else name two.
    let cpus = [allowed[0], allowed[1]];
    let list = format!("{},{}", cpus[0], cpus[1]);
    let mut extra = vec!["--threads", "2", "--pin"];
    if cpus != [0, 1] {
        extra.extend(["--cpus", list.as_str()]);
    }
    if !v.has_event_loop() {
        return assert_threads_refused(v, &extra);
    }
    let srv = Server::start(v, &extra);
    let want = if cpus == [0, 1] {
        "threads=2 cpus=0-1".to_string()
    } else {
        format!("threads=2 cpus={list}")
    };
    assert!(srv.start_line.contains(&want), "{v:?}: {}", srv.start_line);
    // The loop threads: "ringmux" (loop 0, the main thread) and "ringmux-loop-1".
    let mut pinned = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{}/task", srv.pid))
        .unwrap()
        .flatten()
    {
        let comm = std::fs::read_to_string(t.path().join("comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let mask = proc_status(&t.path().join("status"), "Cpus_allowed_list").unwrap_or_default();
        if comm == "ringmux" || comm.starts_with("ringmux-loop") {
            pinned.push((comm, mask));
        }
    }
    pinned.sort();
    let expect = vec![
        ("ringmux".to_string(), cpus[0].to_string()),
        ("ringmux-loop-1".to_string(), cpus[1].to_string()),
    ];
    assert_eq!(pinned, expect, "{v:?}: loop threads and their CPUs");
    let _conns = srv.connect_echoed(20, 3000); // open until the server stops
    let st = srv.stop_ok(Duration::from_secs(10));
    assert!(
        st.stdout.contains("accepted=20 closed=20"),
        "{v:?}: {}",
        st.stdout
    );
});

/// A later loop's ring that cannot be set up fails the whole server, before it
/// serves, with one line naming the loop (no fallback: the backend was decided by
/// loop 0). Forced with a file limit that leaves loop 0 its ring and loop 1 none;
/// the exact limit depends on how many fds start-up takes, so scan a range.
#[test]
fn later_ring_failure_fails_the_server() {
    for v in [Variant::UringBaseline, Variant::UringFastpoll] {
        if let Err(why) = v.available() {
            record_skip(
                "later_ring_failure_fails_the_server",
                &format!("{v:?}"),
                &why,
            );
            continue;
        }
        let mut hit = None;
        for limit in 6..40u64 {
            let mut run = Running::spawn(with_rlimit(
                Command::new(BIN)
                    .args(["serve", "--addr", "127.0.0.1:0", "--threads", "2"])
                    .args(v.args()),
                libc::RLIMIT_NOFILE,
                limit,
            ));
            // The start line comes once every loop is ready; a failure ends the output.
            if run
                .wait_line(Duration::from_secs(20), |l| l.contains("serving"))
                .is_some()
            {
                // Enough fds for both rings: it serves. The scan is over (`run` is killed).
                break;
            }
            let out = run.wait(Duration::from_secs(10));
            let err = out.stderr.clone();
            assert_eq!(
                out.code(),
                Some(1),
                "{v:?} limit {limit}\n{}",
                out.explain()
            );
            assert_eq!(
                err.lines().count(),
                1,
                "{v:?} limit {limit}: one line expected\n{}",
                out.explain()
            );
            assert!(
                !err.contains("panicked") && out.stdout.is_empty(),
                "{v:?} limit {limit}\n{}",
                out.explain()
            );
            if err.contains("event loop 1 of 2") {
                hit = Some(err);
            }
        }
        let err =
            hit.unwrap_or_else(|| panic!("{v:?}: no file limit made loop 1's ring fail alone"));
        assert!(
            err.contains("io_uring") && err.contains("EMFILE") && !err.contains("falling back"),
            "{v:?}: {err}"
        );
    }
}
