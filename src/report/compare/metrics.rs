//! The metrics `compare` knows, and the `--max-regression` limits on them.

use super::entries::{Figures, run_of};
use crate::report::fmt;
use crate::report::input::bad_input;

/// A metric `compare` knows: its name on the command line, where it lives, and which
/// direction is better.
pub struct Metric {
    pub name: &'static str,
    pub get: fn(&Figures) -> Option<f64>,
    pub higher_is_better: bool,
    /// How to print a value of it.
    pub show: fn(f64) -> String,
}

fn thr(v: f64) -> String {
    format!("{}/s", fmt::si(v))
}

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

/// Parse "p99=10%,throughput=5%" into (metric index, allowed fraction).
pub fn parse_limits(s: &str) -> anyhow::Result<Vec<(usize, f64)>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, val) = part.split_once('=').ok_or_else(|| {
            bad_input(format!("--max-regression: {part:?} is not METRIC=PERCENT"))
        })?;
        let name = name.trim();
        let idx = METRICS.iter().position(|m| m.name == name).ok_or_else(|| {
            let known: Vec<_> = METRICS.iter().map(|m| m.name).collect();
            bad_input(format!(
                "--max-regression: unknown metric {name:?} (known: {})",
                known.join(", ")
            ))
        })?;
        let v: f64 = val.trim().trim_end_matches('%').parse().map_err(|_| {
            bad_input(format!(
                "--max-regression: {val:?} for {name} is not a percentage like 10%"
            ))
        })?;
        if !v.is_finite() || v < 0.0 {
            return Err(bad_input(format!(
                "--max-regression: {val:?} for {name} must be a non-negative percentage"
            )));
        }
        out.retain(|&(i, _)| i != idx);
        out.push((idx, v / 100.0));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse() {
        let l = parse_limits("p99=10%,throughput=5").unwrap();
        assert_eq!(l, [(3, 0.10), (0, 0.05)]);
        assert!(parse_limits("").unwrap().is_empty());
        for bad in ["p99=abc", "latency=10%", "p99", "p99=-5%", "p99=nan"] {
            let e = parse_limits(bad).unwrap_err();
            assert_eq!(crate::error::exit_code_of(&e), 2, "{bad}");
        }
    }
}
