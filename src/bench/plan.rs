//! The plan: which servers (`--backends` specs such as `uring:full+sqpoll`,
//! `--external`, the reference peers), which load shapes, how long, and which CPUs the
//! server and the load get. Every check of the bench's settings is made here, before
//! anything runs.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::bail;

use super::config::{BenchConfig, VersusMode};
use super::peers::peer_servers;
use super::profile;
use super::spec::{ServerSpec, warn};
use crate::os::cpus::format_cpu_list;
use crate::proto::Proto;

/// One load shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// "closed", "pipelined" or "open": the cell id's first part.
    pub mode: &'static str,
    /// Connections the load opens.
    pub conns: u32,
    /// Messages in flight per connection (closed and pipelined loops).
    pub pipeline: u32,
    /// Open loop: fraction of the measured peak.
    pub rate_fraction: Option<f64>,
    /// Open loop at this fixed rate instead (`--open-rate`): comparable between runs.
    pub open_rate: Option<f64>,
}

impl Shape {
    /// Closed loop, one message in flight per connection.
    pub fn closed(conns: u32) -> Shape {
        Shape {
            mode: "closed",
            conns,
            pipeline: 1,
            rate_fraction: None,
            open_rate: None,
        }
    }

    /// The cell id of this shape at `size`-byte messages, e.g. `closed/c50/s128`.
    pub fn id(&self, size: u32) -> String {
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

/// `uring:LEVEL+OPTION`: the serve flag each option adds.
pub const LEVEL_MODS: [(&str, &str); 9] = [
    ("sqpoll", "--sqpoll"),
    ("no-defer-taskrun", "--no-defer-taskrun"),
    ("no-register", "--no-register-files"),
    ("no-sqarray", "--no-sqarray"),
    ("no-bundles", "--no-recv-bundles"),
    ("no-multishot-accept", "--no-multishot-accept"),
    ("wait-single", "--uring-wait=single"),
    ("wait-coalesce", "--uring-wait=coalesce"),
    ("wait-adaptive", "--uring-wait=adaptive"),
];

/// The largest `--size` (16 MiB).
const MAX_SIZE: u32 = 16 << 20;

/// A validated bench plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// What was asked, checked: run lengths, size, protocol, server threads, ...
    pub cfg: BenchConfig,
    /// The ringmux binary that serves and loads (this one).
    pub exe: PathBuf,
    /// The servers of the matrix, in run order.
    pub servers: Vec<ServerSpec>,
    /// The load shapes every server runs under.
    pub shapes: Vec<Shape>,
    /// Interval of the load's interval log (`load --interval`): at least 10 per run.
    pub interval: f64,
    /// The output folder (results.json, report.md, report.html, per-run files).
    pub out: PathBuf,
    /// CPUs of the server process (ringmux: loop i on the i-th); None: not pinned.
    pub server_cpus: Option<Vec<usize>>,
    /// CPUs of the load generator's threads; None: not pinned.
    pub load_cpus: Option<Vec<usize>>,
    /// Lines for the report's notes (what was left out and why).
    pub notes: Vec<String>,
    /// `--profile` with perf available.
    pub profile: bool,
    /// `--client tokio`: the tokio reference client's binary, which drives every cell's
    /// load; None: `ringmux load`.
    pub client: Option<PathBuf>,
}

impl Plan {
    /// Check `cfg` and make the plan for this machine (io_uring levels, CPUs, perf,
    /// the peers' binaries beside `exe`). Every error is bad usage.
    pub fn new(cfg: &BenchConfig, exe: PathBuf) -> anyhow::Result<Plan> {
        let mut notes = Vec::new();
        if let Some(mode) = cfg.versus_mode {
            if cfg.versus.is_none() {
                bail!(
                    "--versus-mode {} pairs the builds of --versus: give --versus BASE",
                    mode.name()
                );
            }
            if mode == VersusMode::Together && cfg.idle_conns.is_some() {
                bail!(
                    "--versus-mode together applies to the throughput matrix, not to --idle-conns"
                );
            }
        }
        if cfg.together && cfg.versus.is_some() {
            bail!(
                "--together runs different servers at once; with --versus, --versus-mode together runs each base with its head"
            );
        }
        if cfg.together && cfg.idle_conns.is_some() {
            bail!("--together applies to the throughput matrix, not to --idle-conns");
        }
        let servers = super::versus::with_base(servers(cfg, &exe, &mut notes)?, cfg)?;
        if cfg.conns.is_empty() || cfg.conns.iter().any(|&c| c == 0 || c > 100_000) {
            bail!("--conns must be a list of counts between 1 and 100000");
        }
        if (cfg.size == 0 && cfg.proto != Proto::Http) || cfg.size > MAX_SIZE {
            bail!("--size must be between 1 and 16777216 bytes (0 only with --proto http)");
        }
        // ringmux's HTTP server answers a larger body with 413, so every run would count
        // only errors. The limit is ringmux's own: other servers may allow more (today
        // none serves http in the bench: they are taken to speak echo only).
        let http_limit = crate::proto::http::MAX_BODY;
        if cfg.proto == Proto::Http
            && u64::from(cfg.size) > http_limit
            && servers
                .iter()
                .any(|s| matches!(s, ServerSpec::Ringmux { .. }))
        {
            bail!(
                "--size {} is over the HTTP server's body limit ({http_limit} bytes)",
                cfg.size
            );
        }
        if !(0.2..=3600.0).contains(&cfg.duration) || cfg.repeat == 0 || cfg.repeat > 100 {
            bail!("--duration must be 0.2..3600 s and --repeat 1..100");
        }
        let shapes = shapes(cfg)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (server_cpus, load_cpus) =
            split_cpus(cores, usize::from(cfg.server_threads), &mut notes);
        if cfg.server_threads > 1 {
            let n = cfg.server_threads;
            notes.push(match (&server_cpus, &load_cpus) {
                (Some(s), Some(l)) => format!(
                    "ringmux servers ran {n} event loops (serve --threads {n} --cpus {s}), the load on CPUs {l}; other servers got CPUs {s} and chose their own threads",
                    s = format_cpu_list(s),
                    l = format_cpu_list(l)
                ),
                _ => format!("ringmux servers ran {n} event loops (serve --threads {n}), server and load unpinned"),
            });
        }
        let client = super::tokio_client::check(cfg, &exe, load_cpus.as_deref(), &mut notes)?;
        let out = match &cfg.out {
            Some(o) => o.clone(),
            None => {
                let t = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
                PathBuf::from("bench-out").join(format_timestamp(t))
            }
        };
        let profile = cfg.profile
            && match profile::available() {
                Ok(()) => true,
                Err(why) => {
                    warn(&mut notes, format!("--profile: no CPU profile: {why}"));
                    false
                }
            };
        Ok(Plan {
            cfg: cfg.clone(),
            exe,
            servers,
            shapes,
            interval: interval_for(cfg.duration),
            out,
            server_cpus,
            load_cpus,
            notes,
            profile,
            client,
        })
    }
}

/// The servers of the matrix: ringmux's of `--backends`, `--external`, and the
/// reference peers; only ringmux's with a protocol other than echo.
fn servers(
    cfg: &BenchConfig,
    exe: &Path,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<ServerSpec>> {
    let mut servers = ringmux_servers(cfg, notes)?;
    for e in &cfg.external {
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
    if cfg.external.is_empty() && !cfg.no_peers && cfg.proto == Proto::Echo {
        servers.extend(peer_servers(exe, notes));
    }
    if cfg.proto != Proto::Echo {
        // External servers (and the reference peers) are echo servers.
        let left: Vec<String> = servers
            .iter()
            .filter(|s| matches!(s, ServerSpec::External { .. }))
            .map(|s| s.name())
            .collect();
        if !left.is_empty() {
            warn(
                notes,
                format!(
                    "{} left out: external servers are taken to speak echo only, not {}",
                    left.join(", "),
                    cfg.proto.name()
                ),
            );
            servers.retain(|s| matches!(s, ServerSpec::Ringmux { .. }));
        }
        if cfg.idle_conns.is_some() {
            bail!(
                "--idle-conns measures echo connections: leave out --proto {}",
                cfg.proto.name()
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
    Ok(servers)
}

/// ringmux's servers of `--backends`: io_uring levels this kernel cannot run are
/// skipped with a warning; with `--idle-conns` a plain `uring` stands for every level
/// it can run.
fn ringmux_servers(cfg: &BenchConfig, notes: &mut Vec<String>) -> anyhow::Result<Vec<ServerSpec>> {
    let mut servers = Vec::new();
    let uring = crate::probe::uring_levels();
    for b in &cfg.backends {
        let (backend, level) = match b.split_once(':') {
            Some((x, l)) => (x.to_string(), Some(l.to_string())),
            None => (b.clone(), None),
        };
        match backend.as_str() {
            "uring" => {
                if let Some(l) = &level {
                    let mut parts = l.split('+');
                    let name = parts.next().unwrap_or("");
                    let Some(&(_, usable)) = uring.levels.iter().find(|(x, _)| *x == name) else {
                        bail!(
                            "unknown io_uring level '{name}' in --backends ({})",
                            uring
                                .levels
                                .iter()
                                .map(|l| l.0)
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                    };
                    if let Some(m) = parts.find(|m| !LEVEL_MODS.iter().any(|(k, _)| k == m)) {
                        bail!(
                            "unknown option '+{m}' in --backends {b} (+{})",
                            LEVEL_MODS.map(|(k, _)| k).join(", +")
                        );
                    }
                    if !usable {
                        warn(
                            notes,
                            format!(
                                "{b} skipped: level {name} is not usable on this kernel (see `ringmux probe`)"
                            ),
                        );
                        continue;
                    }
                }
                if let Some(u) = &uring.unavailable {
                    warn(notes, format!("{b} skipped: {u}"));
                    continue;
                }
            }
            x if level.is_none() && crate::server::Backend::NAMES.contains(&x) => {}
            _ => bail!(
                "unknown backend '{b}' in --backends (uring:LEVEL[+OPTION...], or one of {})",
                crate::server::Backend::NAMES.join(", ")
            ),
        }
        let has_event_loop =
            <crate::server::BackendChoice as clap::ValueEnum>::from_str(&backend, false)
                .ok()
                .and_then(crate::server::Backend::from_choice)
                .is_none_or(|b| b.has_event_loop());
        if cfg.server_threads > 1 && !has_event_loop {
            bail!(
                "--server-threads {} does not apply to backend '{backend}': it has no event loop to run per core",
                cfg.server_threads
            );
        }
        if cfg.idle_conns.is_some() && backend == "uring" && level.is_none() {
            // Memory differs by level (fastpoll keeps a receive buffer per
            // connection): a plain `uring` stands for every level this kernel has.
            for &(l, usable) in &uring.levels {
                if usable
                    && !servers
                        .iter()
                        .any(|s: &ServerSpec| s.name() == format!("uring:{l}"))
                {
                    servers.push(ServerSpec::Ringmux {
                        backend: backend.clone(),
                        level: Some(l.to_string()),
                        base: None,
                    });
                }
            }
            continue;
        }
        servers.push(ServerSpec::Ringmux {
            backend,
            level,
            base: None,
        });
    }
    Ok(servers)
}

/// The load shapes: closed loop at each connection count (`--quick`: those up to 50),
/// pipelined (not with `--quick`) and open loop at the middle count.
fn shapes(cfg: &BenchConfig) -> anyhow::Result<Vec<Shape>> {
    let mut conns = cfg.conns.clone();
    if cfg.quick {
        conns.retain(|&c| c <= 50);
        if conns.is_empty() {
            conns.push(50);
        }
    }
    let mut shapes: Vec<Shape> = conns.iter().map(|&c| Shape::closed(c)).collect();
    let mid = *conns
        .iter()
        .find(|&&c| c >= 50)
        .unwrap_or(conns.last().unwrap());
    if !cfg.quick {
        shapes.push(Shape {
            mode: "pipelined",
            pipeline: 8,
            ..Shape::closed(mid)
        });
    }
    if let Some(r) = cfg.open_rate
        && !(r.is_finite() && r > 0.0 && r <= 1e9)
    {
        bail!("--open-rate {r}: must be a number of messages per second above 0 (at most 1e9)");
    }
    shapes.push(Shape {
        mode: "open",
        rate_fraction: Some(0.5),
        open_rate: cfg.open_rate,
        ..Shape::closed(mid)
    });
    Ok(shapes)
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
    if cores < 2 {
        notes.push("one CPU: server and load not pinned apart; figures mix both".to_string());
    } else {
        warn(
            notes,
            format!(
                "--server-threads {threads} on {cores} CPUs leaves none for the load: server and load run unpinned on shared CPUs; figures mix both and do not measure scaling"
            ),
        );
    }
    (None, None)
}

/// "2026-11-23T15-04-05" (UTC), safe in paths.
fn format_timestamp(secs: u64) -> String {
    crate::results::time::utc(secs as f64)
        .trim_end_matches(" UTC")
        .replace(' ', "T")
        .replace(':', "-")
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
    fn shape_ids_are_stable() {
        let s = Shape {
            mode: "closed",
            conns: 50,
            pipeline: 1,
            rate_fraction: None,
            open_rate: None,
        };
        assert_eq!(s, Shape::closed(50));
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
