//! Reference closed-loop echo client: what a Rust user would write with tokio, to
//! compare `ringmux load`'s cost against (see `benches/load_client.rs`).
//!
//! Usage: `tokio_echo_client [--addr A] [--conns N] [--size B] [--duration S] [--warmup S]`
//! (defaults 127.0.0.1:7878, 50, 128, 5, 1). One thread (current_thread runtime), one
//! task per connection, each in a loop: `write_all` the message, `read_exact` the reply,
//! check it equals the message, repeat. After the warm-up it counts messages and its own
//! CPU time (getrusage) for `duration` seconds, then prints one JSON line:
//!
//! `{"client":"tokio","conns":50,"size":128,"messages":612345,"elapsed_s":5.000,
//!   "msgs_per_s":122469.0,"cpu_user_s":0.41,"cpu_sys_s":4.52,"cpu_ns_per_msg":8051.2,"errors":0}`
//!
//! A connection that fails (reset, EOF, wrong bytes) counts one error and stops; the
//! exit status is 1 when any error was counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Args {
    addr: SocketAddr,
    conns: u32,
    size: usize,
    duration: f64,
    warmup: f64,
}

fn usage_exit(msg: &str) -> ! {
    eprintln!("tokio_echo_client: {msg}");
    eprintln!(
        "usage: tokio_echo_client [--addr A] [--conns N] [--size B] [--duration S] [--warmup S]"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut a = Args {
        addr: "127.0.0.1:7878".parse().expect("valid default"),
        conns: 50,
        size: 128,
        duration: 5.0,
        warmup: 1.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            usage_exit("a closed-loop tokio echo client");
        }
        let Some(v) = it.next() else {
            usage_exit(&format!("{flag} needs a value"))
        };
        let bad = |e: &dyn std::fmt::Display| -> ! { usage_exit(&format!("{flag} {v}: {e}")) };
        match flag.as_str() {
            "--addr" => a.addr = v.parse().unwrap_or_else(|e| bad(&e)),
            "--conns" => a.conns = v.parse().unwrap_or_else(|e| bad(&e)),
            "--size" => a.size = v.parse().unwrap_or_else(|e| bad(&e)),
            "--duration" => a.duration = v.parse().unwrap_or_else(|e| bad(&e)),
            "--warmup" => a.warmup = v.parse().unwrap_or_else(|e| bad(&e)),
            _ => usage_exit(&format!("unknown option {flag}")),
        }
    }
    if a.conns == 0
        || a.size == 0
        || !(a.duration > 0.0 && a.duration <= 3600.0)
        || !(0.0..=3600.0).contains(&a.warmup)
    {
        usage_exit(
            "--conns and --size must be at least 1, --duration in (0, 3600], --warmup in [0, 3600]",
        );
    }
    a
}

/// User + system CPU seconds of this process.
fn cpu_s() -> (f64, f64) {
    // SAFETY: rusage is plain data; all-zero is a valid value, and getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is valid for writes during the call.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// One connection's closed loop: send, wait for the whole echo, check it, count, repeat.
async fn run_conn(
    mut s: TcpStream,
    id: u32,
    size: usize,
    done: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
) {
    let msg: Vec<u8> = (0..size)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(id) as u8)
        .collect();
    let mut reply = vec![0u8; size];
    loop {
        if s.write_all(&msg).await.is_err()
            || s.read_exact(&mut reply).await.is_err()
            || reply != msg
        {
            errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = parse_args();
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    for id in 0..a.conns {
        let s =
            match tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(a.addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    eprintln!("tokio_echo_client: cannot connect to {}: {e}", a.addr);
                    std::process::exit(1);
                }
                Err(_) => {
                    eprintln!("tokio_echo_client: connecting to {} timed out", a.addr);
                    std::process::exit(1);
                }
            };
        let _ = s.set_nodelay(true);
        tokio::spawn(run_conn(s, id, a.size, done.clone(), errors.clone()));
    }
    // The tasks run while main sleeps on the same thread.
    tokio::time::sleep(Duration::from_secs_f64(a.warmup)).await;
    let (m0, (u0, s0), t0) = (done.load(Ordering::Relaxed), cpu_s(), Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(a.duration)).await;
    let (m1, (u1, s1), elapsed) = (
        done.load(Ordering::Relaxed),
        cpu_s(),
        t0.elapsed().as_secs_f64(),
    );
    let messages = m1 - m0;
    let (user, sys) = (u1 - u0, s1 - s0);
    let errors = errors.load(Ordering::Relaxed);
    println!(
        "{{\"client\":\"tokio\",\"conns\":{},\"size\":{},\"messages\":{messages},\"elapsed_s\":{elapsed:.3},\"msgs_per_s\":{:.1},\
         \"cpu_user_s\":{user:.3},\"cpu_sys_s\":{sys:.3},\"cpu_ns_per_msg\":{:.1},\"errors\":{errors}}}",
        a.conns,
        a.size,
        messages as f64 / elapsed,
        if messages > 0 {
            (user + sys) * 1e9 / messages as f64
        } else {
            0.0
        },
    );
    // Exit at once: the connection tasks are still mid-loop.
    std::process::exit(i32::from(errors > 0));
}
