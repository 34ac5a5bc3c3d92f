//! io_uring paths the other tests do not reach: completion-queue overflow, failed
//! or interrupted submissions (io_uring_enter EAGAIN/EBUSY/EINTR injected with
//! strace), and a refused buffer-ring registration, each per io_uring level; and
//! io_uring unavailable (io_uring_setup failing under strace): `auto` falls back to
//! epoll with one warning, `--backend uring` fails with the reason.

use std::io::{Read, Write};
use std::time::Duration;

use crate::uring_test;
use crate::util::{
    BIN, Running, Server, Variant, counter, echo_burst, read_varied, strace_available,
    strace_inject,
};

uring_test!(cq_overflow_loses_nothing, |v| {
    // An 8-entry CQ for 64 connections bursting 256 KiB each: completions outrun the
    // CQ, wait on the kernel's overflow list and come back on a later enter.
    let srv = Server::start(v, &["--ring-entries", "8", "--cq-entries", "8"]);
    echo_burst(&srv, v, 64, 256 * 1024, 1);
    echo_burst(&srv, v, 64, 4096, 1000);
    let st = srv.stop_ok(Duration::from_secs(20));
    let overflow = counter(&st.stdout, "cq_overflow");
    assert_eq!(
        (
            counter(&st.stdout, "accepted"),
            counter(&st.stdout, "closed")
        ),
        (128, 128),
        "{v:?}: {}",
        st.stdout
    );
    println!("{v:?}: cq_overflow={overflow}");
    if matches!(v, Variant::UringMultishot | Variant::UringFull) {
        // Multishot RECVs post one completion per arrival: the burst must overflow
        // the CQ (and any multishot op it ended was re-armed, or bytes would be
        // missing above).
        assert!(
            overflow > 0,
            "{v:?}: an 8-entry CQ never overflowed under the burst: {}",
            st.stdout
        );
    }
    assert!(
        !st.stderr.contains("dropped"),
        "{v:?}: completions were lost: {}",
        st.stderr
    );
});

/// `ringmux serve` at level `v` under strace, with io_uring_enter failing as `inject`.
fn serve_with_enter_faults(v: Variant, inject: &str) -> Server {
    Server::spawn(
        strace_inject("io_uring_enter", inject)
            .args([BIN, "serve", "--addr", "127.0.0.1:0"])
            .args(v.args()),
    )
}

uring_test!(enter_faults_lose_nothing, |v| {
    if !strace_available() {
        return;
    }
    // Every 5th enter from the 10th on fails: nothing queued may be lost or
    // resubmitted twice, and no buffer freed while the kernel owns it.
    for errno in ["EAGAIN", "EBUSY", "EINTR"] {
        let srv = serve_with_enter_faults(v, &format!("error={errno}:when=10+5"));
        assert!(
            srv.start_line.contains(&v.expect()),
            "{v:?} {errno}: {}",
            srv.start_line
        );
        // 200 connections in 4 waves of 50, 128 KiB each (enough enters at every
        // level to reach the injected ones), every byte verified.
        for wave in 0..4 {
            echo_burst(&srv, v, 50, 128 * 1024, wave * 100);
        }
        let st = srv.stop_ok(Duration::from_secs(30));
        assert_eq!(
            (
                counter(&st.stdout, "accepted"),
                counter(&st.stdout, "closed")
            ),
            (200, 200),
            "{v:?} {errno}: {}",
            st.stdout
        );
        let busy = counter(&st.stdout, "enter_busy");
        println!("{v:?} {errno}: enter_busy={busy}");
        if errno != "EINTR" {
            assert!(
                busy > 0,
                "{v:?} {errno}: the injected failures were never seen: {}",
                st.stdout
            );
        }
        assert!(
            !st.stderr.contains("in flight at exit"),
            "{v:?} {errno}: {}",
            st.stderr
        );
    }
});

#[test]
fn refused_buffer_ring_steps_down_with_a_reason() {
    if !strace_available() {
        return;
    }
    // The first io_uring_register (the opcode probe) goes through; every later one
    // (ring fd, buffer ring) fails with EINVAL: `auto` must step down to fastpoll,
    // say why, and serve.
    let srv = Server::spawn(
        strace_inject("io_uring_register", "error=EINVAL:when=2+").args([
            BIN,
            "serve",
            "--addr",
            "127.0.0.1:0",
        ]),
    );
    assert!(
        srv.start_line.contains("backend=uring features=fastpoll"),
        "{}",
        srv.start_line
    );
    let mut s = srv.connect();
    s.write_all(b"stepped down").unwrap();
    let mut got = [0u8; 12];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"stepped down");
    drop(s);
    let st = srv.stop_ok(Duration::from_secs(10));
    let note: Vec<&str> = st
        .stderr
        .lines()
        .filter(|l| l.contains("not used"))
        .collect();
    assert_eq!(
        note.len(),
        1,
        "one line naming the step-down expected: {}",
        st.stderr
    );
    assert!(
        note[0].contains("full")
            && note[0].contains("PBUF_RING")
            && note[0].contains("running at fastpoll"),
        "{}",
        note[0]
    );
}

/// `ringmux serve --backend BACKEND` with io_uring_setup failing with `errno`.
fn under_strace(errno: &str, backend: &str) -> std::process::Command {
    let mut c = strace_inject("io_uring_setup", &format!("error={errno}"));
    c.args([BIN, "serve", "--addr", "127.0.0.1:0", "--backend", backend]);
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
        let st = srv.stop_ok(Duration::from_secs(10));
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
        let out = Running::spawn(&mut under_strace(errno, "uring")).finish(Duration::from_secs(20));
        let stderr = &out.stderr;
        assert!(
            !out.status.success(),
            "{errno}: --backend uring should fail\n{}",
            out.explain()
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
