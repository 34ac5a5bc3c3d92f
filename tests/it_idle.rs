//! Memory per idle connection: at 10,000 connections that each did one 16-byte echo
//! round trip and then stayed open and silent, the server's resident memory grows by
//! less than 1 KiB per connection, on every backend and io_uring level.
//!
//! RSS is read from /proc/PID/status before and after; the kernel's own memory for
//! each socket is not in it (and not what this budget is about).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::backend_test;
use crate::util::{Server, Variant, wait_until};

const CONNS: usize = 10_000;
/// Connections opened and round-tripped at a time (a steady trickle, as `bench
/// --idle-conns` does).
const WAVE: usize = 100;
const BUDGET_BYTES: f64 = 1024.0;
/// 10,000 client sockets live in this test process: one such test at a time, so the
/// variants never need 20,000 descriptors together.
static SERIAL: Mutex<()> = Mutex::new(());

/// Raise the soft RLIMIT_NOFILE to the hard one (the server started afterwards
/// inherits it); panic with the figures if that is still too low.
fn ensure_nofile(need: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a live, writable rlimit for the duration of the call.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    if lim.rlim_cur < need && lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max.min(1 << 20), rlim_max: lim.rlim_max };
        // SAFETY: `raised` is a live rlimit for the duration of the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = raised.rlim_cur;
        }
    }
    assert!(lim.rlim_cur >= need, "this test needs {need} open files, RLIMIT_NOFILE allows {} (hard {}): run with `ulimit -n 20000`", lim.rlim_cur, lim.rlim_max);
}

/// (VmRSS, RssAnon) of a process in KiB.
fn rss_kib(pid: i32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    let field = |name: &str| -> u64 {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status (did the server exit?)"))
    };
    (field("VmRSS:"), field("RssAnon:"))
}

fn message(i: usize) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[..8].copy_from_slice(&(i as u64).to_le_bytes());
    m[8..].copy_from_slice(b"idle-rss");
    m
}

/// Open `n` connections in waves: connect, send 16 bytes, read the echo once, keep.
fn open_idle(srv: &Server, v: Variant, n: usize, deadline: Instant) -> Vec<TcpStream> {
    let mut conns: Vec<TcpStream> = Vec::with_capacity(n);
    let mut buf = [0u8; 16];
    while conns.len() < n {
        assert!(Instant::now() < deadline, "{v:?}: opening {n} connections ran past its deadline at {}", conns.len());
        let start = conns.len();
        for i in start..(start + WAVE).min(n) {
            let s = TcpStream::connect_timeout(&srv.addr, Duration::from_secs(5)).unwrap_or_else(|e| panic!("{v:?}: connect {i}: {e}"));
            (&s).write_all(&message(i)).unwrap_or_else(|e| panic!("{v:?}: send on connection {i}: {e}"));
            conns.push(s);
        }
        for (i, s) in conns.iter().enumerate().skip(start) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            (&*s).read_exact(&mut buf).unwrap_or_else(|e| panic!("{v:?}: echo on connection {i}: {e}; stderr: {}", srv.stderr()));
            assert_eq!(buf, message(i), "{v:?}: echo on connection {i} differs");
        }
    }
    conns
}

backend_test!(idle_memory_under_1kib_per_connection, |v| {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    ensure_nofile(CONNS as u64 + 1000);
    let srv = Server::start(v, &[]);
    if !v.concurrent() {
        // blocking holds one connection at a time: idle ones wait in the backlog.
        let first = srv.connect_echoed(1, 16).pop().unwrap();
        drop(crate::util::assert_second_client_waits(&srv, first));
        return;
    }
    // select watches fds below 1024 only (more are refused, see two_thousand_connections);
    // threads and busypoll pay per connection in threads and in CPU: fewer suffice.
    let (conns_n, budget) = match v {
        Variant::Select => (1000, BUDGET_BYTES),
        // A thread per connection: its stack (64 KiB reserved, touched only as used)
        // and its receive buffer (16 KiB) bound what it may cost.
        Variant::Threads => (2000, (64.0 + 16.0 + 4.0) * 1024.0),
        Variant::Busypoll => (2000, BUDGET_BYTES),
        _ => (CONNS, BUDGET_BYTES),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    // Warm-up: code pages and one-time allocations are not per connection.
    drop(open_idle(&srv, v, 16, deadline));
    thread::sleep(Duration::from_millis(200));
    let fds_before = srv.fd_count();
    let (rss0, anon0) = rss_kib(srv.pid);
    let t0 = Instant::now();
    let conns = open_idle(&srv, v, conns_n, deadline);
    let opened = t0.elapsed();
    assert!(
        wait_until(Duration::from_secs(10), || srv.fd_count() >= fds_before + conns_n),
        "{v:?}: the server holds {} descriptors, expected {fds_before} + {conns_n}",
        srv.fd_count()
    );
    thread::sleep(Duration::from_millis(200));
    let (rss1, anon1) = rss_kib(srv.pid);
    let per = (rss1 as f64 - rss0 as f64) * 1024.0 / conns_n as f64;
    let anon = (anon1 as f64 - anon0 as f64) * 1024.0 / conns_n as f64;
    println!("{v:?}: {per:.0} bytes/conn (RssAnon {anon:.0}), RSS {rss0} -> {rss1} KiB, {conns_n} conns opened in {opened:?}");
    let cmdline = srv.cmdline.clone();
    // The server closes first, so no client port is left in TIME_WAIT.
    let st = srv.stop(Duration::from_secs(10));
    drop(conns);
    assert!(
        per < budget,
        "{v:?}: resident memory grew {per:.0} bytes per idle connection (RssAnon {anon:.0}; VmRSS {rss0} -> {rss1} KiB for {conns_n} \
         connections that each echoed 16 bytes once), budget {budget} bytes; server: {cmdline}"
    );
    assert!(st.status.success(), "{v:?}: exit {:?}, stderr {}", st.status, st.stderr);
});
