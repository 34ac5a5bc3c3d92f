//! The metrics `compare` knows (their `--max-regression` limits: [`super::limits`]).

use super::entries::{Figures, run_of};
use crate::report::fmt;

/// A metric `compare` knows: its name on the command line, where it lives, and which
/// direction is better.
pub struct Metric {
    /// Its name in `--max-regression` and in the table.
    pub name: &'static str,
    /// Its value in an entry's figures (None: not measured there).
    pub get: fn(&Figures) -> Option<f64>,
    /// Throughput is better higher; latency, CPU and counts lower.
    pub higher_is_better: bool,
    /// How to print a value of it.
    pub show: fn(f64) -> String,
}

fn thr(v: f64) -> String {
    format!("{}/s", fmt::si(v))
}

/// Every metric `compare` judges or shows, in table order.
pub const METRICS: &[Metric] = &[
    Metric {
        name: "throughput",
        get: |f| run_of(f).map(|m| m.msgs_per_s),
        higher_is_better: true,
        show: thr,
    },
    Metric {
        name: "p50",
        get: |f| run_of(f).map(|m| m.p50_ns),
        higher_is_better: false,
        show: fmt::ns,
    },
    Metric {
        name: "p90",
        get: |f| run_of(f).map(|m| m.p90_ns),
        higher_is_better: false,
        show: fmt::ns,
    },
    Metric {
        name: "p99",
        get: |f| run_of(f).map(|m| m.p99_ns),
        higher_is_better: false,
        show: fmt::ns,
    },
    Metric {
        name: "p99.9",
        get: |f| run_of(f).map(|m| m.p99_9_ns),
        higher_is_better: false,
        show: fmt::ns,
    },
    Metric {
        name: "p99.99",
        get: |f| run_of(f).map(|m| m.p99_99_ns),
        higher_is_better: false,
        show: fmt::ns,
    },
    Metric {
        name: "max",
        get: |f| run_of(f).map(|m| m.max_ns),
        higher_is_better: false,
        show: fmt::ns,
    },
    Metric {
        name: "cpu",
        get: |f| run_of(f).and_then(|m| m.cpu_ns_per_msg),
        higher_is_better: false,
        show: fmt::ns,
    },
    Metric {
        name: "syscalls",
        get: |f| run_of(f).and_then(|m| m.syscalls_per_msg),
        higher_is_better: false,
        show: fmt::num,
    },
    Metric {
        name: "ctx",
        get: |f| run_of(f).and_then(|m| m.ctx_switches_per_msg),
        higher_is_better: false,
        show: fmt::num,
    },
    Metric {
        name: "memory",
        get: |f| match f {
            Figures::Idle { bytes_per_conn } => Some(*bytes_per_conn),
            Figures::Run(_) => None,
        },
        higher_is_better: false,
        show: fmt::bytes,
    },
];
