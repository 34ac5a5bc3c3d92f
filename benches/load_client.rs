//! `cargo bench --bench load_client`: does one `ringmux load` thread cost less than a
//! plain tokio echo client doing the same closed loop on the same core, and does it
//! saturate one core of ringmux's own echo server?
//!
//! Starts `ringmux serve` (epoll and uring) pinned to CPU 0. Against each, runs
//! interleaved (A B C C B A A B C ..., `--repeat` rounds) `ringmux load --driver uring`,
//! `ringmux load --driver epoll` (both `--threads 1 --pin 1`, the whole process pinned to
//! CPU 1) and the peers' `tokio_echo_client` pinned to CPU 1, each for the same warm-up
//! and duration at 50 connections of 128 bytes. Inside each measured window it reads
//! the CPU time of the client and of the server from /proc (schedstat), so every client is
//! measured the same way (all its threads). Prints a table of medians (min–max):
//! msgs/s, client and server CPU µs per message, server and client CPU utilisation, the
//! ratio load/tokio (median of the per-round ratios, adjacent runs), and whether one
//! load thread kept the server core saturated (server utilisation ≥ 95%). "other CPU" is
//! what else kept the two CPUs busy (other processes, interrupts, a VM's steal): a run
//! with much of it says little.
//!
//! Options after `--`: `--duration S` (5), `--warmup S` (1), `--repeat K` (3),
//! `--conns N` (50), `--size B` (128), `--servers epoll,uring`, `--json FILE`,
//! `--max-other PCT` (10) and `--retries N` (3): on a shared machine a run during which
//! other work kept the two CPUs busy more than PCT% (of one CPU) is run again, up to N
//! times; one still noisy is kept and counted in the table's "noisy" column.
//! The tokio client is built with the workspace (`cargo build --release`; alone:
//! `cargo build --release -p ringmux-peers`).
//! Needs two CPUs; traffic stays on 127.0.0.1.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ringmux::bench::{pinned, proc_cpu_s};
use serde_json::{Value, json};

const SERVER_CPU: usize = 0;
const CLIENT_CPU: usize = 1;
/// The CPU sampling window starts this long after the client's warm-up ends and stops
/// this long before its measured window ends (process start and connect take a moment).
const MARGIN: f64 = 0.3;

struct Opts {
    duration: f64,
    warmup: f64,
    repeat: u32,
    conns: u32,
    size: u32,
    servers: Vec<String>,
    json: Option<PathBuf>,
    /// A run with more than this share of other CPU (of one CPU) is run again...
    max_other: f64,
    /// ... at most this many times.
    retries: u32,
}

fn parse_opts() -> Result<Opts, String> {
    let mut o = Opts {
        duration: 5.0,
        warmup: 1.0,
        repeat: 3,
        conns: 50,
        size: 128,
        servers: vec!["epoll".into(), "uring".into()],
        json: None,
        max_other: 0.1,
        retries: 3,
    };
    // cargo passes `--bench` (and maybe a filter); keep our options only.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<f64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--duration" => o.duration = num(v)?,
            "--warmup" => o.warmup = num(v)?,
            "--repeat" => o.repeat = num(v)? as u32,
            "--conns" => o.conns = num(v)? as u32,
            "--size" => o.size = num(v)? as u32,
            "--servers" => o.servers = v.split(',').map(str::to_string).collect(),
            "--json" => o.json = Some(PathBuf::from(v)),
            "--max-other" => o.max_other = num(v)? / 100.0,
            "--retries" => o.retries = num(v)? as u32,
            _ => {
                return Err(format!(
                    "unknown option {flag} (--duration --warmup --repeat --conns --size --servers --json --max-other --retries)"
                ));
            }
        }
    }
    if o.duration < 4.0 * MARGIN
        || o.repeat == 0
        || o.conns == 0
        || o.size == 0
        || o.max_other.is_nan()
        || o.max_other < 0.0
    {
        return Err(format!(
            "--duration must be at least {} s; --repeat, --conns and --size at least 1",
            4.0 * MARGIN
        ));
    }
    Ok(o)
}

struct Server {
    backend: String,
    child: Child,
    addr: String,
    pid: u32,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ringmux serve --backend B` pinned to the server CPU; waits for its start line.
fn start_server(exe: &Path, backend: &str) -> Result<Server, String> {
    let mut cmd = Command::new(exe);
    cmd.args(["serve", "--addr", "127.0.0.1:0", "--backend", backend]);
    let mut child = pinned(cmd, Some(vec![SERVER_CPU]))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start ringmux serve: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(l)) = lines.next() {
            let _ = tx.send(l);
        }
        for _ in lines {} // keep the pipe drained until the server exits
    });
    let line = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(l) => l,
        Err(_) => {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return Err(format!(
                "ringmux serve --backend {backend} did not start: {}",
                err.trim()
            ));
        }
    };
    // "ringmux: serving echo on 127.0.0.1:PORT backend=... pid=N"
    let addr = line
        .split_whitespace()
        .skip_while(|w| *w != "on")
        .nth(1)
        .map(str::to_string);
    let pid = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pid="))
        .and_then(|p| p.parse().ok());
    match (addr, pid) {
        (Some(addr), Some(pid)) if line.contains(&format!("backend={backend}")) => Ok(Server {
            backend: backend.into(),
            child,
            addr,
            pid,
        }),
        _ => Err(format!(
            "unexpected start line from ringmux serve --backend {backend}: {line}"
        )),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Client {
    Load(&'static str),
    Tokio,
}

impl Client {
    fn name(self) -> String {
        match self {
            Client::Load(d) => format!("load {d}"),
            Client::Tokio => "tokio".into(),
        }
    }
}

/// Busy seconds (all but idle and iowait; steal included) of the server and client
/// CPUs from /proc/stat, to see what else ran on them.
fn cpus_busy_s() -> f64 {
    let tck = {
        // SAFETY: sysconf has no memory-safety preconditions.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if t > 0 { t as f64 } else { 100.0 }
    };
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let mut busy = 0.0;
    for cpu in [SERVER_CPU, CLIENT_CPU] {
        let name = format!("cpu{cpu}");
        if let Some(l) = stat
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        {
            let v: Vec<f64> = l
                .split_whitespace()
                .skip(1)
                .take(8)
                .filter_map(|x| x.parse().ok())
                .collect();
            if v.len() == 8 {
                busy += (v.iter().sum::<f64>() - v[3] - v[4]) / tck;
            }
        }
    }
    busy
}

/// One measured run.
struct Sample {
    msgs_per_s: f64,
    /// CPU seconds per wall second over the sampling window.
    client_util: f64,
    server_util: f64,
    /// CPU busy on the two CPUs with neither the client nor the server (other processes,
    /// interrupts, steal), per wall second.
    other_util: f64,
    /// What the client says of itself (load: worker thread in its window; tokio: rusage).
    client_self_ns_per_msg: f64,
    errors: u64,
}

impl Sample {
    fn client_us_per_msg(&self) -> f64 {
        self.client_util / self.msgs_per_s * 1e6
    }
    fn server_us_per_msg(&self) -> f64 {
        self.server_util / self.msgs_per_s * 1e6
    }
}

fn run_one(
    exe: &Path,
    tokio: &Path,
    o: &Opts,
    srv: &Server,
    client: Client,
    tmp: &Path,
) -> Result<Sample, String> {
    let (d, w, n, s) = (
        o.duration.to_string(),
        o.warmup.to_string(),
        o.conns.to_string(),
        o.size.to_string(),
    );
    let json_path = tmp.join("load.json");
    let _ = std::fs::remove_file(&json_path);
    let cmd = match client {
        Client::Load(driver) => {
            let mut c = Command::new(exe);
            c.args([
                "load",
                "--driver",
                driver,
                "--addr",
                &srv.addr,
                "--conns",
                &n,
                "--size",
                &s,
                "--duration",
                &d,
                "--warmup",
                &w,
            ])
            .args([
                "--threads",
                "1",
                "--pin",
                &CLIENT_CPU.to_string(),
                "--quiet",
                "--json",
            ])
            .arg(&json_path);
            c
        }
        Client::Tokio => {
            let mut c = Command::new(tokio);
            c.args([
                "--addr",
                &srv.addr,
                "--conns",
                &n,
                "--size",
                &s,
                "--duration",
                &d,
                "--warmup",
                &w,
            ]);
            c
        }
    };
    let t0 = Instant::now();
    let mut child = pinned(cmd, Some(vec![CLIENT_CPU]))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", client.name()))?;
    let pid = child.id();
    let sleep_until =
        |t: f64| std::thread::sleep(Duration::from_secs_f64(t).saturating_sub(t0.elapsed()));
    sleep_until(o.warmup + MARGIN);
    let (c0, s0, b0, w0) = (
        proc_cpu_s(pid),
        proc_cpu_s(srv.pid),
        cpus_busy_s(),
        Instant::now(),
    );
    sleep_until(o.warmup + o.duration - MARGIN);
    let (c1, s1, b1, wall) = (
        proc_cpu_s(pid),
        proc_cpu_s(srv.pid),
        cpus_busy_s(),
        w0.elapsed().as_secs_f64(),
    );
    // Bounded: the client ends itself after warm-up + duration; kill it well past that.
    let limit = Duration::from_secs_f64(o.warmup + o.duration + 30.0);
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break st;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{} still running after {limit:?}: killed",
                client.name()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    let mut err = String::new();
    let _ = child.stdout.take().expect("piped").read_to_string(&mut out);
    let _ = child.stderr.take().expect("piped").read_to_string(&mut err);
    if !status.success() {
        return Err(format!(
            "{} failed ({status}): {}",
            client.name(),
            err.trim()
        ));
    }
    let j: Value = match client {
        Client::Load(_) => std::fs::read(&json_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok()),
        Client::Tokio => out
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok()),
    }
    .ok_or_else(|| {
        format!(
            "{} wrote no result; stdout {out:?}, stderr {err:?}",
            client.name()
        )
    })?;
    let f = |k: &str| j[k].as_f64().unwrap_or(0.0);
    // Both clients count errors by kind, under the same names.
    let e = &j["errors"];
    let errors = ["mismatch", "reset", "timeout", "connect", "other"]
        .iter()
        .map(|k| e[k].as_u64().unwrap_or(0))
        .sum();
    let self_ns = match client {
        Client::Load(driver) => {
            if j["params"]["driver"] != driver {
                return Err(format!(
                    "load ran on {} instead of {driver}",
                    j["params"]["driver"]
                ));
            }
            f("load_cpu_ns_per_msg")
        }
        Client::Tokio => f("cpu_ns_per_msg"),
    };
    let (client_util, server_util) = ((c1 - c0) / wall, (s1 - s0) / wall);
    let other_util = ((b1 - b0) / wall - client_util - server_util).max(0.0);
    Ok(Sample {
        msgs_per_s: f("msgs_per_s"),
        client_util,
        server_util,
        other_util,
        client_self_ns_per_msg: self_ns,
        errors,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// "median (min–max)" with `digits` decimals after scaling.
fn spread(v: &[f64], scale: f64, digits: usize) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(
        "{:.digits$} ({:.digits$}–{:.digits$})",
        median(v.to_vec()) * scale,
        min * scale,
        max * scale
    )
}

fn main() -> ExitCode {
    let o = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("load_client bench: {e}");
            return ExitCode::from(2);
        }
    };
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_ringmux"));
    let tokio = exe
        .parent()
        .map(|d| d.join("tokio_echo_client"))
        .unwrap_or_default();
    if !tokio.is_file() {
        eprintln!(
            "load_client bench: the tokio reference client is not built ({} is missing); build it first:\n  \
             cargo build --release -p ringmux-peers",
            tokio.display()
        );
        return ExitCode::FAILURE;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        eprintln!(
            "load_client bench: needs 2 CPUs (server on CPU {SERVER_CPU}, client on CPU {CLIENT_CPU}); this process may use {cpus}"
        );
        return ExitCode::FAILURE;
    }
    let tmp =
        std::env::temp_dir().join(format!("ringmux-load-client-bench-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&tmp) {
        eprintln!("load_client bench: cannot create {}: {e}", tmp.display());
        return ExitCode::FAILURE;
    }
    let mut servers = Vec::new();
    for b in &o.servers {
        match start_server(&exe, b) {
            Ok(s) => servers.push(s),
            Err(e) => eprintln!("load_client bench: SKIPPED server {b}: {e}"),
        }
    }
    if servers.is_empty() {
        eprintln!("load_client bench: no server could be started");
        return ExitCode::FAILURE;
    }
    let clients = [Client::Load("uring"), Client::Load("epoll"), Client::Tokio];
    let total = o.repeat as usize * servers.len() * clients.len();
    eprintln!(
        "load_client bench: {total} runs of {} s + {} s warm-up, {} conns x {} B, server on CPU {SERVER_CPU}, client on CPU {CLIENT_CPU}",
        o.duration, o.warmup, o.conns, o.size
    );
    // samples[server][client][round], interleaved: round by round, client by client.
    let mut samples: Vec<Vec<Vec<Option<Sample>>>> = servers
        .iter()
        .map(|_| {
            clients
                .iter()
                .map(|_| (0..o.repeat).map(|_| None).collect())
                .collect()
        })
        .collect();
    let mut failed = false;
    for round in 0..o.repeat {
        for (si, srv) in servers.iter().enumerate() {
            // A B C, then C B A: a machine drifting in speed favours no client.
            let order: Vec<usize> = if round % 2 == 0 {
                (0..clients.len()).collect()
            } else {
                (0..clients.len()).rev().collect()
            };
            for ci in order {
                let client = clients[ci];
                let mut kept = None;
                for attempt in 0..=o.retries {
                    match run_one(&exe, &tokio, &o, srv, client, &tmp) {
                        Ok(s) => {
                            let noisy = s.other_util > o.max_other;
                            eprintln!(
                                "  round {} server {:<5} {:<10} {:>9.0} msgs/s  client {:>5.2} µs/msg ({:>3.0}% CPU)  server {:>5.2} µs/msg ({:>3.0}% CPU)  other {:>3.0}%{}",
                                round + 1,
                                srv.backend,
                                client.name(),
                                s.msgs_per_s,
                                s.client_us_per_msg(),
                                s.client_util * 100.0,
                                s.server_us_per_msg(),
                                s.server_util * 100.0,
                                s.other_util * 100.0,
                                if noisy && attempt < o.retries {
                                    "  noisy: again"
                                } else if noisy {
                                    "  noisy: kept"
                                } else {
                                    ""
                                }
                            );
                            failed |= s.errors > 0;
                            kept = Some(s);
                            if !noisy {
                                break;
                            }
                            std::thread::sleep(Duration::from_secs(2));
                        }
                        Err(e) => {
                            eprintln!(
                                "  round {} server {} {}: FAILED: {e}",
                                round + 1,
                                srv.backend,
                                client.name()
                            );
                            failed = true;
                            break;
                        }
                    }
                }
                samples[si][ci][round as usize] = kept;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);

    let sys = ringmux::sysinfo::SysInfo::collect();
    println!();
    println!(
        "ringmux load vs tokio echo client: closed loop, {} conns x {} B, {} s (+{} s warm-up) per run, {} rounds interleaved; \
         server pinned to CPU {SERVER_CPU}, client to CPU {CLIENT_CPU}; {} ({} CPUs), kernel {}",
        o.conns, o.size, o.duration, o.warmup, o.repeat, sys.cpu_model, sys.cores, sys.kernel
    );
    println!();
    println!(
        "| server | client | msgs/s | client µs/msg | client self-reported µs/msg | server µs/msg | server CPU | client CPU | other CPU | noisy |"
    );
    println!("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    let mut results = Vec::new();
    for (si, srv) in servers.iter().enumerate() {
        for (ci, client) in clients.iter().enumerate() {
            let v: Vec<&Sample> = samples[si][ci].iter().flatten().collect();
            if v.is_empty() {
                continue;
            }
            let noisy = v.iter().filter(|s| s.other_util > o.max_other).count();
            let col = |f: fn(&Sample) -> f64| v.iter().map(|s| f(s)).collect::<Vec<f64>>();
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {noisy}/{} |",
                srv.backend,
                client.name(),
                spread(&col(|s| s.msgs_per_s), 1e-3, 1)
                    .replace(" (", "k (")
                    .replace(')', "k)"),
                spread(&col(Sample::client_us_per_msg), 1.0, 2),
                spread(&col(|s| s.client_self_ns_per_msg), 1e-3, 2),
                spread(&col(Sample::server_us_per_msg), 1.0, 2),
                spread(&col(|s| s.server_util), 100.0, 0)
                    .replace(" (", "% (")
                    .replace(')', "%)"),
                spread(&col(|s| s.client_util), 100.0, 0)
                    .replace(" (", "% (")
                    .replace(')', "%)"),
                spread(&col(|s| s.other_util), 100.0, 0)
                    .replace(" (", "% (")
                    .replace(')', "%)"),
                v.len(),
            );
            results.push(json!({
                "server": srv.backend, "client": client.name(),
                "msgs_per_s": col(|s| s.msgs_per_s), "client_us_per_msg": col(Sample::client_us_per_msg),
                "client_self_us_per_msg": col(|s| s.client_self_ns_per_msg / 1e3),
                "server_us_per_msg": col(Sample::server_us_per_msg), "server_util": col(|s| s.server_util),
                "client_util": col(|s| s.client_util), "other_util": col(|s| s.other_util), "noisy_runs": noisy,
            }));
        }
    }
    println!();
    let tokio_i = clients.len() - 1;
    let mut verdicts = Vec::new();
    for (si, srv) in servers.iter().enumerate() {
        for (ci, client) in clients.iter().enumerate().take(tokio_i) {
            // Per round: this load run against the tokio run of the same round (adjacent
            // in time), so slow drift of a noisy machine cancels out.
            let ratios: Vec<f64> = samples[si][ci]
                .iter()
                .zip(&samples[si][tokio_i])
                .filter_map(|(a, t)| Some(a.as_ref()?.msgs_per_s / t.as_ref()?.msgs_per_s))
                .collect();
            if ratios.is_empty() {
                continue;
            }
            let ratio = median(ratios.clone());
            let util = median(
                samples[si][ci]
                    .iter()
                    .flatten()
                    .map(|s| s.server_util)
                    .collect(),
            );
            let saturated = util >= 0.95;
            println!(
                "server {:<5} {:<10}/ tokio: {} x throughput (target 1.3x: {}); server core {:.0}% busy: {}",
                srv.backend,
                client.name(),
                spread(&ratios, 1.0, 2),
                if ratio >= 1.3 { "met" } else { "NOT met" },
                util * 100.0,
                if saturated {
                    "saturated by one load thread"
                } else {
                    "NOT saturated"
                }
            );
            verdicts.push(json!({"server": srv.backend, "client": client.name(), "ratio_vs_tokio": ratios, "ratio_median": ratio,
                                 "server_util_median": util, "target_met": ratio >= 1.3, "server_saturated": saturated}));
        }
    }
    if let Some(path) = &o.json {
        let doc = json!({"schema": "ringmux.load-client-bench/1", "sys": sys, "conns": o.conns, "size": o.size,
                         "duration_s": o.duration, "warmup_s": o.warmup, "repeat": o.repeat, "results": results, "verdicts": verdicts});
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n";
        match std::fs::write(path, text) {
            Ok(()) => eprintln!("wrote {}", path.display()),
            Err(e) => {
                eprintln!("load_client bench: cannot write {}: {e}", path.display());
                failed = true;
            }
        }
    }
    drop(servers);
    if failed {
        eprintln!("load_client bench: some runs failed or counted errors (see above)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
