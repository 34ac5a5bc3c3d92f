//! Chaos: every backend and io_uring level serves `ringmux load` (which verifies every
//! reply byte for byte) while the fault layer (`RINGMUX_FAULTS`) resets receives,
//! empties the buffer group and cuts sends short at random rates.
//!
//! Asserted per variant: no mismatch, no timeout, no failed connect and no other error
//! (resets are the injected fault, expected and counted); the server's descriptors come
//! back to their count before the first connection; it exits 0 with
//! accepted == closed; it wrote at least every byte the load verified.
//!
//! `RINGMUX_CHAOS_SECS` sets the seconds per variant (default 2.5: about 30 s for the
//! 11 variants), `RINGMUX_CHAOS_SEED` replays a run (the seed is printed).
//! `scripts/chaos.sh` runs it for hours.

use std::time::{Duration, Instant};

use crate::backend_test;
use crate::util::{
    Rng, Server, Variant, env_secs, fd_baseline, load, read_json, seed_for, wait_until,
};

/// Totals of one variant's rounds.
#[derive(Debug, Default)]
struct Tally {
    rounds: u64,
    messages: u64,
    bytes_verified: u64,
    resets: u64,
    conns: u64,
}

/// One `ringmux load` round; its JSON (errors checked by the caller).
fn load_round(v: Variant, addr: &str, args: &[String], within: Duration) -> serde_json::Value {
    let mut all: Vec<&str> = vec!["--addr", addr, "--warmup", "0", "--allow-errors", "--quiet"];
    all.extend(args.iter().map(String::as_str));
    let r = load(&all, within);
    assert!(r.status.success(), "{v:?}\n{}", r.explain());
    r.json().clone()
}

fn chaos(v: Variant) {
    let budget = Duration::from_secs_f64(env_secs("RINGMUX_CHAOS_SECS", 2.5));
    let seed = seed_for(v);
    let mut rng = Rng::new(seed);
    // Rates: a reset every 20 to 400 receives with data (each one ends a connection),
    // a dry buffer group every 2 to 20 arms, a short send every 2 to 10 sends.
    let faults = format!(
        "recv-reset={},recv-nobufs={},send-short={}",
        rng.range(20, 400),
        rng.range(2, 20),
        rng.range(2, 10)
    );
    let tmp = std::env::temp_dir();
    let tag = format!("{}-{v:?}", std::process::id());
    let stats = tmp.join(format!("ringmux-chaos-stats-{tag}.json"));
    let srv = Server::start_env(
        v,
        &["--stats-json", stats.to_str().unwrap()],
        &[("RINGMUX_FAULTS", &faults)],
    );
    let addr = srv.addr.to_string();
    let fds0 = fd_baseline(&srv);
    let what = format!("{v:?} seed={seed} {faults}");

    let t0 = Instant::now();
    let mut t = Tally::default();
    while t0.elapsed() < budget {
        let left = budget.saturating_sub(t0.elapsed()).as_secs_f64().max(0.1);
        // blocking serves one connection at a time: more would wait out the round.
        let conns = if v.concurrent() { rng.range(1, 48) } else { 1 };
        let size = rng.pick(&[1u64, 7, 100, 1000, 4096, 16384, 65536, 200_000]);
        let pipeline = rng.range(1, 4);
        let secs = (rng.range(2, 8) as f64 / 10.0).min(left);
        let args: Vec<String> = [
            "--conns",
            &conns.to_string(),
            "--size",
            &size.to_string(),
            "--pipeline",
            &pipeline.to_string(),
            "--duration",
            &format!("{secs:.2}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let j = load_round(v, &addr, &args, Duration::from_secs(60));
        let e = &j["errors"];
        let kinds =
            ["mismatch", "timeout", "connect", "other"].map(|k| (k, e[k].as_u64().unwrap()));
        assert!(
            kinds.iter().all(|(_, n)| *n == 0),
            "{what}: round {} {args:?}: unexpected errors {kinds:?} (resets {})",
            t.rounds,
            e["reset"]
        );
        let msgs = j["messages"].as_u64().unwrap() + j["warmup_messages"].as_u64().unwrap();
        t.rounds += 1;
        t.messages += msgs;
        t.bytes_verified += msgs * size;
        t.resets += e["reset"].as_u64().unwrap();
        t.conns += j["conns_established"].as_u64().unwrap();
    }

    // Every connection the load made is gone: the server's descriptors are back.
    let settled = wait_until(Duration::from_secs(10), || srv.fd_count() == fds0);
    if !settled {
        let fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", srv.pid))
            .map(|d| {
                d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                    .map(|p| p.display().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let st = srv.stop(Duration::from_secs(10));
        panic!(
            "{what}: fds {fds0} before the load, {} after it: {fds:?}; stdout: {}",
            fds.len(),
            st.stdout
        );
    }
    let st = srv.stop(Duration::from_secs(10));
    assert!(
        st.status.success(),
        "{what}: exit {:?}; stderr: {}",
        st.status,
        st.stderr
    );
    let j = read_json(&stats);
    let _ = std::fs::remove_file(&stats);
    assert_eq!(
        j["connections_accepted"], j["connections_closed"],
        "{what}: {j}"
    );
    assert_eq!(
        j["connections_accepted"].as_u64(),
        Some(t.conns + 1),
        "{what}: the server accepted a different number than the load connected"
    );
    assert!(t.messages > 0, "{what}: nothing was served: {t:?}");
    assert!(
        t.resets <= t.conns,
        "{what}: more resets than connections: {t:?}"
    );
    assert!(
        j["faults_injected"].as_u64().unwrap() > 0,
        "{what}: no fault was injected: {j}"
    );
    assert!(
        j["bytes_out"].as_u64().unwrap() >= t.bytes_verified,
        "{what}: the load verified more bytes than the server sent: {j}"
    );
    println!(
        "chaos {what}: {} rounds, {} conns, {} messages, {} bytes verified, 0 mismatches, {} resets (expected), faults_injected={} recv_nobufs={} fds {fds0}->{fds0}, accepted=closed={}",
        t.rounds,
        t.conns,
        t.messages,
        t.bytes_verified,
        t.resets,
        j["faults_injected"],
        j["recv_nobufs"],
        j["connections_accepted"]
    );
}

backend_test!(chaos_random_faults_verified_bytes, chaos);
