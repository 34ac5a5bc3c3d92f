//! The IO-model lab (`bench --preset models`): the least-squares slope per watched
//! fd, the eight claims of MODELS.md judged by code from the figures, and their
//! rendering. The figures themselves (the `models` section of results.json) are
//! [`crate::results::models`], re-exported here.
//!
//! - this file: the slopes, and [`judge_figures`], which picks each claim's figures
//!   out of the sweeps.
//! - [`claims`]: the thresholds and the eight rules, each a function of its figures.
//! - [`repeats`]: [`judge`]: each claim judged on every repeat alone, "holds in k of
//!   n repeats", the spread of its key figure, and the verdict over the repeats.
//! - [`render`]: the Markdown tables, the HTML section and its SVG chart.
//!
//! Every verdict is a function of the figures and of the thresholds in [`claims`]; none
//! is written by hand. A claim whose figures are missing, or whose run measured
//! nothing, says so ("no data"), never a 0.

pub mod claims;
pub mod render;
pub mod repeats;

pub use crate::results::models::{
    Claim, ModelPoint, ModelRun, ModelsResults, RepeatClaim, Slope, Spread, Verdict, median_run,
};
pub use claims::*;
pub use render::{claims_markdown, idle_chart_svg, models_html, models_markdown, slopes_markdown};
pub use repeats::{judge, overall};

use crate::results::stats::median_high;

/// Least-squares slope of y against x; None with fewer than two distinct x.
pub fn ls_slope(xy: &[(f64, f64)]) -> Option<f64> {
    let n = xy.len() as f64;
    if xy.len() < 2 {
        return None;
    }
    let mx = xy.iter().map(|p| p.0).sum::<f64>() / n;
    let my = xy.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = xy.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = xy.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// The slope per backend over sweep A's points (every run that measured something, not
/// only medians).
pub fn slopes(points: &[ModelPoint]) -> Vec<Slope> {
    let mut names: Vec<&str> = Vec::new();
    for p in points.iter().filter(|p| p.sweep == "A") {
        if !names.contains(&p.backend.as_str()) {
            names.push(&p.backend);
        }
    }
    names
        .into_iter()
        .filter_map(|b| {
            let pts: Vec<&ModelPoint> = points
                .iter()
                .filter(|p| p.sweep == "A" && p.backend == b)
                .collect();
            let runs: Vec<(f64, &ModelRun)> = pts
                .iter()
                .flat_map(|p| {
                    p.runs
                        .iter()
                        .filter(|r| p.has_data(r))
                        .map(|r| (p.idle as f64, r))
                })
                .collect();
            let cpu: Vec<(f64, f64)> = runs.iter().map(|(x, r)| (*x, r.cpu_ns_per_msg)).collect();
            let sys: Vec<(f64, f64)> = runs
                .iter()
                .filter_map(|(x, r)| r.syscalls_per_msg.map(|s| (*x, s)))
                .collect();
            Some(Slope {
                backend: b.to_string(),
                cpu_ns_per_fd: ls_slope(&cpu)?,
                syscalls_per_fd: ls_slope(&sys),
                points: pts.len(),
                max_idle: pts.iter().map(|p| p.idle).max().unwrap_or(0),
            })
        })
        .collect()
}

/// A point's median, None when the point is missing or measured nothing.
fn point<'a>(m: &'a [ModelPoint], sweep: &str, backend: &str, conns: u32) -> Option<&'a ModelRun> {
    m.iter()
        .find(|p| p.sweep == sweep && p.backend == backend && p.conns == conns)
        .and_then(data)
}

/// A point's median when it measured something.
fn data(p: &ModelPoint) -> Option<&ModelRun> {
    p.has_data(&p.median).then_some(&p.median)
}

/// The points of sweeps A-C that backends `a` and `b` both ran and both measured
/// something at (same sweep, active and idle connections), in `a`'s order.
fn common_points<'a>(
    m: &'a [ModelPoint],
    a: &'a str,
    b: &'a str,
) -> impl Iterator<Item = (&'a ModelPoint, &'a ModelPoint)> {
    m.iter()
        .filter(move |x| x.backend == a && ["A", "B", "C"].contains(&x.sweep.as_str()))
        .filter_map(move |x| {
            let y = m.iter().find(|y| {
                y.backend == b && y.sweep == x.sweep && y.conns == x.conns && y.idle == x.idle
            })?;
            (data(x).is_some() && data(y).is_some()).then_some((x, y))
        })
}

/// The median (upper middle) over sweeps A-C of `a`'s figure over `b`'s at the same
/// point, and the number of points.
fn ratio_of(
    m: &[ModelPoint],
    a: &str,
    b: &str,
    f: impl Fn(&ModelRun) -> f64,
) -> Option<(f64, usize)> {
    let mut v: Vec<f64> = common_points(m, a, b)
        .filter(|(_, y)| f(&y.median) > 0.0)
        .map(|(x, y)| f(&x.median) / f(&y.median))
        .collect();
    if v.is_empty() {
        return None;
    }
    Some((median_high(&mut v), v.len()))
}

fn slope_of(s: &[Slope], b: &str) -> Option<f64> {
    s.iter().find(|x| x.backend == b).map(|x| x.cpu_ns_per_fd)
}

/// Judge every claim from the points' medians and the slopes: the eight claims in
/// order, each with its rule. [`judge`] runs this on the medians and on each repeat.
pub fn judge_figures(m: &ModelsResults) -> Vec<(Judged, String)> {
    let p = &m.points;
    let s = &m.slopes;
    let mut out = Vec::new();
    let mut push = |_n: u32, j: Judged, rule: String| out.push((j, rule));
    push(
        1,
        claim1(
            slope_of(s, "select"),
            slope_of(s, "poll"),
            slope_of(s, "epoll"),
        ),
        format!(
            "grows: slope >= {SLOPE_GROWS_NS} ns/fd; epoll flat: < {SLOPE_GROWS_NS} ns/fd or < {:.0}% of min(select, poll)",
            FLAT_SHARE * 100.0
        ),
    );
    let dsel = p
        .iter()
        .find(|x| x.sweep == "D-select")
        .filter(|x| data(x).is_some());
    push(
        2,
        claim2(
            dsel.map_or(0, |x| x.idle),
            dsel.map(|x| x.median.refused_fd_setsize),
            dsel.is_some_and(|x| x.median.msgs > 0 && x.median.errors == 0),
        ),
        "refused >= held - 1021 and a client served afterwards with no error".into(),
    );
    let b: Vec<OneConn> = p
        .iter()
        .filter(|x| x.sweep == "B")
        .map(|x| {
            (
                x.backend.clone(),
                data(x).map(|r| (r.p50_ns, r.syscalls_per_msg)),
            )
        })
        .collect();
    push(
        3,
        claim3(&b),
        format!(
            "no multiplexer's p50 more than {:.0}% below the best of blocking/threads; each multiplexer more syscalls/msg than them",
            TIE * 100.0
        ),
    );
    let mut counts: Vec<u32> = p
        .iter()
        .filter(|x| x.sweep == "C")
        .map(|x| x.conns)
        .collect();
    counts.sort();
    counts.dedup();
    // A count where threads, epoll or uring ran but measured nothing is a hole (None):
    // the best multiplexer is unknown there, never 0 ns.
    let ran = |b: &str, c: u32| {
        p.iter()
            .any(|x| x.sweep == "C" && x.backend == b && x.conns == c)
    };
    let c4: Vec<(u32, Option<(f64, f64)>)> = counts
        .iter()
        .filter(|&&c| ran("threads", c) && (ran("epoll", c) || ran("uring", c)))
        .map(|&c| {
            let fig = |b: &str| ran(b, c).then(|| point(p, "C", b, c).map(|r| r.p50_ns));
            let t = fig("threads").flatten();
            let mux: Option<Vec<f64>> = ["epoll", "uring"].iter().filter_map(|b| fig(b)).collect();
            let e = mux.map(|v| v.into_iter().fold(f64::INFINITY, f64::min));
            (c, t.zip(e))
        })
        .collect();
    push(
        4,
        claim4(&c4),
        format!(
            "threads p50 within {:.0}% of the best of epoll/uring, per count",
            TIE * 100.0
        ),
    );
    let top = counts.last().copied().unwrap_or(0);
    let per = |b: &str| {
        point(p, "C", b, top).map(|r| {
            (
                (r.rss_peak_kib.saturating_sub(r.rss_before_kib)) as f64 / top.max(1) as f64,
                r.ctx_per_msg,
            )
        })
    };
    push(
        5,
        claim5(top, per("threads"), per("epoll")),
        format!(
            "threads >= {MANY_THREADS_FACTOR}x epoll on RSS per connection and on context switches per message"
        ),
    );
    let q = |b: &str| {
        p.iter()
            .find(|x| x.sweep == "D-quiet" && x.backend == b)
            .and_then(|x| x.median.cpu_share)
    };
    push(
        6,
        claim6(q("busypoll"), q("epoll")),
        format!(
            "busypoll >= {:.0}% of a core and epoll < {:.0}%",
            WASTE_SHARE * 100.0,
            IDLE_SHARE * 100.0
        ),
    );
    let burst = p.iter().find(|x| x.sweep == "D-sigio").and_then(data);
    push(
        7,
        claim7(
            ratio_of(p, "sigio", "epoll", |r| r.cpu_ns_per_msg),
            burst.map(|x| x.sigio_overflows),
            burst.map_or(0, |x| x.errors),
        ),
        format!(
            "cheap: median sigio/epoll CPU/msg over sweeps A and B <= {:.2}; fragile: overflows > 0 under the burst",
            1.0 + TIE
        ),
    );
    let c8: Vec<(String, f64, f64, f64, f64)> = common_points(p, "uring", "epoll")
        .filter_map(|(u, e)| {
            let (us, es) = (u.median.syscalls_per_msg?, e.median.syscalls_per_msg?);
            Some((
                format!("{}:c{}+{}", u.sweep, u.conns, u.idle),
                us,
                es,
                u.median.cpu_ns_per_msg,
                e.median.cpu_ns_per_msg,
            ))
        })
        .collect();
    let net = m
        .net_stack_share
        .iter()
        .find(|x| x.0 == "epoll")
        .map(|x| x.1);
    push(
        8,
        claim8(&c8, net),
        format!(
            "holds: uring syscalls/msg <= {:.0}% of epoll's at every common point and the median of uring/epoll CPU/msg <= {:.2}",
            SYSCALL_SAVING * 100.0,
            1.0 - TIE
        ),
    );
    out
}

/// Recompute the medians, slopes and verdicts from the stored runs (`ringmux report
/// DIR`: the rules of this build apply to older figures).
pub fn rejudge(m: &mut ModelsResults) {
    for p in &mut m.points {
        p.median = p.median_of_data();
    }
    m.slopes = slopes(&m.points);
    m.claims = judge(m);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sweep A point of one run, 1 active connection (its median: that run).
    fn sweep_a(backend: &str, idle: u32, run: ModelRun) -> ModelPoint {
        ModelPoint {
            sweep: "A".into(),
            backend: backend.into(),
            idle,
            conns: 1,
            median: run.clone(),
            runs: vec![run],
            ..Default::default()
        }
    }

    #[test]
    fn least_squares() {
        assert_eq!(
            ls_slope(&[(0.0, 1.0), (10.0, 21.0), (20.0, 41.0)]),
            Some(2.0)
        );
        assert_eq!(ls_slope(&[(5.0, 1.0), (5.0, 2.0)]), None);
        assert_eq!(ls_slope(&[(5.0, 1.0)]), None);
    }

    #[test]
    fn slopes_fit_every_run_of_sweep_a() {
        let pt = |b: &str, idle: u32, cpu: f64| {
            sweep_a(
                b,
                idle,
                ModelRun {
                    msgs: 10,
                    cpu_ns_per_msg: cpu,
                    syscalls_per_msg: Some(2.0),
                    ..Default::default()
                },
            )
        };
        let s = slopes(&[
            pt("poll", 0, 1000.0),
            pt("poll", 1000, 51_000.0),
            pt("epoll", 0, 1000.0),
            pt("epoll", 1000, 1000.0),
        ]);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].backend.as_str(), s[0].cpu_ns_per_fd), ("poll", 50.0));
        assert_eq!(
            (
                s[1].backend.as_str(),
                s[1].cpu_ns_per_fd,
                s[1].syscalls_per_fd
            ),
            ("epoll", 0.0, Some(0.0))
        );
    }

    #[test]
    fn chart_and_tables_show_every_backend() {
        let pt = |b: &str, idle: u32, cpu: f64| {
            sweep_a(
                b,
                idle,
                ModelRun {
                    cpu_ns_per_msg: cpu,
                    msgs: 10,
                    ..Default::default()
                },
            )
        };
        let mut m = ModelsResults {
            points: vec![
                pt("poll", 0, 1e4),
                pt("poll", 10_000, 3e6),
                pt("epoll", 0, 1e4),
                pt("epoll", 10_000, 1e4),
            ],
            ..Default::default()
        };
        m.slopes = slopes(&m.points);
        m.claims = judge(&m);
        let svg = idle_chart_svg(&m);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(
            svg.contains(">10000</text>") && svg.contains(">0</text>") && !svg.contains("NaN"),
            "{svg}"
        );
        let md = models_markdown(&m);
        assert!(
            md.contains("## IO models: Claims") && md.contains("| poll | 1 | 10000 |"),
            "{md}"
        );
        assert_eq!(m.claims.len(), 8);
        // Every claim says in how many repeats it held, and its spread (one repeat:
        // the figure, or "no data").
        for c in &m.claims {
            assert!(
                md.contains(&format!(
                    "| **{}** | holds in {} of 1 repeat",
                    c.verdict.text(),
                    c.holds_in
                )),
                "claim {}: {md}",
                c.n
            );
        }
        assert!(
            md.contains("epoll's slope / the smaller of select's and poll's: no data"),
            "{md}"
        );
        let html = models_html(&m);
        assert!(
            html.contains("<table>") && html.contains("of 1 repeat"),
            "{html}"
        );
    }
}
