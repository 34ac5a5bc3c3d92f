//! Reference echo client: what a Rust user would write with tokio, to compare
//! `ringmux load`'s cost against (`benches/load_client.rs`) and to drive `ringmux bench
//! --client tokio`, so a verdict can be checked not to depend on ringmux's own load.
//!
//! Usage: `tokio_echo_client [--addr A] [--conns N] [--size B] [--duration S] [--warmup S]
//! [--pipeline P] [--rate R] [--max-lag S] [--json FILE] [--allow-errors]`
//! (defaults 127.0.0.1:7878, 50, 128, 5, 1, 1, closed loop, 0.05, none).
//!
//! One thread (current_thread runtime), one task per connection:
//! - closed loop (`--pipeline 1`, no `--rate`): `write_all` the message, `read_exact` the
//!   reply, check it equals the message, repeat;
//! - pipelined (`--pipeline P`): the connection is split, a writer task keeps P messages
//!   in flight and the reader checks the replies in order;
//! - open loop (`--rate R`, msgs/s over all connections): each connection sends on its
//!   own schedule (`R / N` each, starts spread over one period, as `ringmux load` does),
//!   one message in flight; latency counts from the intended send time (corrected for
//!   coordinated omission) and, separately, from the actual send. Sleeping uses tokio's
//!   timer (1 ms resolution), as a tokio user's client would: `max_lag_s` says how late
//!   sends were.
//!
//! After the warm-up it records, for `duration` seconds, every reply completed in the
//! window into an HdrHistogram (ns, 3 significant digits) and its own CPU time
//! (getrusage). Then it prints one JSON line (and writes it to `--json FILE`), with the
//! fields of `ringmux load --json` that the bench reads (`messages`, `msgs_per_s`,
//! `mb_per_s`, `latency`, `latency_uncorrected`, `errors`, `rate_kept`, `max_lag_s`,
//! `missing`, `load_cpu_ns_per_msg`) and its own (`client`, `cpu_user_s`, `cpu_sys_s`,
//! `cpu_ns_per_msg`).
//!
//! A connection that fails (reset, EOF, wrong bytes) counts one error and stops; the
//! exit status is 1 when any error was counted, unless `--allow-errors`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Args {
    addr: SocketAddr,
    conns: u32,
    size: usize,
    duration: f64,
    warmup: f64,
    pipeline: u32,
    rate: Option<f64>,
    max_lag: f64,
    json: Option<String>,
    allow_errors: bool,
}

const USAGE: &str = "usage: tokio_echo_client [--addr A] [--conns N] [--size B] [--duration S] [--warmup S] \
                     [--pipeline P] [--rate MSGS_PER_S] [--max-lag S] [--json FILE] [--allow-errors]";

fn usage_exit(msg: &str) -> ! {
    eprintln!("tokio_echo_client: {msg}");
    eprintln!("{USAGE}");
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut a = Args {
        addr: "127.0.0.1:7878".parse().expect("valid default"),
        conns: 50,
        size: 128,
        duration: 5.0,
        warmup: 1.0,
        pipeline: 1,
        rate: None,
        max_lag: 0.05,
        json: None,
        allow_errors: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--help" | "-h" => {
                println!("a tokio echo client: closed loop, pipelined or open loop\n{USAGE}");
                std::process::exit(0);
            }
            "--allow-errors" => {
                a.allow_errors = true;
                continue;
            }
            _ => {}
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
            "--pipeline" => a.pipeline = v.parse().unwrap_or_else(|e| bad(&e)),
            "--rate" => a.rate = Some(v.parse().unwrap_or_else(|e| bad(&e))),
            "--max-lag" => a.max_lag = v.parse().unwrap_or_else(|e| bad(&e)),
            "--json" => a.json = Some(v),
            _ => usage_exit(&format!("unknown option {flag}")),
        }
    }
    if a.conns == 0
        || a.size == 0
        || a.pipeline == 0
        || !(a.duration > 0.0 && a.duration <= 3600.0)
        || !(0.0..=3600.0).contains(&a.warmup)
        || !(0.0..=3600.0).contains(&a.max_lag)
    {
        usage_exit(
            "--conns, --size and --pipeline must be at least 1, --duration in (0, 3600], --warmup and --max-lag in [0, 3600]",
        );
    }
    if let Some(r) = a.rate {
        if !(r.is_finite() && r > 0.0 && r <= 1e9) {
            usage_exit("--rate must be a number of messages per second above 0 (at most 1e9)");
        }
        if a.pipeline > 1 {
            usage_exit(
                "--rate (open loop) keeps one message in flight per connection: leave out --pipeline",
            );
        }
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

/// The measured window and, in open loop, the schedule; shared by every connection.
struct Window {
    /// Origin of the schedule (all connections connected).
    start: Instant,
    from: Instant,
    until: Instant,
    /// Open loop: nanoseconds between two messages of one connection.
    period_ns: Option<f64>,
    conns: u32,
}

impl Window {
    fn measures(&self, t: Instant) -> bool {
        t >= self.from && t < self.until
    }

    /// Intended send time of message `seq` of connection `id` (open loop).
    fn intended(&self, period_ns: f64, id: u32, seq: u64) -> Instant {
        let phase = f64::from(id) / f64::from(self.conns);
        self.start + Duration::from_nanos(((phase + seq as f64) * period_ns).round() as u64)
    }
}

/// What one connection recorded in the window; locked by its task per message (never
/// contended) and by main once at the end.
struct ConnStats {
    corrected: Histogram<u64>,
    uncorrected: Histogram<u64>,
    messages: u64,
    /// Open loop: the most a send was late on its intended time, ns (window only).
    max_lag_ns: u64,
    /// Open loop: replies completed to messages intended in the window.
    done_intended_in_window: u64,
}

impl ConnStats {
    fn new() -> ConnStats {
        let h = || Histogram::new(3).expect("3 significant digits is valid");
        ConnStats {
            corrected: h(),
            uncorrected: h(),
            messages: 0,
            max_lag_ns: 0,
            done_intended_in_window: 0,
        }
    }
}

/// Errors by kind (names as in `ringmux load --json`).
#[derive(Default)]
struct Errors {
    mismatch: AtomicU64,
    reset: AtomicU64,
}

impl Errors {
    /// Whether a round trip went well: the IO succeeded and the echo equals the
    /// message; else count its kind (the connection then stops).
    fn ok(&self, io_ok: bool, reply: &[u8], msg: &[u8]) -> bool {
        let kind = match (io_ok, reply == msg) {
            (true, true) => return true,
            (false, _) => &self.reset,
            (true, false) => &self.mismatch,
        };
        kind.fetch_add(1, Ordering::Relaxed);
        false
    }
}

fn message(id: u32, size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(id) as u8)
        .collect()
}

fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

/// One connection, one message in flight: send, wait for the whole echo, check it,
/// count, repeat; in open loop each send waits for its intended time first.
async fn run_conn(
    mut s: TcpStream,
    id: u32,
    size: usize,
    w: Arc<Window>,
    stats: Arc<Mutex<ConnStats>>,
    errors: Arc<Errors>,
) {
    let msg = message(id, size);
    let mut reply = vec![0u8; size];
    let mut seq = 0u64;
    loop {
        let intended = w.period_ns.map(|p| w.intended(p, id, seq));
        if let Some(t) = intended
            && t > Instant::now()
        {
            tokio::time::sleep_until(t.into()).await;
        }
        let sent = Instant::now();
        let io_ok = s.write_all(&msg).await.is_ok() && s.read_exact(&mut reply).await.is_ok();
        if !errors.ok(io_ok, &reply, &msg) {
            return;
        }
        let done = Instant::now();
        seq += 1;
        let in_window = w.measures(done);
        let intended_in_window = intended.is_some_and(|t| w.measures(t));
        if in_window || intended_in_window {
            let mut st = stats.lock().expect("not poisoned");
            if intended_in_window {
                st.done_intended_in_window += 1;
                st.max_lag_ns = st
                    .max_lag_ns
                    .max(ns(sent.saturating_duration_since(intended.unwrap_or(sent))));
            }
            if in_window {
                st.messages += 1;
                let _ = st.uncorrected.record(ns(done - sent).max(1));
                let from = intended.unwrap_or(sent);
                let _ = st.corrected.record(ns(done - from).max(1));
            }
        }
    }
}

/// One connection, `pipeline` messages in flight (closed loop): a writer task refills
/// the slots the reader frees; the reader checks replies in order and times each from
/// its send.
async fn run_pipelined(
    s: TcpStream,
    id: u32,
    size: usize,
    pipeline: u32,
    w: Arc<Window>,
    stats: Arc<Mutex<ConnStats>>,
    errors: Arc<Errors>,
) {
    let msg = message(id, size);
    let (mut rd, mut wr) = s.into_split();
    let slots = Arc::new(tokio::sync::Semaphore::new(pipeline as usize));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let writer = {
        let (msg, slots) = (msg.clone(), slots.clone());
        tokio::spawn(async move {
            loop {
                let Ok(permit) = slots.acquire().await else {
                    return;
                };
                permit.forget();
                if tx.send(Instant::now()).is_err() || wr.write_all(&msg).await.is_err() {
                    return;
                }
            }
        })
    };
    let mut reply = vec![0u8; size];
    loop {
        let io_ok = rd.read_exact(&mut reply).await.is_ok();
        if !errors.ok(io_ok, &reply, &msg) {
            break;
        }
        let done = Instant::now();
        let Some(sent) = rx.recv().await else { break };
        slots.add_permits(1);
        if w.measures(done) {
            let mut st = stats.lock().expect("not poisoned");
            st.messages += 1;
            let _ = st.corrected.record(ns(done - sent).max(1));
        }
    }
    writer.abort();
}

/// `"latency": {...}` as `ringmux load` writes it (ns).
fn percentiles(h: &Histogram<u64>) -> String {
    let q = |p: f64| h.value_at_quantile(p);
    format!(
        "{{\"count\":{},\"min\":{},\"mean\":{:.1},\"p50\":{},\"p75\":{},\"p90\":{},\"p99\":{},\"p99_9\":{},\"p99_99\":{},\"p99_999\":{},\"max\":{}}}",
        h.len(),
        if h.is_empty() { 0 } else { h.min() },
        h.mean(),
        q(0.5),
        q(0.75),
        q(0.9),
        q(0.99),
        q(0.999),
        q(0.9999),
        q(0.99999),
        h.max()
    )
}

/// Messages of every connection intended in the window (open loop).
fn scheduled_in_window(w: &Window, period_ns: f64) -> u64 {
    let (from, until) = (
        ns(w.from - w.start) as f64 / period_ns,
        ns(w.until - w.start) as f64 / period_ns,
    );
    (0..w.conns)
        .map(|id| {
            let phase = f64::from(id) / f64::from(w.conns);
            // seq with from <= phase + seq < until
            let first = (from - phase).ceil().max(0.0);
            let end = (until - phase).ceil().max(0.0);
            (end - first).max(0.0) as u64
        })
        .sum()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = parse_args();
    let errors = Arc::new(Errors::default());
    let mut socks = Vec::with_capacity(a.conns as usize);
    for _ in 0..a.conns {
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
        socks.push(s);
    }
    let start = Instant::now();
    let from = start + Duration::from_secs_f64(a.warmup);
    let w = Arc::new(Window {
        start,
        from,
        until: from + Duration::from_secs_f64(a.duration),
        period_ns: a.rate.map(|r| 1e9 * f64::from(a.conns) / r),
        conns: a.conns,
    });
    let mut all = Vec::with_capacity(socks.len());
    for (id, s) in socks.into_iter().enumerate() {
        let st = Arc::new(Mutex::new(ConnStats::new()));
        all.push(st.clone());
        let (id, w, e) = (id as u32, w.clone(), errors.clone());
        if a.pipeline > 1 {
            tokio::spawn(run_pipelined(s, id, a.size, a.pipeline, w, st, e));
        } else {
            tokio::spawn(run_conn(s, id, a.size, w, st, e));
        }
    }
    // The tasks run while main sleeps on the same thread.
    tokio::time::sleep_until(w.from.into()).await;
    let (u0, s0) = cpu_s();
    tokio::time::sleep_until(w.until.into()).await;
    let (u1, s1) = cpu_s();
    let elapsed = (Instant::now() - w.from).as_secs_f64();
    let mut corrected = Histogram::<u64>::new(3).expect("valid");
    let mut uncorrected = Histogram::<u64>::new(3).expect("valid");
    let (mut messages, mut max_lag_ns, mut done_intended) = (0u64, 0u64, 0u64);
    for st in &all {
        let st = st.lock().expect("not poisoned");
        let _ = corrected.add(&st.corrected);
        let _ = uncorrected.add(&st.uncorrected);
        messages += st.messages;
        max_lag_ns = max_lag_ns.max(st.max_lag_ns);
        done_intended += st.done_intended_in_window;
    }
    let window = a.duration;
    let msgs_per_s = messages as f64 / window;
    let (user, sys) = (u1 - u0, s1 - s0);
    let cpu_ns_per_msg = if messages > 0 {
        (user + sys) * 1e9 / messages as f64
    } else {
        0.0
    };
    let (mismatch, reset) = (
        errors.mismatch.load(Ordering::Relaxed),
        errors.reset.load(Ordering::Relaxed),
    );
    let open = match (a.rate, w.period_ns) {
        (Some(rate), Some(p)) => {
            let scheduled = scheduled_in_window(&w, p);
            let missing = scheduled.saturating_sub(done_intended);
            let kept = msgs_per_s >= 0.99 * rate && max_lag_ns as f64 <= a.max_lag * 1e9;
            format!(
                ",\"rate_kept\":{kept},\"max_lag_s\":{:.6},\"max_lag_limit_s\":{},\"missing\":{missing},\"latency_uncorrected\":{}",
                max_lag_ns as f64 / 1e9,
                a.max_lag,
                percentiles(&uncorrected)
            )
        }
        _ => ",\"rate_kept\":null,\"latency_uncorrected\":null".to_string(),
    };
    let line = format!(
        "{{\"client\":\"tokio\",\"params\":{{\"addr\":\"{}\",\"mode\":\"{}\",\"conns\":{},\"size\":{},\"pipeline\":{},\"rate\":{},\
         \"duration_s\":{},\"warmup_s\":{},\"threads\":1,\"driver\":\"tokio\"}},\
         \"conns\":{},\"size\":{},\"elapsed_s\":{elapsed:.3},\"messages\":{messages},\"msgs_per_s\":{msgs_per_s:.1},\"mb_per_s\":{:.3},\
         \"latency\":{}{open},\"errors\":{{\"mismatch\":{mismatch},\"reset\":{reset},\"timeout\":0,\"connect\":0,\"other\":0}},\
         \"cpu_user_s\":{user:.3},\"cpu_sys_s\":{sys:.3},\"cpu_ns_per_msg\":{cpu_ns_per_msg:.1},\"load_cpu_ns_per_msg\":{cpu_ns_per_msg:.1}}}",
        a.addr,
        match (a.rate, a.pipeline) {
            (Some(_), _) => "open",
            (None, 1) => "closed",
            _ => "pipelined",
        },
        a.conns,
        a.size,
        a.pipeline,
        a.rate.map_or("null".to_string(), |r| r.to_string()),
        a.duration,
        a.warmup,
        a.conns,
        a.size,
        msgs_per_s * a.size as f64 / 1e6,
        percentiles(&corrected),
    );
    println!("{line}");
    if let Some(p) = &a.json
        && let Err(e) = std::fs::write(p, format!("{line}\n"))
    {
        eprintln!("tokio_echo_client: cannot write {p}: {e}");
        std::process::exit(1);
    }
    // Exit at once: the connection tasks are still mid-loop.
    let errors = mismatch + reset;
    std::process::exit(i32::from(errors > 0 && !a.allow_errors));
}
