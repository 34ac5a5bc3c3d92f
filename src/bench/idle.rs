//! `bench --idle-conns N`: the server's resident memory per idle connection.
//!
//! Per server and repeat, a fresh server process: a short warm-up (a few connections
//! opened, round-tripped and closed, so code pages and one-time allocations are paid
//! before the first reading), VmRSS and RssAnon from /proc/PID/status, then N
//! connections from this process. Each sends 16 bytes and reads the echo once (a
//! server that allocates a buffer on first data must be caught), then stays open and
//! silent. Once the server reports them all open and a moment has passed, RSS again:
//! the figure is (after - before) / N. The kernel's memory for each socket (socket
//! structures, buffers, epoll items, io_uring requests) is not in the process's RSS
//! and is not counted.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::matrix::spread;
use super::plan::Plan;
use super::proc::{Rss, RunningServer, ensure_nofile, start_server, stats_snapshot};
use super::spec::ServerSpec;
use crate::results::schema::{BenchResults, IdleResults, IdleRun, IdleServer};

/// Bytes each connection sends and reads back once.
pub const ROUND_TRIP: usize = 16;
/// Connections opened (and round-tripped) at a time: a steady trickle of clients, not
/// ten thousand at once.
pub const WAVE: usize = 100;
/// Connections opened and closed before the first reading.
pub const WARMUP: usize = 16;
/// Pause before each RSS reading.
pub const SETTLE: Duration = Duration::from_millis(200);
/// The budget: 1 KiB of resident memory per idle connection.
pub const BUDGET: f64 = 1024.0;
/// Descriptors beyond the connections that the bench and a server need (listener,
/// epoll or ring, signal pipe, stdio, the warm-up).
const FD_MARGIN: u64 = 64 + WARMUP as u64;
/// Longest wait for one connect or one echo.
const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the server to report every connection open.
const ACCOUNT_TIMEOUT: Duration = Duration::from_secs(10);

/// Run the idle-memory case for every server in the plan, write results.json and the
/// reports into `plan.out`.
pub fn run(plan: &Plan, n: u32) -> anyhow::Result<BenchResults> {
    let need = n as u64 + FD_MARGIN;
    ensure_nofile(need).with_context(|| format!("--idle-conns {n}"))?;
    check_ports(n as u64 + WARMUP as u64).with_context(|| format!("--idle-conns {n}"))?;
    let start_unix_s = super::create_out(plan)?;
    let mut per: Vec<(Option<String>, Vec<IdleRun>)> = vec![(None, Vec::new()); plan.servers.len()];
    let mut progress = super::Progress::new(plan.servers.len() * plan.cfg.repeat as usize);
    for rep in 0..plan.cfg.repeat {
        for (vi, server) in plan.servers.iter().enumerate() {
            let id = idle_id(&server.name(), n);
            progress.step(&id, rep);
            let stem = super::run_stem(&id, rep);
            let (m, features) =
                run_one(plan, server, n, &stem).with_context(|| format!("run {id}"))?;
            per[vi].0 = per[vi].0.take().or(features);
            per[vi].1.push(m);
        }
    }
    let servers: Vec<IdleServer> = plan
        .servers
        .iter()
        .zip(per)
        .map(|(s, (features, runs))| summarize(idle_id(&s.name(), n), s.name(), features, runs))
        .collect();
    let mut notes = plan.notes.clone();
    for s in &servers {
        if s.bytes_per_conn >= BUDGET {
            notes.push(format!(
                "{}: {:.0} bytes per idle connection, over the 1 KiB budget",
                s.server, s.bytes_per_conn
            ));
        }
    }
    notes.push(
        "RSS is the server process's memory; the kernel's memory for each socket (socket structures, buffers, \
         epoll items, io_uring requests) is not in it and is not counted here"
            .into(),
    );
    let args = serde_json::json!({
        "idle_conns": n, "backends": plan.cfg.backends, "repeat": plan.cfg.repeat, "quick": plan.cfg.quick,
        "servers": plan.servers.iter().map(|s| s.name()).collect::<Vec<_>>(), "server_cpu": plan.server_cpus.as_ref().and_then(|c| c.first()),
    });
    let results = BenchResults {
        notes,
        idle: Some(IdleResults {
            conns: n,
            round_trip_bytes: ROUND_TRIP as u32,
            wave: WAVE as u32,
            warmup_conns: WARMUP as u32,
            settle_ms: SETTLE.as_millis() as u64,
            budget_bytes_per_conn: BUDGET,
            servers,
        }),
        ..super::results(start_unix_s, args)
    };
    super::write_results(plan, &results)?;
    Ok(results)
}

/// "uring:baseline/idle/c10000", in the shape of the matrix's cell ids.
fn idle_id(server: &str, n: u32) -> String {
    format!("{server}/idle/c{n}")
}

fn summarize(
    id: String,
    server: String,
    features: Option<String>,
    runs: Vec<IdleRun>,
) -> IdleServer {
    let [median, min, max] = spread(runs.iter().map(|r| r.bytes_per_conn).collect());
    let [anon, ..] = spread(runs.iter().map(|r| r.anon_bytes_per_conn).collect());
    IdleServer {
        id,
        server,
        features,
        bytes_per_conn: median,
        bytes_per_conn_min: min,
        bytes_per_conn_max: max,
        anon_bytes_per_conn: anon,
        runs,
    }
}

/// One run: fresh server, warm-up, RSS, N idle connections, RSS.
fn run_one(
    plan: &Plan,
    spec: &ServerSpec,
    n: u32,
    stem: &str,
) -> anyhow::Result<(IdleRun, Option<String>)> {
    let srv = start_server(plan, spec, stem)?;
    let pid = srv.child.id();
    let deadline = Instant::now() + Duration::from_secs(30) + Duration::from_millis(n as u64);
    drop(open_idle(srv.addr, WARMUP, u64::MAX, deadline).context("warm-up")?);
    std::thread::sleep(SETTLE);
    let open_before = open_count(&srv, 0)?;
    let before = Rss::of(pid)?;
    let t0 = Instant::now();
    let conns = open_idle(srv.addr, n as usize, 0, deadline)?;
    let connect_s = t0.elapsed().as_secs_f64();
    // Every echo came back, so every connection was accepted; wait for the server's
    // own account anyway (a server may hand connections to another process).
    let t1 = Instant::now();
    let open = loop {
        let open = open_count(&srv, open_before)?;
        if open >= n as u64 {
            break open;
        }
        if t1.elapsed() > ACCOUNT_TIMEOUT {
            bail!("the server reports {open} of {n} connections open after {ACCOUNT_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(SETTLE);
    let after = Rss::of(pid)?;
    let features = srv.uring_features(spec)?;
    // The server closes first, so no client port is left in TIME_WAIT.
    drop(srv);
    drop(conns);
    let per = |a: u64, b: u64| (a as f64 - b as f64) * 1024.0 / n as f64;
    Ok((
        IdleRun {
            rss_before_kib: before.vm_kib,
            rss_after_kib: after.vm_kib,
            anon_before_kib: before.anon_kib,
            anon_after_kib: after.anon_kib,
            bytes_per_conn: per(after.vm_kib, before.vm_kib),
            anon_bytes_per_conn: per(after.anon_kib, before.anon_kib),
            connect_s,
            server_open: open,
        },
        features,
    ))
}

/// Connections the server has open beyond `base`: ringmux says so in a stats snapshot
/// (accepted - closed); for other servers, the file descriptors gained since `base`.
fn open_count(srv: &RunningServer, base: u64) -> anyhow::Result<u64> {
    let pid = srv.child.id();
    match &srv.stats {
        Some(p) => {
            let j = stats_snapshot(pid, p)?;
            let (a, c) = (
                j["connections_accepted"].as_u64().unwrap_or(0),
                j["connections_closed"].as_u64().unwrap_or(0),
            );
            Ok(a.saturating_sub(c).saturating_sub(base))
        }
        None => {
            let fds = fs::read_dir(format!("/proc/{pid}/fd"))
                .with_context(|| format!("cannot list /proc/{pid}/fd"))?
                .count();
            Ok((fds as u64).saturating_sub(base))
        }
    }
}

/// The 16 bytes connection `i` sends.
fn message(seed: u64, i: usize) -> [u8; ROUND_TRIP] {
    let mut m = [0u8; ROUND_TRIP];
    m[..8].copy_from_slice(&(i as u64).to_le_bytes());
    m[8..].copy_from_slice(&(seed ^ 0x5eed_1d1e_c0de_0001).to_le_bytes());
    m
}

/// What is left of `deadline`, capped at one operation's timeout; an error once it
/// has passed.
fn left(deadline: Instant) -> anyhow::Result<Duration> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d < Duration::from_millis(1) {
        bail!("ran past its deadline");
    }
    Ok(d.min(OP_TIMEOUT))
}

/// Open `n` connections in waves of [`WAVE`]: connect, send 16 bytes, read the echo
/// back and check it, keep the socket. Every wait is bounded.
fn open_idle(
    addr: SocketAddr,
    n: usize,
    seed: u64,
    deadline: Instant,
) -> anyhow::Result<Vec<TcpStream>> {
    let mut conns: Vec<TcpStream> = Vec::with_capacity(n);
    let mut buf = [0u8; ROUND_TRIP];
    while conns.len() < n {
        let start = conns.len();
        let end = (start + WAVE).min(n);
        for i in start..end {
            let s = TcpStream::connect_timeout(&addr, left(deadline)?).map_err(|e| {
                let hint = if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
                    " (out of local ports: see net.ipv4.ip_local_port_range)"
                } else {
                    ""
                };
                anyhow::anyhow!("connection {} of {n} to {addr}: {e}{hint}", i + 1)
            })?;
            (&s).write_all(&message(seed, i))
                .with_context(|| format!("send on connection {} of {n}", i + 1))?;
            conns.push(s);
        }
        for (i, s) in conns.iter().enumerate().skip(start) {
            s.set_read_timeout(Some(left(deadline)?))?;
            (&*s)
                .read_exact(&mut buf)
                .with_context(|| format!("echo on connection {} of {n}", i + 1))?;
            if buf != message(seed, i) {
                bail!(
                    "connection {} of {n}: the echo differs from the 16 bytes sent",
                    i + 1
                );
            }
        }
    }
    Ok(conns)
}

/// Every connection to one server address needs its own local port.
fn check_ports(need: u64) -> anyhow::Result<()> {
    let Ok(s) = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else {
        return Ok(());
    };
    let v: Vec<u64> = s
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    if let [lo, hi] = v[..]
        && hi >= lo
        && hi - lo + 1 < need
    {
        bail!(
            "needs {need} local ports to one address, but net.ipv4.ip_local_port_range ({lo}-{hi}) has {}; \
             widen it (`sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"`) or ask for fewer connections",
            hi - lo + 1
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_median_min_max() {
        let run = |b: f64| IdleRun {
            bytes_per_conn: b,
            anon_bytes_per_conn: b / 2.0,
            ..Default::default()
        };
        let s = summarize(
            "x/idle/c10".into(),
            "x".into(),
            None,
            vec![run(300.0), run(100.0), run(200.0)],
        );
        assert_eq!(
            (s.bytes_per_conn, s.bytes_per_conn_min, s.bytes_per_conn_max),
            (200.0, 100.0, 300.0)
        );
        assert_eq!(s.anon_bytes_per_conn, 100.0);
        assert_eq!(
            idle_id("uring:baseline", 10_000),
            "uring:baseline/idle/c10000"
        );
    }

    #[test]
    fn messages_differ_per_connection() {
        assert_ne!(message(0, 1), message(0, 2));
        assert_ne!(message(0, 1), message(1, 1));
    }
}
