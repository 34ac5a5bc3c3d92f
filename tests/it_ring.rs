//! io_uring paths the other tests do not reach: completion-queue overflow, failed
//! or interrupted submissions (io_uring_enter EAGAIN/EBUSY/EINTR injected with
//! strace), and a refused buffer-ring registration. Each runs per io_uring level.

use std::io::{Read, Write};
use std::process::Command;
use std::thread;
use std::time::Duration;

use crate::util::{BIN, Server, Variant, payload, run_variant, strace_available};

/// One #[test] per io_uring level (epoll has no ring: these paths do not exist there).
macro_rules! uring_test {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn uring_baseline() {
                run_variant(Variant::UringBaseline, stringify!($name), $body);
            }
            #[test]
            fn uring_fastpoll() {
                run_variant(Variant::UringFastpoll, stringify!($name), $body);
            }
            #[test]
            fn uring_multishot() {
                run_variant(Variant::UringMultishot, stringify!($name), $body);
            }
            #[test]
            fn uring_full() {
                run_variant(Variant::UringFull, stringify!($name), $body);
            }
        }
    };
}

/// `conns` connections at once, each writing `size` verified bytes from one thread
/// while reading the echo on another; panics on any difference.
fn burst(srv: &Server, v: Variant, conns: usize, size: usize, seed: u64) {
    let handles: Vec<_> = (0..conns)
        .map(|i| {
            let s = srv.connect();
            thread::spawn(move || {
                let msg = payload(seed + i as u64, size);
                let mut w = s.try_clone().unwrap();
                let m = msg.clone();
                let writer = thread::spawn(move || w.write_all(&m));
                let mut got = vec![0u8; size];
                let mut r = s;
                r.read_exact(&mut got)
                    .map_err(|e| format!("conn {i}: read: {e}"))?;
                writer
                    .join()
                    .unwrap()
                    .map_err(|e| format!("conn {i}: write: {e}"))?;
                if got != msg {
                    let at = got.iter().zip(&msg).position(|(a, b)| a != b).unwrap_or(0);
                    return Err(format!("conn {i}: echo differs at byte {at} of {size}"));
                }
                Ok(())
            })
        })
        .collect();
    let errs: Vec<String> = handles
        .into_iter()
        .filter_map(|h| h.join().unwrap().err())
        .collect();
    assert!(
        errs.is_empty(),
        "{v:?}: {} of {conns} connections failed: {:?}; server stderr: {}",
        errs.len(),
        &errs[..errs.len().min(5)],
        srv.stderr()
    );
}

/// A stats counter from the exit summary (`name=N`).
fn counter(stdout: &str, name: &str) -> u64 {
    let key = format!("{name}=");
    stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&key))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the exit summary: {stdout}"))
}

uring_test!(cq_overflow_loses_nothing, |v| {
    // An 8-entry CQ for 64 connections bursting 256 KiB each: completions outrun the
    // CQ, wait on the kernel's overflow list and come back on a later enter.
    let srv = Server::start(v, &["--ring-entries", "8", "--cq-entries", "8"]);
    burst(&srv, v, 64, 256 * 1024, 1);
    burst(&srv, v, 64, 4096, 1000);
    let st = srv.stop(Duration::from_secs(20));
    assert!(
        st.status.success(),
        "{v:?}: exit {:?}, stderr {}",
        st.status,
        st.stderr
    );
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
    let mut c = Command::new("strace");
    c.args([
        "-f",
        "-qq",
        "-o",
        "/dev/null",
        "-e",
        "trace=io_uring_enter",
        "-e",
    ])
    .arg(format!("inject=io_uring_enter:{inject}"))
    .args([BIN, "serve", "--addr", "127.0.0.1:0"])
    .args(v.args());
    Server::spawn(&mut c)
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
            burst(&srv, v, 50, 128 * 1024, wave * 100);
        }
        let st = srv.stop(Duration::from_secs(30));
        assert!(
            st.status.success(),
            "{v:?} {errno}: exit {:?}, stderr {}",
            st.status,
            st.stderr
        );
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
    let mut c = Command::new("strace");
    c.args([
        "-f",
        "-qq",
        "-o",
        "/dev/null",
        "-e",
        "trace=io_uring_register",
        "-e",
        "inject=io_uring_register:error=EINVAL:when=2+",
    ])
    .args([BIN, "serve", "--addr", "127.0.0.1:0"]);
    let srv = Server::spawn(&mut c);
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
    let st = srv.stop(Duration::from_secs(10));
    assert!(
        st.status.success(),
        "exit {:?}, stderr {}",
        st.status,
        st.stderr
    );
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
