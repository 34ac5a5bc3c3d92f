//! A validated load configuration, built from the command line or by the bench.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cli::{DriverChoice, LoadArgs, LoadProto};
/// Shared with `serve --cpus`; lives in the CLI module, re-exported here for the load API.
pub use crate::os::cpus::parse_cpu_list;

/// An edge of the measured window, reported to [`LoadConfig::on_window`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowEdge {
    /// Warm-up is over: from now on samples are recorded.
    Start,
    /// The measured window is over (or every connection is gone).
    End,
}

/// Hook called from the coordinating thread at each [`WindowEdge`], e.g. to sample the
/// server's CPU time over exactly the measured window.
pub type WindowHook = Arc<dyn Fn(WindowEdge) + Send + Sync>;

/// Closed loop (each connection keeps `pipeline` messages in flight) or open loop at a
/// total rate (messages/s), corrected for coordinated omission.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Closed,
    Open { rate: f64 },
}

/// Everything [`super::run`] needs, validated.
#[derive(Clone)]
pub struct LoadConfig {
    pub addr: SocketAddr,
    pub conns: u32,
    /// Silent connections opened before the active ones, held for the run.
    pub idle_conns: u32,
    /// Bytes per message (http: the POST body; 0 sends `GET /`).
    pub size: u32,
    /// What is sent and how replies are verified.
    pub proto: LoadProto,
    pub pipeline: u32,
    pub mode: Mode,
    pub duration: Duration,
    pub warmup: Duration,
    /// A message unanswered this long is a timeout error (its connection is dropped).
    pub timeout: Duration,
    /// Length of one interval of the interval series.
    pub interval: Duration,
    /// Worker threads (never more than `conns`).
    pub threads: u16,
    /// CPU for worker thread i: `pin[i]`. Empty: not pinned.
    pub pin: Vec<usize>,
    /// IO driver: io_uring, epoll, or io_uring when available (see [`super::Driver::choose`]).
    pub driver: DriverChoice,
    /// Print a progress line per interval on stderr (only if stderr is a terminal).
    pub progress: bool,
    pub on_window: Option<WindowHook>,
    /// Open loop: the rate counts as not kept when a message is sent this much later
    /// than its intended time.
    pub max_lag: Duration,
    /// Run (and report) even when no connection could be established.
    pub allow_errors: bool,
    /// One of `agents` load processes (machines) sharing `conns` and the rate: this one
    /// runs connections `i` with `i % agents == agent_id`, on the single-agent schedule.
    pub agents: u32,
    pub agent_id: u32,
    /// Start (the warm-up) at this wall-clock time, seconds since the epoch.
    pub start_at: Option<f64>,
    /// Set it to end the run early (Ctrl-C); the result covers what ran.
    pub stop: Option<Arc<AtomicBool>>,
}

impl fmt::Debug for LoadConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadConfig")
            .field("addr", &self.addr)
            .field("conns", &self.conns)
            .field("idle_conns", &self.idle_conns)
            .field("size", &self.size)
            .field("proto", &self.proto)
            .field("pipeline", &self.pipeline)
            .field("mode", &self.mode)
            .field("duration", &self.duration)
            .field("warmup", &self.warmup)
            .field("timeout", &self.timeout)
            .field("interval", &self.interval)
            .field("threads", &self.threads)
            .field("pin", &self.pin)
            .field("driver", &self.driver)
            .field("progress", &self.progress)
            .field("on_window", &self.on_window.as_ref().map(|_| "<hook>"))
            .field("max_lag", &self.max_lag)
            .field("allow_errors", &self.allow_errors)
            .field("agents", &self.agents)
            .field("agent_id", &self.agent_id)
            .field("start_at", &self.start_at)
            .field("stop", &self.stop)
            .finish()
    }
}

/// Default `--max-lag`, milliseconds.
pub const DEFAULT_MAX_LAG_MS: u64 = 50;

/// Most outstanding-message slots over all connections (8 bytes each).
const MAX_SLOTS: u64 = 1 << 26;

impl LoadConfig {
    /// A closed-loop configuration with the command line's defaults, for in-process use.
    pub fn closed(addr: SocketAddr, conns: u32, size: u32, duration: Duration) -> LoadConfig {
        LoadConfig {
            addr,
            conns,
            idle_conns: 0,
            size,
            proto: LoadProto::Echo,
            pipeline: 1,
            mode: Mode::Closed,
            duration,
            warmup: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            interval: Duration::from_secs(1),
            threads: 1,
            pin: Vec::new(),
            driver: DriverChoice::Auto,
            progress: false,
            on_window: None,
            max_lag: Duration::from_millis(DEFAULT_MAX_LAG_MS),
            allow_errors: false,
            agents: 1,
            agent_id: 0,
            start_at: None,
            stop: None,
        }
    }

    /// Build from the command line: every value checked, one-line errors.
    pub fn from_args(a: &LoadArgs) -> anyhow::Result<LoadConfig> {
        let mode = match a.rate {
            None => Mode::Closed,
            Some(r) if r.is_finite() && r > 0.0 && r <= 1e9 => Mode::Open { rate: r },
            Some(r) => {
                bail!("--rate {r}: must be a number of messages per second above 0 (at most 1e9)")
            }
        };
        let pin = match &a.pin {
            None => Vec::new(),
            Some(s) => parse_cpu_list(s).with_context(|| format!("--cpus '{s}'"))?,
        };
        let cfg = LoadConfig {
            addr: a.addr,
            conns: a.conns,
            idle_conns: a.idle_conns,
            size: a.size,
            proto: a.proto,
            pipeline: a.pipeline,
            mode,
            duration: Duration::from_secs_f64(a.duration),
            warmup: Duration::from_secs_f64(a.warmup),
            timeout: Duration::from_secs_f64(a.timeout),
            interval: Duration::from_secs_f64(a.interval),
            threads: a.threads,
            pin,
            driver: a.driver,
            progress: !a.quiet,
            on_window: None,
            max_lag: Duration::from_secs_f64(a.max_lag),
            allow_errors: a.allow_errors,
            agents: a.agents,
            agent_id: a.agent_id,
            start_at: a.start_at,
            stop: None,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check a configuration built by hand (the bench) as strictly as the command line.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.conns == 0 {
            bail!("--conns must be at least 1");
        }
        if self.size == 0 && self.proto != LoadProto::Http {
            bail!("--size must be at least 1 byte (0 is for --proto http: GET /)");
        }
        if self.proto == LoadProto::Http && u64::from(self.size) > crate::proto::http::MAX_BODY {
            bail!(
                "--size {} is over the HTTP server's body limit ({} bytes)",
                self.size,
                crate::proto::http::MAX_BODY
            );
        }
        if self.pipeline == 0 {
            bail!("--pipeline must be at least 1");
        }
        if u64::from(self.conns) * u64::from(self.pipeline) > MAX_SLOTS {
            bail!(
                "--conns x --pipeline is {}: at most {MAX_SLOTS} messages may be outstanding",
                u64::from(self.conns) * u64::from(self.pipeline)
            );
        }
        if let Mode::Open { rate } = self.mode
            && !(rate.is_finite() && rate > 0.0 && rate <= 1e9)
        {
            bail!("--rate {rate}: must be a number of messages per second above 0 (at most 1e9)");
        }
        if self.duration.is_zero() {
            bail!("--duration must be above 0");
        }
        if self.timeout < Duration::from_millis(1) {
            bail!("--timeout must be at least 0.001 s");
        }
        if self.interval < Duration::from_millis(10) {
            bail!("--interval must be at least 0.01 s");
        }
        if self.threads == 0 {
            bail!("--threads must be at least 1");
        }
        if self.agents == 0 || self.agent_id >= self.agents {
            bail!(
                "--agent-id {} with --agents {}: the id must be below the number of agents",
                self.agent_id,
                self.agents
            );
        }
        if self.conns < self.agents {
            bail!(
                "--conns {} is fewer than --agents {}: every agent needs a connection",
                self.conns,
                self.agents
            );
        }
        if let Some(t) = self.start_at
            && !(t.is_finite() && t > 0.0)
        {
            bail!("--start-at {t}: must be a UNIX time in seconds");
        }
        if !self.pin.is_empty() && self.pin.len() < usize::from(self.effective_threads()) {
            bail!(
                "--cpus lists {} CPU(s) for {} load threads: give one CPU per thread",
                self.pin.len(),
                self.effective_threads()
            );
        }
        Ok(())
    }

    /// Threads actually started: no thread without a connection.
    pub fn effective_threads(&self) -> u16 {
        self.threads
            .min(u16::try_from(self.my_conns()).unwrap_or(u16::MAX))
            .max(1)
    }

    /// The connections this agent runs (all of them with one agent): ids `i` of
    /// `0..conns` with `i % agents == agent_id`. Their intended times are those of the
    /// single-agent schedule, so the union over agents is that schedule exactly.
    pub fn my_conn_ids(&self) -> impl Iterator<Item = u32> + '_ {
        (self.agent_id..self.conns).step_by(self.agents.max(1) as usize)
    }

    pub fn my_conns(&self) -> u32 {
        self.my_conn_ids().count() as u32
    }

    /// This agent's share of the asked rate (the whole rate with one agent).
    pub fn my_rate(&self) -> Option<f64> {
        match self.agents {
            1 => self.rate(),
            _ => self
                .rate()
                .map(|r| r * f64::from(self.my_conns()) / f64::from(self.conns)),
        }
    }

    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            Mode::Closed => "closed",
            Mode::Open { .. } => "open",
        }
    }

    pub fn rate(&self) -> Option<f64> {
        match self.mode {
            Mode::Closed => None,
            Mode::Open { rate } => Some(rate),
        }
    }
}

/// `path` with `.uncorrected` put before its extension: `run.hgrm` -> `run.uncorrected.hgrm`.
pub fn uncorrected_path(path: &std::path::Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.uncorrected.{}", ext.to_string_lossy()),
        None => format!("{stem}.uncorrected"),
    };
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn uncorrected_names() {
        use std::path::Path;
        assert_eq!(
            uncorrected_path(Path::new("run.hgrm")),
            Path::new("run.uncorrected.hgrm")
        );
        assert_eq!(
            uncorrected_path(Path::new("out/a.b.hgrm")),
            Path::new("out/a.b.uncorrected.hgrm")
        );
        assert_eq!(
            uncorrected_path(Path::new("dist")),
            Path::new("dist.uncorrected")
        );
    }

    fn args(extra: &[&str]) -> LoadArgs {
        let mut v = vec!["ringmux", "load"];
        v.extend_from_slice(extra);
        match crate::cli::Cli::try_parse_from(v).unwrap().command {
            crate::cli::Command::Load(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn from_args_validates() {
        let c = LoadConfig::from_args(&args(&["--rate", "2000", "--conns", "10"])).unwrap();
        assert_eq!(c.mode, Mode::Open { rate: 2000.0 });
        assert_eq!(c.timeout, Duration::from_secs(10));
        for bad in [
            &["--rate", "0"][..],
            &["--rate=-5"],
            &["--rate", "inf"],
            &["--pin", "abc"],
            &["--duration", "0"],
            &["--threads", "3", "--conns", "4", "--pin", "0-1"],
        ] {
            assert!(
                LoadConfig::from_args(&args(bad)).is_err(),
                "{bad:?} accepted"
            );
        }
        let e = LoadConfig::from_args(&args(&["--pin", "abc"])).unwrap_err();
        assert!(format!("{e:#}").contains("--cpus 'abc'"), "{e:#}");
        // More threads than connections: one thread per connection.
        let c = LoadConfig::from_args(&args(&["--threads", "8", "--conns", "3"])).unwrap();
        assert_eq!(c.effective_threads(), 3);
    }

    #[test]
    fn agents_share_connections_and_rate() {
        let c = LoadConfig::from_args(&args(&[
            "--conns",
            "7",
            "--rate",
            "700",
            "--agents",
            "3",
            "--agent-id",
            "1",
        ]))
        .unwrap();
        assert_eq!(c.my_conn_ids().collect::<Vec<_>>(), [1, 4]);
        assert_eq!(c.my_rate(), Some(200.0));
        // The agents' connections are 0..conns, each exactly once.
        let mut all: Vec<u32> = (0..3)
            .flat_map(|i| {
                let c = LoadConfig::from_args(&args(&[
                    "--conns",
                    "7",
                    "--agents",
                    "3",
                    "--agent-id",
                    &i.to_string(),
                ]))
                .unwrap();
                c.my_conn_ids().collect::<Vec<_>>()
            })
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..7).collect::<Vec<_>>());
        for bad in [
            &["--agents", "3", "--agent-id", "3"][..],
            &["--agents", "4", "--conns", "3"],
            &["--start-at=-1"],
        ] {
            assert!(
                LoadConfig::from_args(&args(bad)).is_err(),
                "{bad:?} accepted"
            );
        }
    }
}
