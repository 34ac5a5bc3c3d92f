//! io_uring's work per message, counted where noise cannot reach: io_uring_enter calls
//! and completions per echoed message at one connection, per level, with the counted
//! wait and the registered file table on and off; sends to a full socket, which
//! do not complete inside the enter that submits them; and the opt-in switches
//! `--no-sqarray` and the RECV bundles (`--no-recv-bundles`): in use where the
//! probe says the kernel has them, echo intact.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::uring_test;
use crate::util::{Server, Variant, assert_closed, probe};

/// Messages per counted run: enough that the few enters of setup and the snapshot
/// signal cannot hide a second enter per message.
const N: u64 = 300;

fn json_path(test: &str, v: Variant) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "ringmux-work-{test}-{}-{v:?}.json",
        std::process::id()
    ))
}

/// Echo `N` 128-byte messages one at a time on `s`.
fn ping_pong(s: &mut TcpStream) {
    let msg = [7u8; 128];
    let mut back = [0u8; 128];
    for _ in 0..N {
        s.write_all(&msg).unwrap();
        s.read_exact(&mut back).unwrap();
        assert_eq!(back, msg);
    }
}

/// The server's counters around `N` round trips on one connection: (final stats,
/// enters, completions, counted waits the cap ended) between two snapshots.
fn counted(v: Variant, extra: &[&str], test: &str) -> (serde_json::Value, u64, u64, u64) {
    let json = json_path(test, v);
    let path = json.to_str().unwrap();
    let mut args = vec!["--stats-json", path];
    args.extend_from_slice(extra);
    let srv = Server::start(v, &args);
    let mut s = srv.connect();
    ping_pong(&mut s); // warm: the connection is accepted and its RECV armed
    let a = srv.snapshot(&json);
    ping_pong(&mut s);
    let b = srv.snapshot(&json);
    drop(s);
    srv.stop_ok(Duration::from_secs(10));
    let _ = std::fs::remove_file(&json);
    let d = |k: &str| b[k].as_u64().unwrap() - a[k].as_u64().unwrap();
    let enters = b["syscalls"]["io_uring_enter"].as_u64().unwrap()
        - a["syscalls"]["io_uring_enter"].as_u64().unwrap();
    (b.clone(), enters, d("cqes"), d("wait_cap_hits"))
}

uring_test!(one_enter_per_message_with_the_counted_wait, |v| {
    let (j, enters, cqes, capped) = counted(v, &[], "counted");
    let multishot = matches!(v, Variant::UringMultishot | Variant::UringFull);
    let what = format!(
        "{v:?}: {N} messages, {enters} enters ({capped} ended by the cap), {cqes} completions; {j}"
    );
    assert_eq!(
        j["uring"]["counted_wait"].as_bool(),
        Some(multishot),
        "{what}"
    );
    // Every RECV and every SEND still completes.
    assert!(cqes >= 2 * N, "{what}");
    if multishot {
        // The SEND completes inside the enter that then sleeps for the next RECV. The
        // snapshot's signal costs a few enters of its own, and so does a wait the cap
        // ended (the client late by more than the cap on a loaded machine: counted).
        assert!(enters <= N + N / 20 + 4 + capped, "{what}");
    } else {
        // The lower levels keep waiting for one completion at a time.
        assert_eq!(capped, 0, "{what}");
    }
});

uring_test!(wait_single_takes_more_enters, |v| {
    if !matches!(v, Variant::UringMultishot | Variant::UringFull) {
        return; // below multishot every wait is for one (see the test above)
    }
    let (j, enters, _, capped) = counted(v, &["--uring-wait", "single"], "single");
    let what = format!("{v:?}: {N} messages, {enters} enters; {j}");
    assert_eq!(j["uring"]["counted_wait"].as_bool(), Some(false), "{what}");
    assert_eq!(capped, 0, "{what}");
    // A SEND's completion ends the wait that submitted it: more enters than messages
    // (how many more depends on whether the next RECV has arrived by then).
    assert!(enters > N + N / 20 + 4, "{what}");
});

uring_test!(registered_files_where_the_level_has_them, |v| {
    let multishot = matches!(v, Variant::UringMultishot | Variant::UringFull);
    for (extra, want) in [(&[][..], multishot), (&["--no-register-files"][..], false)] {
        let json = json_path("files", v);
        let mut args = vec!["--stats-json", json.to_str().unwrap()];
        args.extend_from_slice(extra);
        let srv = Server::start(v, &args);
        // Slots are reused: connections come and go, each one echoed, and each one
        // the server closes is seen closed by the peer (the slot was emptied first).
        for round in 0..3 {
            let mut conns: Vec<TcpStream> = (0..20).map(|_| srv.connect()).collect();
            for c in &mut conns {
                c.write_all(b"ping").unwrap();
                let mut back = [0u8; 4];
                c.read_exact(&mut back).unwrap();
                assert_eq!(&back, b"ping", "{v:?} {extra:?} round {round}");
            }
        }
        let j = srv.snapshot(&json);
        let slots = j["uring"]["registered_files"].as_u64().unwrap();
        assert_eq!(slots > 0, want, "{v:?} {extra:?}: {j}");
        // The server closes on drain: each client sees EOF.
        let mut last = srv.connect();
        last.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        last.read_exact(&mut b).unwrap();
        let st = srv.stop_ok(Duration::from_secs(10));
        assert_closed(&mut last, &format!("{v:?} {extra:?}: {}", st.stderr));
        let _ = std::fs::remove_file(&json);
    }
});

uring_test!(full_socket_sends_lose_nothing, |v| {
    // 8 MiB sent before reading any of the echo: the server's sends find the socket
    // full and complete after their enter (the counted wait must not hold them, or
    // this stalls). Every byte comes back in order.
    let srv = Server::start(v, &[]);
    let mut s = srv.connect();
    let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut w = s.try_clone().unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || w.write_all(&sent).unwrap());
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back).unwrap();
    writer.join().unwrap();
    assert!(back == data, "{v:?}: the echo differs");
    drop(s);
    srv.stop_ok(Duration::from_secs(10));
});

/// Whether `ringmux probe --json` says this kernel has capability `name`.
fn kernel_has(name: &str) -> bool {
    probe()["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == name && c["available"] == true)
}

/// Echo `len` bytes written at once (a writer thread) and read back, compared.
fn bulk_echo(s: &TcpStream, len: u32, what: &str) {
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let mut w = s.try_clone().unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || w.write_all(&sent).unwrap());
    let mut back = vec![0u8; data.len()];
    let mut r = s.try_clone().unwrap();
    r.read_exact(&mut back).unwrap();
    writer.join().unwrap();
    assert!(back == data, "{what}: the echo differs");
}

uring_test!(no_sqarray_where_asked_and_the_kernel_has_it, |v| {
    let multishot = matches!(v, Variant::UringMultishot | Variant::UringFull);
    let json = json_path("sqarray", v);
    let srv = Server::start(v, &["--no-sqarray", "--stats-json", json.to_str().unwrap()]);
    let mut s = srv.connect();
    ping_pong(&mut s);
    bulk_echo(&s, 1 << 20, &format!("{v:?} --no-sqarray"));
    let j = srv.snapshot(&json);
    // Set at multishot/full where the kernel accepts it (6.6+), else the ring falls
    // back to the array: the feature line says which.
    let want = multishot && kernel_has("NO_SQARRAY");
    assert_eq!(j["uring"]["no_sqarray"].as_bool(), Some(want), "{v:?}: {j}");
    drop(s);
    srv.stop_ok(Duration::from_secs(10));
    let _ = std::fs::remove_file(&json);
});

uring_test!(recv_bundles_carry_several_buffers_per_completion, |v| {
    let multishot = matches!(v, Variant::UringMultishot | Variant::UringFull);
    let want = multishot && kernel_has("FEAT_RECVSEND_BUNDLE");
    for (extra, on) in [(&[][..], want), (&["--no-recv-bundles"][..], false)] {
        let json = json_path("bundles", v);
        let mut args = vec!["--recv-buf", "1024", "--stats-json", json.to_str().unwrap()];
        args.extend_from_slice(extra);
        let srv = Server::start(v, &args);
        let what = format!("{v:?} {extra:?}");
        // 2 MiB at once in 1 KiB buffers: the socket holds many buffers' worth when a
        // receive runs, so with bundles some completion carries more than one.
        let mut s = srv.connect();
        bulk_echo(&s, 2 << 20, &what);
        ping_pong(&mut s);
        let j = srv.snapshot(&json);
        assert_eq!(
            j["uring"]["recv_bundles"].as_bool(),
            Some(on),
            "{what}: {j}"
        );
        let bundled = j["recv_bundled"].as_u64().unwrap();
        assert_eq!(
            bundled > 0,
            on,
            "{what}: {bundled} bundled completions; {j}"
        );
        drop(s);
        srv.stop_ok(Duration::from_secs(10));
        let _ = std::fs::remove_file(&json);
    }
});

uring_test!(large_messages_do_not_wait_out_the_cap, |v| {
    // A 64 KiB message fills four 16 KiB receive buffers: its echo goes out as a SEND
    // with more owed behind it. A wait for "the sends plus one" would then sleep on
    // a completion only the loop itself can cause (the next SEND) until the 5 ms cap:
    // one cap hit per message, about 100 messages a second. Counted by the server.
    let json = json_path("large", v);
    let srv = Server::start(v, &["--stats-json", json.to_str().unwrap()]);
    let mut s = srv.connect();
    let msg: Vec<u8> = (0..64u32 << 10).map(|i| (i % 253) as u8).collect();
    let mut back = vec![0u8; msg.len()];
    let n = 100;
    let a = srv.snapshot(&json);
    for _ in 0..n {
        s.write_all(&msg).unwrap();
        s.read_exact(&mut back).unwrap();
        assert!(back == msg, "{v:?}: the echo differs");
    }
    let b = srv.snapshot(&json);
    let capped = b["wait_cap_hits"].as_u64().unwrap() - a["wait_cap_hits"].as_u64().unwrap();
    // A client late by more than the cap on a loaded machine also counts: allow
    // some, not one per message.
    assert!(
        capped < n / 2,
        "{v:?}: {capped} waits ended by the cap in {n} messages; {b}"
    );
    drop(s);
    srv.stop_ok(Duration::from_secs(10));
    let _ = std::fs::remove_file(&json);
});
