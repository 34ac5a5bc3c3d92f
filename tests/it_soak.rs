//! Soak: connection churn per backend and io_uring level. Client threads connect, echo
//! a random size (1 B to 64 KiB, verified byte for byte) and close; one close in four
//! is a reset (SO_LINGER 0), one in eight resets before reading the reply.
//!
//! The run has two phases: a warm-up (the first fifth, "minute 2 of 10") and the rest.
//! After each phase the clients have left and the server is idle; then its RSS and
//! descriptors are read. Asserted: RSS after the run <= 1.05 x RSS after the warm-up,
//! descriptors equal (drift 0) and equal to the count before any churn, and at exit
//! accepted == closed == the connections the clients made.
//!
//! `RINGMUX_SOAK_SECS` sets the seconds per variant (default 5.5: about 60 s for the
//! 11 variants); `scripts/soak.sh` runs it for minutes per backend.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::backend_test;
use crate::util::{
    Rng, Server, Variant, env_secs, fd_baseline, payload, read_json, read_varied, seed_for,
    wait_until,
};

#[derive(Default)]
struct Counts {
    conns: AtomicU64,
    bytes_verified: AtomicU64,
    resets_sent: AtomicU64,
    resets_early: AtomicU64,
}

/// Churn from `workers` threads until `until`; returns once all have left.
fn churn(srv: &Server, v: Variant, workers: u64, seed: u64, until: Instant, c: &Arc<Counts>) {
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let addr = srv.addr;
            let c = c.clone();
            thread::spawn(move || {
                let mut rng = Rng::new(seed ^ (w + 1) << 40);
                let mut i = 0u64;
                while Instant::now() < until {
                    i += 1;
                    let mut s =
                        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                            .unwrap_or_else(|e| panic!("{v:?}: connect: {e}"));
                    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
                    c.conns.fetch_add(1, Ordering::Relaxed);
                    let len = rng.range(1, 64 << 10) as usize;
                    let msg = payload(seed ^ w << 32 ^ i, len);
                    let how = rng.range(0, 7);
                    // Messages over the socket buffers would deadlock a writer that does
                    // not read: send in a thread while reading.
                    let mut wr = s.try_clone().unwrap();
                    let m = msg.clone();
                    let writer = thread::spawn(move || wr.write_all(&m));
                    let linger0 = |s: &std::net::TcpStream| {
                        socket2::SockRef::from(s)
                            .set_linger(Some(Duration::ZERO))
                            .unwrap()
                    };
                    if how == 0 {
                        // Reset with the reply (maybe even the request) in flight.
                        let _ = writer.join().unwrap();
                        linger0(&s);
                        c.resets_early.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let got = read_varied(&mut s, len);
                    writer
                        .join()
                        .unwrap()
                        .unwrap_or_else(|e| panic!("{v:?}: send: {e}"));
                    assert!(
                        got == msg,
                        "{v:?}: worker {w} conn {i}: echo of {len} bytes differs"
                    );
                    c.bytes_verified.fetch_add(len as u64, Ordering::Relaxed);
                    if how <= 2 {
                        linger0(&s);
                        c.resets_sent.fetch_add(1, Ordering::Relaxed);
                    } else {
                        // An orderly close: half-close, then the server's EOF.
                        s.shutdown(std::net::Shutdown::Write).unwrap();
                        let mut b = [0u8; 1];
                        assert_eq!(
                            s.read(&mut b)
                                .unwrap_or_else(|e| panic!("{v:?}: read after shutdown: {e}")),
                            0,
                            "{v:?}: bytes after the echo"
                        );
                    }
                }
            })
        })
        .collect();
    for (w, h) in handles.into_iter().enumerate() {
        h.join()
            .unwrap_or_else(|_| panic!("{v:?}: churn worker {w} failed"));
    }
}

/// Wait until the server has closed every connection (descriptors back to `fds0`).
fn settle(srv: &Server, v: Variant, fds0: usize, when: &str) {
    let ok = wait_until(Duration::from_secs(10), || srv.fd_count() == fds0);
    assert!(
        ok,
        "{v:?}: {when}: fds {} (baseline {fds0})",
        srv.fd_count()
    );
}

fn soak(v: Variant) {
    let total = Duration::from_secs_f64(env_secs("RINGMUX_SOAK_SECS", 5.5));
    let seed = seed_for(v);
    let stats = std::env::temp_dir().join(format!(
        "ringmux-soak-stats-{}-{v:?}.json",
        std::process::id()
    ));
    let srv = Server::start(v, &["--stats-json", stats.to_str().unwrap()]);
    let fds0 = fd_baseline(&srv);
    let c = Arc::new(Counts::default());
    let workers = if v.concurrent() { 4 } else { 1 };
    let t0 = Instant::now();

    churn(&srv, v, workers, seed, t0 + total / 5, &c);
    settle(&srv, v, fds0, "after the warm-up");
    let (rss_warm, fds_warm) = (srv.rss_kib(), srv.fd_count());
    churn(&srv, v, workers, seed.rotate_left(17), t0 + total, &c);
    settle(&srv, v, fds0, "at the end");
    let (rss_end, fds_end) = (srv.rss_kib(), srv.fd_count());

    let conns = c.conns.load(Ordering::Relaxed);
    let drift = (rss_end as f64 - rss_warm as f64) / rss_warm as f64 * 100.0;
    let line = format!(
        "soak {v:?} seed={seed} {:.1}s: {conns} conns, {} bytes verified, {} resets after the echo, {} before it, RSS {rss_warm} -> {rss_end} KiB ({drift:+.2}%), fds {fds_warm} -> {fds_end}",
        t0.elapsed().as_secs_f64(),
        c.bytes_verified.load(Ordering::Relaxed),
        c.resets_sent.load(Ordering::Relaxed),
        c.resets_early.load(Ordering::Relaxed),
    );
    assert!(rss_warm > 0 && rss_end > 0, "{line}: no RSS read");
    assert!(
        rss_end * 100 <= rss_warm * 105,
        "{line}: RSS grew more than 5% after the warm-up"
    );
    assert_eq!(fds_end, fds_warm, "{line}: descriptor drift");
    let st = srv.stop(Duration::from_secs(10));
    assert!(
        st.status.success(),
        "{line}: exit {:?}; stderr: {}",
        st.status,
        st.stderr
    );
    let j = read_json(&stats);
    let _ = std::fs::remove_file(&stats);
    assert_eq!(
        j["connections_accepted"].as_u64(),
        Some(conns + 1),
        "{line}: {j}"
    );
    assert_eq!(
        j["connections_closed"], j["connections_accepted"],
        "{line}: {j}"
    );
    println!("{line}, accepted=closed={}", j["connections_accepted"]);
}

backend_test!(soak_churn_rss_and_fds_flat, soak);
