//! What `load` shows on the terminal: progress lines and the summary. (The result
//! files are written by [`crate::results::outcome`].)

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::results::outcome::LoadOutcome;
use crate::results::schema::{LoadErrors, LoadResult, Percentiles};

/// A line per interval on stderr, only when enabled (terminal and not --quiet). Times
/// count the measured window only: the warm-up is announced, not counted as run time.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    duration_s: f64,
}

impl Progress {
    pub fn new(enabled: bool, warmup_s: f64, duration_s: f64) -> Progress {
        let bar = enabled.then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(st) = ProgressStyle::with_template("{spinner} {msg}") {
                b.set_style(st);
            }
            b.enable_steady_tick(std::time::Duration::from_millis(200));
            b.set_message(format!("warming up for {warmup_s:.1} s (not recorded, not counted in the run); then {duration_s:.1} s measured"));
            b
        });
        Progress { bar, duration_s }
    }

    pub fn line(&self, s: String) {
        if let Some(b) = &self.bar {
            b.println(s);
            b.set_message(format!("measuring: 0.0 s of {:.1} s", self.duration_s));
        }
    }

    /// "3.0 s of 10.0 s, 7.0 s left" for `done_s` seconds of the measured window.
    pub fn clock(done_s: f64, duration_s: f64) -> String {
        let done = done_s.min(duration_s);
        format!(
            "{done:.1} s of {duration_s:.1} s, {:.1} s left",
            (duration_s - done).max(0.0)
        )
    }

    pub fn interval(
        &self,
        k: u64,
        len_s: f64,
        l: Option<&Histogram<u64>>,
        u: Option<&Histogram<u64>>,
        e: &LoadErrors,
    ) {
        let Some(b) = &self.bar else { return };
        let n = l.map_or(0, |h| h.len());
        let q = |h: Option<&Histogram<u64>>, p: f64| {
            h.filter(|h| !h.is_empty())
                .map_or("-".to_string(), |h| fmt_ns(h.value_at_quantile(p)))
        };
        let done = (k + 1) as f64 * len_s;
        let mut s = format!(
            "[{}] {:>10.0} msgs/s  p50 {:>9}  p99 {:>9}",
            Self::clock(done, self.duration_s),
            n as f64 / len_s,
            q(l, 0.5),
            q(l, 0.99)
        );
        if u.is_some() {
            let _ = write!(s, "  (uncorrected p99 {})", q(u, 0.99));
        }
        let _ = write!(s, "  errors {}", e.total());
        b.set_message(format!("measuring: {}", Self::clock(done, self.duration_s)));
        b.println(s);
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Nanoseconds with a unit: "850ns", "12.34µs", "1.50ms", "1.002s".
pub fn fmt_ns(v: u64) -> String {
    let f = v as f64;
    if v < 1_000 {
        format!("{v}ns")
    } else if v < 1_000_000 {
        format!("{:.2}µs", f / 1e3)
    } else if v < 1_000_000_000 {
        format!("{:.2}ms", f / 1e6)
    } else {
        format!("{:.3}s", f / 1e9)
    }
}

/// "mismatch 1, reset 2" (kinds with a count only) or "none".
pub fn errors_line(e: &LoadErrors) -> String {
    let mut parts: Vec<String> = [
        ("mismatch", e.mismatch),
        ("reset", e.reset),
        ("timeout", e.timeout),
        ("connect", e.connect),
        ("other", e.other),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(k, n)| format!("{k} {n}"))
    .collect();
    parts.extend(
        e.status
            .iter()
            .map(|(code, n)| format!("status {code} {n}")),
    );
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(", ")
    }
}

/// The human summary (wrk2 style).
pub fn summary(o: &LoadOutcome) -> String {
    let r = &o.result;
    let p = &r.params;
    let mut s = String::new();
    let rate = p.rate.map_or(String::new(), |x| format!(" at {x} msgs/s"));
    let _ = writeln!(
        s,
        "ringmux load: {} loop{rate}, {} conns, {} B, pipeline {}, {:.2} s measured after {:.2} s warm-up, {} thread(s), {} driver, {}",
        p.mode, p.conns, p.size, p.pipeline, r.elapsed_s, p.warmup_s, p.threads, p.driver, p.addr
    );
    type Pick = fn(&Percentiles) -> u64;
    let rows: [(&str, Pick); 9] = [
        ("p50", |x| x.p50),
        ("p75", |x| x.p75),
        ("p90", |x| x.p90),
        ("p99", |x| x.p99),
        ("p99.9", |x| x.p99_9),
        ("p99.99", |x| x.p99_99),
        ("p99.999", |x| x.p99_999),
        ("max", |x| x.max),
        ("min", |x| x.min),
    ];
    match &r.latency_uncorrected {
        Some(u) => {
            let _ = writeln!(s, "  Latency     {:>12} {:>12}", "corrected", "uncorrected");
            for (name, f) in rows {
                let _ = writeln!(
                    s,
                    "  {name:<10}  {:>12} {:>12}",
                    fmt_ns(f(&r.latency)),
                    fmt_ns(f(u))
                );
            }
            let _ = writeln!(
                s,
                "  {:<10}  {:>12} {:>12}",
                "mean",
                fmt_ns(r.latency.mean as u64),
                fmt_ns(u.mean as u64)
            );
        }
        None => {
            let _ = writeln!(s, "  Latency     {:>12}", "service");
            for (name, f) in rows {
                let _ = writeln!(s, "  {name:<10}  {:>12}", fmt_ns(f(&r.latency)));
            }
            let _ = writeln!(s, "  {:<10}  {:>12}", "mean", fmt_ns(r.latency.mean as u64));
            let _ = writeln!(
                s,
                "  (service: from each message's send to its verified reply. Closed loop sends only after a reply, \
                 so a stalled server delays the next sends instead of showing as many slow ones; --rate gives corrected figures.)"
            );
        }
    }
    let _ = writeln!(
        s,
        "  {} messages in {:.2} s: {:.1} msgs/s, {:.2} MB/s (+{} in warm-up)",
        r.messages, r.elapsed_s, r.msgs_per_s, r.mb_per_s, r.warmup_messages
    );
    if let Some(c) = r.load_cpu_ns_per_msg {
        let _ = writeln!(s, "  load generator CPU: {} per message", fmt_ns(c as u64));
    }
    let _ = writeln!(s, "  errors: {}", errors_line(&r.errors));
    if r.idle_conns > 0 {
        let _ = writeln!(
            s,
            "  idle connections: {} held, {} still open, {} closed by the server",
            r.idle_conns,
            r.idle_conns - r.idle_closed,
            r.idle_closed
        );
    }
    if r.interrupted {
        let _ = writeln!(
            s,
            "  INTERRUPTED after {:.2} s of the {:.2} s asked",
            r.elapsed_s, p.duration_s
        );
    }
    if r.conns_established.is_some_and(|n| n < p.conns) {
        let _ = writeln!(
            s,
            "  CONNECTIONS: {} established of {} requested ({} refused)",
            r.conns_established.unwrap_or(0),
            p.conns,
            r.connect_refused
        );
    }
    s.push_str(&rate_line(r));
    s
}

/// Open loop: one line saying whether the rate was kept, achieved beside asked, and the
/// schedule's worst lag. Empty in closed loop.
pub fn rate_line(r: &LoadResult) -> String {
    let (Some(kept), Some(asked)) = (r.rate_kept, r.params.rate) else {
        return String::new();
    };
    let lag = r.max_lag_s.map_or(String::new(), |l| {
        let limit = r.max_lag_limit_s.map_or(String::new(), |x| {
            format!(" (limit {})", fmt_ns((x * 1e9) as u64))
        });
        format!(", max schedule lag {}{limit}", fmt_ns((l * 1e9) as u64))
    });
    let missing = r.missing.filter(|&m| m > 0).map_or(String::new(), |m| {
        format!("; {m} intended messages got no reply")
    });
    format!(
        "  {}: achieved {:.1} msgs/s of {asked} asked ({:+.1}%){lag}{missing}\n",
        if kept { "rate kept" } else { "RATE NOT KEPT" },
        r.msgs_per_s,
        (r.msgs_per_s / asked - 1.0) * 100.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_clock_counts_the_measured_window_only() {
        assert_eq!(Progress::clock(3.0, 10.0), "3.0 s of 10.0 s, 7.0 s left");
        // The last interval may end a little after the window: never a negative rest.
        assert_eq!(Progress::clock(10.2, 10.0), "10.0 s of 10.0 s, 0.0 s left");
    }
}
