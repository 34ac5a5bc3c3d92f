//! Provided-buffer exhaustion and the fault layer (`RINGMUX_FAULTS`), on every backend
//! and io_uring feature level. The fault layer rewrites chosen results inside the
//! server, so error paths that strace cannot reach (ops the ring runs itself) are
//! exercised deterministically.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::backend_test;
use crate::util::{
    BIN, Running, Server, Variant, echo_burst, payload, read_json, read_varied, wait_until,
};

/// Levels whose receives select a provided buffer (so ENOBUFS is a real path there).
fn selects_buffers(v: Variant) -> bool {
    matches!(
        v,
        Variant::UringFastpoll | Variant::UringMultishot | Variant::UringFull
    )
}

fn start(v: Variant, extra: &[&str], faults: Option<&str>, json: &std::path::Path) -> Server {
    let mut args = extra.to_vec();
    args.extend(["--stats-json", json.to_str().unwrap()]);
    let env: Vec<(&str, &str)> = faults.map(|f| ("RINGMUX_FAULTS", f)).into_iter().collect();
    Server::start_env(v, &args, &env)
}

fn json_path(test: &str, v: Variant) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ringmux-{test}-{}-{v:?}.json", std::process::id()))
}

/// Stop the server (exit 0 expected) and return its final stats.
fn stop_stats(srv: Server, json: &std::path::Path, v: Variant) -> serde_json::Value {
    srv.stop_ok(Duration::from_secs(10));
    let j = read_json(json);
    let _ = std::fs::remove_file(json);
    assert_eq!(
        j["connections_accepted"], j["connections_closed"],
        "{v:?}: {j}"
    );
    j
}

// 64 connections burst 256 KiB each into a group that may hold at most 2 buffers of
// 512 bytes: RECV runs dry again and again (ENOBUFS), is re-armed, and no byte is lost
// or reordered.
backend_test!(buffer_exhaustion_under_burst, |v| {
    let json = json_path("nobufs", v);
    let srv = start(
        v,
        &["--buf-ring-entries", "2", "--recv-buf", "512"],
        None,
        &json,
    );
    echo_burst(&srv, v, 64, 256 << 10, 1000);
    let j = stop_stats(srv, &json, v);
    if selects_buffers(v) {
        let nobufs = j["recv_nobufs"].as_u64().unwrap();
        assert!(
            nobufs > 0,
            "{v:?}: the buffer group never ran dry, so ENOBUFS was not exercised: {j}"
        );
        println!("{v:?}: recv_nobufs={nobufs} buf_grows={}", j["buf_grows"]);
    }
    assert_eq!(j["bytes_in"].as_u64(), Some(64 * (256 << 10)), "{v:?}");
    assert_eq!(j["bytes_out"].as_u64(), Some(64 * (256 << 10)), "{v:?}");
});

// Every 3rd receive armed finds "no buffer" at once: same byte-exact result.
backend_test!(fault_recv_nobufs, |v| {
    let json = json_path("fnobufs", v);
    let srv = start(v, &[], Some("recv-nobufs=3"), &json);
    echo_burst(&srv, v, 16, 64 << 10, 1000);
    let j = stop_stats(srv, &json, v);
    if selects_buffers(v) {
        assert!(
            j["faults_injected"].as_u64().unwrap() > 0,
            "{v:?}: no fault injected: {j}"
        );
        assert!(j["recv_nobufs"].as_u64().unwrap() > 0, "{v:?}: {j}");
    } else {
        // Not a path there (epoll reads into its own buffer; baseline RECVs after POLL).
        assert_eq!(j["faults_injected"].as_u64(), Some(0), "{v:?}: {j}");
    }
});

// Every 2nd send is cut in half: the rest must follow, in order, for 1 MiB echoes.
backend_test!(fault_short_send, |v| {
    let json = json_path("fshort", v);
    let srv = start(v, &[], Some("send-short=2"), &json);
    echo_burst(&srv, v, 8, 1 << 20, 1000);
    let j = stop_stats(srv, &json, v);
    assert!(
        j["faults_injected"].as_u64().unwrap() > 0,
        "{v:?}: no short send injected: {j}"
    );
    assert_eq!(j["bytes_out"].as_u64(), Some(8 << 20), "{v:?}");
});

// Every 5th receive that brought data turns into ECONNRESET: those connections close
// (the client sees EOF or a reset, never a hang), the others are served, and every
// connection is closed and its descriptor freed.
backend_test!(fault_recv_reset, |v| {
    let json = json_path("freset", v);
    let srv = start(v, &[], Some("recv-reset=5"), &json);
    // Count descriptors once the loop is up and one connection is open (the first
    // receive is never the 5th, so this one is served).
    let mut healthy = srv.connect();
    healthy.write_all(b"!").unwrap();
    assert_eq!(read_varied(&mut healthy, 1), b"!", "{v:?}");
    let fds0 = srv.fd_count();
    // blocking: the next client is served only once this one leaves.
    let healthy = if v.concurrent() {
        Some(healthy)
    } else {
        drop(healthy);
        None
    };
    let (mut served, mut reset) = (0, 0);
    for i in 0..40u64 {
        let mut s = srv.connect();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let msg = payload(i, 100);
        s.write_all(&msg).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.len() >= msg.len() {
                        break;
                    }
                }
            }
        }
        if got.is_empty() {
            reset += 1;
        } else {
            assert_eq!(got, msg, "{v:?}: connection {i} got a wrong echo");
            served += 1;
        }
        drop::<TcpStream>(s);
    }
    assert!(
        reset > 0 && served > 0,
        "{v:?}: served {served}, reset {reset}"
    );
    assert!(
        wait_until(Duration::from_secs(10), || srv.fd_count() <= fds0),
        "{v:?}: fds leaked: {} > {fds0}",
        srv.fd_count()
    );
    drop(healthy);
    let j = stop_stats(srv, &json, v);
    assert_eq!(j["faults_injected"].as_u64(), Some(reset), "{v:?}: {j}");
});

#[test]
fn bad_fault_spec_is_one_line_error() {
    let out = Running::spawn(
        Command::new(BIN)
            .args(["serve", "--addr", "127.0.0.1:0", "--backend", "epoll"])
            .env("RINGMUX_FAULTS", "recv-reset=zero"),
    )
    .finish(Duration::from_secs(20));
    assert!(!out.status.success(), "{}", out.explain());
    assert!(
        out.stderr.contains("bad RINGMUX_FAULTS") && out.stderr.trim().lines().count() == 1,
        "{}",
        out.explain()
    );
}

// `input-spin-ns`, the controlled slowdown the CI gate is measured with: every batch
// of received bytes waits that long before the protocol sees it, on every backend, so
// 40 one-at-a-time echoes take at least 40 times the spin (a lower bound that load on
// the machine cannot break), and the bytes still come back intact.
backend_test!(fault_input_spin_slows_every_receive, |v| {
    let json = json_path("fspin", v);
    let spin = Duration::from_millis(2);
    let srv = start(
        v,
        &[],
        Some(&format!("input-spin-ns={}", spin.as_nanos())),
        &json,
    );
    let mut s = srv.connect();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let n = 40u32;
    let t0 = std::time::Instant::now();
    for i in 0..n {
        let msg = payload(u64::from(i), 16);
        s.write_all(&msg).unwrap();
        assert_eq!(read_varied(&mut s, 16), msg, "{v:?}: message {i}");
    }
    let took = t0.elapsed();
    assert!(
        took >= spin * n,
        "{v:?}: {n} echoes took {took:?}, less than {n} x the {spin:?} spin"
    );
    drop(s);
    stop_stats(srv, &json, v);
});

// `input-work-ns` and `extra-syscalls`, the honest slowdowns the CI gate is measured
// with: per message of `msg-bytes` received, however the kernel batches the bytes.
// 30 messages of 100 bytes (10 one at a time, 20 written in 333-byte pieces, so
// receives hold fractions and runs of messages) cost exactly 3 getppid calls each in
// the server's syscall count, and at least most of their calibrated CPU work (a lower
// bound the machine's load cannot break: CPU time accrues only while running).
backend_test!(fault_input_work_and_extra_syscalls_are_per_message, |v| {
    let json = json_path("fwork", v);
    let work = Duration::from_millis(5);
    let srv = start(
        v,
        &[],
        Some(&format!(
            "input-work-ns={},extra-syscalls=3,msg-bytes=100",
            work.as_nanos()
        )),
        &json,
    );
    let mut s = srv.connect();
    for i in 0..10u64 {
        let msg = payload(i, 100);
        s.write_all(&msg).unwrap();
        assert_eq!(read_varied(&mut s, 100), msg, "{v:?}: message {i}");
    }
    let burst = payload(99, 2000);
    for piece in burst.chunks(333) {
        s.write_all(piece).unwrap();
    }
    assert_eq!(read_varied(&mut s, 2000), burst, "{v:?}: the burst");
    drop(s);
    let j = stop_stats(srv, &json, v);
    assert_eq!(j["bytes_in"].as_u64(), Some(3000), "{v:?}: {j}");
    assert_eq!(
        j["syscalls"]["getppid"].as_u64(),
        Some(90),
        "{v:?}: 3 per message of 100 bytes: {j}"
    );
    let cpu = j["cpu_user_s"].as_f64().unwrap() + j["cpu_sys_s"].as_f64().unwrap();
    let owed = (work * 30).as_secs_f64();
    assert!(
        cpu >= 0.75 * owed,
        "{v:?}: the server used {cpu:.3} s of CPU, less than 75% of the {owed:.3} s of work owed"
    );
});
