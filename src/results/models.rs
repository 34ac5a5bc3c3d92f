//! The `models` section of results.json (`bench --preset models`, the IO-model lab):
//! the measured points of each sweep, the fitted slopes and the judged claims. The
//! computations over them (fitting, judging, rendering) live in `report::models`.

use serde::{Deserialize, Serialize};

use super::stats::median;

/// One measured run of a point.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ModelRun {
    pub msgs: u64,
    pub msgs_per_s: f64,
    pub p50_ns: f64,
    pub p99_ns: f64,
    pub errors: u64,
    pub cpu_ns_per_msg: f64,
    pub syscalls_per_msg: Option<f64>,
    pub ctx_per_msg: f64,
    /// The server's resident memory (VmRSS) before the warm-up load connected (idle
    /// connections already held), and its peak while the measured load ran (sampled
    /// every 50 ms), KiB.
    pub rss_before_kib: u64,
    pub rss_peak_kib: u64,
    /// Counters of the models, over the measured run (or the whole case in sweep D).
    pub refused_fd_setsize: u64,
    pub sigio_signals: u64,
    pub sigio_overflows: u64,
    pub busypoll_eagain: u64,
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
    pub backend: String,
    pub features: Option<String>,
    pub conns: u32,
    pub idle: u32,
    pub runs: Vec<ModelRun>,
    pub median: ModelRun,
}

/// Least-squares slope of CPU per message against idle connections, per backend.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Slope {
    pub backend: String,
    /// ns of server CPU per message per watched fd.
    pub cpu_ns_per_fd: f64,
    /// Syscalls per message per watched fd (should be ~0 for every model).
    pub syscalls_per_fd: Option<f64>,
    pub points: usize,
    /// Largest idle count of the fit.
    pub max_idle: u32,
}

/// A verdict, computed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "verdict", content = "when", rename_all = "snake_case")]
pub enum Verdict {
    Holds,
    DoesNotHold,
    HoldsOnlyWhen(String),
    NotMeasured,
}

impl Verdict {
    pub fn text(&self) -> String {
        match self {
            Verdict::Holds => "holds".into(),
            Verdict::DoesNotHold => "does not hold".into(),
            Verdict::HoldsOnlyWhen(w) => format!("holds only when {w}"),
            Verdict::NotMeasured => "not measured".into(),
        }
    }
}

/// One claim of MODELS.md with its figures and verdict.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claim {
    pub n: u32,
    pub claim: String,
    /// The figures the verdict rests on, as text.
    pub figures: String,
    pub verdict: Verdict,
    /// The rule applied (the thresholds).
    pub rule: String,
}

/// The `models` section of results.json.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ModelsResults {
    pub quick: bool,
    pub repeat: u32,
    pub duration_s: f64,
    pub size: u32,
    /// /proc/loadavg (1, 5, 15 min) at start and end: the machine is shared.
    pub loadavg_start: Vec<f64>,
    pub loadavg_end: Vec<f64>,
    pub points: Vec<ModelPoint>,
    pub slopes: Vec<Slope>,
    /// Sweep D sigio: the RLIMIT_SIGPENDING given to the server (None: its own).
    pub sigpending_limit: Option<u64>,
    /// Network-stack share of the server's CPU (perf, `--profile`), per backend at 1
    /// connection: the bound of what saving syscalls can win.
    pub net_stack_share: Vec<(String, f64)>,
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
