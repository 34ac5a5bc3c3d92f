//! `ringmux bench`: its arguments, and the [`BenchConfig`] they make.

use std::path::PathBuf;

use clap::Args;

use super::{LoadProto, parse_secs};
use crate::bench::{BenchConfig, BenchPreset, LoadClient, RunLengths, VersusMode};
use crate::proto::Proto;

/// `ringmux bench`: the matrix as asked; `bench` checks it into a `BenchConfig`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Backends to compare, comma separated: `uring` (the best level here), any other
    /// `serve --backend` (epoll, poll, select, sigio, threads, blocking, busypoll), or
    /// `uring:LEVEL` with LEVEL one of baseline, fastpoll, multishot, full, optionally
    /// followed by `+sqpoll`, `+no-defer-taskrun`, `+no-register`, `+no-sqarray`,
    /// `+no-bundles`, `+no-multishot-accept`,
    /// `+wait-single`, `+wait-coalesce` or `+wait-adaptive` (e.g. `uring:full+sqpoll`).
    #[arg(long, value_delimiter = ',', default_value = "uring,epoll")]
    pub backends: Vec<String>,
    /// Connection counts, comma separated (each 1 to 100000; --quick keeps those up to 50).
    #[arg(long, value_delimiter = ',', default_value = "1,50,500")]
    pub conns: Vec<u32>,
    /// Message size in bytes, up to 16777216 (with --proto http: the POST body; 0 sends
    /// `GET /`).
    #[arg(long, default_value_t = 128)]
    pub size: u32,
    /// Protocol every server in the matrix serves and the load speaks and verifies
    /// (`serve --proto`, `load --proto`). External servers are taken to speak echo only:
    /// with another protocol they are named in one line and left out.
    #[arg(long, value_enum, default_value_t = LoadProto::Echo)]
    pub proto: LoadProto,
    /// Seconds per measured run, 0.2 to 3600 [default: 1.0]. Each run
    /// has an unrecorded warm-up of 0.3 s before it.
    #[arg(long, value_parser = parse_bench_secs)]
    pub duration: Option<f64>,
    /// Repeats of the whole interleaved matrix, 1 to 100 [default: 3; with --quick 1]
    /// (`compare` needs 3 or more per side for a verdict that sees noise).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: Option<u32>,
    /// Run the open-loop shape at this fixed rate (msgs/s) instead of 50% of the
    /// measured peak, so runs on different days are comparable (cell id open-R/cN/sS).
    /// Default: none.
    #[arg(long, value_name = "R")]
    pub open_rate: Option<f64>,
    /// Another server in the same matrix: NAME=CMD, CMD gets {addr} (repeatable). With
    /// any --external, the reference peers are left out.
    #[arg(long)]
    pub external: Vec<String>,
    /// Leave out the reference peers. By default the matrix includes a tokio echo server
    /// (epoll) and a monoio echo server (io_uring), binaries of the peers crate (peers/)
    /// beside ringmux; `cargo build` builds them, and a bench run from the source tree
    /// that finds them missing builds them once and says so.
    #[arg(long)]
    pub no_peers: bool,
    /// Short matrix for CI: connection counts up to 50, no pipelined shape, 1 s runs,
    /// one repeat (about 10 s with the two backends, 20 s with the peers).
    #[arg(long)]
    pub quick: bool,
    /// Output folder (default: a folder named by the UTC time under bench-out/).
    #[arg(
        short = 'o',
        long,
        visible_alias = "output",
        value_name = "DIR",
        help = "Output folder [default: bench-out/<UTC timestamp>/]"
    )]
    pub out: Option<PathBuf>,
    /// Measure memory instead of throughput: hold N idle connections to each server and
    /// report its resident memory per connection, (VmRSS after - before) / N. Each
    /// connection sends 16 bytes and reads the echo once, then stays open and silent.
    /// Runs this case only, not the throughput matrix (run bench twice for both);
    /// --backends, --external, --repeat, --quick (one repeat) and --out apply, and a
    /// plain `uring` stands for every io_uring level this kernel has.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub idle_conns: Option<u32>,
    /// Event-loop threads for ringmux servers (`serve --threads N --pin`).
    ///
    /// To measure scaling: the server gets CPUs 0..N-1, one loop on each, and the load
    /// the CPUs after them. When that leaves the load no CPU, nothing is pinned and the
    /// bench warns that the figures do not measure scaling.
    ///
    /// 1 to 1024. `--threads` is an alias (as in `serve --threads`).
    #[arg(long, visible_alias = "threads", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024), verbatim_doc_comment)]
    pub server_threads: u16,
    /// Record the server CPUs with `perf` during every measured run (each server's
    /// own samples kept by pid; attached to the process only when the server is not
    /// pinned) and show where its CPU went: network stack, io_uring, readiness
    /// (epoll/poll/select, sock_poll, tcp_poll), syscall entry, scheduler and timers,
    /// other kernel, user space. Shares go to results.json, a stacked bar per server
    /// and cell to report.html, and the shares in µs per message to both reports.
    /// Without perf installed, the bench says so and runs the rest.
    #[arg(long, verbatim_doc_comment)]
    pub profile: bool,
    /// Seconds each server sits idle for the quiet rows (CPU share and syscalls per
    /// second with no connection, then with --quiet-conns silent ones); 0 skips them.
    #[arg(long, default_value_t = 1.5, value_parser = parse_secs)]
    pub quiet_secs: f64,
    /// Silent connections held open for the second quiet row.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub quiet_conns: u32,
    /// A ready-made study instead of the matrix. `models`: the IO-model lab, every
    /// backend through four sweeps (cost vs idle connections, one connection, few vs
    /// many, the limits), and the eight claims of the IO models judged from the
    /// figures (report.md and report.html, section "Claims"). About 5 minutes on two
    /// cores; with --quick under a minute. --repeat, --duration, --size, --profile and
    /// --out apply; the matrix options (--backends, --conns, ...) do not.
    #[arg(long, value_enum, value_name = "NAME")]
    pub preset: Option<BenchPreset>,
    /// Paired benchmarking: every ringmux server of the matrix also runs from the
    /// ringmux binary BASE (e.g. the merge-base's build), named `SERVER@base`, in the
    /// same run, run by run (base, head; head, base in the next repeat) or at the
    /// same time (--versus-mode), and driven by this binary's load generator. Base and head then share the
    /// machine and its noise, so their ratio means something on any runner; judge it
    /// with `compare results.json --pair @base` (scripts/ci-bench.sh --paired does).
    /// External servers and the reference peers are not paired.
    #[arg(long, value_name = "BASE")]
    pub versus: Option<PathBuf>,
    /// How --versus pairs the two builds. `alternate`: run by run, base then head
    /// (head then base in the next repeat), each run with the machine to itself.
    /// `together`: base and head serve at the same time, both pinned to the server
    /// CPUs, each driven by its own load process on the load CPUs, so every moment's
    /// noise falls on both alike. On a shared 2-core VM this cut the spread of a pair's
    /// CPU per message from 16-17% to 0.7-2% (docs/ci-gate.md); each server then has
    /// about half the server CPUs, so read the ratios, not the absolute figures.
    /// scripts/ci-bench.sh --paired uses `together`. Default: alternate.
    #[arg(long, value_enum, value_name = "MODE")]
    pub versus_mode: Option<VersusMode>,
    /// Run the servers of every cell at the same time, all pinned to the server CPUs,
    /// each driven by its own load process on the load CPUs, instead of one after
    /// another. Every moment's noise then falls on all of them alike, so their ratios
    /// (the "versus epoll" view, `compare results.json --pair epoll,uring`) move by a
    /// few percent between repeats where runs one after another move by tens of
    /// percent on a shared VM; each server has only its share of the server CPUs, so
    /// read the ratios, not the absolute figures. For two builds of ringmux, use
    /// --versus with --versus-mode together instead.
    #[arg(long)]
    pub together: bool,
    /// What drives the load of every cell: `ringmux` (its own load generator) or
    /// `tokio`, the tokio reference client of the peers crate (one thread, pinned where
    /// the load is), so a verdict can be checked not to hang on ringmux's load. The
    /// tokio client speaks echo only: --proto, --idle-conns and --preset are refused
    /// with it. Server-side counts are measured the same way for both.
    #[arg(long, value_enum, value_name = "NAME", default_value = "ringmux")]
    pub client: LoadClient,
}

/// Seconds per bench run: 0.2 to 3600.
fn parse_bench_secs(s: &str) -> Result<f64, String> {
    let v = parse_secs(s)?;
    if !(0.2..=3600.0).contains(&v) {
        return Err(format!("'{s}' is out of range (0.2 to 3600 s)"));
    }
    Ok(v)
}

impl From<BenchArgs> for BenchConfig {
    /// The defaults that depend on `--quick` and `--preset` resolved; the bench's plan
    /// checks the rest.
    fn from(a: BenchArgs) -> BenchConfig {
        let d = RunLengths::default_for(a.preset, a.quick);
        BenchConfig {
            backends: a.backends,
            conns: a.conns,
            size: a.size,
            proto: match a.proto {
                LoadProto::Echo => Proto::Echo,
                LoadProto::Upper => Proto::Upper,
                LoadProto::Http => Proto::Http,
            },
            duration: a.duration.unwrap_or(d.duration),
            warmup: d.warmup,
            repeat: a.repeat.unwrap_or(d.repeat),
            open_rate: a.open_rate,
            external: a.external,
            no_peers: a.no_peers,
            quick: a.quick,
            out: a.out,
            idle_conns: a.idle_conns,
            server_threads: a.server_threads,
            profile: a.profile,
            quiet_secs: a.quiet_secs,
            quiet_conns: a.quiet_conns,
            preset: a.preset,
            versus: a.versus,
            versus_mode: a.versus_mode,
            together: a.together,
            client: a.client,
        }
    }
}
