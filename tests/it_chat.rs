//! Chat through the real binary on every backend variant: one fan-out path per event
//! loop delivers broadcasts (welcome, join, lines, nick, leave) in order and once; a
//! receiver that never reads is dropped and counted while the others keep going;
//! /quit; the 4 KiB line limit; one room across the loops of `--threads 2`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::backend_test;
use crate::util::{Server, assert_threads_refused};

/// Read exactly `want.len()` bytes (20 s read timeout) and compare.
fn expect(s: &mut TcpStream, want: &str, what: &str) {
    let mut got = vec![0u8; want.len()];
    s.read_exact(&mut got)
        .unwrap_or_else(|e| panic!("{what}: waiting for {want:?}: {e}"));
    assert_eq!(String::from_utf8_lossy(&got), want, "{what}");
}

/// Nothing more arrives within a short while (no duplicates, nothing extra).
fn expect_quiet(s: &mut TcpStream, what: &str) {
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut b = [0u8; 256];
    match s.read(&mut b) {
        Ok(0) => panic!("{what}: closed"),
        Ok(n) => panic!("{what}: unexpected {:?}", String::from_utf8_lossy(&b[..n])),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{what}: {e}"
        ),
    }
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
}

/// Read to EOF (or a reset), 20 s at most.
fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn stats(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("stats json")).expect("stats is JSON")
}

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ringmux-chat-{}-{name}", std::process::id()))
}

backend_test!(chat_one_room_across_loops, |v| {
    if !v.has_event_loop() {
        // No event loop to run per core: --threads 2 is refused with one line.
        return assert_threads_refused(v, &["--proto", "chat", "--threads", "2"]);
    }
    let json = tmp(&format!("{v:?}-loops.json"));
    let srv = Server::start(
        v,
        &[
            "--proto",
            "chat",
            "--threads",
            "2",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    // 16 clients: the kernel spreads them over the two loops by a hash of the
    // addresses, so all on one loop has odds of 2^-15 (checked at the end).
    let mut cs: Vec<TcpStream> = Vec::new();
    for i in 1..=16 {
        let mut c = srv.connect();
        expect(
            &mut c,
            &format!(
                "* you are guest-{i}
* guest-{i} joined
"
            ),
            &format!("c{i} welcome"),
        );
        for (j, o) in cs.iter_mut().enumerate() {
            expect(
                o,
                &format!(
                    "* guest-{i} joined
"
                ),
                &format!("c{} hears c{i} join", j + 1),
            );
        }
        cs.push(c);
    }
    // Each line reaches every client once, in order, whichever loop holds it.
    for i in 0..cs.len() {
        cs[i]
            .write_all(
                format!(
                    "line {i}
"
                )
                .as_bytes(),
            )
            .unwrap();
        for (j, o) in cs.iter_mut().enumerate() {
            expect(
                o,
                &format!(
                    "[guest-{}] line {i}
",
                    i + 1
                ),
                &format!("c{} hears c{}", j + 1, i + 1),
            );
        }
    }
    let last = cs.pop().unwrap();
    drop(last);
    for (j, o) in cs.iter_mut().enumerate() {
        expect(
            o,
            "* guest-16 left
",
            &format!("c{} hears the leave", j + 1),
        );
        expect_quiet(o, "nothing twice");
    }
    drop(cs);
    let st = srv.stop(Duration::from_secs(10));
    assert!(st.status.success(), "{v:?}: {}", st.stderr);
    let j = stats(&json);
    assert_eq!(j["connections_accepted"], 16, "{j}");
    assert_eq!(j["slow_receivers_dropped"], 0, "{j}");
    let per: Vec<u64> = j["per_thread"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["connections_accepted"].as_u64().unwrap())
        .collect();
    assert!(
        per.len() == 2 && per.iter().all(|&n| n > 0),
        "both loops must hold clients: {per:?}"
    );
});

backend_test!(chat_three_clients_in_order, |v| {
    let json = tmp(&format!("{v:?}-order.json"));
    let srv = Server::start(v, &["--proto", "chat", "--json", json.to_str().unwrap()]);
    let mut a = srv.connect();
    expect(&mut a, "* you are guest-1\n* guest-1 joined\n", "a welcome");
    if !v.concurrent() {
        // blocking: one client at a time; it gets its own lines, nick and bye.
        a.write_all(b"hi\n/nick al\nyo\r\n/nick b@d\n").unwrap();
        expect(
            &mut a,
            "[guest-1] hi\n* guest-1 is now al\n[al] yo\n* bad nick\n",
            "a alone",
        );
        let mut line = vec![b'x'; 5000];
        line.extend_from_slice(b"\nok\n/quit\n");
        a.write_all(&line).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&read_to_end(&mut a)),
            "* line too long\n[al] ok\n* bye\n"
        );
        let st = srv.stop(Duration::from_secs(10));
        assert!(st.status.success(), "{v:?}: {}", st.stderr);
        return;
    }
    let mut b = srv.connect();
    expect(&mut b, "* you are guest-2\n* guest-2 joined\n", "b welcome");
    expect(&mut a, "* guest-2 joined\n", "a hears b");
    let mut c = srv.connect();
    expect(&mut c, "* you are guest-3\n* guest-3 joined\n", "c welcome");
    expect(&mut a, "* guest-3 joined\n", "a hears c");
    expect(&mut b, "* guest-3 joined\n", "b hears c");
    // Several lines from one sender, split across writes: everyone in order, once.
    a.write_all(b"one\ntw").unwrap();
    a.write_all(b"o\nthree\n").unwrap();
    let lines = "[guest-1] one\n[guest-1] two\n[guest-1] three\n";
    for (s, w) in [(&mut a, "a"), (&mut b, "b"), (&mut c, "c")] {
        expect(s, lines, w);
    }
    b.write_all(b"/nick bob\nhello\n").unwrap();
    for (s, w) in [(&mut a, "a"), (&mut b, "b"), (&mut c, "c")] {
        expect(s, "* guest-2 is now bob\n[bob] hello\n", w);
    }
    // The line limit: the sender alone hears about it; the next line goes to all.
    let mut long = vec![b'y'; 4097];
    long.extend_from_slice(b"\nshort\n");
    c.write_all(&long).unwrap();
    expect(&mut c, "* line too long\n[guest-3] short\n", "c too long");
    expect(&mut a, "[guest-3] short\n", "a short");
    expect(&mut b, "[guest-3] short\n", "b short");
    // /quit: bye to the sender and a close; the others hear the leave once.
    c.write_all(b"/quit\n").unwrap();
    assert_eq!(String::from_utf8_lossy(&read_to_end(&mut c)), "* bye\n");
    expect(&mut a, "* guest-3 left\n", "a hears c leave");
    expect(&mut b, "* guest-3 left\n", "b hears c leave");
    // A plain close is a leave too.
    drop(b);
    expect(&mut a, "* bob left\n", "a hears b leave");
    expect_quiet(&mut a, "a at the end");
    drop(a);
    let st = srv.stop(Duration::from_secs(10));
    assert!(st.status.success(), "{v:?}: {}", st.stderr);
    let j = stats(&json);
    assert_eq!(j["slow_receivers_dropped"], 0, "{j}");
    assert_eq!(j["connections_accepted"], 3, "{j}");
});

/// Read `n` lines `[guest-3] z...` and, once, the slow reader's leave between two of
/// them; returns whether the leave came.
fn read_lines(s: &mut TcpStream, n: usize, what: &str) -> bool {
    let want_each = format!("[guest-3] {}\n", "z".repeat(4000));
    let leave = "* guest-2 left\n";
    let mut got = vec![0u8; want_each.len()];
    let mut left = false;
    for i in 0..n {
        s.read_exact(&mut got)
            .unwrap_or_else(|e| panic!("{what}: line {i}: {e}"));
        if !left && got.starts_with(leave.as_bytes()) {
            left = true;
            got.copy_within(leave.len().., 0);
            let rest = got.len() - leave.len();
            s.read_exact(&mut got[rest..]).unwrap();
        }
        assert!(
            got == want_each.as_bytes(),
            "{what}: line {i}: {:?}",
            String::from_utf8_lossy(&got[..40])
        );
    }
    left
}

backend_test!(chat_slow_reader_dropped_sender_goes_on, |v| {
    if !v.concurrent() {
        return println!("{v:?}: not applicable (one client at a time)");
    }
    let json = tmp(&format!("{v:?}-slow.json"));
    let srv = Server::start(
        v,
        &[
            "--proto",
            "chat",
            "--outbox-cap",
            "1048576",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    let mut fast = srv.connect();
    expect(
        &mut fast,
        "* you are guest-1\n* guest-1 joined\n",
        "fast welcome",
    );
    let slow = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    slow.set_recv_buffer_size(4096).unwrap();
    slow.connect_timeout(&srv.addr.into(), Duration::from_secs(10))
        .unwrap();
    let mut slow: TcpStream = slow.into();
    expect(&mut fast, "* guest-2 joined\n", "fast hears slow");
    let mut sender = srv.connect();
    expect(
        &mut sender,
        "* you are guest-3\n* guest-3 joined\n",
        "sender welcome",
    );
    expect(&mut fast, "* guest-3 joined\n", "fast hears sender");
    // 3000 lines of 4000 bytes (12 MB): far beyond the slow reader's socket buffers
    // and its 1 MiB outbox. The sender and the fast reader read everything.
    const N: usize = 3000;
    let line = format!("{}\n", "z".repeat(4000));
    let mut sender_r = sender.try_clone().unwrap();
    let reader = std::thread::spawn(move || read_lines(&mut sender_r, N, "sender"));
    let writer = std::thread::spawn(move || {
        for _ in 0..N {
            sender.write_all(line.as_bytes()).unwrap();
        }
        sender
    });
    let mut fast_left = read_lines(&mut fast, N, "fast");
    let mut sender = writer.join().unwrap();
    let mut sender_left = reader.join().unwrap();
    for (s, left, w) in [
        (&mut fast, &mut fast_left, "fast"),
        (&mut sender, &mut sender_left, "sender"),
    ] {
        if !*left {
            expect(s, "* guest-2 left\n", w);
        }
        expect_quiet(s, w);
    }
    // The slow one was closed: after what its buffers held, EOF or a reset.
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let held = read_to_end(&mut slow);
    assert!(
        held.len() < N * 4010,
        "{v:?}: slow reader got {} bytes, everything",
        held.len()
    );
    let st = srv.stop(Duration::from_secs(10));
    assert!(st.status.success(), "{v:?}: {}", st.stderr);
    let j = stats(&json);
    assert_eq!(j["slow_receivers_dropped"], 1, "{j}");
});
