//! `ringmux load`: its arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::{parse_addr, parse_secs};

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
    pub fn name(self) -> &'static str {
        match self {
            LoadProto::Echo => "echo",
            LoadProto::Upper => "upper",
            LoadProto::Http => "http",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Server address, IP:PORT (loopback or an address you own).
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:7878", value_parser = parse_addr)]
    pub addr: SocketAddr,
    /// Connections (1 to 1000000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub conns: u32,
    /// Silent connections opened before the active ones and held for the whole run, so
    /// the active sockets get the highest descriptors in the server (what makes
    /// select's O(highest fd) show). They send nothing and count in neither errors nor
    /// latency; at the end the summary says how many the server had closed.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub idle_conns: u32,
    /// Message size in bytes, up to 67108864 (with --proto http: the POST body; 0 sends
    /// `GET /`; echo and upper need at least 1).
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(0..=(64i64 << 20)))]
    pub size: u32,
    /// Protocol to speak and verify.
    #[arg(long, value_enum, default_value_t = LoadProto::Echo)]
    pub proto: LoadProto,
    /// Measured seconds, after the warm-up (above 0, at most a year).
    #[arg(long, default_value_t = 10.0, value_parser = parse_secs)]
    pub duration: f64,
    /// Unrecorded warm-up seconds (0 for none).
    #[arg(long, default_value_t = 1.0, value_parser = parse_secs)]
    pub warmup: f64,
    /// Messages in flight per connection (closed loop); the most outstanding per
    /// connection in open loop (1 to 65536).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub pipeline: u32,
    /// Total messages per second (above 0, at most 1e9): open loop with
    /// coordinated-omission correction. Default: none, closed loop.
    #[arg(long, value_name = "MSGS_PER_S")]
    pub rate: Option<f64>,
    /// Load threads (1 to 1024); connections are spread over them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: u16,
    /// CPUs to pin load threads to, thread i on the i-th CPU listed, e.g. "1", "2-5" or
    /// "1,3" (`taskset -c` syntax, CPUs 0-1023 this process may run on). The same option
    /// as `serve --cpus`; `--pin LIST` is the old spelling. Default: not pinned.
    #[arg(long = "cpus", visible_alias = "pin", value_name = "LIST")]
    pub pin: Option<String>,
    /// How the load threads drive their sockets.
    #[arg(long, value_enum, default_value_t = DriverChoice::Auto)]
    pub driver: DriverChoice,
    /// Write the percentile distribution (HdrHistogram plotter format, ms).
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// Write an HdrHistogram interval log (v1.3, tagged corrected/uncorrected).
    #[arg(long)]
    pub hlog: Option<PathBuf>,
    /// Write all figures and parameters as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// No progress line and no summary.
    #[arg(long)]
    pub quiet: bool,
    /// Exit 0 even when errors (mismatches, resets, timeouts, failed connects) were
    /// counted; with it, a run where no connection could be made still writes its files.
    #[arg(long)]
    pub allow_errors: bool,
    /// Open loop: exit 1 when the rate was not kept (achieved below 99% of --rate, or
    /// the schedule fell behind by more than --max-lag).
    #[arg(long)]
    pub require_rate: bool,
    /// Open loop: seconds a send may fall behind its intended time before the rate
    /// counts as not kept.
    #[arg(long, default_value_t = 0.05, value_parser = parse_secs)]
    pub max_lag: f64,
    /// Load agents (processes, machines) sharing this run: each runs its share of
    /// --conns and of --rate (merge their files with `ringmux merge DIR`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub agents: u32,
    /// This agent's index, 0..agents-1 (a Kubernetes Indexed Job's completion index).
    #[arg(long, default_value_t = 0)]
    pub agent_id: u32,
    /// Start the warm-up at this wall-clock time (UNIX seconds, fractions allowed), so
    /// every agent starts together. Connections are made before it.
    #[arg(long, value_name = "UNIX_TIME")]
    pub start_at: Option<f64>,
    /// Seconds a message may stay unanswered before it counts as a timeout (its
    /// connection is then dropped). Also bounds the final drain of an open-loop run.
    #[arg(long, default_value_t = 10.0, value_parser = parse_secs)]
    pub timeout: f64,
    /// Length of one interval of the interval log (--hlog) and of the progress line,
    /// seconds (at least 0.01). `bench` passes 0.1 for runs under 10 s.
    #[arg(long, default_value_t = 1.0, value_parser = parse_secs)]
    pub interval: f64,
}
