//! Limits on every backend variant: --idle-timeout closes silent connections (one
//! timer mechanism per loop) while active ones stay; --header-timeout answers a
//! slowloris head with 408; --max-conns refuses the connection over N and keeps
//! serving the N; the cap on unconsumed input keeps a 64 MiB line (chat) or an endless
//! head (http) from costing memory; at the file limit (EMFILE) accept backs off and
//! everyone waiting is served once descriptors free up.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::backend_test;
use crate::util::{BIN, Server, counter, payload, read_json, read_varied, wait_until, with_rlimit};

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ringmux-limits-{}-{name}", std::process::id()))
}

/// Wait for EOF (or a reset) on `s`, reading and discarding; the time it came.
fn eof_at(s: &mut TcpStream, within: Duration) -> Option<Instant> {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) => return Some(Instant::now()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(Instant::now());
            }
            Err(_) => return None,
        }
    }
}

/// One echo round trip, byte-exact.
fn echo_ok(s: &mut TcpStream, seed: u64) {
    let p = payload(seed, 100);
    s.write_all(&p).unwrap();
    assert_eq!(read_varied(s, 100), p);
}

const IDLE_S: u64 = 2;

backend_test!(idle_timeout_closes_silent_keeps_active, |v| {
    let json = tmp(&format!("{v:?}-idle.json"));
    let srv = Server::start(
        v,
        &[
            "--idle-timeout",
            &IDLE_S.to_string(),
            "--json",
            json.to_str().unwrap(),
        ],
    );
    // blocking serves one connection at a time: one silent one.
    let n = if v.concurrent() { 200 } else { 1 };
    let t0 = Instant::now();
    let mut silent: Vec<TcpStream> = (0..n).map(|_| srv.connect()).collect();
    // The active one speaks every 300 ms through the whole window, on its own thread.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let active = v.concurrent().then(|| {
        let mut a = srv.connect();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut round = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                echo_ok(&mut a, round);
                round += 1;
                std::thread::sleep(Duration::from_millis(300));
            }
            a
        })
    });
    for s in &silent {
        s.set_nonblocking(true).unwrap();
    }
    let mut closed = vec![None; n];
    let end = t0 + Duration::from_secs(IDLE_S + 4);
    let mut b = [0u8; 64];
    while Instant::now() < end && closed.iter().any(|c| c.is_none()) {
        for (i, s) in silent.iter_mut().enumerate() {
            if closed[i].is_none() {
                match s.read(&mut b) {
                    Ok(0) => closed[i] = Some(t0.elapsed()),
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                        closed[i] = Some(t0.elapsed())
                    }
                    Ok(_) => panic!("{v:?}: a silent connection got bytes"),
                    Err(_) => {}
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut active = active.map(|t| {
        t.join()
            .expect("the active connection was served throughout")
    });
    let open = closed.iter().filter(|c| c.is_none()).count();
    assert_eq!(
        open,
        0,
        "{v:?}: {open} of {n} silent connections still open {} s after connecting",
        IDLE_S + 4
    );
    let earliest = closed.iter().flatten().min().unwrap();
    let latest = closed.iter().flatten().max().unwrap();
    // Not before the timeout (minus the connect time), and within S + 1 s (+1 s of
    // polling slack on a noisy machine).
    assert!(
        *earliest >= Duration::from_millis(IDLE_S * 1000 - 500),
        "{v:?}: closed after {earliest:?}"
    );
    assert!(
        *latest <= Duration::from_secs(IDLE_S + 2),
        "{v:?}: the last closed after {latest:?}"
    );
    match active.as_mut() {
        Some(a) => echo_ok(a, 999), // still up
        None => {
            // blocking: now an active connection is served past the timeout.
            let mut a = srv.connect();
            for r in 0..(IDLE_S * 2 + 2) {
                echo_ok(&mut a, r);
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    drop(active);
    srv.stop_ok(Duration::from_secs(10));
    let j = read_json(&json);
    assert_eq!(j["idle_timeouts"], n as u64, "{j}");
});

backend_test!(slowloris_head_gets_408, |v| {
    let json = tmp(&format!("{v:?}-408.json"));
    let srv = Server::start(
        v,
        &[
            "--proto",
            "http",
            "--header-timeout",
            "1",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    let mut s = srv.connect();
    let t0 = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    // Trickle a header line every 300 ms: activity, but the head never ends.
    let mut w = s.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for i in 0..30 {
            if w.write_all(format!("X-{i}: y\r\n").as_bytes()).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let mut got = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.read_to_end(&mut got);
    let took = t0.elapsed();
    assert!(
        got.starts_with(b"HTTP/1.1 408 "),
        "{v:?}: {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(6),
        "{v:?}: 408 after {took:?}"
    );
    trickle.join().unwrap();
    // A complete request is still served.
    let mut s = srv.connect();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut b = [0u8; 17];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"HTTP/1.1 200 OK\r\n");
    drop(s);
    srv.stop_ok(Duration::from_secs(10));
    assert_eq!(read_json(&json)["header_timeouts"], 1);
});

backend_test!(max_conns_refuses_over_n_serves_n, |v| {
    if !v.concurrent() {
        return println!(
            "{v:?}: not applicable (serves one connection at a time; the next waits in the backlog)"
        );
    }
    let json = tmp(&format!("{v:?}-max.json"));
    let srv = Server::start(v, &["--max-conns", "5", "--json", json.to_str().unwrap()]);
    let mut five = srv.connect_echoed(5, 100);
    for _ in 0..3 {
        let mut extra = srv.connect();
        assert!(
            eof_at(&mut extra, Duration::from_secs(10)).is_some(),
            "{v:?}: the 6th connection was not closed"
        );
    }
    for (i, s) in five.iter_mut().enumerate() {
        echo_ok(s, 100 + i as u64);
    }
    // One leaves: a new one gets its place.
    five.pop();
    let mut again = None;
    for _ in 0..50 {
        let mut s = srv.connect();
        let p = payload(7, 100);
        if s.write_all(&p).is_ok() {
            let mut b = vec![0u8; 100];
            if s.read_exact(&mut b).is_ok() && b == p {
                again = Some(s);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(again.is_some(), "{v:?}: no place freed after a close");
    drop((five, again));
    srv.stop_ok(Duration::from_secs(10));
    let j = read_json(&json);
    let refused = j["refused_max_conns"].as_u64().unwrap();
    assert!(refused >= 3, "{j}");
});

/// Write `total` bytes of `fill` (as much as the server takes; it may close).
fn flood(s: &mut TcpStream, total: usize, fill: u8) -> usize {
    let chunk = vec![fill; 1 << 16];
    let mut sent = 0;
    while sent < total {
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    sent
}

backend_test!(unconsumed_input_costs_no_memory, |v| {
    const MIB: usize = 1 << 20;
    // chat: a 64 MiB line without an end is dropped as it comes.
    {
        // io_uring: a fixed group of 64 receive buffers (1 MiB), all touched in the
        // warm-up; a growing group is memory of its own, not unconsumed input.
        let fixed: &[&str] = if v.level().is_some() {
            &["--buf-ring-entries", "64"]
        } else {
            &[]
        };
        let srv = Server::start(v, &[&["--proto", "chat"][..], fixed].concat());
        let mut s = srv.connect();
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        // Warm-up: every receive buffer (io_uring's provided ring) touched once.
        assert_eq!(flood(&mut s, 32 * MIB, b'x'), 32 * MIB);
        let before = srv.rss_kib();
        assert_eq!(
            flood(&mut s, 64 * MIB, b'x'),
            64 * MIB,
            "{v:?}: the server stopped reading"
        );
        s.write_all(b"\nok\n").unwrap();
        let mut r = s.try_clone().unwrap();
        let mut buf = Vec::new();
        let want = b"* line too long\n[guest-1] ok\n";
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut b = [0u8; 256];
        while !buf.ends_with(want) && Instant::now() < deadline {
            let n = r.read(&mut b).unwrap();
            assert!(n > 0, "{v:?}: closed");
            buf.extend_from_slice(&b[..n]);
        }
        assert!(
            buf.ends_with(want),
            "{v:?}: {:?}",
            String::from_utf8_lossy(&buf)
        );
        let grew = srv.rss_kib().saturating_sub(before);
        assert!(grew < 2048, "{v:?}: RSS grew {grew} KiB over a 64 MiB line");
    }
    // http: a head that never ends gets 431 and a close; memory stays put.
    let srv = Server::start(v, &["--proto", "http"]);
    let before = srv.rss_kib();
    let mut s = srv.connect();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nX: ").unwrap();
    flood(&mut s, 64 * MIB, b'a');
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        got.starts_with(b"HTTP/1.1 431 "),
        "{v:?}: {:?}",
        String::from_utf8_lossy(&got)
    );
    let grew = srv.rss_kib().saturating_sub(before);
    assert!(
        grew < 2048,
        "{v:?}: RSS grew {grew} KiB over an endless head"
    );
});

backend_test!(emfile_backs_off_and_serves_everyone_later, |v| {
    let srv = Server::spawn(with_rlimit(
        Command::new(BIN)
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(v.args()),
        libc::RLIMIT_NOFILE,
        40,
    ));
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
    // Every waiting client gets its echo (each leaves once answered).
    let serve_waiting = |waiting: Vec<TcpStream>| {
        for (i, mut c) in waiting.into_iter().enumerate() {
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut b = [0u8; 2];
            c.read_exact(&mut b)
                .unwrap_or_else(|e| panic!("{v:?}: waiting client {i} never served: {e}"));
            assert_eq!(&b, b"hi");
        }
    };
    if !v.concurrent() {
        // blocking: one connection at a time never runs out of descriptors; the
        // others wait in the backlog and are served in turn.
        assert_eq!(served, 1, "{v:?}: blocking served {served} at once");
        drop(first);
        serve_waiting(waiting);
        let st = srv.stop(Duration::from_secs(10));
        assert!(
            st.stdout.contains("accepted=60 closed=60") && st.stdout.contains("accept_backoffs=0"),
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
    serve_waiting(waiting);
    let st = srv.stop_ok(Duration::from_secs(10));
    let backoffs = counter(&st.stdout, "accept_backoffs");
    assert!(
        backoffs > 0,
        "{v:?}: no accept back-off counted: {}",
        st.stdout
    );
    println!("{v:?}: {served} served at once, {n_wait} after fds freed, {backoffs} back-offs");
});
