//! What `ringmux bench` is asked to do: [`BenchConfig`], the command line's values
//! with the defaults that depend on other flags (`--quick`, `--preset`) resolved.
//! [`super::Plan::new`] checks their combinations against this machine.

use std::path::PathBuf;

use crate::proto::Proto;

/// `bench --preset`: a ready-made study instead of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchPreset {
    /// The IO-model lab: sweeps A-D and the Claims section.
    Models,
}

/// `bench --client`: what drives the load of every cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LoadClient {
    /// ringmux's own load generator (`ringmux load`).
    #[default]
    Ringmux,
    /// The tokio reference client (peers/src/bin/tokio_echo_client.rs): closed,
    /// pipelined and open loop, echo only.
    Tokio,
}

impl LoadClient {
    /// The name results.json's `args.client` and the report give it.
    pub fn name(self) -> &'static str {
        match self {
            LoadClient::Ringmux => "ringmux",
            LoadClient::Tokio => "tokio",
        }
    }
}

/// `bench --versus-mode`: how the two builds of a paired bench share the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum VersusMode {
    /// Run by run: base then head, head then base in the next repeat; each run has the
    /// machine to itself.
    #[default]
    Alternate,
    /// Base and head serve at the same time on the server CPUs, each driven by its own
    /// load on the load CPUs: every moment's noise falls on both.
    Together,
}

impl VersusMode {
    /// The name results.json's `args.versus_mode` gives it.
    pub fn name(self) -> &'static str {
        match self {
            VersusMode::Alternate => "alternate",
            VersusMode::Together => "together",
        }
    }
}

impl BenchConfig {
    /// How `--versus` pairs the builds: as given, else [`VersusMode::Alternate`].
    pub fn versus_mode(&self) -> VersusMode {
        self.versus_mode.unwrap_or_default()
    }
}

/// The bench's settings, every default resolved.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// `--backends` as given: `uring`, `uring:LEVEL[+OPTION...]` or a backend name.
    pub backends: Vec<String>,
    /// `--conns` as given (`--quick` keeps those up to 50 when the plan is made).
    pub conns: Vec<u32>,
    /// Bytes per message (`--size`).
    pub size: u32,
    /// What every server serves and the load speaks and verifies.
    pub proto: Proto,
    /// Seconds per measured run.
    pub duration: f64,
    /// Seconds of unrecorded warm-up before each measured run.
    pub warmup: f64,
    /// Repeats of the whole interleaved matrix.
    pub repeat: u32,
    /// `--open-rate`: the open-loop shape at this fixed rate, msgs/s (None: 50% of the
    /// measured peak).
    pub open_rate: Option<f64>,
    /// `--external NAME=CMD` as given.
    pub external: Vec<String>,
    /// `--no-peers`: the reference peers (tokio, monoio) are left out.
    pub no_peers: bool,
    /// `--quick`: the short matrix (connections up to 50, one repeat).
    pub quick: bool,
    /// None: `bench-out/<UTC timestamp>/`.
    pub out: Option<PathBuf>,
    /// `--idle-conns N`: the idle-cost study at N silent connections (None: off).
    pub idle_conns: Option<u32>,
    /// Event loops per ringmux server (`--server-threads`; `serve --threads`).
    pub server_threads: u16,
    /// `--profile` asked (the plan checks that perf is there).
    pub profile: bool,
    /// Seconds each server sits idle for the quiet rows (0: no quiet rows).
    pub quiet_secs: f64,
    /// Silent connections held open for the second quiet row.
    pub quiet_conns: u32,
    /// `--preset`: a ready-made study instead of the matrix (None: the matrix).
    pub preset: Option<BenchPreset>,
    /// `--versus BASE`: every ringmux server also runs from this binary (`SERVER@base`).
    pub versus: Option<PathBuf>,
    /// `--versus-mode` as given: base and head run by run, or together (None: not
    /// given, [`VersusMode::Alternate`]).
    pub versus_mode: Option<VersusMode>,
    /// `--together`: the servers of every cell run at the same time, each with its own
    /// load (without `--versus`).
    pub together: bool,
    /// `--client`: ringmux's load generator or the tokio reference client.
    pub client: LoadClient,
}

/// Run lengths when `--duration` and `--repeat` are not given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunLengths {
    /// Seconds per measured run.
    pub duration: f64,
    /// Seconds of unrecorded warm-up before each run.
    pub warmup: f64,
    /// Repeats of the whole interleaved matrix.
    pub repeat: u32,
}

impl RunLengths {
    /// The defaults of the matrix or of a preset, full or `--quick`.
    pub fn default_for(preset: Option<BenchPreset>, quick: bool) -> RunLengths {
        let (duration, warmup, repeat) = match (preset, quick) {
            (None, false) => (1.0, 0.3, 3),
            (None, true) => (1.0, 0.3, 1),
            (Some(BenchPreset::Models), false) => (1.0, 0.3, 3),
            (Some(BenchPreset::Models), true) => (0.5, 0.2, 1),
        };
        RunLengths {
            duration,
            warmup,
            repeat,
        }
    }
}
