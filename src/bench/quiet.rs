//! The quiet rows: each server, fresh, sits idle for `--quiet-secs` with no
//! connection, then again with `--quiet-conns` connections that each echoed 16 bytes
//! once and fell silent. An idle server should cost nothing: a loop that spins (busy
//! polling, or a wait that returns at once) shows here.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::plan::Plan;
use super::proc::{Counters, group_counters, start_server};
use crate::proto::Proto;
use crate::results::schema::QuietRow;

/// The quiet rows of every server in the plan; a row that cannot be had is a note.
pub fn quiet_rows(plan: &Plan, notes: &mut Vec<String>) -> anyhow::Result<Vec<QuietRow>> {
    let mut rows = Vec::new();
    let secs = plan.cfg.quiet_secs;
    for server in &plan.servers {
        let stem = format!("quiet-{}", server.name().replace([':', '/'], "_"));
        let srv = start_server(plan, server, &stem)?;
        let pid = srv.child.id();
        let snap = || -> anyhow::Result<Counters> {
            // Context switches from /proc for every server, so the rows compare.
            let procs = group_counters(pid);
            Ok(match srv.stats {
                Some(_) => Counters {
                    ctx: procs.ctx,
                    ..srv.counters()?
                },
                None => procs,
            })
        };
        let mut features = None;
        let mut held = Vec::new();
        for conns in [0, plan.cfg.quiet_conns] {
            if conns > 0 {
                match open_silent(srv.addr, conns, plan.cfg.proto) {
                    Ok(c) => held = c,
                    Err(e) => {
                        notes.push(format!(
                            "{}: quiet row with {conns} connections skipped: {e:#}",
                            server.name()
                        ));
                        break;
                    }
                }
            }
            let a = snap()?;
            let t0 = Instant::now();
            std::thread::sleep(Duration::from_secs_f64(secs));
            let b = snap()?;
            let wall = t0.elapsed().as_secs_f64();
            if features.is_none() {
                features = srv.uring_features(server)?;
            }
            rows.push(QuietRow {
                server: server.name(),
                features: features.clone(),
                conns,
                seconds: wall,
                cpu_share: (b.cpu_s - a.cpu_s).max(0.0) / wall,
                syscalls_per_s: match (a.syscalls, b.syscalls) {
                    (Some(x), Some(y)) => Some(y.saturating_sub(x) as f64 / wall),
                    _ => None,
                },
                ctx_per_s: b.ctx.saturating_sub(a.ctx) as f64 / wall,
            });
        }
        drop(held);
        srv.stop()?;
    }
    Ok(rows)
}

/// `n` connections to `addr`, each having done one round trip (so the server has
/// accepted and served it: 16 bytes echoed, or a `GET /`), then left silent.
pub fn open_silent(addr: SocketAddr, n: u32, proto: Proto) -> anyhow::Result<Vec<TcpStream>> {
    use std::io::{Read, Write};
    let mut conns = Vec::with_capacity(n as usize);
    let (msg, reply): (&[u8], usize) = match proto {
        Proto::Http => (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0),
        _ => (b"quiet-row-16byte", 16),
    };
    for chunk in 0..n.div_ceil(100) {
        let start = conns.len();
        for _ in 0..(n - chunk * 100).min(100) {
            let mut s =
                TcpStream::connect_timeout(&addr, Duration::from_secs(5)).context("connect")?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(msg).context("send")?;
            conns.push(s);
        }
        for s in &mut conns[start..] {
            if reply == 0 {
                // HTTP: read until the response's body ("Hello, World!") has arrived.
                let mut got = Vec::new();
                let mut buf = [0u8; 512];
                while !got.ends_with(b"Hello, World!") {
                    let k = s.read(&mut buf).context("response")?;
                    anyhow::ensure!(
                        k > 0 && got.len() < 4096,
                        "the server closed or sent no plaintext response"
                    );
                    got.extend_from_slice(&buf[..k]);
                }
            } else {
                let mut buf = vec![0u8; reply];
                s.read_exact(&mut buf).context("reply")?;
                anyhow::ensure!(proto != Proto::Echo || buf == msg, "the echo differs");
            }
        }
    }
    Ok(conns)
}
