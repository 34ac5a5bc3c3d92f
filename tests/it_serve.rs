//! The server on every backend and io_uring level: byte-exact echo and upper, 2,000
//! connections, half-close, resets, a slow reader, SIGTERM's drain, SIGUSR1's
//! snapshot, a restart on the same port, bad input and the probe.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use crate::backend_test;
use crate::util::{
    BIN, Server, Variant, assert_drains, assert_second_client_waits, payload, read_json,
    read_varied, run_bounded, scratch_dir, snapshot_until, steady, wait_until,
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
    srv.stop_ok(Duration::from_secs(10));
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
    let json = std::env::temp_dir().join(format!("ringmux-2000-{}-{v:?}.json", std::process::id()));
    let srv = Server::start(v, &["--stats-json", json.to_str().unwrap()]);
    if !v.concurrent() {
        // blocking serves one connection at a time: 20 clients in a row, each
        // waiting in the backlog until the one before leaves.
        let mut prev = srv.connect_echoed(1, 64).pop().unwrap();
        for _ in 0..20 {
            prev = assert_second_client_waits(&srv, prev);
        }
        drop(prev);
        let st = srv.stop_ok(Duration::from_secs(10));
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
    let st = srv.stop_ok(Duration::from_secs(10));
    assert!(st.stdout.contains("accepted=2000"), "{v:?}: {}", st.stdout);
    let j = read_json(&json);
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
    // Wait until the writer is stuck: the server stopped reading (outbox full), so
    // what was written stays the same over 300 ms.
    assert!(
        wait_until(Duration::from_secs(20), || written.load(Ordering::Relaxed)
            > 0),
        "{v:?}: the writer wrote nothing"
    );
    let stalled = steady(Duration::from_secs(20), Duration::from_millis(300), || {
        written.load(Ordering::Relaxed)
    });
    assert!(
        stalled.is_some(),
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
    let dir = scratch_dir(&format!("drain-{v:?}"));
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
    let st = assert_drains(srv, &mut conns, n);
    assert!(
        st.stdout.contains("stats:") && st.stdout.contains("syscalls: total="),
        "{v:?}: {}",
        st.stdout
    );
    let j = read_json(&json);
    assert_eq!(j["final"], true);
    assert_eq!(j["connections_accepted"], n);
    assert!(j["syscalls_total"].as_u64().unwrap() > 0);
    assert!(j["cpu_user_s"].as_f64().is_some());
    let _ = std::fs::remove_dir_all(&dir);
});

backend_test!(sigterm_with_unread_reply_respects_drain_timeout, |v| {
    // A client that never reads while the server owes it megabytes: the drain
    // timeout must still end the server, with exit 0.
    let json = scratch_dir(&format!("unread-{v:?}")).join("stats.json");
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
    // owes it bytes it cannot send: it read more than it wrote, and neither count has
    // moved for 300 ms over several snapshots (each one written by the loop itself, so
    // the loop was running): it stopped reading under backpressure and its sends wait
    // for a peer that never reads. Read-more-than-written alone also holds while the
    // server is merely behind, and a drain then flushes everything in time.
    let mut same_since: Option<((u64, u64), std::time::Instant, u32)> = None;
    let owed = snapshot_until(&srv, &json, Duration::from_secs(20), |j| {
        if j["connections_accepted"] != 1 {
            return false;
        }
        if v.blocking_sends() {
            return true;
        }
        let now = (
            j["bytes_in"].as_u64().unwrap_or(0),
            j["bytes_out"].as_u64().unwrap_or(0),
        );
        match &mut same_since {
            Some((seen, since, n)) if *seen == now => {
                *n += 1;
                now.0 > now.1 && *n >= 3 && since.elapsed() >= Duration::from_millis(300)
            }
            _ => {
                same_since = Some((now, std::time::Instant::now(), 1));
                false
            }
        }
    });
    assert!(
        owed.is_some(),
        "{v:?}: the server never owed the silent reader anything"
    );
    let st = srv.stop_ok(Duration::from_secs(6));
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
    let json = std::env::temp_dir().join(format!("ringmux-snap-{}-{v:?}.json", std::process::id()));
    let srv = Server::start(v, &["--stats-json", json.to_str().unwrap()]);
    let mut c = srv.connect();
    c.write_all(b"abc").unwrap();
    assert_eq!(read_varied(&mut c, 3), b"abc");
    srv.signal(libc::SIGUSR1);
    assert!(
        wait_until(Duration::from_secs(5), || json.exists()),
        "{v:?}: no snapshot written"
    );
    let j = read_json(&json);
    assert_eq!(j["final"], false);
    assert_eq!(j["bytes_in"], 3);
    // Still serving after the snapshot.
    c.write_all(b"def").unwrap();
    assert_eq!(read_varied(&mut c, 3), b"def");
    let _ = std::fs::remove_file(&json);
});

backend_test!(restart_on_same_port_at_once, |v| {
    let srv = Server::start(v, &[]);
    let addr = srv.addr.to_string();
    let mut c = srv.connect();
    c.write_all(b"x").unwrap();
    assert_eq!(read_varied(&mut c, 1), b"x");
    drop(c);
    srv.stop_ok(Duration::from_secs(10));
    // The port must be free as soon as the server has exited.
    let mut args = vec!["serve", "--addr", addr.as_str()];
    args.extend(v.args());
    let again = Server::spawn(Command::new(BIN).args(&args));
    assert_eq!(again.addr.to_string(), addr);
});

// ---- bad input ----

fn run_bad(args: &[&str]) -> (i32, String) {
    let r = run_bounded(args, Duration::from_secs(20));
    assert!(!r.stderr.contains("panicked"), "panicked\n{}", r.explain());
    (r.code().unwrap_or(-1), r.stderr)
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
    let out = run_bounded(&["probe", "--json"], Duration::from_secs(20));
    assert!(out.status.success(), "{}", out.explain());
    let j: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
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
    let text = run_bounded(&["probe"], Duration::from_secs(20));
    assert!(
        text.stdout.contains("--uring-features auto picks"),
        "{}",
        text.explain()
    );
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
