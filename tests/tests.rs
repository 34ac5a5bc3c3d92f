//! One integration binary: drives the real `ringmux` over loopback sockets.
//! Server tests run once per backend and io_uring feature level (`backend_test!`).

mod util;

/// Random fault rates under verified load, every backend and level (scripts/chaos.sh).
mod it_chaos;
/// Chat on every backend: fan-out order, slow receivers dropped, /quit, line limit.
mod it_chat;
/// scripts/: the CI baseline rule, the YAML examples.
mod it_ci;
/// Exit codes, option spellings, addresses and a closed stdout, as a newcomer meets them.
mod it_cli;
/// Provided-buffer exhaustion and the RINGMUX_FAULTS fault layer.
mod it_faults;
/// Resident memory per idle connection, per backend variant.
mod it_idle;
mod it_lab; // The IO-model lab: bench --preset models --quick end to end.
/// Timeouts, --max-conns and the unconsumed-input cap on every backend.
mod it_limits;
/// `ringmux load` against small echo servers of the tests' own.
mod it_load;
/// What only some IO models do (select's refusal, sigio's overflow, busypoll, threads).
mod it_models;
/// HTTP on every backend, load --proto, ringmux client.
mod it_proto;
/// Formats, report, compare and merge.
mod it_report;
/// io_uring: CQ overflow, failed submissions, refused registrations.
mod it_ring;
/// Connection churn with resets: RSS and descriptors flat (scripts/soak.sh).
mod it_soak;

mod serve {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpStream};
    use std::process::Command;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::thread;
    use std::time::{Duration, Instant};

    use crate::backend_test;
    use crate::util::{
        BIN, Server, Variant, assert_second_client_waits, assert_threads_refused, payload,
        read_varied, strace_available, wait_until,
    };

    /// Send `msg` in writes of varying size from a thread while reading the reply in
    /// reads of varying size (a 4 MiB message would deadlock a single thread).
    fn round_trip(s: &TcpStream, msg: &[u8]) -> Vec<u8> {
        let mut w = s.try_clone().unwrap();
        let owned = msg.to_vec();
        let writer = thread::spawn(move || {
            let mut off = 0;
            let mut step = 7usize;
            while off < owned.len() {
                let n = step.min(owned.len() - off);
                w.write_all(&owned[off..off + n]).unwrap();
                off += n;
                step = (step * 5 + 3) % 100_000 + 1;
            }
        });
        let mut r = s.try_clone().unwrap();
        let got = read_varied(&mut r, msg.len());
        writer.join().unwrap();
        got
    }

    backend_test!(echo_payloads_byte_exact, |v| {
        let srv = Server::start(v, &[]);
        let s = srv.connect();
        for (i, size) in [1usize, 1024, 65536, 4 << 20].into_iter().enumerate() {
            let msg = payload(i as u64 + 1, size);
            let got = round_trip(&s, &msg);
            assert!(got == msg, "{v:?}: echo of {size} bytes differs");
        }
        let st = srv.stop(Duration::from_secs(10));
        assert!(
            st.status.success(),
            "{v:?}: exit {:?}, stderr {}",
            st.status,
            st.stderr
        );
    });

    backend_test!(upper_payloads_byte_exact, |v| {
        let srv = Server::start(v, &["--proto", "upper"]);
        let s = srv.connect();
        for (i, size) in [1usize, 1024, 65536, 4 << 20].into_iter().enumerate() {
            let msg = payload(i as u64 + 100, size);
            let got = round_trip(&s, &msg);
            assert!(
                got == msg.to_ascii_uppercase(),
                "{v:?}: upper of {size} bytes differs"
            );
        }
        if !v.concurrent() {
            drop(s); // blocking: the next client is served once this one leaves
        }
        let mut s2 = srv.connect();
        s2.write_all(b"Hello, ringmux!").unwrap();
        assert_eq!(read_varied(&mut s2, 15), b"HELLO, RINGMUX!");
    });

    backend_test!(two_thousand_connections, |v| {
        let json =
            std::env::temp_dir().join(format!("ringmux-2000-{}-{v:?}.json", std::process::id()));
        let srv = Server::start(v, &["--stats-json", json.to_str().unwrap()]);
        if !v.concurrent() {
            // blocking serves one connection at a time: 20 clients in a row, each
            // waiting in the backlog until the one before leaves.
            let mut prev = srv.connect_echoed(1, 64).pop().unwrap();
            for _ in 0..20 {
                prev = assert_second_client_waits(&srv, prev);
            }
            drop(prev);
            let st = srv.stop(Duration::from_secs(10));
            assert!(
                st.stdout.contains("accepted=21 closed=21"),
                "{v:?}: {}",
                st.stdout
            );
            return;
        }
        let mut conns: Vec<TcpStream> = (0..2000).map(|_| srv.connect()).collect();
        // select refuses connections whose fd is 1024 or more: they are closed at once
        // (EOF or reset here), the others are served.
        let mut served: Vec<usize> = Vec::new();
        for (i, c) in conns.iter_mut().enumerate() {
            let m = payload(i as u64, 64);
            let wrote = c.write_all(&m).is_ok();
            let mut got = vec![0u8; 64];
            match c.read_exact(&mut got) {
                Ok(()) if wrote => {
                    assert_eq!(got, m, "{v:?}: conn {i} round 0");
                    served.push(i);
                }
                r => assert!(v.fd_limit().is_some(), "{v:?}: conn {i} not served: {r:?}"),
            }
        }
        let refused = 2000 - served.len();
        if v.fd_limit().is_some() {
            assert!(
                refused > 0 && served.len() >= 1000,
                "{v:?}: served {}, refused {refused}",
                served.len()
            );
            let lines = srv
                .stderr()
                .lines()
                .filter(|l| l.contains("refusing connections on fd >= 1024"))
                .count();
            assert!(
                (1..=3).contains(&lines),
                "{v:?}: one warning line per burst expected, got {lines}: {}",
                srv.stderr()
            );
        } else {
            assert_eq!(refused, 0, "{v:?}");
        }
        for round in 1..3u64 {
            for &i in &served {
                conns[i]
                    .write_all(&payload(round * 10_000 + i as u64, 64))
                    .unwrap();
            }
            for &i in &served {
                let got = read_varied(&mut conns[i], 64);
                assert_eq!(
                    got,
                    payload(round * 10_000 + i as u64, 64),
                    "{v:?}: conn {i} round {round}"
                );
            }
        }
        drop(conns);
        let st = srv.stop(Duration::from_secs(10));
        assert!(st.stdout.contains("accepted=2000"), "{v:?}: {}", st.stdout);
        let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        let _ = std::fs::remove_file(&json);
        assert_eq!(
            j["refused_fd_setsize"].as_u64(),
            Some(refused as u64),
            "{v:?}: {j}"
        );
        println!("{v:?}: served {}, refused {refused}", served.len());
    });

    backend_test!(half_close_gets_everything_then_eof, |v| {
        let srv = Server::start(v, &[]);
        let mut s = srv.connect();
        let msg = payload(7, 300_000);
        let mut w = s.try_clone().unwrap();
        let m2 = msg.clone();
        let writer = thread::spawn(move || {
            w.write_all(&m2).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        });
        let got = read_varied(&mut s, msg.len());
        writer.join().unwrap();
        assert!(got == msg, "{v:?}: half-closed echo differs");
        let mut rest = [0u8; 16];
        assert_eq!(
            s.read(&mut rest).unwrap(),
            0,
            "{v:?}: expected EOF after everything owed"
        );
    });

    backend_test!(resets_leak_no_fd, |v| {
        let srv = Server::start(v, &[]);
        let mut healthy = srv.connect();
        healthy.write_all(b"ping").unwrap();
        assert_eq!(read_varied(&mut healthy, 4), b"ping");
        let before = srv.fd_count();
        // blocking: the resets are served one after another once the first leaves.
        let mut healthy = if v.concurrent() {
            Some(healthy)
        } else {
            drop(healthy);
            None
        };
        for i in 0..1000u64 {
            let s = srv.connect();
            let sock = socket2::SockRef::from(&s);
            (&s).write_all(&payload(i, 4096)).unwrap();
            if i % 3 == 0 {
                // Mid-transfer: part of the echo is read, the rest is in flight.
                let mut buf = [0u8; 100];
                let _ = (&s).read(&mut buf);
            }
            sock.set_linger(Some(Duration::ZERO)).unwrap();
            drop(s); // RST
            if i % 100 == 0
                && let Some(healthy) = healthy.as_mut()
            {
                healthy.write_all(b"still there?").unwrap();
                assert_eq!(
                    read_varied(healthy, 12),
                    b"still there?",
                    "{v:?}: after {i} resets"
                );
            }
        }
        let settled = wait_until(Duration::from_secs(10), || srv.fd_count() <= before);
        assert!(
            settled,
            "{v:?}: fds before {before}, after 1000 resets {}",
            srv.fd_count()
        );
        drop(healthy);
        let st = srv.stop(Duration::from_secs(10));
        assert!(
            st.stdout.contains("accepted=1001 closed=1001"),
            "{v:?}: {}",
            st.stdout
        );
    });

    backend_test!(slow_reader_bounded_memory, |v| {
        let srv = Server::start(v, &[]);
        let s = srv.connect();
        let rss0 = srv.rss_kib();
        const TOTAL: usize = 100 << 20;
        const CHUNK: usize = 1 << 20;
        let written = Arc::new(AtomicU64::new(0));
        let mut w = s.try_clone().unwrap();
        w.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
        let wr = written.clone();
        let writer = thread::spawn(move || {
            for i in 0..TOTAL / CHUNK {
                w.write_all(&payload(i as u64, CHUNK)).unwrap();
                wr.fetch_add(CHUNK as u64, Ordering::Relaxed);
            }
        });
        // Wait until the writer is stuck: the server stopped reading (outbox full).
        let mut last = u64::MAX;
        let stalled = wait_until(Duration::from_secs(20), || {
            thread::sleep(Duration::from_millis(300));
            let now = written.load(Ordering::Relaxed);
            let same = now == last && now > 0;
            last = now;
            same
        });
        assert!(
            stalled,
            "{v:?}: writer never stalled; the server kept reading without bound"
        );
        let stuck_at = written.load(Ordering::Relaxed);
        assert!(
            stuck_at < TOTAL as u64,
            "{v:?}: all 100 MiB were accepted without the client reading"
        );
        let rss = srv.rss_kib();
        assert!(
            rss < rss0 + 8 * 1024,
            "{v:?}: server RSS grew from {rss0} KiB to {rss} KiB with a slow reader"
        );
        // Now read everything: it arrives intact.
        let mut r = s.try_clone().unwrap();
        let mut buf = vec![0u8; CHUNK];
        for i in 0..TOTAL / CHUNK {
            r.read_exact(&mut buf).unwrap();
            assert!(buf == payload(i as u64, CHUNK), "{v:?}: chunk {i} differs");
        }
        writer.join().unwrap();
        println!(
            "{v:?}: writer stalled at {} MiB, RSS {rss0} -> {rss} KiB",
            stuck_at >> 20
        );
    });

    backend_test!(sigterm_drains_100_connections, |v| {
        let dir = std::env::temp_dir().join(format!("ringmux-test-{}-{v:?}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("stats.json");
        let srv = Server::start(
            v,
            &[
                "--drain-timeout",
                "3",
                "--stats-json",
                json.to_str().unwrap(),
            ],
        );
        // blocking: one served, 99 waiting in the backlog; they get a reset when the
        // listener closes, and only the one accepted counts.
        let n = if v.concurrent() { 100 } else { 1 };
        let mut conns = srv.connect_echoed(n, 100);
        if !v.concurrent() {
            for _ in 0..99 {
                let mut c = srv.connect();
                c.write_all(b"waiting").unwrap();
                conns.push(c);
            }
        }
        let t0 = Instant::now();
        let st = srv.stop(Duration::from_secs(10));
        assert!(
            st.status.success(),
            "{v:?}: exit {:?} stderr {}",
            st.status,
            st.stderr
        );
        assert!(
            t0.elapsed() < Duration::from_secs(4),
            "{v:?}: took {:?}",
            t0.elapsed()
        );
        assert!(
            st.stdout.contains("stats:") && st.stdout.contains("syscalls: total="),
            "{v:?}: {}",
            st.stdout
        );
        assert!(
            st.stdout.contains(&format!("accepted={n} closed={n}")),
            "{v:?}: {}",
            st.stdout
        );
        for (i, c) in conns.iter_mut().enumerate() {
            // Closed: EOF (or a reset for blocking's unaccepted ones), no stray bytes.
            crate::util::assert_closed(c, &format!("{v:?}: conn {i}"));
        }
        let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(j["final"], true);
        assert_eq!(j["connections_accepted"], n);
        assert!(j["syscalls_total"].as_u64().unwrap() > 0);
        assert!(j["cpu_user_s"].as_f64().is_some());
        let _ = std::fs::remove_dir_all(&dir);
    });

    backend_test!(sigterm_with_unread_reply_respects_drain_timeout, |v| {
        // A client that never reads while the server owes it megabytes: the drain
        // timeout must still end the server, with exit 0.
        let json = scratch_dir("unread", v).join("stats.json");
        let srv = Server::start(
            v,
            &[
                "--drain-timeout",
                "1",
                "--stats-json",
                json.to_str().unwrap(),
            ],
        );
        let s = srv.connect();
        let mut w = s.try_clone().unwrap();
        let writer = thread::spawn(move || {
            let chunk = payload(1, 1 << 20);
            for _ in 0..16 {
                if w.write_all(&chunk).is_err() {
                    break;
                }
            }
        });
        // SIGTERM once the server holds the connection and, where sends do not block,
        // owes it bytes it cannot send (read more than it wrote).
        let owed = crate::util::snapshot_until(&srv, &json, Duration::from_secs(20), |j| {
            j["connections_accepted"] == 1
                && (v.blocking_sends() || j["bytes_in"].as_u64() > j["bytes_out"].as_u64())
        });
        assert!(
            owed.is_some(),
            "{v:?}: the server never owed the silent reader anything"
        );
        let st = srv.stop(Duration::from_secs(6));
        assert!(
            st.status.success(),
            "{v:?}: exit {:?} stderr {}",
            st.status,
            st.stderr
        );
        if v.blocking_sends() {
            // A blocking send is the backpressure: the server owes at most one read's
            // worth, and when SIGTERM finds it in recv rather than in send it owes
            // nothing and closes at once; in send, the drain timeout ends it.
            assert!(st.stdout.contains("closed=1"), "{v:?}: {}", st.stdout);
        } else {
            assert!(
                st.stdout.contains("forced_closed=1"),
                "{v:?}: {}",
                st.stdout
            );
        }
        drop(s);
        let _ = writer.join();
    });

    backend_test!(sigusr1_writes_snapshot, |v| {
        let json =
            std::env::temp_dir().join(format!("ringmux-snap-{}-{v:?}.json", std::process::id()));
        let srv = Server::start(v, &["--stats-json", json.to_str().unwrap()]);
        let mut c = srv.connect();
        c.write_all(b"abc").unwrap();
        assert_eq!(read_varied(&mut c, 3), b"abc");
        srv.signal(libc::SIGUSR1);
        assert!(
            wait_until(Duration::from_secs(5), || json.exists()),
            "{v:?}: no snapshot written"
        );
        let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(j["final"], false);
        assert_eq!(j["bytes_in"], 3);
        // Still serving after the snapshot.
        c.write_all(b"def").unwrap();
        assert_eq!(read_varied(&mut c, 3), b"def");
        let _ = std::fs::remove_file(&json);
    });

    // ---- thread-per-core: --threads, --pin, --cpus ----

    /// A fresh, empty folder for one test's files.
    fn scratch_dir(tag: &str, v: Variant) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("ringmux-{tag}-{}-{v:?}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn read_json(path: &std::path::Path) -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        )
        .unwrap()
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

    /// The CPUs this test process may run on (to pick CPUs for --pin).
    fn allowed_cpus() -> Vec<usize> {
        let st = std::fs::read_to_string("/proc/self/status").unwrap();
        let list = st
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_string();
        ringmux::os::cpus::parse_cpu_list(&list).unwrap()
    }

    backend_test!(threads_two_echo_200_connections_on_both_loops, |v| {
        if !v.has_event_loop() {
            return assert_threads_refused(v, &["--threads", "2"]);
        }
        let dir = scratch_dir("t2echo", v);
        let json = dir.join("stats.json");
        let srv = Server::start(
            v,
            &["--threads", "2", "--stats-json", json.to_str().unwrap()],
        );
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
        let st = srv.stop(Duration::from_secs(10));
        assert!(
            st.status.success(),
            "{v:?}: exit {:?} stderr {}",
            st.status,
            st.stderr
        );
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
        if !v.has_event_loop() {
            return assert_threads_refused(v, &["--threads", "2"]);
        }
        let dir = scratch_dir("t2term", v);
        let json = dir.join("stats.json");
        let srv = Server::start(
            v,
            &["--threads", "2", "--stats-json", json.to_str().unwrap()],
        );
        let addr = srv.addr.to_string();
        // A second thread-per-core server must not join this one's SO_REUSEPORT group.
        let mut args = vec!["serve", "--addr", addr.as_str(), "--threads", "2"];
        args.extend(v.args());
        let out = Command::new(BIN).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{v:?}: a second server on {addr} should fail: {err}"
        );
        assert!(
            err.contains("in use") && err.lines().count() == 1,
            "{v:?}: {err}"
        );

        let mut conns = srv.connect_echoed(50, 100);
        // Connections still open at SIGTERM, on both loops: each loop drains its own.
        let t0 = Instant::now();
        let st = srv.stop(Duration::from_secs(10));
        assert!(
            st.status.success(),
            "{v:?}: exit {:?} stderr {}",
            st.status,
            st.stderr
        );
        assert!(
            t0.elapsed() < Duration::from_secs(4),
            "{v:?}: took {:?}",
            t0.elapsed()
        );
        assert!(
            st.stdout.contains("accepted=50 closed=50"),
            "{v:?}: {}",
            st.stdout
        );
        for (i, c) in conns.iter_mut().enumerate() {
            crate::util::assert_closed(c, &format!("{v:?}: conn {i}"));
        }
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
        if !v.has_event_loop() {
            return assert_threads_refused(v, &["--threads", "2"]);
        }
        let dir = scratch_dir("t2snap", v);
        let json = dir.join("stats.json");
        let srv = Server::start(
            v,
            &["--threads", "2", "--stats-json", json.to_str().unwrap()],
        );
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
        let st = srv.stop(Duration::from_secs(10));
        assert!(st.status.success(), "{v:?}: {}", st.stderr);
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
            let mut args = vec!["serve", "--addr", "127.0.0.1:0"];
            args.extend(v.args());
            args.extend(extra);
            let out = Command::new(BIN).args(&args).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{v:?} {extra:?}: bad usage exits 2: {err}"
            );
            assert_eq!(
                err.lines().count(),
                1,
                "{v:?} {extra:?}: one line expected: {err}"
            );
            assert!(
                err.contains(want) && !err.contains("panicked"),
                "{v:?} {extra:?}: want {want:?} in {err}"
            );
            assert!(
                out.stdout.is_empty(),
                "{v:?} {extra:?}: nothing may start: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    });

    backend_test!(threads_two_pin_puts_each_loop_on_its_cpu, |v| {
        let allowed = allowed_cpus();
        if allowed.len() < 2 {
            crate::util::record_skip(
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
            let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            let mask = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .unwrap_or("")
                .trim()
                .to_string();
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
        let st = srv.stop(Duration::from_secs(10));
        assert!(st.status.success(), "{v:?}: {}", st.stderr);
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
        use std::os::unix::process::CommandExt;
        for v in [Variant::UringBaseline, Variant::UringFastpoll] {
            if let Err(why) = v.available() {
                crate::util::record_skip(
                    "later_ring_failure_fails_the_server",
                    &format!("{v:?}"),
                    &why,
                );
                continue;
            }
            let mut hit = None;
            for limit in 6..40u64 {
                let mut cmd = Command::new(BIN);
                cmd.args(["serve", "--addr", "127.0.0.1:0", "--threads", "2"])
                    .args(v.args());
                // SAFETY: runs in the forked child before exec; setrlimit is async-signal-safe.
                unsafe {
                    cmd.pre_exec(move || {
                        let lim = libc::rlimit {
                            rlim_cur: limit,
                            rlim_max: limit,
                        };
                        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                let mut child = cmd
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                let t0 = Instant::now();
                let status = loop {
                    if let Some(st) = child.try_wait().unwrap() {
                        break Some(st);
                    }
                    if t0.elapsed() > Duration::from_secs(3) {
                        break None;
                    }
                    thread::sleep(Duration::from_millis(10));
                };
                let Some(status) = status else {
                    // Enough fds for both rings: it serves. The scan is over.
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                };
                let out = child.wait_with_output().unwrap();
                let err = String::from_utf8_lossy(&out.stderr).to_string();
                assert_eq!(status.code(), Some(1), "{v:?} limit {limit}: {err}");
                assert_eq!(
                    err.lines().count(),
                    1,
                    "{v:?} limit {limit}: one line expected: {err}"
                );
                assert!(
                    !err.contains("panicked") && out.stdout.is_empty(),
                    "{v:?} limit {limit}: {err}"
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

    backend_test!(emfile_backs_off_and_serves_everyone_later, |v| {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--addr", "127.0.0.1:0"]).args(v.args());
        // SAFETY: runs in the forked child before exec; setrlimit is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                let lim = libc::rlimit {
                    rlim_cur: 40,
                    rlim_max: 40,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let srv = Server::spawn(&mut cmd);
        let mut first: Vec<TcpStream> = Vec::new();
        let mut served = 0;
        // 60 clients against 40 fds: the later ones wait in the backlog.
        let mut conns: Vec<TcpStream> = (0..60).map(|_| srv.connect()).collect();
        for c in conns.iter_mut() {
            c.write_all(b"hi").unwrap();
        }
        // Sweep the replies until the server has served what it can: more than 10 and
        // its descriptors at the limit (blocking: the one it serves), against a
        // deadline rather than a fixed wait. Late replies to "waiting" ones are fine:
        // they are read below.
        let mut waiting: Vec<TcpStream> = conns;
        let enough = wait_until(Duration::from_secs(20), || {
            for mut c in std::mem::take(&mut waiting) {
                c.set_nonblocking(true).unwrap();
                let mut b = [0u8; 2];
                let got = c.read(&mut b);
                c.set_nonblocking(false).unwrap();
                match got {
                    Ok(2) => {
                        served += 1;
                        first.push(c);
                    }
                    Ok(1) => {
                        c.read_exact(&mut b[1..]).unwrap();
                        served += 1;
                        first.push(c);
                    }
                    _ => waiting.push(c),
                }
            }
            if v.concurrent() {
                served > 10 && srv.fd_count() >= 38
            } else {
                served >= 1
            }
        });
        assert!(
            enough,
            "{v:?}: served {served}, server fds {} under a limit of 40",
            srv.fd_count()
        );
        if !v.concurrent() {
            // blocking: one connection at a time never runs out of descriptors; the
            // others wait in the backlog and are served in turn.
            assert_eq!(served, 1, "{v:?}: blocking served {served} at once");
            drop(first);
            for (i, mut c) in waiting.into_iter().enumerate() {
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut b = [0u8; 2];
                c.read_exact(&mut b)
                    .unwrap_or_else(|e| panic!("{v:?}: waiting client {i} never served: {e}"));
                assert_eq!(&b, b"hi");
            }
            let st = srv.stop(Duration::from_secs(10));
            assert!(
                st.stdout.contains("accepted=60 closed=60")
                    && st.stdout.contains("accept_backoffs=0"),
                "{v:?}: {}",
                st.stdout
            );
            return;
        }
        assert!(
            !waiting.is_empty(),
            "{v:?}: the fd limit did not bite (served {served})"
        );
        assert!(
            served > 10,
            "{v:?}: only {served} served under the fd limit"
        );
        drop(first); // free descriptors: the server must resume accepting
        // Each waiting client leaves once answered, freeing its fd for the next: the
        // sweep above may stop before the server is full, so more may wait than fit.
        let n_wait = waiting.len();
        for (i, mut c) in waiting.into_iter().enumerate() {
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut b = [0u8; 2];
            c.read_exact(&mut b)
                .unwrap_or_else(|e| panic!("{v:?}: waiting client {i} never served: {e}"));
            assert_eq!(&b, b"hi");
        }
        let st = srv.stop(Duration::from_secs(10));
        assert!(st.status.success(), "{v:?}: {}", st.stderr);
        let backoffs: u64 = st
            .stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix("accept_backoffs="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(
            backoffs > 0,
            "{v:?}: no accept back-off counted: {}",
            st.stdout
        );
        println!("{v:?}: {served} served at once, {n_wait} after fds freed, {backoffs} back-offs");
    });

    backend_test!(restart_on_same_port_at_once, |v| {
        let srv = Server::start(v, &[]);
        let addr = srv.addr.to_string();
        let mut c = srv.connect();
        c.write_all(b"x").unwrap();
        assert_eq!(read_varied(&mut c, 1), b"x");
        drop(c);
        let st = srv.stop(Duration::from_secs(10));
        assert!(st.status.success());
        // The port must be free as soon as the server has exited.
        let mut args = vec!["serve", "--addr", addr.as_str()];
        args.extend(v.args());
        let again = Server::spawn(Command::new(BIN).args(&args));
        assert_eq!(again.addr.to_string(), addr);
    });

    // ---- io_uring unavailable: injected with strace ----

    fn under_strace(errno: &str, backend: &str) -> Command {
        let mut c = Command::new("strace");
        c.args([
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=io_uring_setup",
            "-e",
        ])
        .arg(format!("inject=io_uring_setup:error={errno}"))
        .args([BIN, "serve", "--addr", "127.0.0.1:0", "--backend", backend]);
        c
    }

    #[test]
    fn auto_falls_back_to_epoll_with_one_warning() {
        if !strace_available() {
            return;
        }
        for errno in ["EPERM", "ENOSYS", "ENOMEM", "EINVAL"] {
            let srv = Server::spawn(&mut under_strace(errno, "auto"));
            assert!(
                srv.start_line.contains("backend=epoll"),
                "{errno}: {}",
                srv.start_line
            );
            let mut c = srv.connect();
            c.write_all(b"fallback").unwrap();
            assert_eq!(
                read_varied(&mut c, 8),
                b"fallback",
                "{errno}: epoll fallback does not echo"
            );
            drop(c);
            let st = srv.stop(Duration::from_secs(10));
            let warnings: Vec<&str> = st
                .stderr
                .lines()
                .filter(|l| l.contains("warning"))
                .collect();
            assert_eq!(
                warnings.len(),
                1,
                "{errno}: expected one warning line, stderr: {}",
                st.stderr
            );
            assert!(
                warnings[0].contains(errno) && warnings[0].contains("falling back to epoll"),
                "{errno}: {}",
                warnings[0]
            );
            assert!(st.status.success(), "{errno}: {:?}", st.status);
        }
    }

    #[test]
    fn forced_uring_fails_with_reason() {
        if !strace_available() {
            return;
        }
        for (errno, hint) in [
            ("EPERM", "io_uring_disabled"),
            ("ENOSYS", "5.6"),
            ("ENOMEM", "MEMLOCK"),
        ] {
            let out = under_strace(errno, "uring").output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "{errno}: --backend uring should fail"
            );
            assert_eq!(
                stderr.lines().count(),
                1,
                "{errno}: one line expected: {stderr}"
            );
            assert!(
                stderr.contains(errno) && stderr.contains(hint),
                "{errno}: {stderr}"
            );
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }

    // ---- bad input ----

    fn run_bad(args: &[&str]) -> (i32, String) {
        let out = Command::new(BIN).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
        (out.status.code().unwrap_or(-1), stderr)
    }

    #[test]
    fn serve_rejects_bad_input_with_one_line() {
        let (code, err) = run_bad(&["serve", "--addr", "not-an-address"]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.lines()
                .next()
                .unwrap()
                .contains("invalid value 'not-an-address'"),
            "{err}"
        );

        let (code, err) = run_bad(&["serve", "--backend", "kqueue"]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.lines()
                .next()
                .unwrap()
                .contains("invalid value 'kqueue'"),
            "{err}"
        );

        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        for backend in ["epoll", "auto"] {
            let (code, err) = run_bad(&["serve", "--addr", &addr, "--backend", backend]);
            assert_eq!(code, 1, "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(
                err.contains("cannot listen on") && err.contains("in use"),
                "{err}"
            );
        }

        let (code, err) = run_bad(&["serve", "--addr", "192.0.2.1:80", "--backend", "epoll"]);
        assert_eq!(code, 1, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }

    #[test]
    fn probe_reports_levels() {
        let out = Command::new(BIN)
            .args(["probe", "--json"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(j["kernel"].as_str().unwrap().len() > 2);
        let caps = j["capabilities"].as_array().unwrap();
        for name in [
            "ACCEPT",
            "RECV",
            "SEND",
            "POLL_ADD",
            "SHUTDOWN",
            "ASYNC_CANCEL",
            "FEAT_FAST_POLL",
        ] {
            assert!(caps.iter().any(|c| c["name"] == name), "probe lacks {name}");
        }
        let text = Command::new(BIN).arg("probe").output().unwrap();
        assert!(String::from_utf8_lossy(&text.stdout).contains("--uring-features auto picks"));
        // Whether io_uring is usable decides whether the uring variants run: say so.
        if j["io_uring_available"] != true {
            println!(
                "NOTE: io_uring unavailable here, uring variants are skipped: {}",
                j["unavailable"]
            );
        }
    }

    /// Every variant starts a different server, and the uring variants are exactly the
    /// levels `ringmux probe --json` knows (a new level needs a variant).
    #[test]
    fn variants_are_distinct_and_cover_the_levels() {
        let mut args: Vec<Vec<&str>> = Variant::ALL.iter().map(|v| v.args()).collect();
        args.sort();
        args.dedup();
        assert_eq!(
            args.len(),
            Variant::ALL.len(),
            "two variants run the same server: {args:?}"
        );
        let mut ours: Vec<&str> = Variant::ALL.iter().filter_map(|v| v.level()).collect();
        let mut probed: Vec<&str> = crate::util::probe()["levels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l[0].as_str().unwrap())
            .collect();
        ours.sort_unstable();
        probed.sort_unstable();
        assert_eq!(ours, probed, "uring variants vs the probe's levels");
    }
}

mod bench {
    use std::time::Duration;

    use crate::util::{BIN, run_bounded};

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
        let (status, stdout, stderr) = run_bounded(&args, Duration::from_secs(120));
        assert!(
            status.success(),
            "bench failed: {status}\n{stdout}\n{stderr}"
        );
        let r: ringmux::results::schema::BenchResults =
            serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap())
                .expect("results.json parses");
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
        // The reference peers are example binaries beside ringmux: `cargo test` builds
        // them; a run of this test binary alone (`cargo test --test tests`) may not, and
        // the bench must not start cargo under a running `cargo test`.
        let examples = std::path::Path::new(BIN).parent().unwrap().join("examples");
        let peers = ["tokio_echo_server", "monoio_echo_server"]
            .iter()
            .all(|b| examples.join(b).is_file());
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
            eprintln!(
                "quick_bench_end_to_end: reference peers not built in {} (cargo test builds them): running with --no-peers",
                examples.display()
            );
            args.push("--no-peers");
        }
        let (status, stdout, stderr) = run_bounded(&args, Duration::from_secs(180));
        assert!(
            status.success(),
            "bench failed: {status}\n{stdout}\n{stderr}"
        );
        assert!(
            !stderr.contains("building the reference peers"),
            "the peers were there: nothing to build\n{stderr}"
        );
        assert!(
            stdout.contains("| server |") && stdout.contains("report.html"),
            "{stdout}"
        );

        let r: ringmux::results::schema::BenchResults =
            serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap())
                .expect("results.json parses");
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
        let modes: std::collections::BTreeSet<&str> =
            r.cells.iter().map(|c| c.mode.as_str()).collect();
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
            !html.contains("src=\"http")
                && !html.contains("href=\"http")
                && !html.contains("<script"),
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
        let (status, stdout, stderr) = run_bounded(
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
            Duration::from_secs(120),
        );
        assert!(
            status.success(),
            "bench --idle-conns failed: {status}\n{stdout}\n{stderr}"
        );
        assert!(
            stdout.contains("| server | features | conns | bytes/conn")
                && stdout.contains("report.html"),
            "{stdout}"
        );

        let r: ringmux::results::schema::BenchResults =
            serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap())
                .expect("results.json parses");
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
        if crate::util::Variant::UringBaseline.available().is_ok() {
            assert!(measured.contains(&"uring:baseline"), "{measured:?}");
        }
        if crate::util::Variant::UringFastpoll.available().is_ok() {
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
        let (status, cmp, err) = run_bounded(
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
            status.success(),
            "compare an idle run with itself: {status}\n{cmp}\n{err}"
        );
        assert_eq!(
            cmp.lines().filter(|l| l.contains(" memory ")).count(),
            idle.servers.len(),
            "{cmp}"
        );
        let _ = std::fs::remove_dir_all(&out);
    }

    /// More connections than descriptors or local ports allow: one line, no panic.
    #[test]
    fn idle_bench_too_many_connections_is_one_line() {
        let out =
            std::env::temp_dir().join(format!("ringmux-bench-idle-big-{}", std::process::id()));
        let (status, stdout, stderr) = run_bounded(
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
}
