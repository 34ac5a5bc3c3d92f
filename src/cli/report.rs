//! `ringmux report`, `compare` and `merge`: their arguments.

use std::path::PathBuf;

use clap::Args;

/// `ringmux report`: the folder to re-render.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A bench output folder (holds results.json), a folder of `load` outputs (.json,
    /// .hlog, .hgrm; e.g. after `merge DIR -o DIR/merged.json`), or one load result
    /// .json (its .hlog beside it is drawn; the page is written as X.html).
    pub dir: PathBuf,
}

/// `ringmux compare`: the two results files and the limits.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Baseline results (results.json from bench, or a load --json file); with --pair,
    /// the one results file holding both sides.
    pub base: PathBuf,
    /// New results to check against the baseline (not with --pair).
    #[arg(required_unless_present = "pair", conflicts_with = "pair")]
    pub head: Option<PathBuf>,
    /// Judge two servers of ONE results file against each other: BASE,HEAD (server
    /// names, e.g. `uring@base,uring`), repeatable; `@base` pairs every `SERVER@base`
    /// that `bench --versus` made with its `SERVER`. Each base cell is compared with
    /// the head cell of the same shape, with the same limits, verdicts and exit codes
    /// as two files; the change is the median of the per-repeat changes (run k of base
    /// and of head ran back to back) and its interval a bootstrap over those pairs.
    /// Paired runs share the machine and its noise: this is the comparison a CI gate
    /// can trust on any runner.
    #[arg(long, value_name = "BASE,HEAD")]
    pub pair: Vec<String>,
    /// Allowed regressions, METRIC=PERCENT,... Metrics: throughput, p50, p90, p99,
    /// p99.9, p99.99, max (latency), cpu (server CPU per message), syscalls (per
    /// message, ringmux servers), ctx (context switches per message), memory (per idle
    /// connection). A figure regresses only when its whole 95% interval is worse than
    /// its limit. METRIC@SCOPE=PERCENT limits a metric for one backend (uring, epoll,
    /// ...) or the family readiness (epoll, poll, select, sigio), overriding METRIC=:
    /// syscalls=5%,syscalls@uring=50%. Counted figures may take tight limits where
    /// their spread is small; docs/ci-gate.md has the measured spreads and the paired
    /// gate's defaults.
    #[arg(long, default_value = "p99=10%,throughput=5%")]
    pub max_regression: String,
    /// Exit 1 on an inconclusive verdict too (the noise straddles a limit).
    #[arg(long)]
    pub strict: bool,
}

/// `ringmux merge`: the inputs and where the merged result goes.
#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// Interval logs to merge, or one folder holding the .json and .hlog files of
    /// `load --agents N` agents (then OUTPUT is a load result, its .hlog beside it).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output interval log (or, for a folder of agents, the merged load result .json).
    /// For a folder, both files are written and never to one name: `-o X.json` (or any
    /// name not ending .hlog) writes the result there and the log to X.hlog; `-o X.hlog`
    /// writes the log there and the result to X.json. An output that names an input is
    /// refused (exit 2). `--output` is the old spelling.
    #[arg(
        short = 'o',
        long = "out",
        visible_alias = "output",
        value_name = "FILE"
    )]
    pub output: PathBuf,
    /// Merge the agents that are there even when some are missing or failed (they are
    /// named; the result's rate_kept is then false).
    #[arg(long)]
    pub allow_partial: bool,
}
