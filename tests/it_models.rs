//! What only some IO models do: select's refusal past FD_SETSIZE, sigio's overflow
//! rescan, busypoll's EAGAINs, the threads model's drain and its per-thread counts,
//! and the one Backend list everything derives from.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{
    BIN, Server, Variant, assert_closed, assert_second_client_waits, load, payload, read_json,
    read_varied, run_bounded, wait_until, with_rlimit,
};

fn json_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ringmux-models-{tag}-{}.json", std::process::id()))
}

#[test]
fn variants_cover_every_backend() {
    let mut tested: Vec<&str> = Variant::ALL.iter().map(|v| v.backend()).collect();
    tested.dedup();
    let mut names = ringmux::server::Backend::NAMES.to_vec();
    names.sort();
    tested.sort();
    assert_eq!(
        tested, names,
        "backend_test! must run every backend in Backend::NAMES"
    );
}

#[test]
fn unknown_backend_lists_the_valid_ones() {
    let out = run_bounded(&["serve", "--backend", "kqueue"], Duration::from_secs(20));
    let err = &out.stderr;
    assert_eq!(out.code(), Some(2), "{err}");
    for name in ringmux::server::Backend::NAMES {
        assert!(err.contains(name), "{name} missing from: {err}");
    }
}

#[test]
fn select_refuses_fd_setsize_and_keeps_serving() {
    let json = json_path("select");
    let srv = Server::start(Variant::Select, &["--stats-json", json.to_str().unwrap()]);
    // Enough connections that the last ones land on fds >= 1024 in the server.
    let mut conns: Vec<TcpStream> = (0..1100).map(|_| srv.connect()).collect();
    let (mut served, mut refused) = (Vec::new(), 0u64);
    for (i, c) in conns.iter_mut().enumerate() {
        let _ = c.write_all(&payload(i as u64, 32));
        let mut b = [0u8; 32];
        match c.read_exact(&mut b) {
            Ok(()) => {
                assert_eq!(b.to_vec(), payload(i as u64, 32), "conn {i}");
                served.push(i);
            }
            Err(_) => refused += 1,
        }
    }
    assert!(
        refused >= 70 && served.len() >= 1000,
        "served {}, refused {refused}",
        served.len()
    );
    // The refusals are counted, and the server still serves everyone it kept.
    let j = srv.snapshot(&json);
    assert_eq!(j["refused_fd_setsize"].as_u64(), Some(refused), "{j}");
    for &i in served.iter().rev().take(50) {
        conns[i].write_all(b"still").unwrap();
        assert_eq!(
            read_varied(&mut conns[i], 5),
            b"still",
            "conn {i} after the refusals"
        );
    }
    // A freed low fd is reused: a new client is served again.
    let fds = srv.fd_count();
    drop(conns.swap_remove(served[0]));
    assert!(
        wait_until(Duration::from_secs(10), || srv.fd_count() < fds),
        "select: the server kept the closed connection's fd"
    );
    let mut again = srv.connect();
    again.write_all(b"again").unwrap();
    assert_eq!(read_varied(&mut again, 5), b"again");
    let warn = srv
        .stderr()
        .lines()
        .filter(|l| l.contains("refusing connections on fd >= 1024"))
        .count();
    assert_eq!(warn, 1, "one warning line for the burst: {}", srv.stderr());
    drop(conns);
    let st = srv.stop_ok(Duration::from_secs(10));
    assert!(st.stdout.contains("refused_fd_setsize="), "{}", st.stdout);
    let _ = std::fs::remove_file(&json);
}

#[test]
fn sigio_overflow_rescans_and_loses_nothing() {
    let json = json_path("sigio");
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--backend",
        "sigio",
        "--stats-json",
        json.to_str().unwrap(),
    ]);
    // A tiny real-time signal queue: a burst overflows it at once.
    let srv = Server::spawn(with_rlimit(&mut cmd, libc::RLIMIT_SIGPENDING, 4));
    assert!(
        srv.start_line.contains("backend=sigio"),
        "{}",
        srv.start_line
    );
    let mut conns: Vec<TcpStream> = (0..200).map(|_| srv.connect()).collect();
    for round in 0..3u64 {
        for (i, c) in conns.iter_mut().enumerate() {
            c.write_all(&payload(round * 1000 + i as u64, 2000))
                .unwrap();
        }
        for (i, c) in conns.iter_mut().enumerate() {
            assert!(
                read_varied(c, 2000) == payload(round * 1000 + i as u64, 2000),
                "conn {i} round {round}: echo differs"
            );
        }
    }
    drop(conns);
    srv.stop_ok(Duration::from_secs(10));
    let j = read_json(&json);
    let _ = std::fs::remove_file(&json);
    assert!(
        j["sigio_overflows"].as_u64().unwrap() > 0,
        "no overflow with RLIMIT_SIGPENDING 4: {j}"
    );
    assert_eq!(j["bytes_out"].as_u64(), Some(3 * 200 * 2000), "{j}");
    println!(
        "sigio: signals={} overflows={}",
        j["sigio_signals"], j["sigio_overflows"]
    );
}

#[test]
fn busypoll_counts_eagains_while_idle() {
    let json = json_path("busypoll");
    let srv = Server::start(Variant::Busypoll, &["--stats-json", json.to_str().unwrap()]);
    // No connection: it sleeps between accepts, so few EAGAINs.
    thread::sleep(Duration::from_millis(300));
    let a = srv.snapshot(&json);
    let mut c = srv.connect_echoed(1, 10).pop().unwrap();
    let b = srv.snapshot(&json);
    thread::sleep(Duration::from_millis(500));
    let d = srv.snapshot(&json);
    let n = |j: &serde_json::Value| j["busypoll_eagain"].as_u64().unwrap();
    let recvs = |j: &serde_json::Value| j["syscalls"]["recv"].as_u64().unwrap_or(0);
    // With no connection each turn is one accept (EAGAIN) and a 1 ms sleep: it polls,
    // and makes at most one EAGAIN per millisecond since the start (a few more where
    // the snapshot's signal cut a sleep short).
    let since_start_ms = a["elapsed_s"].as_f64().unwrap() * 1000.0;
    assert!(
        n(&a) > 0 && n(&a) as f64 <= since_start_ms + 10.0,
        "{} EAGAINs in {since_start_ms:.0} ms with no connection: {a}",
        n(&a)
    );
    let idle_conn = n(&d) - n(&b);
    // One idle connection, 0.5 s: a recv and an accept per turn, every few microseconds.
    assert!(
        idle_conn > 1000,
        "{} EAGAINs in 0.5 s with one idle connection",
        idle_conn
    );
    assert!(
        recvs(&d) - recvs(&b) > 500,
        "recv calls while idle: {}",
        recvs(&d) - recvs(&b)
    );
    println!(
        "busypoll: {} EAGAINs with no connection (0.3 s), {idle_conn} with one idle (0.5 s)",
        n(&a)
    );
    c.write_all(b"x").unwrap();
    assert_eq!(read_varied(&mut c, 1), b"x");
    drop(c);
    let st = srv.stop_ok(Duration::from_secs(10));
    assert!(st.stdout.contains("busypoll: eagain="), "{}", st.stdout);
    let _ = std::fs::remove_file(&json);
}

#[test]
fn threads_drain_on_sigterm_while_blocked_in_recv() {
    let srv = Server::start(Variant::Threads, &["--drain-timeout", "5"]);
    let mut conns = srv.connect_echoed(50, 100);
    // Every connection thread is back in recv (blocked there, which the drain must
    // interrupt), read from /proc rather than waited for.
    let in_recv = || {
        std::fs::read_dir(format!("/proc/{}/task", srv.pid))
            .map(|d| {
                d.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("syscall")).ok())
                    .filter(|s| {
                        s.split_whitespace().next() == Some(&libc::SYS_recvfrom.to_string())
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(10), || in_recv() >= 50),
        "threads: {} of 50 threads in recv",
        in_recv()
    );
    let t0 = Instant::now();
    let st = srv.stop(Duration::from_secs(10));
    let took = t0.elapsed();
    assert!(st.status.success(), "{}", st.stderr);
    // Well inside the 5 s drain timeout: the threads were woken, not waited out.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(
        st.stdout.contains("accepted=50 closed=50") && st.stdout.contains("forced_closed=0"),
        "{}",
        st.stdout
    );
    for (i, c) in conns.iter_mut().enumerate() {
        assert_closed(c, &format!("threads: conn {i}"));
    }
}

#[test]
fn threads_max_threads_makes_the_next_client_wait() {
    let srv = Server::start(Variant::Threads, &["--max-threads", "2"]);
    let held = srv.connect_echoed(2, 10);
    let mut third = srv.connect();
    third.write_all(b"third").unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let mut b = [0u8; 5];
    assert!(
        third.read(&mut b).is_err(),
        "a third client was served above --max-threads 2"
    );
    drop(held);
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    third.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"third");
}

#[test]
fn threads_stats_add_up_over_every_thread() {
    let json = json_path("threads-sum");
    let srv = Server::start(Variant::Threads, &["--stats-json", json.to_str().unwrap()]);
    let conns = srv.connect_echoed(30, 1000);
    let live = srv.snapshot(&json);
    assert_eq!(
        live["bytes_in"].as_u64(),
        Some(30_000),
        "live threads' counts in the snapshot: {live}"
    );
    assert!(
        live["syscalls"]["recv"].as_u64().unwrap_or(0) >= 30,
        "live threads' recv calls: {live}"
    );
    drop(conns);
    assert!(wait_until(
        Duration::from_secs(5),
        || srv.snapshot(&json)["connections_closed"] == 30
    ));
    srv.stop_ok(Duration::from_secs(10));
    let j = read_json(&json);
    let _ = std::fs::remove_file(&json);
    let sc = |k: &str| j["syscalls"][k].as_u64().unwrap_or(0);
    // Each connection thread: at least one recv with data and one with EOF, a send, a close.
    assert!(
        sc("recv") >= 60 && sc("send") >= 30 && sc("close") >= 30 && sc("accept4") >= 30,
        "{j}"
    );
    assert_eq!(
        (j["bytes_in"].as_u64(), j["bytes_out"].as_u64()),
        (Some(30_000), Some(30_000)),
        "{j}"
    );
    assert_eq!(j["threads_started"].as_u64(), Some(30), "{j}");
    assert_eq!(j["thread_stack_bytes"].as_u64(), Some(64 * 1024), "{j}");
    let total: u64 = j["syscalls"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(j["syscalls_total"].as_u64(), Some(total), "{j}");
}

#[test]
fn blocking_serves_one_client_at_a_time() {
    let srv = Server::start(Variant::Blocking, &[]);
    let first = srv.connect_echoed(1, 10).pop().unwrap();
    let second = assert_second_client_waits(&srv, first);
    drop(second);
    let st = srv.stop(Duration::from_secs(10));
    assert!(st.stdout.contains("accepted=2 closed=2"), "{}", st.stdout);
}

#[test]
fn load_idle_conns_held_open_and_checked() {
    let sjson = json_path("idle-srv");
    let srv = Server::start(Variant::Epoll, &["--stats-json", sjson.to_str().unwrap()]);
    let addr = srv.addr.to_string();
    let r = load(
        &[
            "--addr",
            &addr,
            "--conns",
            "2",
            "--idle-conns",
            "300",
            "--duration",
            "0.5",
            "--warmup",
            "0.1",
            "--driver",
            "epoll",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r.code(), Some(0), "{}", r.explain());
    let j = r.json();
    assert_eq!(
        (j["idle_conns"].as_u64(), j["idle_closed"].as_u64()),
        (Some(300), Some(0)),
        "{j}"
    );
    let errors: u64 = j["errors"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(errors, 0, "idle connections are no errors: {j}");
    assert!(
        j["messages"].as_u64().unwrap() > 0
            && r.stdout.contains("300 held, 300 still open, 0 closed"),
        "{}",
        r.explain()
    );
    let st = srv.stop(Duration::from_secs(10));
    assert!(
        st.stdout.contains("accepted=302"),
        "idle and active both reach the server: {}",
        st.stdout
    );
    let _ = std::fs::remove_file(&sjson);

    // Against select, idle connections past fd 1023 are refused: the load counts them
    // as closed by the server, not as errors (the active one, above them, is refused
    // too and that is an error).
    let srv = Server::start(Variant::Select, &["--stats-json", sjson.to_str().unwrap()]);
    let addr = srv.addr.to_string();
    let r = load(
        &[
            "--addr",
            &addr,
            "--conns",
            "1",
            "--idle-conns",
            "1040",
            "--duration",
            "0.3",
            "--warmup",
            "0",
            "--driver",
            "epoll",
            "--allow-errors",
            "--timeout",
            "2",
        ],
        Duration::from_secs(30),
    );
    let closed = r.json()["idle_closed"].as_u64().unwrap();
    assert!(
        (1..=40).contains(&closed),
        "{closed} idle connections closed\n{}",
        r.explain()
    );
    let st = srv.stop(Duration::from_secs(10));
    let s = read_json(&sjson);
    let _ = std::fs::remove_file(&sjson);
    assert!(
        s["refused_fd_setsize"].as_u64().unwrap() >= closed,
        "{s} {}",
        st.stdout
    );
    println!("select: {closed} of 1040 idle connections refused");
}
