//! One integration binary: drives the real `ringmux` over loopback sockets.
//! Server tests run once per backend and io_uring feature level (`backend_test!`).

mod util;

/// `ringmux load` against small echo servers of the tests' own.
mod it_load;
/// Formats, report, compare and merge.
mod it_report;

mod serve {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpStream};
    use std::process::Command;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::thread;
    use std::time::{Duration, Instant};

    use crate::backend_test;
    use crate::util::{BIN, Server, Variant, payload, read_varied, strace_available, wait_until};

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
        assert!(st.status.success(), "{v:?}: exit {:?}, stderr {}", st.status, st.stderr);
    });

    backend_test!(upper_payloads_byte_exact, |v| {
        let srv = Server::start(v, &["--proto", "upper"]);
        let s = srv.connect();
        for (i, size) in [1usize, 1024, 65536, 4 << 20].into_iter().enumerate() {
            let msg = payload(i as u64 + 100, size);
            let got = round_trip(&s, &msg);
            assert!(got == msg.to_ascii_uppercase(), "{v:?}: upper of {size} bytes differs");
        }
        let mut s2 = srv.connect();
        s2.write_all(b"Hello, ringmux!").unwrap();
        assert_eq!(read_varied(&mut s2, 15), b"HELLO, RINGMUX!");
    });

    backend_test!(two_thousand_connections, |v| {
        let srv = Server::start(v, &[]);
        let mut conns: Vec<TcpStream> = (0..2000).map(|_| srv.connect()).collect();
        for round in 0..3u64 {
            for (i, c) in conns.iter_mut().enumerate() {
                c.write_all(&payload(round * 10_000 + i as u64, 64)).unwrap();
            }
            for (i, c) in conns.iter_mut().enumerate() {
                let got = read_varied(c, 64);
                assert_eq!(got, payload(round * 10_000 + i as u64, 64), "{v:?}: conn {i} round {round}");
            }
        }
        drop(conns);
        let st = srv.stop(Duration::from_secs(10));
        assert!(st.stdout.contains("accepted=2000"), "{v:?}: {}", st.stdout);
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
        assert_eq!(s.read(&mut rest).unwrap(), 0, "{v:?}: expected EOF after everything owed");
    });

    backend_test!(resets_leak_no_fd, |v| {
        let srv = Server::start(v, &[]);
        let mut healthy = srv.connect();
        healthy.write_all(b"ping").unwrap();
        assert_eq!(read_varied(&mut healthy, 4), b"ping");
        let before = srv.fd_count();
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
            if i % 100 == 0 {
                healthy.write_all(b"still there?").unwrap();
                assert_eq!(read_varied(&mut healthy, 12), b"still there?", "{v:?}: after {i} resets");
            }
        }
        let settled = wait_until(Duration::from_secs(10), || srv.fd_count() <= before);
        assert!(settled, "{v:?}: fds before {before}, after 1000 resets {}", srv.fd_count());
        drop(healthy);
        let st = srv.stop(Duration::from_secs(10));
        assert!(st.stdout.contains("accepted=1001 closed=1001"), "{v:?}: {}", st.stdout);
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
        assert!(stalled, "{v:?}: writer never stalled; the server kept reading without bound");
        let stuck_at = written.load(Ordering::Relaxed);
        assert!(stuck_at < TOTAL as u64, "{v:?}: all 100 MiB were accepted without the client reading");
        let rss = srv.rss_kib();
        assert!(rss < rss0 + 8 * 1024, "{v:?}: server RSS grew from {rss0} KiB to {rss} KiB with a slow reader");
        // Now read everything: it arrives intact.
        let mut r = s.try_clone().unwrap();
        let mut buf = vec![0u8; CHUNK];
        for i in 0..TOTAL / CHUNK {
            r.read_exact(&mut buf).unwrap();
            assert!(buf == payload(i as u64, CHUNK), "{v:?}: chunk {i} differs");
        }
        writer.join().unwrap();
        println!("{v:?}: writer stalled at {} MiB, RSS {rss0} -> {rss} KiB", stuck_at >> 20);
    });

    backend_test!(sigterm_drains_100_connections, |v| {
        let dir = std::env::temp_dir().join(format!("ringmux-test-{}-{v:?}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("stats.json");
        let srv = Server::start(v, &["--drain-timeout", "3", "--stats-json", json.to_str().unwrap()]);
        let mut conns: Vec<TcpStream> = (0..100).map(|_| srv.connect()).collect();
        for (i, c) in conns.iter_mut().enumerate() {
            c.write_all(&payload(i as u64, 100)).unwrap();
            assert_eq!(read_varied(c, 100), payload(i as u64, 100));
        }
        let t0 = Instant::now();
        let st = srv.stop(Duration::from_secs(10));
        assert!(st.status.success(), "{v:?}: exit {:?} stderr {}", st.status, st.stderr);
        assert!(t0.elapsed() < Duration::from_secs(4), "{v:?}: took {:?}", t0.elapsed());
        assert!(st.stdout.contains("stats:") && st.stdout.contains("syscalls: total="), "{v:?}: {}", st.stdout);
        assert!(st.stdout.contains("accepted=100 closed=100"), "{v:?}: {}", st.stdout);
        for c in &mut conns {
            let mut b = [0u8; 8];
            // Closed by the server: EOF (or a reset), never a hang.
            assert!(matches!(c.read(&mut b), Ok(0) | Err(_)));
        }
        let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(j["final"], true);
        assert_eq!(j["connections_accepted"], 100);
        assert!(j["syscalls_total"].as_u64().unwrap() > 0);
        assert!(j["cpu_user_s"].as_f64().is_some());
        let _ = std::fs::remove_dir_all(&dir);
    });

    backend_test!(sigterm_with_unread_reply_respects_drain_timeout, |v| {
        // A client that never reads while the server owes it megabytes: the drain
        // timeout must still end the server, with exit 0.
        let srv = Server::start(v, &["--drain-timeout", "1"]);
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
        thread::sleep(Duration::from_millis(500));
        let st = srv.stop(Duration::from_secs(6));
        assert!(st.status.success(), "{v:?}: exit {:?} stderr {}", st.status, st.stderr);
        assert!(st.stdout.contains("forced_closed=1"), "{v:?}: {}", st.stdout);
        drop(s);
        let _ = writer.join();
    });

    backend_test!(sigusr1_writes_snapshot, |v| {
        let json = std::env::temp_dir().join(format!("ringmux-snap-{}-{v:?}.json", std::process::id()));
        let srv = Server::start(v, &["--stats-json", json.to_str().unwrap()]);
        let mut c = srv.connect();
        c.write_all(b"abc").unwrap();
        assert_eq!(read_varied(&mut c, 3), b"abc");
        srv.signal(libc::SIGUSR1);
        assert!(wait_until(Duration::from_secs(5), || json.exists()), "{v:?}: no snapshot written");
        let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(j["final"], false);
        assert_eq!(j["bytes_in"], 3);
        // Still serving after the snapshot.
        c.write_all(b"def").unwrap();
        assert_eq!(read_varied(&mut c, 3), b"def");
        let _ = std::fs::remove_file(&json);
    });

    backend_test!(emfile_backs_off_and_serves_everyone_later, |v| {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--addr", "127.0.0.1:0"]).args(v.args());
        // SAFETY: runs in the forked child before exec; setrlimit is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                let lim = libc::rlimit { rlim_cur: 40, rlim_max: 40 };
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
        thread::sleep(Duration::from_millis(700)); // ample time to serve all it can
        let mut waiting = Vec::new();
        for mut c in conns {
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
        assert!(!waiting.is_empty(), "{v:?}: the fd limit did not bite (served {served})");
        assert!(served > 10, "{v:?}: only {served} served under the fd limit");
        drop(first); // free descriptors: the server must resume accepting
        for (i, c) in waiting.iter_mut().enumerate() {
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut b = [0u8; 2];
            c.read_exact(&mut b).unwrap_or_else(|e| panic!("{v:?}: waiting client {i} never served: {e}"));
            assert_eq!(&b, b"hi");
        }
        let n_wait = waiting.len();
        drop(waiting);
        let st = srv.stop(Duration::from_secs(10));
        assert!(st.status.success(), "{v:?}: {}", st.stderr);
        let backoffs: u64 = st
            .stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix("accept_backoffs="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(backoffs > 0, "{v:?}: no accept back-off counted: {}", st.stdout);
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
        c.args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=io_uring_setup", "-e"])
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
            assert!(srv.start_line.contains("backend=epoll"), "{errno}: {}", srv.start_line);
            let mut c = srv.connect();
            c.write_all(b"fallback").unwrap();
            assert_eq!(read_varied(&mut c, 8), b"fallback", "{errno}: epoll fallback does not echo");
            drop(c);
            let st = srv.stop(Duration::from_secs(10));
            let warnings: Vec<&str> = st.stderr.lines().filter(|l| l.contains("warning")).collect();
            assert_eq!(warnings.len(), 1, "{errno}: expected one warning line, stderr: {}", st.stderr);
            assert!(warnings[0].contains(errno) && warnings[0].contains("falling back to epoll"), "{errno}: {}", warnings[0]);
            assert!(st.status.success(), "{errno}: {:?}", st.status);
        }
    }

    #[test]
    fn forced_uring_fails_with_reason() {
        if !strace_available() {
            return;
        }
        for (errno, hint) in [("EPERM", "io_uring_disabled"), ("ENOSYS", "5.6"), ("ENOMEM", "MEMLOCK")] {
            let out = under_strace(errno, "uring").output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{errno}: --backend uring should fail");
            assert_eq!(stderr.lines().count(), 1, "{errno}: one line expected: {stderr}");
            assert!(stderr.contains(errno) && stderr.contains(hint), "{errno}: {stderr}");
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
        assert!(err.lines().next().unwrap().contains("invalid value 'not-an-address'"), "{err}");

        let (code, err) = run_bad(&["serve", "--backend", "kqueue"]);
        assert_eq!(code, 2, "{err}");
        assert!(err.lines().next().unwrap().contains("invalid value 'kqueue'"), "{err}");

        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        for backend in ["epoll", "auto"] {
            let (code, err) = run_bad(&["serve", "--addr", &addr, "--backend", backend]);
            assert_eq!(code, 1, "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.contains("cannot listen on") && err.contains("in use"), "{err}");
        }

        let (code, err) = run_bad(&["serve", "--addr", "192.0.2.1:80", "--backend", "epoll"]);
        assert_eq!(code, 1, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }

    #[test]
    fn probe_reports_levels() {
        let out = Command::new(BIN).args(["probe", "--json"]).output().unwrap();
        assert!(out.status.success());
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(j["kernel"].as_str().unwrap().len() > 2);
        let caps = j["capabilities"].as_array().unwrap();
        for name in ["ACCEPT", "RECV", "SEND", "POLL_ADD", "SHUTDOWN", "ASYNC_CANCEL", "FEAT_FAST_POLL"] {
            assert!(caps.iter().any(|c| c["name"] == name), "probe lacks {name}");
        }
        let text = Command::new(BIN).arg("probe").output().unwrap();
        assert!(String::from_utf8_lossy(&text.stdout).contains("--uring-features auto picks"));
        // Whether io_uring is usable decides whether the uring variants run: say so.
        if j["io_uring_available"] != true {
            println!("NOTE: io_uring unavailable here, uring variants are skipped: {}", j["unavailable"]);
        }
    }

    #[test]
    fn variants_are_distinct() {
        assert_ne!(Variant::UringBaseline.args(), Variant::UringFastpoll.args());
    }
}

mod bench {
    use std::process::Command;
    use std::time::{Duration, Instant};

    use crate::util::BIN;

    /// `bench --quick` end to end: real servers, real load, results.json valid, one
    /// SVG per chart in a report.html that needs no network.
    #[test]
    fn quick_bench_end_to_end() {
        let out = std::env::temp_dir().join(format!("ringmux-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let t0 = Instant::now();
        let mut child = Command::new(BIN)
            .args(["bench", "--quick", "--duration", "0.5", "--conns", "1,50", "--out"])
            .arg(&out)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > Duration::from_secs(180) {
                let _ = child.kill();
                panic!("bench --quick did not finish within 180 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let o = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(status.success(), "bench failed: {status}\n{stdout}\n{stderr}");
        assert!(stdout.contains("| server |") && stdout.contains("report.html"), "{stdout}");

        let r: ringmux::report::model::BenchResults =
            serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).expect("results.json parses");
        assert_eq!(r.schema, "ringmux.bench/1");
        let servers: std::collections::BTreeSet<&str> = r.cells.iter().map(|c| c.server.as_str()).collect();
        assert!(servers.contains("epoll"), "{servers:?}");
        let modes: std::collections::BTreeSet<&str> = r.cells.iter().map(|c| c.mode.as_str()).collect();
        assert!(modes.contains("closed") && modes.contains("open"), "{modes:?}");
        for c in &r.cells {
            let m = &c.median;
            assert!(m.msgs_per_s > 0.0 && m.p99_ns > 0.0, "{}: {m:?}", c.id);
            assert_eq!(m.errors, 0, "{}", c.id);
            assert!(m.cpu_ns_per_msg.is_some_and(|v| v > 0.0), "{}: no server CPU", c.id);
            if c.server == "epoll" || c.server.starts_with("uring") {
                assert!(m.syscalls_per_msg.is_some_and(|v| v > 0.0), "{}: ringmux must report syscalls", c.id);
            }
            for f in c.hgrm.iter().chain(&c.hlog) {
                assert!(out.join(f).is_file(), "{}: missing {f}", c.id);
            }
        }
        let html = std::fs::read_to_string(out.join("report.html")).unwrap();
        let svgs = html.matches("<svg").count();
        // One spectrum and one timeline per shape, plus three bar charts.
        let shapes: std::collections::BTreeSet<String> = r.cells.iter().map(|c| c.id.split_once('/').unwrap().1.to_string()).collect();
        assert_eq!(svgs, shapes.len() * 2 + 3, "SVG charts in report.html");
        assert!(!html.contains("src=\"http") && !html.contains("href=\"http") && !html.contains("<script"), "report.html must open offline");
        for f in ["report.md", "ci/github-action-benchmark.json", "ci/bencher.json"] {
            assert!(out.join(f).is_file(), "missing {f}");
        }
        let _ = std::fs::remove_dir_all(&out);
    }
}
