//! A validated load configuration, built from the command line or by the bench.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::bail;
use clap::ValueEnum;

/// Shared with `serve --cpus`; lives in `os::cpus`, re-exported here for the load API.
pub use crate::os::cpus::parse_cpu_list;

/// What `load` speaks (and verifies) on each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoadProto {
    /// Every byte sent comes back unchanged.
    Echo,
    /// Every byte comes back with ASCII letters upper-cased (`serve --proto upper`).
    Upper,
    /// HTTP/1.1: `GET /` expecting `Hello, World!` with --size 0, else `POST /echo` with
    /// a --size byte body expected back; non-2xx replies count as errors by status.
    Http,
}

impl LoadProto {
    /// The name recorded in results (`params.proto`): "echo", "upper" or "http".
    pub fn name(self) -> &'static str {
        match self {
            LoadProto::Echo => "echo",
            LoadProto::Upper => "upper",
            LoadProto::Http => "http",
        }
    }
}

/// How `load` drives its sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DriverChoice {
    /// io_uring if a ring with what the driver needs can be set up (Linux 5.11+), else
    /// epoll (one warning line).
    Auto,
    /// SEND/RECV through io_uring; exit non-zero if io_uring is unavailable.
    Uring,
    /// Non-blocking sockets on edge-triggered epoll.
    Epoll,
}

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
    /// Each connection keeps `pipeline` messages in flight: the next leaves when a
    /// reply arrives.
    Closed,
    /// Messages leave on a fixed schedule, whether or not replies have come.
    Open {
        /// Total messages per second over every connection (above 0, at most 1e9).
        rate: f64,
    },
}

/// Everything [`super::run`] needs, validated.
#[derive(Clone)]
pub struct LoadConfig {
    /// The server to drive.
    pub addr: SocketAddr,
    /// Active connections over every agent (at least 1, at least `agents`).
    pub conns: u32,
    /// Silent connections opened before the active ones, held for the run.
    pub idle_conns: u32,
    /// Bytes per message (http: the POST body; 0 sends `GET /`).
    pub size: u32,
    /// What is sent and how replies are verified.
    pub proto: LoadProto,
    /// Messages in flight per connection in closed loop; the most outstanding per
    /// connection in open loop (at least 1).
    pub pipeline: u32,
    /// Closed or open loop.
    pub mode: Mode,
    /// The measured window, after the warm-up (above 0).
    pub duration: Duration,
    /// Unrecorded warm-up before the window (zero for none).
    pub warmup: Duration,
    /// A message unanswered this long is a timeout error (its connection is dropped).
    pub timeout: Duration,
    /// Length of one interval of the interval series.
    pub interval: Duration,
    /// Worker threads (never more than `conns`).
    pub threads: u16,
    /// CPU for worker thread i: `pin[i]`. Empty: not pinned.
    pub pin: Vec<usize>,
    /// IO driver: io_uring, epoll, or io_uring when available (see [`super::DriverKind::choose`]).
    pub driver: DriverChoice,
    /// Print a progress line per interval on stderr (only if stderr is a terminal).
    pub progress: bool,
    /// Called at the start and end of the measured window (see [`WindowHook`]).
    pub on_window: Option<WindowHook>,
    /// Open loop: the rate counts as not kept when a message is sent this much later
    /// than its intended time.
    pub max_lag: Duration,
    /// Run (and report) even when no connection could be established.
    pub allow_errors: bool,
    /// One of `agents` load processes (machines) sharing `conns` and the rate: this one
    /// runs connections `i` with `i % agents == agent_id`, on the single-agent schedule.
    pub agents: u32,
    /// This agent's index, below `agents` (0 with one agent).
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

    /// Check a configuration built by hand (the bench) as strictly as the command line.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.conns == 0 {
            bail!("--conns must be at least 1");
        }
        if self.size == 0 && self.proto != LoadProto::Http {
            bail!("--size must be at least 1 byte (0 is for --proto http: GET /)");
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
        if let Mode::Open { rate } = self.mode {
            check_rate(rate)?;
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

    /// How many connections this agent runs ([`LoadConfig::my_conn_ids`] counted).
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

    /// "closed" or "open", as recorded in `params.mode`.
    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            Mode::Closed => "closed",
            Mode::Open { .. } => "open",
        }
    }

    /// The caller asked to end the run early (its [`LoadConfig::stop`] flag is set).
    pub fn stopped(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The total asked rate in messages per second, over every agent; None in closed loop.
    pub fn rate(&self) -> Option<f64> {
        match self.mode {
            Mode::Closed => None,
            Mode::Open { rate } => Some(rate),
        }
    }
}

/// An open-loop rate is messages per second above 0, at most 1e9.
pub fn check_rate(rate: f64) -> anyhow::Result<()> {
    if !(rate.is_finite() && rate > 0.0 && rate <= 1e9) {
        bail!("--rate {rate}: must be a number of messages per second above 0 (at most 1e9)");
    }
    Ok(())
}
