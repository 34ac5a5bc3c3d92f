//! `ringmux load`: its arguments, and their conversion into a validated
//! [`LoadCommand`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use super::{parse_addr, parse_secs};
/// Domain types of `load`, for the other subcommands' arguments (bench's `--proto`).
pub use crate::load::{DriverChoice, LoadProto};
use crate::load::{LoadCommand, LoadConfig, Mode, OutputFiles, check_rate};
use crate::os::cpus::{format_cpu_list, parse_cpu_list};

/// `ringmux load`: the run as asked; `command()` checks it into a load command.
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

impl LoadArgs {
    /// The validated command: every value checked, one-line errors naming the flag, and
    /// every `--cpus` CPU one this process may run on.
    pub fn command(&self) -> anyhow::Result<LoadCommand> {
        let mode = match self.rate {
            None => Mode::Closed,
            Some(rate) => {
                check_rate(rate)?;
                Mode::Open { rate }
            }
        };
        let pin = match &self.pin {
            None => Vec::new(),
            Some(s) => parse_cpu_list(s).with_context(|| format!("--cpus '{s}'"))?,
        };
        let config = LoadConfig {
            addr: self.addr,
            conns: self.conns,
            idle_conns: self.idle_conns,
            size: self.size,
            proto: self.proto,
            pipeline: self.pipeline,
            mode,
            duration: Duration::from_secs_f64(self.duration),
            warmup: Duration::from_secs_f64(self.warmup),
            timeout: Duration::from_secs_f64(self.timeout),
            interval: Duration::from_secs_f64(self.interval),
            threads: self.threads,
            pin,
            driver: self.driver,
            progress: !self.quiet,
            on_window: None,
            max_lag: Duration::from_secs_f64(self.max_lag),
            allow_errors: self.allow_errors,
            agents: self.agents,
            agent_id: self.agent_id,
            start_at: self.start_at,
            stop: None,
        };
        config.validate()?;
        if !config.pin.is_empty() {
            let allowed = crate::os::allowed_cpus()?;
            if let Some(c) = config.pin.iter().find(|c| !allowed.contains(c)) {
                bail!(
                    "--cpus: CPU {c} is not available to this process (it may run on {})",
                    format_cpu_list(&allowed)
                );
            }
        }
        Ok(LoadCommand {
            config,
            files: OutputFiles {
                hgrm: self.hgrm.clone(),
                hlog: self.hlog.clone(),
                json: self.json.clone(),
            },
            quiet: self.quiet,
            require_rate: self.require_rate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> LoadArgs {
        let mut v = vec!["ringmux", "load"];
        v.extend_from_slice(extra);
        match super::super::Cli::try_parse_from(v).unwrap().command {
            super::super::Command::Load(a) => a,
            _ => unreachable!(),
        }
    }

    fn config(extra: &[&str]) -> anyhow::Result<LoadConfig> {
        args(extra).command().map(|c| c.config)
    }

    #[test]
    fn command_validates() {
        let c = config(&["--rate", "2000", "--conns", "10"]).unwrap();
        assert_eq!(c.mode, Mode::Open { rate: 2000.0 });
        assert_eq!(c.timeout, Duration::from_secs(10));
        for bad in [
            &["--rate", "0"][..],
            &["--rate=-5"],
            // A negative number is a value, not a flag: the message is ringmux's own.
            &["--rate", "-5"],
            &["--rate", "inf"],
            &["--pin", "abc"],
            &["--duration", "0"],
            &["--threads", "3", "--conns", "4", "--pin", "0-1"],
        ] {
            assert!(config(bad).is_err(), "{bad:?} accepted");
        }
        let e = config(&["--rate", "-5"]).unwrap_err();
        assert!(format!("{e:#}").contains("--rate -5: must be"), "{e:#}");
        let e = config(&["--pin", "abc"]).unwrap_err();
        assert!(format!("{e:#}").contains("--cpus 'abc'"), "{e:#}");
        // More threads than connections: one thread per connection.
        let c = config(&["--threads", "8", "--conns", "3"]).unwrap();
        assert_eq!(c.effective_threads(), 3);
        // load works against any server: no HTTP body limit of ringmux's own.
        let c = config(&["--proto", "http", "--size", "2000000"]).unwrap();
        assert_eq!(c.size, 2_000_000);
    }

    #[test]
    fn agents_share_connections_and_rate() {
        let c = config(&[
            "--conns",
            "7",
            "--rate",
            "700",
            "--agents",
            "3",
            "--agent-id",
            "1",
        ])
        .unwrap();
        assert_eq!(c.my_conn_ids().collect::<Vec<_>>(), [1, 4]);
        assert_eq!(c.my_rate(), Some(200.0));
        // The agents' connections are 0..conns, each exactly once.
        let mut all: Vec<u32> = (0..3)
            .flat_map(|i| {
                let c = config(&[
                    "--conns",
                    "7",
                    "--agents",
                    "3",
                    "--agent-id",
                    &i.to_string(),
                ])
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
            assert!(config(bad).is_err(), "{bad:?} accepted");
        }
    }
}
