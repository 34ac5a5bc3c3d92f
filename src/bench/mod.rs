//! The orchestrator: the one place that knows servers, load and reports together.
//!
//! Each run starts a fresh server process pinned to one CPU (`--server-threads N`: N
//! CPUs, one event loop on each) and a `ringmux load` process pinned to the others,
//! warms up (unrecorded), then measures. The server's
//! CPU, context switches and (for ringmux) syscalls are read just before and after the
//! measured load, so warm-up and connection set-up of the warm-up run stay out.
//! Servers are interleaved (A B A B ...) within every repeat.
//!
//! `--idle-conns N` runs a different case instead (see [`idle`]): the server's
//! resident memory per idle connection.

mod idle;
mod models;
mod profile;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

use crate::cli::{BenchArgs, LoadProto};
use crate::results::schema::{BENCH_SCHEMA, BenchResults, Cell, LoadResult, QuietRow, RunMetrics};
use crate::sysinfo::SysInfo;

/// A server in the matrix.
#[derive(Debug, Clone)]
pub enum ServerSpec {
    /// ringmux itself: a backend of `server::Backend::NAMES`, optional io_uring level.
    Ringmux {
        backend: String,
        level: Option<String>,
    },
    /// Any other server: a shell command with `{addr}` in it.
    External { name: String, cmd: String },
}

impl ServerSpec {
    pub fn name(&self) -> String {
        match self {
            ServerSpec::Ringmux {
                backend,
                level: Some(l),
            } => format!("{backend}:{l}"),
            ServerSpec::Ringmux {
                backend,
                level: None,
            } => backend.clone(),
            ServerSpec::External { name, .. } => name.clone(),
        }
    }
}

/// One load shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub mode: &'static str,
    pub conns: u32,
    pub pipeline: u32,
    /// Open loop: fraction of the measured peak.
    pub rate_fraction: Option<f64>,
    /// Open loop at this fixed rate instead (`--open-rate`): comparable between runs.
    pub open_rate: Option<f64>,
}

impl Shape {
    fn id(&self, size: u32) -> String {
        match self.rate_fraction {
            Some(_) if self.open_rate.is_some() => format!(
                "open-{:.0}/c{}/s{size}",
                self.open_rate.unwrap_or(0.0),
                self.conns
            ),
            Some(f) => format!("open{:.0}/c{}/s{size}", f * 100.0, self.conns),
            None if self.pipeline > 1 => {
                format!("pipelined{}/c{}/s{size}", self.pipeline, self.conns)
            }
            None => format!("closed/c{}/s{size}", self.conns),
        }
    }
}

/// io_uring levels `--backends uring:LEVEL` accepts.
const LEVELS: [&str; 4] = ["baseline", "fastpoll", "multishot", "full"];
/// `uring:LEVEL+OPTION`: the serve flag each option adds.
const LEVEL_MODS: [(&str, &str); 6] = [
    ("sqpoll", "--sqpoll"),
    ("no-defer-taskrun", "--no-defer-taskrun"),
    ("no-multishot-accept", "--no-multishot-accept"),
    ("wait-single", "--uring-wait=single"),
    ("wait-coalesce", "--uring-wait=coalesce"),
    ("wait-adaptive", "--uring-wait=adaptive"),
];

/// A validated bench plan.
#[derive(Debug, Clone)]
pub struct Plan {
    pub exe: PathBuf,
    pub servers: Vec<ServerSpec>,
    pub shapes: Vec<Shape>,
    pub size: u32,
    /// What every server serves and the load verifies.
    pub proto: LoadProto,
    pub duration: f64,
    pub warmup: f64,
    /// Interval of the load's interval log (`load --interval`): at least 10 per run.
    pub interval: f64,
    pub repeat: u32,
    pub out: PathBuf,
    /// Event loops of ringmux servers (`serve --threads`).
    pub server_threads: u16,
    /// CPUs of the server process (ringmux: loop i on the i-th); None: not pinned.
    pub server_cpus: Option<Vec<usize>>,
    pub load_cpus: Option<Vec<usize>>,
    pub notes: Vec<String>,
    /// `--idle-conns N`: measure memory per idle connection instead of the matrix.
    pub idle_conns: Option<u32>,
    /// `--profile` with perf available.
    pub profile: bool,
}

impl Plan {
    pub fn from_args(a: &BenchArgs, exe: PathBuf) -> anyhow::Result<Plan> {
        let mut notes = Vec::new();
        let mut servers = Vec::new();
        let probe = crate::server::uring::probe::probe();
        for b in &a.backends {
            let (backend, level) = match b.split_once(':') {
                Some((x, l)) => (x.to_string(), Some(l.to_string())),
                None => (b.clone(), None),
            };
            match backend.as_str() {
                "uring" => {
                    if let Some(l) = &level {
                        let mut parts = l.split('+');
                        let name = parts.next().unwrap_or("");
                        if !LEVELS.contains(&name) {
                            bail!(
                                "unknown io_uring level '{name}' in --backends ({})",
                                LEVELS.join(", ")
                            );
                        }
                        if let Some(m) = parts.find(|m| !LEVEL_MODS.iter().any(|(k, _)| k == m)) {
                            bail!(
                                "unknown option '+{m}' in --backends {b} (+{})",
                                LEVEL_MODS.map(|(k, _)| k).join(", +")
                            );
                        }
                        if let Some((_, ok)) = probe.levels.iter().find(|(x, _)| x.name() == name)
                            && !ok
                        {
                            let n = format!(
                                "{b} skipped: level {name} is not usable on this kernel (see `ringmux probe`)"
                            );
                            eprintln!("ringmux: warning: {n}");
                            notes.push(n);
                            continue;
                        }
                    }
                    if let Some(u) = &probe.unavailable {
                        let n = format!("{b} skipped: {u}");
                        eprintln!("ringmux: warning: {n}");
                        notes.push(n);
                        continue;
                    }
                }
                x if level.is_none() && crate::server::Backend::NAMES.contains(&x) => {}
                _ => bail!(
                    "unknown backend '{b}' in --backends (uring:LEVEL[+OPTION...], or one of {})",
                    crate::server::Backend::NAMES.join(", ")
                ),
            }
            if a.server_threads > 1
                && ["blocking", "threads", "busypoll"].contains(&backend.as_str())
            {
                bail!(
                    "--server-threads {} does not apply to backend '{backend}': it has no event loop to run per core",
                    a.server_threads
                );
            }
            if a.idle_conns.is_some() && backend == "uring" && level.is_none() {
                // Memory differs by level (fastpoll keeps a receive buffer per
                // connection): a plain `uring` stands for every level this kernel has.
                for (l, usable) in &probe.levels {
                    let l = format!("{l:?}").to_lowercase();
                    if *usable
                        && !servers
                            .iter()
                            .any(|s: &ServerSpec| s.name() == format!("uring:{l}"))
                    {
                        servers.push(ServerSpec::Ringmux {
                            backend: backend.clone(),
                            level: Some(l),
                        });
                    }
                }
                continue;
            }
            servers.push(ServerSpec::Ringmux { backend, level });
        }
        for e in &a.external {
            let Some((name, cmd)) = e.split_once('=') else {
                bail!("--external '{e}' must be NAME=CMD")
            };
            if name.is_empty() || name.contains(['/', ' ', ',']) {
                bail!("--external name '{name}' must be non-empty, without '/', ' ' or ','");
            }
            if !cmd.contains("{addr}") {
                bail!(
                    "--external {name}: the command must contain {{addr}}, where the server must listen"
                );
            }
            servers.push(ServerSpec::External {
                name: name.to_string(),
                cmd: cmd.to_string(),
            });
        }
        // The reference peers (tokio, monoio), unless the user names their own servers
        // or the protocol is not echo (the peers are echo servers).
        if a.external.is_empty() && !a.no_peers && a.proto == LoadProto::Echo {
            servers.extend(peer_servers(&exe, &mut notes));
        }
        if a.proto != LoadProto::Echo {
            // External servers (and the reference peers) are echo servers.
            let left: Vec<String> = servers
                .iter()
                .filter(|s| matches!(s, ServerSpec::External { .. }))
                .map(|s| s.name())
                .collect();
            if !left.is_empty() {
                let n = format!(
                    "{} left out: external servers are taken to speak echo only, not {}",
                    left.join(", "),
                    a.proto.name()
                );
                eprintln!("ringmux: warning: {n}");
                notes.push(n);
                servers.retain(|s| matches!(s, ServerSpec::Ringmux { .. }));
            }
            if a.idle_conns.is_some() {
                bail!(
                    "--idle-conns measures echo connections: leave out --proto {}",
                    a.proto.name()
                );
            }
        }
        if servers.is_empty() {
            bail!("no server left to benchmark");
        }
        let mut names: Vec<String> = servers.iter().map(|s| s.name()).collect();
        names.sort();
        names.dedup();
        if names.len() != servers.len() {
            bail!("a server appears twice in the matrix");
        }
        if a.conns.is_empty() || a.conns.iter().any(|&c| c == 0 || c > 100_000) {
            bail!("--conns must be a list of counts between 1 and 100000");
        }
        if (a.size == 0 && a.proto != LoadProto::Http) || a.size > 16 << 20 {
            bail!("--size must be between 1 and 16777216 bytes (0 only with --proto http)");
        }
        if a.proto == LoadProto::Http && u64::from(a.size) > crate::proto::http::MAX_BODY {
            bail!(
                "--size {} is over the HTTP server's body limit ({} bytes)",
                a.size,
                crate::proto::http::MAX_BODY
            );
        }
        let (duration, warmup, repeat) = if a.quick {
            (1.0, 0.3, 1)
        } else {
            (1.5, 0.5, 3)
        };
        let duration = a.duration.unwrap_or(duration);
        let repeat = a.repeat.unwrap_or(repeat);
        if !(0.2..=3600.0).contains(&duration) || repeat == 0 || repeat > 100 {
            bail!("--duration must be 0.2..3600 s and --repeat 1..100");
        }
        let mut conns = a.conns.clone();
        if a.quick {
            conns.retain(|&c| c <= 50);
            if conns.is_empty() {
                conns.push(50);
            }
        }
        let mut shapes: Vec<Shape> = conns
            .iter()
            .map(|&c| Shape {
                mode: "closed",
                conns: c,
                pipeline: 1,
                rate_fraction: None,
                open_rate: None,
            })
            .collect();
        let mid = *conns
            .iter()
            .find(|&&c| c >= 50)
            .unwrap_or(conns.last().unwrap());
        if !a.quick {
            shapes.push(Shape {
                mode: "pipelined",
                conns: mid,
                pipeline: 8,
                rate_fraction: None,
                open_rate: None,
            });
        }
        if let Some(r) = a.open_rate
            && !(r.is_finite() && r > 0.0 && r <= 1e9)
        {
            bail!("--open-rate {r}: must be a number of messages per second above 0 (at most 1e9)");
        }
        shapes.push(Shape {
            mode: "open",
            conns: mid,
            pipeline: 1,
            rate_fraction: Some(0.5),
            open_rate: a.open_rate,
        });
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (server_cpus, load_cpus) = split_cpus(cores, usize::from(a.server_threads), &mut notes);
        if a.server_threads > 1 {
            let n = a.server_threads;
            notes.push(match (&server_cpus, &load_cpus) {
                (Some(s), Some(l)) => format!(
                    "ringmux servers ran {n} event loops (serve --threads {n} --cpus {s}), the load on CPUs {l}; other servers got CPUs {s} and chose their own threads",
                    s = crate::os::cpus::format_cpu_list(s),
                    l = crate::os::cpus::format_cpu_list(l)
                ),
                _ => format!("ringmux servers ran {n} event loops (serve --threads {n}), server and load unpinned"),
            });
        }
        let out = match &a.out {
            Some(o) => o.clone(),
            None => {
                let t = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
                PathBuf::from("bench-out").join(format_timestamp(t))
            }
        };
        let profile = a.profile
            && match profile::available() {
                Ok(()) => true,
                Err(why) => {
                    let n = format!("--profile: no CPU profile: {why}");
                    eprintln!("ringmux: warning: {n}");
                    notes.push(n);
                    false
                }
            };
        Ok(Plan {
            exe,
            servers,
            shapes,
            size: a.size,
            proto: a.proto,
            duration,
            warmup,
            interval: interval_for(duration),
            repeat,
            out,
            server_threads: a.server_threads,
            server_cpus,
            load_cpus,
            notes,
            idle_conns: a.idle_conns,
            profile,
        })
    }
}

/// The reference peers: (name in the matrix, example binary, crate whose version the
/// report prints, what it is).
pub const PEERS: [(&str, &str, &str, &str); 2] = [
    (
        "tokio",
        "tokio_echo_server",
        "tokio",
        "single-threaded tokio echo server on epoll (examples/tokio_echo_server.rs)",
    ),
    (
        "monoio",
        "monoio_echo_server",
        "monoio",
        "monoio echo server on its io_uring driver (examples/monoio_echo_server.rs)",
    ),
];

/// The version of `krate` in the Cargo.lock this binary was built with.
pub fn locked_version(krate: &str) -> Option<String> {
    const LOCK: &str = include_str!("../../Cargo.lock");
    let mut lines = LOCK.lines();
    while let Some(l) = lines.next() {
        if l.trim() == format!("name = \"{krate}\"") {
            let v = lines
                .next()?
                .trim()
                .strip_prefix("version = \"")?
                .trim_end_matches('"');
            return Some(v.to_string());
        }
    }
    None
}

/// The peers' example binaries beside `exe` (target/<profile>/examples/). When one is
/// missing and `exe` was built in this crate's source tree, build them once with
/// cargo (same profile) and say so; when that is not possible, note what is missing.
fn peer_servers(exe: &Path, notes: &mut Vec<String>) -> Vec<ServerSpec> {
    let Some(dir) = exe.parent() else {
        return Vec::new();
    };
    let path = |bin: &str| dir.join("examples").join(bin);
    let missing: Vec<&str> = PEERS
        .iter()
        .map(|p| p.1)
        .filter(|b| !path(b).is_file())
        .collect();
    if !missing.is_empty() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let target = dir.parent().filter(|t| t.join("CACHEDIR.TAG").is_file());
        let profile = dir.file_name().and_then(|p| p.to_str());
        if let (true, Some(target), Some(profile @ ("release" | "debug"))) =
            (manifest.is_file(), target, profile)
        {
            let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
            c.arg("build")
                .arg("--manifest-path")
                .arg(&manifest)
                .env("CARGO_TARGET_DIR", target);
            if profile == "release" {
                c.arg("--release");
            }
            for b in &missing {
                c.args(["--example", b]);
            }
            eprintln!(
                "ringmux: building the reference peers once ({}): cargo build{} --example {}",
                missing.join(", "),
                if profile == "release" {
                    " --release"
                } else {
                    ""
                },
                missing.join(" --example ")
            );
            match c.stdin(Stdio::null()).stdout(Stdio::null()).status() {
                Ok(st) if st.success() => {}
                Ok(st) => eprintln!(
                    "ringmux: warning: building the reference peers failed ({st}); the bench runs without them"
                ),
                Err(e) => eprintln!(
                    "ringmux: warning: cannot run cargo to build the reference peers: {e}"
                ),
            }
        }
    }
    let mut out = Vec::new();
    for (name, bin, krate, what) in PEERS {
        let p = path(bin);
        if p.is_file() {
            let v = locked_version(krate).unwrap_or_else(|| "?".into());
            notes.push(format!("peer {name}: {krate} {v}, {what}"));
            out.push(ServerSpec::External {
                name: name.into(),
                cmd: format!("{} {{addr}}", p.display()),
            });
        } else {
            let n = format!(
                "reference peer {name} not built and no source tree to build it from (cargo build --release --example {bin} adds it)"
            );
            eprintln!("ringmux: warning: {n}");
            notes.push(n);
        }
    }
    out
}

/// The interval log's interval for a measured run of `duration` seconds: 1 s for long
/// runs, 0.1 s for runs of 1-10 s, and a tenth of the run below that, so that the
/// latency-over-time chart has at least 10 points per run.
fn interval_for(duration: f64) -> f64 {
    if duration >= 10.0 {
        1.0
    } else if duration >= 1.0 {
        0.1
    } else {
        ((duration * 10.0).floor() / 100.0).max(0.01)
    }
}

/// CPUs for the server (0..threads) and for the load (the next ones, at most 8), or
/// none pinned when that leaves the load no CPU. Overlapping is allowed rather than
/// refused so `--server-threads 2` still runs on a 2-core box, but then server and
/// load compete for the same cores: the figures mix both and measure no scaling,
/// which a warning and a note in results.json say.
fn split_cpus(
    cores: usize,
    threads: usize,
    notes: &mut Vec<String>,
) -> (Option<Vec<usize>>, Option<Vec<usize>>) {
    if cores > threads {
        return (
            Some((0..threads).collect()),
            Some((threads..cores.min(threads + 8)).collect()),
        );
    }
    let n = if cores < 2 {
        "one CPU: server and load not pinned apart; figures mix both".to_string()
    } else {
        let n = format!(
            "--server-threads {threads} on {cores} CPUs leaves none for the load: server and load run unpinned on shared CPUs; figures mix both and do not measure scaling"
        );
        eprintln!("ringmux: warning: {n}");
        n
    };
    notes.push(n);
    (None, None)
}

/// "2026-11-23T15-04-05" (UTC), safe in paths.
fn format_timestamp(secs: u64) -> String {
    crate::report::fmt::utc(secs as f64)
        .trim_end_matches(" UTC")
        .replace(' ', "T")
        .replace(':', "-")
}

/// `ringmux bench`.
pub fn bench_cmd(a: BenchArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the ringmux binary")?;
    if a.preset == Some(crate::cli::BenchPreset::Models) {
        return models_cmd(a, exe);
    }
    // Every error of the plan is bad usage (unknown backend, bad --external, ...).
    let plan = Plan::from_args(&a, exe).map_err(|e| crate::error::ExitError {
        code: 2,
        msg: format!("{e:#}"),
    })?;
    if let Some(n) = plan.idle_conns {
        let results = idle::run(&plan, &a, n)?;
        if let Some(idle) = &results.idle {
            println!("{}", crate::report::md::idle_markdown(idle));
        }
        println!("report: {}", plan.out.join("report.html").display());
        return Ok(ExitCode::SUCCESS);
    }
    let results = run(&plan, &a)?;
    println!("{}", crate::report::headline_markdown(&results));
    print!("{}", crate::report::cost::quiet_markdown(&results));
    println!("report: {}", plan.out.join("report.html").display());
    let errors: u64 = results
        .cells
        .iter()
        .flat_map(|c| &c.runs)
        .map(|r| r.errors)
        .sum();
    if errors > 0 {
        eprintln!("ringmux: warning: the load generator counted {errors} errors; see results.json");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `ringmux bench --preset models`: the IO-model lab ([`models`]).
fn models_cmd(a: BenchArgs, exe: PathBuf) -> anyhow::Result<ExitCode> {
    let bad = |msg: String| crate::error::ExitError { code: 2, msg };
    let conflicting = [
        (a.idle_conns.is_some(), "--idle-conns"),
        (!a.external.is_empty(), "--external"),
        (a.proto != LoadProto::Echo, "--proto"),
        (a.server_threads > 1, "--server-threads"),
        (a.open_rate.is_some(), "--open-rate"),
    ];
    if let Some((_, flag)) = conflicting.iter().find(|c| c.0) {
        return Err(bad(format!(
            "--preset models chooses its own servers and loads: leave out {flag}"
        ))
        .into());
    }
    let mut b = a.clone();
    b.no_peers = true;
    b.backends = vec!["epoll".into()];
    let plan = Plan::from_args(&b, exe).map_err(|e| bad(format!("{e:#}")))?;
    let results = models::run(&plan, &a)?;
    if let Some(m) = &results.models {
        println!(
            "## IO models: Claims\n\n{}",
            crate::report::models::claims_markdown(m)
        );
        println!(
            "Slope per watched fd (sweep A):\n\n{}",
            crate::report::models::slopes_markdown(m)
        );
    }
    println!("report: {}", plan.out.join("report.html").display());
    Ok(ExitCode::SUCCESS)
}

/// The quiet rows: each server, fresh, sits idle for `--quiet-secs` with no
/// connection, then again with `--quiet-conns` connections that each echoed 16
/// bytes once and fell silent. An idle server should cost nothing: a loop that spins
/// (busy polling, or a wait that returns at once) shows here.
fn quiet_rows(
    plan: &Plan,
    args: &BenchArgs,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<QuietRow>> {
    let mut rows = Vec::new();
    let secs = args.quiet_secs;
    for server in &plan.servers {
        let stem = format!("quiet-{}", server.name().replace([':', '/'], "_"));
        let srv = start_server(plan, server, &stem)?;
        let pid = srv.child.id();
        let snap = |stats: &Option<PathBuf>| -> anyhow::Result<Counters> {
            // Context switches from /proc for every server, so the rows compare.
            let procs = proc_counters(pid);
            Ok(match stats {
                Some(p) => Counters {
                    ctx: procs.ctx,
                    ..ringmux_counters(pid, p)?
                },
                None => procs,
            })
        };
        let mut features = None;
        let mut held = Vec::new();
        for conns in [0, args.quiet_conns] {
            if conns > 0 {
                match open_silent(srv.addr, conns, plan.proto) {
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
            let a = snap(&srv.stats)?;
            let t0 = Instant::now();
            std::thread::sleep(Duration::from_secs_f64(secs));
            let b = snap(&srv.stats)?;
            let wall = t0.elapsed().as_secs_f64();
            if let (Some(p), None) = (&srv.stats, &features)
                && let ServerSpec::Ringmux { backend, .. } = server
                && backend == "uring"
            {
                let j: serde_json::Value = serde_json::from_slice(&fs::read(p)?)?;
                features = j["features"].as_str().map(str::to_string);
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
        drop(srv);
    }
    Ok(rows)
}

/// `n` connections to `addr`, each having done one round trip (so the server has
/// accepted and served it: 16 bytes echoed, or a `GET /`), then left silent.
fn open_silent(addr: SocketAddr, n: u32, proto: LoadProto) -> anyhow::Result<Vec<TcpStream>> {
    use std::io::{Read, Write};
    let mut conns = Vec::with_capacity(n as usize);
    let (msg, reply): (&[u8], usize) = match proto {
        LoadProto::Http => (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0),
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
                anyhow::ensure!(proto != LoadProto::Echo || buf == msg, "the echo differs");
            }
        }
    }
    Ok(conns)
}

/// Run the matrix, write results.json and the reports into `plan.out`.
pub fn run(plan: &Plan, args: &BenchArgs) -> anyhow::Result<BenchResults> {
    fs::create_dir_all(plan.out.join("runs"))
        .with_context(|| format!("cannot create {}", plan.out.display()))?;
    let start_unix_s = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
    let mut cells: BTreeMap<(usize, usize), Cell> = BTreeMap::new();
    let total = plan.shapes.len() * plan.servers.len() * plan.repeat as usize;
    let mut done = 0;
    let mut notes = plan.notes.clone();
    let t0 = Instant::now();
    // Closed-loop shapes first: open loop runs at a fraction of their measured peak.
    let (closed, open): (Vec<usize>, Vec<usize>) =
        (0..plan.shapes.len()).partition(|&i| plan.shapes[i].rate_fraction.is_none());
    let mut peak: Option<f64> = None;
    let mut profiles: BTreeMap<(usize, usize), Vec<crate::report::profile::Profile>> =
        BTreeMap::new();
    for phase in [closed, open] {
        for rep in 0..plan.repeat {
            for &si in &phase {
                let shape = &plan.shapes[si];
                let rate = match shape.rate_fraction {
                    Some(_) if shape.open_rate.is_some() => shape.open_rate,
                    Some(f) => {
                        let p = peak.context("no closed-loop run to take the peak from")?;
                        Some((p * f).max(100.0).round())
                    }
                    None => None,
                };
                for (vi, server) in plan.servers.iter().enumerate() {
                    done += 1;
                    let id = format!("{}/{}", server.name(), shape.id(plan.size));
                    eprintln!(
                        "[{done}/{total}] {id} run {} ({:.0}s)",
                        rep + 1,
                        t0.elapsed().as_secs_f64()
                    );
                    let stem = format!("{}-r{}", id.replace(['/', ':'], "_"), rep + 1);
                    let (m, features, prof) = run_one(plan, server, shape, rate, &stem)
                        .with_context(|| format!("run {id}"))?;
                    if m.errors > 0 {
                        notes.push(format!("{id} run {}: {} load errors", rep + 1, m.errors));
                    }
                    let cell = cells.entry((si, vi)).or_insert_with(|| Cell {
                        id: id.clone(),
                        server: server.name(),
                        features: features.clone(),
                        server_threads: matches!(server, ServerSpec::Ringmux { .. })
                            .then_some(plan.server_threads),
                        mode: shape.mode.to_string(),
                        conns: shape.conns,
                        size: plan.size,
                        pipeline: shape.pipeline,
                        rate,
                        runs: Vec::new(),
                        median: RunMetrics::default(),
                        min: RunMetrics::default(),
                        max: RunMetrics::default(),
                        hgrm: Vec::new(),
                        hlog: Vec::new(),
                        profile: None,
                    });
                    match prof {
                        Some(Ok(p)) => profiles.entry((si, vi)).or_default().push(p),
                        Some(Err(e)) => {
                            notes.push(format!("{id} run {}: no profile: {e:#}", rep + 1))
                        }
                        None => {}
                    }
                    cell.runs.push(m);
                    cell.hgrm.push(format!("runs/{stem}.hgrm"));
                    cell.hlog.push(format!("runs/{stem}.hlog"));
                }
            }
            if peak.is_none() || rep + 1 == plan.repeat {
                peak = closed_peak(plan, &cells);
            }
        }
    }
    if let Some(r) = plan.shapes.iter().find_map(|s| s.open_rate) {
        notes.push(format!("open loop at a fixed {r:.0} msgs/s (--open-rate)"));
    } else if let Some(p) = peak {
        notes.push(format!("open loop at 50% of the peak closed-loop rate of the slowest ringmux backend ({p:.0} msgs/s)"));
    }
    for (k, p) in &profiles {
        if let Some(c) = cells.get_mut(k) {
            c.profile = crate::report::profile::combine(p);
        }
    }
    let quiet = if args.quiet_secs > 0.0 {
        quiet_rows(plan, args, &mut notes)?
    } else {
        Vec::new()
    };
    let mut cells: Vec<Cell> = cells.into_values().collect();
    for c in &mut cells {
        let (med, min, max) = summarize(&c.runs);
        c.median = med;
        c.min = min;
        c.max = max;
    }
    let results = BenchResults {
        schema: BENCH_SCHEMA.to_string(),
        sys: SysInfo::collect(),
        start_unix_s,
        args: serde_json::json!({
            "backends": args.backends, "conns": args.conns, "size": plan.size, "proto": plan.proto.name(), "duration_s": plan.duration,
            "warmup_s": plan.warmup, "repeat": plan.repeat, "quick": args.quick,
            "servers": plan.servers.iter().map(|s| s.name()).collect::<Vec<_>>(),
            "server_cpu": plan.server_cpus.as_ref().and_then(|c| c.first()), "server_cpus": plan.server_cpus,
            "server_threads": plan.server_threads, "load_cpus": plan.load_cpus,
            "interval_s": plan.interval,
            "peers": PEERS.iter().filter(|p| plan.servers.iter().any(|s| s.name() == p.0))
                .map(|p| (p.0.to_string(), serde_json::json!(format!("{} {}", p.2, locked_version(p.2).unwrap_or_else(|| "?".into())))))
                .collect::<serde_json::Map<_, _>>(),
        }),
        cells,
        notes,
        idle: None,
        quiet,
        models: None,
    };
    fs::write(
        plan.out.join("results.json"),
        serde_json::to_vec_pretty(&results)?,
    )?;
    crate::report::write_reports(&plan.out, &results)?;
    Ok(results)
}

/// The highest closed-loop (unpipelined) median rate of the slowest ringmux backend.
fn closed_peak(plan: &Plan, cells: &BTreeMap<(usize, usize), Cell>) -> Option<f64> {
    let mut per_server: BTreeMap<usize, f64> = BTreeMap::new();
    for (&(si, vi), c) in cells {
        let s = &plan.shapes[si];
        if s.rate_fraction.is_some()
            || s.pipeline > 1
            || !matches!(plan.servers[vi], ServerSpec::Ringmux { .. })
        {
            continue;
        }
        let med = median(c.runs.iter().map(|r| r.msgs_per_s).collect());
        let e = per_server.entry(vi).or_insert(0.0);
        *e = e.max(med);
    }
    per_server.values().copied().reduce(f64::min)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Per-metric median, min and max over runs.
fn summarize(runs: &[RunMetrics]) -> (RunMetrics, RunMetrics, RunMetrics) {
    /// [median, min, max] of a non-empty list of values.
    fn spread(v: Vec<f64>) -> [f64; 3] {
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        [median(v), min, max]
    }
    fn pick(runs: &[RunMetrics], f: impl Fn(&RunMetrics) -> f64) -> [f64; 3] {
        spread(runs.iter().map(f).collect())
    }
    fn pick_opt(runs: &[RunMetrics], f: impl Fn(&RunMetrics) -> Option<f64>) -> [Option<f64>; 3] {
        let v: Vec<f64> = runs.iter().filter_map(f).collect();
        if v.is_empty() {
            return [None; 3];
        }
        spread(v).map(Some)
    }
    let mut out: [RunMetrics; 3] = Default::default();
    macro_rules! set {
        ($($f:ident),*) => { $( let v = pick(runs, |r| r.$f); for i in 0..3 { out[i].$f = v[i]; } )* };
    }
    macro_rules! set_opt {
        ($($f:ident),*) => { $( let v = pick_opt(runs, |r| r.$f); for i in 0..3 { out[i].$f = v[i]; } )* };
    }
    set!(
        msgs_per_s, mb_per_s, p50_ns, p90_ns, p99_ns, p99_9_ns, p99_99_ns, max_ns
    );
    set_opt!(
        cpu_ns_per_msg,
        syscalls_per_msg,
        ctx_switches_per_msg,
        load_cpu_ns_per_msg,
        server_busy
    );
    let errs: Vec<u64> = runs.iter().map(|r| r.errors).collect();
    out[0].errors = errs.iter().sum();
    out[1].errors = errs.iter().copied().min().unwrap_or(0);
    out[2].errors = errs.iter().copied().max().unwrap_or(0);
    let [a, b, c] = out;
    (a, b, c)
}

/// Pin the child to `cpus` between fork and exec.
pub fn pinned(mut cmd: Command, cpus: Option<Vec<usize>>) -> Command {
    if let Some(cpus) = cpus {
        // SAFETY: the closure runs in the forked child before exec and only calls
        // sched_setaffinity on a stack-local cpu_set_t (async-signal-safe).
        unsafe {
            cmd.pre_exec(move || {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                for &c in &cpus {
                    libc::CPU_SET(c, &mut set);
                }
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Server-side counters at one instant.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    cpu_s: f64,
    ctx: u64,
    syscalls: Option<u64>,
}

/// CPU seconds (user + system, all threads) of a process from /proc/PID/stat, at the
/// clock-tick resolution (10 ms); 0 when the process is gone.
pub fn proc_cpu_s(pid: u32) -> f64 {
    let tck = {
        // SAFETY: sysconf has no memory-safety preconditions.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if t > 0 { t as f64 } else { 100.0 }
    };
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" of the command name: state is field 3; utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(14) + ticks(15)) / tck
}

/// CPU seconds and context switches of a process (all threads) from /proc.
fn proc_counters(pid: u32) -> Counters {
    let cpu_s = proc_cpu_s(pid);
    let mut ctx = 0;
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let s = fs::read_to_string(t.path().join("status")).unwrap_or_default();
            for l in s.lines() {
                if l.starts_with("voluntary_ctxt_switches")
                    || l.starts_with("nonvoluntary_ctxt_switches")
                {
                    ctx += l
                        .split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
    }
    Counters {
        cpu_s,
        ctx,
        syscalls: None,
    }
}

/// ringmux's own counters via a SIGUSR1 snapshot (µs CPU resolution, syscalls).
fn ringmux_counters(pid: u32, stats: &Path) -> anyhow::Result<Counters> {
    let j = stats_snapshot(pid, stats)?;
    let f = |k: &str| j[k].as_f64().unwrap_or(0.0);
    Ok(Counters {
        cpu_s: f("cpu_user_s") + f("cpu_sys_s"),
        ctx: (f("ctx_voluntary") + f("ctx_involuntary")) as u64,
        syscalls: j["syscalls_total"].as_u64(),
    })
}

/// Ask a ringmux server for a stats snapshot (SIGUSR1) and read it.
fn stats_snapshot(pid: u32, stats: &Path) -> anyhow::Result<serde_json::Value> {
    let _ = fs::remove_file(stats);
    // SAFETY: kill(2) on the server process we spawned.
    unsafe { libc::kill(pid as i32, libc::SIGUSR1) };
    let t0 = Instant::now();
    loop {
        if let Ok(b) = fs::read(stats) {
            return Ok(serde_json::from_slice(&b)?);
        }
        if t0.elapsed() > Duration::from_secs(5) {
            bail!("server wrote no stats snapshot within 5 s of SIGUSR1");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

struct RunningServer {
    child: Child,
    addr: SocketAddr,
    stats: Option<PathBuf>,
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn start_server(plan: &Plan, spec: &ServerSpec, stem: &str) -> anyhow::Result<RunningServer> {
    let port = free_port()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let (cmd, stats) = match spec {
        ServerSpec::Ringmux { backend, level } => {
            let stats = plan.out.join("runs").join(format!("{stem}.server.json"));
            let mut c = Command::new(&plan.exe);
            c.args([
                "serve",
                "--quiet",
                "--addr",
                &addr.to_string(),
                "--backend",
                backend,
                "--proto",
                plan.proto.name(),
                "--json",
            ])
            .arg(&stats);
            if let Some(l) = level {
                let mut parts = l.split('+');
                c.args(["--uring-features", parts.next().unwrap_or("auto")]);
                for m in parts {
                    if let Some((_, flag)) = LEVEL_MODS.iter().find(|(k, _)| *k == m) {
                        c.arg(flag);
                    }
                }
            }
            if plan.server_threads > 1 {
                c.args(["--threads", &plan.server_threads.to_string()]);
                if let Some(cpus) = &plan.server_cpus {
                    c.args(["--cpus", &crate::os::cpus::format_cpu_list(cpus)]);
                }
            }
            (c, Some(stats))
        }
        ServerSpec::External { cmd, .. } => {
            let mut c = Command::new("sh");
            c.args([
                "-c",
                &format!("exec {}", cmd.replace("{addr}", &addr.to_string())),
            ]);
            (c, None)
        }
    };
    let mut cmd = pinned(cmd, plan.server_cpus.clone());
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", spec.name()))?;
    let mut srv = RunningServer { child, addr, stats };
    let t0 = Instant::now();
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(srv);
        }
        if let Ok(Some(st)) = srv.child.try_wait() {
            bail!("{} exited ({st}) before listening on {addr}", spec.name());
        }
        if t0.elapsed() > Duration::from_secs(10) {
            bail!("{} did not listen on {addr} within 10 s", spec.name());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn load_cmd(
    plan: &Plan,
    addr: SocketAddr,
    shape: &Shape,
    rate: Option<f64>,
    duration: f64,
) -> Command {
    let mut c = Command::new(&plan.exe);
    let threads = plan
        .load_cpus
        .as_ref()
        .map_or(1, |l| l.len().min(shape.conns as usize).max(1));
    c.args([
        "load",
        "--quiet",
        "--allow-errors",
        "--addr",
        &addr.to_string(),
    ])
    .args([
        "--conns",
        &shape.conns.to_string(),
        "--size",
        &plan.size.to_string(),
        "--proto",
        plan.proto.name(),
    ])
    .args([
        "--pipeline",
        &shape.pipeline.to_string(),
        "--duration",
        &duration.to_string(),
        "--warmup",
        "0",
    ])
    .args(["--threads", &threads.to_string()]);
    if let Some(r) = rate {
        c.args(["--rate", &r.to_string()]);
    }
    pinned(c, plan.load_cpus.clone())
}

/// CPU seconds of the children waited for so far (the load processes and servers).
fn children_cpu_s() -> f64 {
    let u = crate::server::sys::usage_of(libc::RUSAGE_CHILDREN);
    u.user_s + u.sys_s
}

fn wait_load(mut c: Command, what: &str, limit: Duration) -> anyhow::Result<()> {
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start ringmux load")?;
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait()? {
            if !st.success() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = io::Read::read_to_string(&mut e, &mut err);
                }
                bail!("{what} failed ({st}): {}", err.trim());
            }
            return Ok(());
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One run: fresh server, warm-up, measured load, counters around it.
type RunOutcome = (
    RunMetrics,
    Option<String>,
    Option<anyhow::Result<crate::report::profile::Profile>>,
);

fn run_one(
    plan: &Plan,
    spec: &ServerSpec,
    shape: &Shape,
    rate: Option<f64>,
    stem: &str,
) -> anyhow::Result<RunOutcome> {
    let srv = start_server(plan, spec, stem)?;
    let limit = Duration::from_secs_f64(plan.duration + plan.warmup + 30.0);
    if plan.warmup > 0.0 {
        wait_load(
            load_cmd(plan, srv.addr, shape, rate, plan.warmup),
            "warm-up load",
            limit,
        )?;
    }
    let pid = srv.child.id();
    let snap = |stats: &Option<PathBuf>| -> anyhow::Result<Counters> {
        match stats {
            Some(p) => ringmux_counters(pid, p),
            None => Ok(proc_counters(pid)),
        }
    };
    let before = snap(&srv.stats)?;
    let runs = plan.out.join("runs");
    let json = runs.join(format!("{stem}.json"));
    let mut cmd = load_cmd(plan, srv.addr, shape, rate, plan.duration);
    cmd.args(["--interval", &plan.interval.to_string()])
        .arg("--json")
        .arg(&json)
        .arg("--hgrm")
        .arg(runs.join(format!("{stem}.hgrm")))
        .arg("--hlog")
        .arg(runs.join(format!("{stem}.hlog")));
    let recording = if plan.profile {
        Some(profile::Recording::start(
            pid,
            &runs.join(format!("{stem}.perf.data")),
        ))
    } else {
        None
    };
    let cpu0 = children_cpu_s();
    let wall0 = Instant::now();
    wait_load(cmd, "load", limit)?;
    let load_cpu = children_cpu_s() - cpu0;
    let after = snap(&srv.stats)?;
    let wall = wall0.elapsed().as_secs_f64();
    let prof = recording.map(|r| {
        let p = r.and_then(profile::Recording::finish);
        let _ = fs::remove_file(runs.join(format!("{stem}.perf.data")));
        p
    });
    let features = match (&spec, &srv.stats) {
        (ServerSpec::Ringmux { backend, .. }, Some(p)) if backend == "uring" => {
            let j: serde_json::Value = serde_json::from_slice(&fs::read(p)?)?;
            j["features"].as_str().map(str::to_string)
        }
        _ => None,
    };
    drop(srv);
    let r: LoadResult = serde_json::from_slice(
        &fs::read(&json).with_context(|| format!("load wrote no {}", json.display()))?,
    )
    .with_context(|| format!("{} is not a load result", json.display()))?;
    let msgs = r.messages.max(1) as f64;
    let mut m = crate::report::compare::load_metrics(&r);
    m.cpu_ns_per_msg = Some((after.cpu_s - before.cpu_s).max(0.0) * 1e9 / msgs);
    m.syscalls_per_msg = match (before.syscalls, after.syscalls) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / msgs),
        _ => None,
    };
    m.ctx_switches_per_msg = Some(after.ctx.saturating_sub(before.ctx) as f64 / msgs);
    m.load_cpu_ns_per_msg = Some(load_cpu * 1e9 / msgs);
    // The load process's own start-up is inside `wall`: a slight underestimate.
    m.server_busy = (wall > 0.0).then(|| (after.cpu_s - before.cpu_s).max(0.0) / wall);
    Ok((m, features, prof))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_format() {
        assert_eq!(format_timestamp(0), "1970-01-01T00-00-00");
        assert_eq!(format_timestamp(1_795_449_845), "2026-11-23T16-04-05");
    }

    #[test]
    fn median_and_summary() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        let runs: Vec<RunMetrics> = [10.0, 30.0, 20.0]
            .iter()
            .map(|&x| RunMetrics {
                msgs_per_s: x,
                syscalls_per_msg: Some(x / 10.0),
                errors: 1,
                ..Default::default()
            })
            .collect();
        let (med, min, max) = summarize(&runs);
        assert_eq!(
            (med.msgs_per_s, min.msgs_per_s, max.msgs_per_s),
            (20.0, 10.0, 30.0)
        );
        assert_eq!(
            (
                med.syscalls_per_msg,
                min.syscalls_per_msg,
                max.syscalls_per_msg
            ),
            (Some(2.0), Some(1.0), Some(3.0))
        );
        assert_eq!(med.cpu_ns_per_msg, None);
        assert_eq!(med.errors, 3);
    }

    #[test]
    fn cpu_split_between_server_and_load() {
        let mut notes = Vec::new();
        assert_eq!(split_cpus(2, 1, &mut notes), (Some(vec![0]), Some(vec![1])));
        assert_eq!(
            split_cpus(16, 1, &mut notes),
            (Some(vec![0]), Some((1..9).collect()))
        );
        assert_eq!(
            split_cpus(8, 2, &mut notes),
            (Some(vec![0, 1]), Some((2..8).collect()))
        );
        assert_eq!(
            split_cpus(3, 2, &mut notes),
            (Some(vec![0, 1]), Some(vec![2]))
        );
        assert!(notes.is_empty(), "{notes:?}");
        // Nothing left for the load: run, unpinned, and say so.
        assert_eq!(split_cpus(2, 2, &mut notes), (None, None));
        assert!(
            notes[0].contains("--server-threads 2 on 2 CPUs")
                && notes[0].contains("do not measure scaling"),
            "{notes:?}"
        );
        assert_eq!(split_cpus(1, 1, &mut notes), (None, None));
        assert!(notes[1].contains("one CPU"), "{notes:?}");
    }

    #[test]
    fn at_least_ten_intervals_per_run() {
        for d in [0.2, 0.3, 0.5, 1.0, 1.5, 3.0, 9.9, 10.0, 60.0] {
            let i = interval_for(d);
            assert!(
                (0.01..=1.0).contains(&i) && d / i >= 10.0 - 1e-9,
                "{d} s -> {i} s"
            );
        }
        assert_eq!(interval_for(1.5), 0.1);
    }

    #[test]
    fn peer_versions_come_from_the_lock_file() {
        for (_, _, krate, _) in PEERS {
            let v = locked_version(krate).unwrap_or_default();
            assert!(
                v.split('.').count() == 3 && v.chars().next().is_some_and(|c| c.is_ascii_digit()),
                "{krate}: {v:?}"
            );
        }
        assert_eq!(locked_version("no-such-crate-here"), None);
    }

    #[test]
    fn shape_ids_are_stable() {
        let s = Shape {
            mode: "closed",
            conns: 50,
            pipeline: 1,
            rate_fraction: None,
            open_rate: None,
        };
        assert_eq!(s.id(128), "closed/c50/s128");
        let p = Shape {
            mode: "pipelined",
            conns: 50,
            pipeline: 8,
            rate_fraction: None,
            open_rate: None,
        };
        assert_eq!(p.id(128), "pipelined8/c50/s128");
        let o = Shape {
            mode: "open",
            conns: 50,
            pipeline: 1,
            rate_fraction: Some(0.5),
            open_rate: None,
        };
        assert_eq!(o.id(128), "open50/c50/s128");
        let f = Shape {
            open_rate: Some(20000.0),
            ..o
        };
        assert_eq!(f.id(128), "open-20000/c50/s128");
    }
}
