//! `--max-regression`: the limits on the metrics, each for every server or for one
//! backend or family of them.
//!
//! `METRIC=PERCENT` limits the metric for every cell; `METRIC@SCOPE=PERCENT` for the
//! cells of the servers SCOPE names, which is more specific and wins there:
//! `syscalls=5%,syscalls@uring=50%` allows io_uring's syscalls per message 50% and
//! every other server's 5%. A scope is a backend (`uring`, `epoll`, ...: every server
//! of that backend, `uring:full` and `uring@base` too) or the family `readiness`
//! (epoll, poll, select, sigio: the backends that wait for readiness and then make one
//! call per operation). A backend scope beats the family, the family beats no scope;
//! among equals, the last given wins.

use super::metrics::METRICS;
use crate::report::input::bad_input;
use crate::server::Backend;

/// The backends of the `readiness` family.
pub const READINESS: [&str; 4] = ["epoll", "poll", "select", "sigio"];

/// Which servers a limit is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every server.
    All,
    /// The `readiness` family.
    Readiness,
    /// One backend (one of [`Backend::NAMES`]), at any io_uring level.
    Backend(&'static str),
}

impl Scope {
    /// How specific the scope is: the more specific of two matching limits wins.
    fn rank(&self) -> u8 {
        match self {
            Scope::All => 0,
            Scope::Readiness => 1,
            Scope::Backend(_) => 2,
        }
    }

    /// Whether a cell of `server` (as cell ids name it: `uring`, `uring:full`,
    /// `epoll@base`, `tokio`) is in the scope.
    fn covers(&self, server: &str) -> bool {
        let backend = server.split(['@', ':']).next().unwrap_or(server);
        match self {
            Scope::All => true,
            Scope::Readiness => READINESS.contains(&backend),
            Scope::Backend(b) => *b == backend,
        }
    }
}

/// One limit: a metric (index into [`METRICS`]), its scope, the allowed fraction.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    /// Index into [`METRICS`].
    pub metric: usize,
    /// The servers it applies to.
    pub scope: Scope,
    /// The allowed change toward worse, as a fraction (0.05 for 5%).
    pub frac: f64,
}

fn scope_of(s: &str, part: &str) -> anyhow::Result<Scope> {
    if s == "readiness" {
        return Ok(Scope::Readiness);
    }
    Backend::NAMES
        .iter()
        .find(|&&b| b == s)
        .map(|&b| Scope::Backend(b))
        .ok_or_else(|| {
            bad_input(format!(
                "--max-regression: {part:?}: unknown scope {s:?} (a backend: {}, or readiness)",
                Backend::NAMES.join(", ")
            ))
        })
}

/// Parse "p99=10%,throughput=5%,syscalls@uring=50%" (see the module docs).
pub fn parse_limits(s: &str) -> anyhow::Result<Vec<Limit>> {
    let mut out: Vec<Limit> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, val) = part.split_once('=').ok_or_else(|| {
            bad_input(format!(
                "--max-regression: {part:?} is not METRIC=PERCENT or METRIC@SCOPE=PERCENT"
            ))
        })?;
        let (name, scope) = match key.trim().split_once('@') {
            Some((n, sc)) => (n.trim(), scope_of(sc.trim(), part)?),
            None => (key.trim(), Scope::All),
        };
        let metric = METRICS.iter().position(|m| m.name == name).ok_or_else(|| {
            let known: Vec<_> = METRICS.iter().map(|m| m.name).collect();
            bad_input(format!(
                "--max-regression: unknown metric {name:?} (known: {})",
                known.join(", ")
            ))
        })?;
        let v: f64 = val.trim().trim_end_matches('%').parse().map_err(|_| {
            bad_input(format!(
                "--max-regression: {val:?} for {key} is not a percentage like 10%"
            ))
        })?;
        if !v.is_finite() || v < 0.0 {
            return Err(bad_input(format!(
                "--max-regression: {val:?} for {key} must be a non-negative percentage"
            )));
        }
        out.retain(|l| !(l.metric == metric && l.scope == scope));
        out.push(Limit {
            metric,
            scope,
            frac: v / 100.0,
        });
    }
    Ok(out)
}

/// The limit on metric `metric` for a cell of `server`: the most specific limit that
/// covers it (None: the metric is shown, not judged there).
pub fn limit_for(limits: &[Limit], metric: usize, server: &str) -> Option<f64> {
    limits
        .iter()
        .filter(|l| l.metric == metric && l.scope.covers(server))
        .max_by_key(|l| l.scope.rank())
        .map(|l| l.frac)
}

/// A limit for every server (tests and callers without scopes).
pub fn everywhere(metric: usize, frac: f64) -> Limit {
    Limit {
        metric,
        scope: Scope::All,
        frac,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(name: &str) -> usize {
        METRICS.iter().position(|m| m.name == name).unwrap()
    }

    #[test]
    fn limits_parse() {
        let l = parse_limits("p99=10%,throughput=5").unwrap();
        assert_eq!(l, [everywhere(3, 0.10), everywhere(0, 0.05)]);
        assert!(parse_limits("").unwrap().is_empty());
        let l = parse_limits("syscalls=5%, syscalls@uring=50%,cpu@readiness=3%").unwrap();
        assert_eq!(l[1].scope, Scope::Backend("uring"));
        assert_eq!(l[2].scope, Scope::Readiness);
        // The last of one metric and scope wins; other scopes stay.
        let l = parse_limits("syscalls@uring=50%,syscalls=5%,syscalls@uring=40%").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(limit_for(&l, idx("syscalls"), "uring"), Some(0.40));
        for bad in [
            "p99=abc",
            "latency=10%",
            "p99",
            "p99=-5%",
            "p99=nan",
            "syscalls@urin=50%",
            "syscalls@=5%",
            "syscalls@uring:full=5%",
            "nope@uring=5%",
        ] {
            let e = parse_limits(bad).unwrap_err();
            assert_eq!(crate::error::exit_code_of(&e), 2, "{bad}");
            assert_eq!(e.to_string().lines().count(), 1, "{bad}: {e}");
        }
    }

    #[test]
    fn the_most_specific_limit_covering_a_server_applies() {
        let l =
            parse_limits("syscalls=5%,syscalls@uring=50%,syscalls@readiness=3%,cpu=4%").unwrap();
        let sys = idx("syscalls");
        assert_eq!(limit_for(&l, sys, "uring"), Some(0.50));
        assert_eq!(limit_for(&l, sys, "uring:full"), Some(0.50), "any level");
        assert_eq!(limit_for(&l, sys, "uring@base"), Some(0.50));
        assert_eq!(limit_for(&l, sys, "epoll"), Some(0.03), "the family");
        assert_eq!(limit_for(&l, sys, "sigio"), Some(0.03));
        assert_eq!(limit_for(&l, sys, "threads"), Some(0.05), "no scope");
        assert_eq!(
            limit_for(&l, sys, "tokio"),
            Some(0.05),
            "an external server"
        );
        assert_eq!(limit_for(&l, idx("cpu"), "uring"), Some(0.04));
        assert_eq!(limit_for(&l, idx("p99"), "uring"), None, "not judged");
        // A backend scope alone leaves the others unjudged.
        let l = parse_limits("ctx@epoll=10%").unwrap();
        assert_eq!(limit_for(&l, idx("ctx"), "epoll"), Some(0.10));
        assert_eq!(limit_for(&l, idx("ctx"), "uring"), None);
    }
}
