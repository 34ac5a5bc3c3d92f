//! The `models` section of results.json (`bench --preset models`, the IO-model lab):
//! the measured points of each sweep, the fitted slopes and the judged claims. The
//! computations over them (fitting, judging, rendering) live in `report::models`.

use serde::{Deserialize, Serialize};

use super::stats::median;

/// One measured run of a point.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ModelRun {
    /// Messages completed in the measured window.
    pub msgs: u64,
    /// Throughput, messages per second.
    pub msgs_per_s: f64,
    /// Median latency, ns.
    pub p50_ns: f64,
    /// 99th percentile latency, ns.
    pub p99_ns: f64,
    /// Errors the load counted (in a point's `median`: the sum over runs).
    pub errors: u64,
    /// Server CPU (user + system) per message over the measured window, ns.
    pub cpu_ns_per_msg: f64,
    /// Server syscalls per message (from its own counts).
    pub syscalls_per_msg: Option<f64>,
    /// Server context switches (voluntary + involuntary) per message.
    pub ctx_per_msg: f64,
    /// The server's resident memory (VmRSS) before the warm-up load connected (idle
    /// connections already held), KiB.
    pub rss_before_kib: u64,
    /// The server's peak VmRSS while the measured load ran (sampled every 50 ms), KiB.
    pub rss_peak_kib: u64,
    // The counters of the models below are taken over the measured run (or the whole
    // case in sweep D), from the server's stats snapshots.
    /// select: connections refused because their fd was past FD_SETSIZE (1024).
    pub refused_fd_setsize: u64,
    /// sigio: real-time signals (and SIGIOs) taken.
    pub sigio_signals: u64,
    /// sigio: signal-queue overflows (plain SIGIO, every connection rescanned).
    pub sigio_overflows: u64,
    /// busypoll: recv/accept calls that found nothing (EAGAIN).
    pub busypoll_eagain: u64,
    /// threads: the most connection threads alive at once (a peak, not a difference).
    pub threads_peak: u64,
    /// Sweep D quiet case: server CPU seconds per wall second with no traffic.
    pub cpu_share: Option<f64>,
}

/// One point of a sweep: a backend at `conns` active (closed loop) plus `idle` silent
/// connections, run `runs.len()` times; `median` is the per-field median.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ModelPoint {
    /// "A" (idle sweep), "B" (one connection), "C" (few vs many), or a D case:
    /// "D-select" (fds past 1024), "D-quiet" (no traffic), "D-sigio" (burst).
    pub sweep: String,
    /// The ringmux backend (`select`, `epoll`, `uring`, ...).
    pub backend: String,
    /// Its io_uring feature level, or None.
    pub features: Option<String>,
    /// Active connections (closed loop, one message in flight each).
    pub conns: u32,
    /// Silent connections held open beside them.
    pub idle: u32,
    /// One entry per run.
    pub runs: Vec<ModelRun>,
    /// The per-field median of `runs` ([`median_run`]).
    pub median: ModelRun,
}

impl ModelPoint {
    /// Whether run `r` of this point measured anything: the load sweeps need
    /// messages (a run whose load measured none has no latency or per-message
    /// figure), the quiet case a CPU share; select's refusals are counted either way.
    pub fn has_data(&self, r: &ModelRun) -> bool {
        match self.sweep.as_str() {
            "D-quiet" => r.cpu_share.is_some(),
            "D-select" => true,
            _ => r.msgs > 0,
        }
    }

    /// The per-field median of the runs that measured something
    /// ([`Self::has_data`]); with none, an empty run (which has no data either).
    pub fn median_of_data(&self) -> ModelRun {
        let runs: Vec<ModelRun> = self
            .runs
            .iter()
            .filter(|r| self.has_data(r))
            .cloned()
            .collect();
        median_run(&runs)
    }
}

/// Least-squares slope of CPU per message against idle connections, per backend.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Slope {
    /// The ringmux backend.
    pub backend: String,
    /// ns of server CPU per message per watched fd.
    pub cpu_ns_per_fd: f64,
    /// Syscalls per message per watched fd (should be ~0 for every model).
    pub syscalls_per_fd: Option<f64>,
    /// Points the line was fitted to.
    pub points: usize,
    /// Largest idle count of the fit.
    pub max_idle: u32,
}

/// A verdict, computed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "verdict", content = "when", rename_all = "snake_case")]
pub enum Verdict {
    /// The claim holds on the figures.
    Holds,
    /// The figures contradict the claim.
    DoesNotHold,
    /// The claim holds only under the condition given.
    HoldsOnlyWhen(String),
    /// A figure the claim needs is missing (sweep skipped, backend unavailable), or
    /// its run measured nothing: shown "no data".
    NotMeasured,
    /// Over the repeats: no verdict was reached in enough of them (see
    /// `report::models::repeats::overall`).
    Mixed,
}

impl Verdict {
    /// The verdict as a phrase for the report ("holds only when ...").
    pub fn text(&self) -> String {
        match self {
            Verdict::Holds => "holds".into(),
            Verdict::DoesNotHold => "does not hold".into(),
            Verdict::HoldsOnlyWhen(w) => format!("holds only when {w}"),
            Verdict::NotMeasured => "no data".into(),
            Verdict::Mixed => "mixed".into(),
        }
    }
}

/// One claim of MODELS.md with its figures and verdict.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claim {
    /// The claim's number in MODELS.md (1 to 8).
    pub n: u32,
    /// The claim, in words.
    pub claim: String,
    /// The figures over the medians of the repeats (and the slopes over every run),
    /// as text.
    pub figures: String,
    /// What the rule decided, over the repeats: the verdict reached in at least two
    /// thirds of them (rounded up), else `mixed`. With one repeat, that repeat's.
    pub verdict: Verdict,
    /// The rule applied (the thresholds).
    pub rule: String,
    /// What [`RepeatClaim::figure`] and [`Self::spread`] measure.
    #[serde(default)]
    pub figure: String,
    /// Min, median and max of that figure over the repeats that had it.
    #[serde(default)]
    pub spread: Option<Spread>,
    /// Repeats whose verdict was `holds`, of `repeats.len()`.
    #[serde(default)]
    pub holds_in: u32,
    /// The claim judged on each repeat alone, in order.
    #[serde(default)]
    pub repeats: Vec<RepeatClaim>,
}

/// A claim judged on the runs of one repeat.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RepeatClaim {
    /// 1, 2, ...
    pub repeat: u32,
    /// The figures of this repeat's runs, as text.
    pub figures: String,
    /// What the rule decided on them.
    pub verdict: Verdict,
    /// The claim's key figure in this repeat (None: no data).
    pub figure: Option<f64>,
}

/// A figure's spread over repeats.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Spread {
    /// The smallest of the repeats' figures.
    pub min: f64,
    /// Their median.
    pub median: f64,
    /// The largest.
    pub max: f64,
    /// The repeats that had the figure.
    pub of: u32,
}

/// The `models` section of results.json.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ModelsResults {
    /// `--quick`: the shorter sweeps.
    pub quick: bool,
    /// Runs per point.
    pub repeat: u32,
    /// Seconds per measured run.
    pub duration_s: f64,
    /// Message size, bytes.
    pub size: u32,
    /// /proc/loadavg (1, 5, 15 min) at start and end: the machine is shared.
    pub loadavg_start: Vec<f64>,
    /// The same at the end.
    pub loadavg_end: Vec<f64>,
    /// Every measured point, all sweeps.
    pub points: Vec<ModelPoint>,
    /// Fitted slopes, one per backend of sweep A.
    pub slopes: Vec<Slope>,
    /// Sweep D sigio: the RLIMIT_SIGPENDING given to the server (None: its own).
    pub sigpending_limit: Option<u64>,
    /// Network-stack share of the server's CPU (perf, `--profile`), per backend at 1
    /// connection: the bound of what saving syscalls can win.
    pub net_stack_share: Vec<(String, f64)>,
    /// The eight claims and their verdicts, in order.
    pub claims: Vec<Claim>,
}

/// The per-field median of runs.
pub fn median_run(runs: &[ModelRun]) -> ModelRun {
    let f = |g: &dyn Fn(&ModelRun) -> f64| median(&mut runs.iter().map(g).collect::<Vec<_>>());
    let o = |g: &dyn Fn(&ModelRun) -> Option<f64>| {
        let mut v: Vec<f64> = runs.iter().filter_map(g).collect();
        (!v.is_empty()).then(|| median(&mut v))
    };
    ModelRun {
        msgs: f(&|r| r.msgs as f64) as u64,
        msgs_per_s: f(&|r| r.msgs_per_s),
        p50_ns: f(&|r| r.p50_ns),
        p99_ns: f(&|r| r.p99_ns),
        errors: runs.iter().map(|r| r.errors).sum(),
        cpu_ns_per_msg: f(&|r| r.cpu_ns_per_msg),
        syscalls_per_msg: o(&|r| r.syscalls_per_msg),
        ctx_per_msg: f(&|r| r.ctx_per_msg),
        rss_before_kib: f(&|r| r.rss_before_kib as f64) as u64,
        rss_peak_kib: f(&|r| r.rss_peak_kib as f64) as u64,
        refused_fd_setsize: f(&|r| r.refused_fd_setsize as f64) as u64,
        sigio_signals: f(&|r| r.sigio_signals as f64) as u64,
        sigio_overflows: f(&|r| r.sigio_overflows as f64) as u64,
        busypoll_eagain: f(&|r| r.busypoll_eagain as f64) as u64,
        threads_peak: f(&|r| r.threads_peak as f64) as u64,
        cpu_share: o(&|r| r.cpu_share),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_results_read_without_models_fields() {
        let m: ModelsResults = serde_json::from_str("{}").unwrap();
        assert!(m.points.is_empty() && m.claims.is_empty());
        let v = serde_json::to_string(&Verdict::HoldsOnlyWhen("x".into())).unwrap();
        assert_eq!(
            serde_json::from_str::<Verdict>(&v).unwrap(),
            Verdict::HoldsOnlyWhen("x".into())
        );
    }
}
