//! The IO-model lab (`bench --preset models`): its figures in results.json, the
//! least-squares slope per watched fd, the eight claims of MODELS.md judged by code
//! from the figures, and their Markdown and HTML rendering.
//!
//! Every verdict is a function of the figures and of the thresholds below; none is
//! written by hand. A claim whose figures are missing says so ("not measured").

use std::fmt::Write as _;

use super::fmt::{self, esc};
pub use crate::results::models::{
    Claim, ModelPoint, ModelRun, ModelsResults, Slope, Verdict, median_run,
};

/// A slope (ns of server CPU per message per watched fd) at or above this counts as
/// "cost grows with the fds".
pub const SLOPE_GROWS_NS: f64 = 2.0;
/// epoll (and uring) count as flat when their slope is below this share of the
/// smaller of select's and poll's, and below [`SLOPE_GROWS_NS`].
pub const FLAT_SHARE: f64 = 0.25;
/// "As fast", "ties": within this share of the best (latency, CPU).
pub const TIE: f64 = 0.10;
/// Claim 5: threads cost "more" when their memory per connection and context
/// switches per message are at least this multiple of epoll's.
pub const MANY_THREADS_FACTOR: f64 = 2.0;
/// Claim 6: a "wasted core" is at least this CPU share with no traffic; an idle
/// server stays under [`IDLE_SHARE`].
pub const WASTE_SHARE: f64 = 0.5;
pub const IDLE_SHARE: f64 = 0.05;
/// Claim 8: uring "saves syscalls" when its syscalls per message are at most this
/// share of epoll's at the same point.
pub const SYSCALL_SAVING: f64 = 0.75;

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

/// The slope per backend over sweep A's points (every run, not only medians).
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
            let cpu: Vec<(f64, f64)> = pts
                .iter()
                .flat_map(|p| p.runs.iter().map(|r| (p.idle as f64, r.cpu_ns_per_msg)))
                .collect();
            let sys: Vec<(f64, f64)> = pts
                .iter()
                .flat_map(|p| {
                    p.runs
                        .iter()
                        .filter_map(|r| r.syscalls_per_msg.map(|s| (p.idle as f64, s)))
                })
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

fn point<'a>(m: &'a [ModelPoint], sweep: &str, backend: &str, conns: u32) -> Option<&'a ModelRun> {
    m.iter()
        .find(|p| p.sweep == sweep && p.backend == backend && p.conns == conns)
        .map(|p| &p.median)
}

/// The median over sweeps A-C of `a`'s figure over `b`'s at the same point, and the
/// number of points.
fn ratio_of(
    m: &[ModelPoint],
    a: &str,
    b: &str,
    f: impl Fn(&ModelRun) -> f64,
) -> Option<(f64, usize)> {
    let mut v: Vec<f64> = m
        .iter()
        .filter(|x| x.backend == a && ["A", "B", "C"].contains(&x.sweep.as_str()))
        .filter_map(|x| {
            let y = m.iter().find(|y| {
                y.backend == b && y.sweep == x.sweep && y.conns == x.conns && y.idle == x.idle
            })?;
            (f(&y.median) > 0.0).then(|| f(&x.median) / f(&y.median))
        })
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some((v[v.len() / 2], v.len()))
}

fn slope_of(s: &[Slope], b: &str) -> Option<f64> {
    s.iter().find(|x| x.backend == b).map(|x| x.cpu_ns_per_fd)
}

/// Claim 1 from the slopes (ns per fd).
pub fn claim1(select: Option<f64>, poll: Option<f64>, epoll: Option<f64>) -> (String, Verdict) {
    let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
    let figures = format!(
        "slope ns/fd: select {}, poll {}, epoll {}",
        f(select),
        f(poll),
        f(epoll)
    );
    let (Some(s), Some(p), Some(e)) = (select, poll, epoll) else {
        return (figures, Verdict::NotMeasured);
    };
    let grows = |v: f64| v >= SLOPE_GROWS_NS;
    let flat = e < SLOPE_GROWS_NS || e < FLAT_SHARE * s.min(p);
    let v = match (grows(s), grows(p), flat) {
        (true, true, true) => Verdict::Holds,
        (true, false, true) => Verdict::HoldsOnlyWhen(
            "comparing select with epoll: poll's cost did not grow measurably".into(),
        ),
        (false, true, true) => Verdict::HoldsOnlyWhen(
            "comparing poll with epoll: select's cost did not grow measurably (up to 900 fds)"
                .into(),
        ),
        (true, true, false) => {
            Verdict::HoldsOnlyWhen("one ignores epoll: its cost grew with the idle fds too".into())
        }
        _ => Verdict::DoesNotHold,
    };
    (figures, v)
}

/// Claim 2: select refused `refused` connections of `opened` (the first 1024 fds
/// minus the server's own are accepted), and then served (`served_after`).
pub fn claim2(opened: u32, refused: Option<u64>, served_after: bool) -> (String, Verdict) {
    let Some(r) = refused else {
        return ("select past 1024 fds not run".into(), Verdict::NotMeasured);
    };
    let figures = format!(
        "{opened} connections held, {r} refused (refused_fd_setsize), served afterwards: {}",
        if served_after { "yes" } else { "no" }
    );
    // The server's own fds (stdio, listener, wakeups) sit below 1024 too: at least
    // opened - 1024 + 3 must be refused.
    let expect = u64::from(opened).saturating_sub(1021);
    let v = if r >= expect.max(1) && served_after {
        Verdict::Holds
    } else if r >= expect.max(1) {
        Verdict::HoldsOnlyWhen(
            "one only asks for the refusal: the server did not serve the next client".into(),
        )
    } else {
        Verdict::DoesNotHold
    };
    (figures, v)
}

/// Claim 3 from sweep B: (backend, p50 ns, syscalls/msg) at 1 connection.
pub fn claim3(b: &[(String, f64, Option<f64>)]) -> (String, Verdict) {
    let figures = b
        .iter()
        .map(|(n, p, s)| format!("{n} p50 {} sys/msg {}", fmt::ns(*p), fmt::num_opt(*s)))
        .collect::<Vec<_>>()
        .join("; ");
    let simple: Vec<&(String, f64, Option<f64>)> = b
        .iter()
        .filter(|x| x.0 == "blocking" || x.0 == "threads")
        .collect();
    let mux: Vec<&(String, f64, Option<f64>)> = b
        .iter()
        .filter(|x| ["select", "poll", "epoll", "sigio"].contains(&x.0.as_str()))
        .collect();
    if simple.is_empty() || mux.is_empty() {
        return (figures, Verdict::NotMeasured);
    }
    let best_simple = simple.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
    let best_mux = mux.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
    let faster = best_mux < best_simple * (1.0 - TIE);
    let sys_simple = simple
        .iter()
        .filter_map(|x| x.2)
        .fold(f64::INFINITY, f64::min);
    let extra = mux.iter().filter_map(|x| x.2).all(|s| s > sys_simple);
    let v = match (faster, extra) {
        (false, true) => Verdict::Holds,
        (false, false) => Verdict::HoldsOnlyWhen(
            "judged on latency: the multiplexers paid no extra syscall per message".into(),
        ),
        (true, _) => Verdict::DoesNotHold,
    };
    (figures, v)
}

/// Claim 4 from sweep C: per connection count (ascending), threads' p50 and the best of
/// epoll's and uring's.
pub fn claim4(c: &[(u32, f64, f64)]) -> (String, Verdict) {
    let figures = c
        .iter()
        .map(|(n, t, e)| {
            format!(
                "c{n}: threads p50 {} vs best multiplexer {}",
                fmt::ns(*t),
                fmt::ns(*e)
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    if c.is_empty() {
        return (figures, Verdict::NotMeasured);
    }
    let good: Vec<bool> = c.iter().map(|(_, t, e)| *t <= e * (1.0 + TIE)).collect();
    let v = if good.iter().all(|&g| g) {
        Verdict::Holds
    } else if !good[0] {
        Verdict::DoesNotHold
    } else {
        let upto = c
            .iter()
            .zip(&good)
            .take_while(|(_, g)| **g)
            .last()
            .map_or(0, |(x, _)| x.0);
        Verdict::HoldsOnlyWhen(format!("connections <= {upto}"))
    };
    (figures, v)
}

/// Claim 5 at the largest count: threads vs epoll, RSS KiB per connection and
/// context switches per message.
pub fn claim5(
    conns: u32,
    threads: Option<(f64, f64)>,
    epoll: Option<(f64, f64)>,
) -> (String, Verdict) {
    let (Some(t), Some(e)) = (threads, epoll) else {
        return (format!("c{conns}: not measured"), Verdict::NotMeasured);
    };
    let figures = format!(
        "c{conns}: RSS/conn threads {} vs epoll {}; ctx/msg threads {:.2} vs epoll {:.2}",
        fmt::bytes(t.0 * 1024.0),
        fmt::bytes(e.0 * 1024.0),
        t.1,
        e.1
    );
    let mem = t.0 >= (e.0 * MANY_THREADS_FACTOR).max(1.0);
    let ctx = t.1 >= (e.1 * MANY_THREADS_FACTOR).max(0.01);
    let v = match (mem, ctx) {
        (true, true) => Verdict::Holds,
        (true, false) => Verdict::HoldsOnlyWhen(
            "counting memory: context switches per message were not higher".into(),
        ),
        (false, true) => Verdict::HoldsOnlyWhen(
            "counting context switches: resident memory per connection was not higher".into(),
        ),
        (false, false) => Verdict::DoesNotHold,
    };
    (figures, v)
}

/// Claim 6: CPU shares with idle connections and no traffic.
pub fn claim6(busypoll: Option<f64>, epoll: Option<f64>) -> (String, Verdict) {
    let (Some(b), Some(e)) = (busypoll, epoll) else {
        return ("not measured".into(), Verdict::NotMeasured);
    };
    let figures = format!(
        "CPU share with no traffic: busypoll {:.0}%, epoll {:.1}%",
        b * 100.0,
        e * 100.0
    );
    let v = if b >= WASTE_SHARE && e < IDLE_SHARE {
        Verdict::Holds
    } else if b >= WASTE_SHARE {
        Verdict::HoldsOnlyWhen("one ignores that epoll was not idle either".into())
    } else {
        Verdict::DoesNotHold
    };
    (figures, v)
}

/// Claim 7: the median of sigio/epoll CPU per message over the points both ran
/// (sweeps A and B), over how many points, overflows under the burst (and its load
/// errors).
pub fn claim7(
    ratio: Option<(f64, usize)>,
    overflows: Option<u64>,
    errors: u64,
) -> (String, Verdict) {
    let (Some((r, n)), Some(o)) = (ratio, overflows) else {
        return ("not measured".into(), Verdict::NotMeasured);
    };
    let figures = format!(
        "CPU/msg sigio/epoll: median ratio {r:.2} over {n} points; burst: {o} overflows (rescans), {errors} load errors"
    );
    let cheap = r <= 1.0 + TIE;
    let fragile = o > 0;
    let v = match (cheap, fragile) {
        (true, true) => Verdict::Holds,
        (false, true) => Verdict::HoldsOnlyWhen(
            "judged on fragility: it was not cheaper per event than epoll".into(),
        ),
        (true, false) => {
            Verdict::HoldsOnlyWhen("judged on cost: the burst caused no overflow".into())
        }
        (false, false) => Verdict::DoesNotHold,
    };
    (figures, v)
}

/// Claim 8: per common point, (label, uring syscalls/msg, epoll syscalls/msg, uring
/// CPU/msg, epoll CPU/msg).
pub fn claim8(pts: &[(String, f64, f64, f64, f64)], net_share: Option<f64>) -> (String, Verdict) {
    if pts.is_empty() {
        return ("not measured".into(), Verdict::NotMeasured);
    }
    let saved: Vec<bool> = pts.iter().map(|p| p.1 <= p.2 * SYSCALL_SAVING).collect();
    let cheaper = pts.iter().filter(|p| p.3 < p.4).count();
    let mut ratio: Vec<f64> = pts.iter().map(|p| p.3 / p.4.max(1.0)).collect();
    ratio.sort_by(f64::total_cmp);
    let med = ratio[ratio.len() / 2];
    let mut figures = format!(
        "syscalls/msg uring below {:.0}% of epoll's at {} of {} points; CPU/msg lower at {cheaper}; median CPU ratio uring/epoll {med:.2}",
        SYSCALL_SAVING * 100.0,
        saved.iter().filter(|&&s| s).count(),
        pts.len()
    );
    if let Some(n) = net_share {
        let _ = write!(
            figures,
            "; network stack {:.0}% of epoll's CPU at 1 connection (perf)",
            n
        );
    }
    let v = if saved.iter().all(|&s| s) && med <= 1.0 - TIE {
        Verdict::Holds
    } else if saved.iter().all(|&s| s) {
        Verdict::HoldsOnlyWhen(format!(
            "counting syscalls: the CPU per message was not {:.0}% lower (median ratio {med:.2})",
            TIE * 100.0
        ))
    } else if saved.iter().any(|&s| s) {
        let at: Vec<&str> = pts
            .iter()
            .zip(&saved)
            .filter(|(_, s)| **s)
            .map(|(p, _)| p.0.as_str())
            .collect();
        Verdict::HoldsOnlyWhen(format!("at {}", at.join(", ")))
    } else {
        Verdict::DoesNotHold
    };
    (figures, v)
}

const CLAIMS: [&str; 8] = [
    "select's cost grows with the highest fd, poll's with the number of fds, epoll's with the ready ones",
    "select cannot watch fd >= 1024 (the server refuses, counted)",
    "multiplexing does not make one connection faster",
    "with few connections, thread-per-connection is as good as or better than multiplexing",
    "many threads cost memory and context switches",
    "busy polling wastes a core",
    "signal-driven IO is cheap per event but fragile",
    "true async IO saves the syscalls of both phases",
];

/// Judge every claim from the figures.
pub fn judge(m: &ModelsResults) -> Vec<Claim> {
    let p = &m.points;
    let s = &m.slopes;
    let mut out = Vec::new();
    let mut push = |n: u32, (figures, verdict): (String, Verdict), rule: String| {
        out.push(Claim {
            n,
            claim: CLAIMS[n as usize - 1].into(),
            figures,
            verdict,
            rule,
        });
    };
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
    let dsel = p.iter().find(|x| x.sweep == "D-select");
    push(
        2,
        claim2(
            dsel.map_or(0, |x| x.idle),
            dsel.map(|x| x.median.refused_fd_setsize),
            dsel.is_some_and(|x| x.median.msgs > 0 && x.median.errors == 0),
        ),
        "refused >= held - 1021 and a client served afterwards with no error".into(),
    );
    let b: Vec<(String, f64, Option<f64>)> = p
        .iter()
        .filter(|x| x.sweep == "B")
        .map(|x| {
            (
                x.backend.clone(),
                x.median.p50_ns,
                x.median.syscalls_per_msg,
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
    let c4: Vec<(u32, f64, f64)> = counts
        .iter()
        .filter_map(|&c| {
            let t = point(p, "C", "threads", c)?.p50_ns;
            let e = ["epoll", "uring"]
                .iter()
                .filter_map(|b| point(p, "C", b, c))
                .map(|r| r.p50_ns)
                .fold(f64::INFINITY, f64::min);
            e.is_finite().then_some((c, t, e))
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
    let burst = p.iter().find(|x| x.sweep == "D-sigio");
    push(
        7,
        claim7(
            ratio_of(p, "sigio", "epoll", |r| r.cpu_ns_per_msg),
            burst.map(|x| x.median.sigio_overflows),
            burst.map_or(0, |x| x.median.errors),
        ),
        format!(
            "cheap: median sigio/epoll CPU/msg over sweeps A and B <= {:.2}; fragile: overflows > 0 under the burst",
            1.0 + TIE
        ),
    );
    let mut c8 = Vec::new();
    for u in p
        .iter()
        .filter(|x| x.backend == "uring" && ["A", "B", "C"].contains(&x.sweep.as_str()))
    {
        if let Some(e) = p.iter().find(|x| {
            x.backend == "epoll" && x.sweep == u.sweep && x.conns == u.conns && x.idle == u.idle
        }) && let (Some(us), Some(es)) = (u.median.syscalls_per_msg, e.median.syscalls_per_msg)
        {
            c8.push((
                format!("{}:c{}+{}", u.sweep, u.conns, u.idle),
                us,
                es,
                u.median.cpu_ns_per_msg,
                e.median.cpu_ns_per_msg,
            ));
        }
    }
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

/// Recompute the slopes and verdicts from the stored figures (`ringmux report DIR`:
/// the rules of this build apply to older figures).
pub fn rejudge(m: &mut ModelsResults) {
    m.slopes = slopes(&m.points);
    m.claims = judge(m);
}

fn row_fig(r: &ModelRun) -> String {
    format!(
        "| {} | {} | {} | {} | {} | {:.2} | {} |",
        fmt::si(r.msgs_per_s),
        fmt::ns(r.p50_ns),
        fmt::ns(r.p99_ns),
        fmt::ns(r.cpu_ns_per_msg),
        fmt::num_opt(r.syscalls_per_msg),
        r.ctx_per_msg,
        fmt::bytes(r.rss_peak_kib as f64 * 1024.0)
    )
}

/// The Claims table alone (terminal, README).
pub fn claims_markdown(m: &ModelsResults) -> String {
    let mut s = String::from("| # | claim | measured | verdict |\n|--:|---|---|---|\n");
    for c in &m.claims {
        let _ = writeln!(
            s,
            "| {} | {} | {} | **{}** |",
            c.n,
            c.claim,
            c.figures.replace('|', "/"),
            c.verdict.text()
        );
    }
    s
}

/// The slopes table (Markdown).
pub fn slopes_markdown(m: &ModelsResults) -> String {
    let mut s = String::from(
        "| backend | CPU ns per msg per watched fd | syscalls per msg per fd | points | up to idle |\n|---|--:|--:|--:|--:|\n",
    );
    for x in &m.slopes {
        let _ = writeln!(
            s,
            "| {} | {:.2} | {} | {} | {} |",
            x.backend,
            x.cpu_ns_per_fd,
            x.syscalls_per_fd.map_or("-".into(), |v| format!("{v:.5}")),
            x.points,
            x.max_idle
        );
    }
    s
}

/// The models section of report.md.
pub fn models_markdown(m: &ModelsResults) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n## IO models: Claims\n");
    let _ = writeln!(
        s,
        "Each verdict is computed from the figures by the rule shown (src/report/models.rs), never written by hand. Medians of {} repeat(s), {} s measured per run, {}-byte echo messages, server and load pinned apart. Load average at start {:?}, at end {:?}.\n",
        m.repeat, m.duration_s, m.size, m.loadavg_start, m.loadavg_end
    );
    s.push_str(&claims_markdown(m));
    let _ = writeln!(s, "\nRules:\n");
    for c in &m.claims {
        let _ = writeln!(s, "{}. {}", c.n, c.rule);
    }
    let _ = writeln!(
        s,
        "\n### Sweep A: cost vs idle connections (slope per watched fd, least squares over every run)\n"
    );
    s.push_str(&slopes_markdown(m));
    for (sweep, title) in [
        ("A", "Sweep A: 1 active connection + idle"),
        ("B", "Sweep B: one connection"),
        ("C", "Sweep C: few vs many"),
        ("D-select", "Sweep D: select past 1024 fds"),
        ("D-sigio", "Sweep D: sigio under a burst"),
    ] {
        let pts: Vec<&ModelPoint> = m.points.iter().filter(|p| p.sweep == sweep).collect();
        if pts.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\n### {title}\n");
        let _ = writeln!(
            s,
            "| backend | conns | idle | msgs/s | p50 | p99 | CPU/msg | syscalls/msg | ctx/msg | peak RSS | refused | sigio overflows | runs |"
        );
        let _ = writeln!(s, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        for p in pts {
            let r = &p.median;
            let f = row_fig(r);
            let _ = writeln!(
                s,
                "| {} | {} | {} {} {} | {} | {} |",
                p.backend,
                p.conns,
                p.idle,
                f,
                r.refused_fd_setsize,
                r.sigio_overflows,
                p.runs.len()
            );
        }
    }
    let q: Vec<&ModelPoint> = m.points.iter().filter(|p| p.sweep == "D-quiet").collect();
    if !q.is_empty() {
        let _ = writeln!(
            s,
            "\n### Sweep D: no traffic, idle connections open\n\n| backend | idle | CPU share | busypoll EAGAINs |\n|---|--:|--:|--:|"
        );
        for p in q {
            let _ = writeln!(
                s,
                "| {} | {} | {:.1}% | {} |",
                p.backend,
                p.idle,
                p.median.cpu_share.unwrap_or(0.0) * 100.0,
                p.median.busypoll_eagain
            );
        }
    }
    if let Some(l) = m.sigpending_limit {
        let _ = writeln!(
            s,
            "\nThe sigio burst ran with the server's RLIMIT_SIGPENDING set to {l} (prlimit) to provoke queue overflows."
        );
    }
    s
}

/// CPU per message against idle connections, log x axis (idle + 1), one line per
/// backend. Hand-drawn SVG: points and axes only.
pub fn idle_chart_svg(m: &ModelsResults) -> String {
    let (w, h, l, r, t, b) = (640.0, 360.0, 70.0, 120.0, 20.0, 50.0);
    let pts: Vec<&ModelPoint> = m.points.iter().filter(|p| p.sweep == "A").collect();
    let xmax = pts.iter().map(|p| p.idle).max().unwrap_or(1).max(1) as f64 + 1.0;
    let ymax = pts
        .iter()
        .map(|p| p.median.cpu_ns_per_msg)
        .fold(1.0, f64::max)
        * 1.1;
    let x = |i: u32| l + ((i as f64 + 1.0).log10() / xmax.log10()) * (w - l - r);
    let y = |v: f64| h - b - v / ymax * (h - t - b);
    let colors = [
        "#2563eb", "#ea580c", "#16a34a", "#9333ea", "#db2777", "#0891b2", "#ca8a04",
    ];
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = write!(
        s,
        "<line x1=\"{l}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\"/>",
        h - b,
        w - r,
        h - b
    );
    let _ = write!(
        s,
        "<line x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{}\" stroke=\"#333\"/>",
        h - b
    );
    // Ticks at idle = 0, 10, 100, ... drawn where idle + 1 falls on the log axis.
    for d in std::iter::once(0)
        .chain(std::iter::successors(Some(10u32), |d| d.checked_mul(10)))
        .take_while(|&d| f64::from(d) < xmax)
    {
        let _ = write!(
            s,
            "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#ddd\"/><text x=\"{0}\" y=\"{3}\" text-anchor=\"middle\">{4}</text>",
            x(d),
            t,
            h - b,
            h - b + 16.0,
            d
        );
    }
    for k in 0..=4 {
        let v = ymax * k as f64 / 4.0;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            l - 6.0,
            y(v) + 4.0,
            esc(&fmt::ns(v))
        );
    }
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">idle connections (log scale, x = idle + 1)</text>",
        (l + w - r) / 2.0,
        h - 10.0
    );
    let _ = write!(
        s,
        "<text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">server CPU per message</text>",
        h / 2.0,
        h / 2.0
    );
    let mut names: Vec<&str> = Vec::new();
    for p in &pts {
        if !names.contains(&p.backend.as_str()) {
            names.push(&p.backend);
        }
    }
    for (i, n) in names.iter().enumerate() {
        let c = colors[i % colors.len()];
        let mut line: Vec<(f64, f64)> = pts
            .iter()
            .filter(|p| p.backend == *n)
            .map(|p| (x(p.idle), y(p.median.cpu_ns_per_msg)))
            .collect();
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = line.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        for (a, b) in &line {
            let _ = write!(
                s,
                "<circle cx=\"{a:.1}\" cy=\"{b:.1}\" r=\"3\" fill=\"{c}\"/>"
            );
        }
        let _ = write!(
            s,
            "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{c}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            w - r + 10.0,
            t + 18.0 * i as f64,
            w - r + 28.0,
            t + 18.0 * i as f64 + 10.0,
            esc(n)
        );
    }
    s.push_str("</svg>");
    s
}

fn md_table_html(md: &str) -> String {
    let mut h = String::from("<table>");
    for (i, line) in md.lines().filter(|l| l.starts_with('|')).enumerate() {
        if i == 1 {
            continue;
        }
        let tag = if i == 0 { "th" } else { "td" };
        h.push_str("<tr>");
        for c in line.trim_matches('|').split(" | ") {
            let c = esc(c.trim());
            let c = c
                .strip_prefix("**")
                .and_then(|x| x.strip_suffix("**"))
                .map_or(c.clone(), |x| format!("<b>{x}</b>"));
            let _ = write!(h, "<{tag}>{c}</{tag}>");
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
    h
}

/// The models section of report.html: Claims, the chart, the sweep tables.
pub fn models_html(m: &ModelsResults) -> String {
    let mut h = String::from("<section><h2>IO models: Claims</h2>");
    let _ = write!(
        h,
        "<p class=lead>Verdicts computed from the figures by the rules below (src/report/models.rs), never written by hand. Load average at start {:?}, at end {:?}.</p>",
        m.loadavg_start, m.loadavg_end
    );
    h.push_str(&md_table_html(&claims_markdown(m)));
    h.push_str("<ol>");
    for c in &m.claims {
        let _ = write!(h, "<li>{}</li>", esc(&c.rule));
    }
    h.push_str("</ol></section>");
    h.push_str("<section><h2>Sweep A: server CPU per message vs idle connections</h2>");
    h.push_str(&idle_chart_svg(m));
    h.push_str(&md_table_html(&slopes_markdown(m)));
    h.push_str("</section>");
    let md = models_markdown(m);
    if let Some(i) = md.find("### Sweep A: 1 active") {
        h.push_str("<section><h2>Sweeps</h2>");
        for block in md[i..].split("\n### ") {
            let mut lines = block.trim_start_matches("### ").splitn(2, '\n');
            let title = lines.next().unwrap_or("");
            let _ = write!(h, "<h3>{}</h3>", esc(title));
            let rest = lines.next().unwrap_or("");
            h.push_str(&md_table_html(rest));
            for l in rest
                .lines()
                .filter(|l| !l.starts_with('|') && !l.trim().is_empty())
            {
                let _ = write!(h, "<p>{}</p>", esc(l));
            }
        }
        h.push_str("</section>");
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn claim1_every_verdict() {
        assert_eq!(claim1(Some(90.0), Some(80.0), Some(0.3)).1, Verdict::Holds);
        assert!(matches!(
            claim1(Some(90.0), Some(0.5), Some(0.3)).1,
            Verdict::HoldsOnlyWhen(_)
        ));
        assert!(matches!(
            claim1(Some(0.5), Some(80.0), Some(0.3)).1,
            Verdict::HoldsOnlyWhen(_)
        ));
        assert!(matches!(
            claim1(Some(90.0), Some(80.0), Some(60.0)).1,
            Verdict::HoldsOnlyWhen(_)
        ));
        assert_eq!(
            claim1(Some(0.5), Some(0.1), Some(0.3)).1,
            Verdict::DoesNotHold
        );
        assert_eq!(claim1(None, Some(0.1), Some(0.3)).1, Verdict::NotMeasured);
    }

    #[test]
    fn claim2_every_verdict() {
        assert_eq!(claim2(1100, Some(90), true).1, Verdict::Holds);
        assert!(matches!(
            claim2(1100, Some(90), false).1,
            Verdict::HoldsOnlyWhen(_)
        ));
        assert_eq!(claim2(1100, Some(0), true).1, Verdict::DoesNotHold);
        assert_eq!(claim2(1100, None, true).1, Verdict::NotMeasured);
    }

    #[test]
    fn claim3_every_verdict() {
        let b = |mux_p50: f64, mux_sys: f64| {
            vec![
                ("blocking".to_string(), 20_000.0, Some(2.0)),
                ("threads".into(), 21_000.0, Some(2.0)),
                ("epoll".into(), mux_p50, Some(mux_sys)),
            ]
        };
        assert_eq!(claim3(&b(20_500.0, 3.0)).1, Verdict::Holds);
        assert!(matches!(
            claim3(&b(20_500.0, 2.0)).1,
            Verdict::HoldsOnlyWhen(_)
        ));
        assert_eq!(claim3(&b(10_000.0, 3.0)).1, Verdict::DoesNotHold);
        assert_eq!(claim3(&b(10_000.0, 3.0)[2..]).1, Verdict::NotMeasured);
    }

    #[test]
    fn claim4_every_verdict() {
        assert_eq!(
            claim4(&[(1, 10.0, 10.0), (1000, 10.0, 10.0)]).1,
            Verdict::Holds
        );
        assert_eq!(
            claim4(&[(1, 10.0, 10.0), (10, 10.5, 10.0), (1000, 30.0, 10.0)]).1,
            Verdict::HoldsOnlyWhen("connections <= 10".into())
        );
        assert_eq!(
            claim4(&[(1, 20.0, 10.0), (1000, 10.0, 10.0)]).1,
            Verdict::DoesNotHold
        );
        assert_eq!(claim4(&[]).1, Verdict::NotMeasured);
    }

    #[test]
    fn claim5_every_verdict() {
        assert_eq!(
            claim5(1000, Some((40.0, 1.0)), Some((2.0, 0.01))).1,
            Verdict::Holds
        );
        assert!(
            matches!(claim5(1000, Some((40.0, 0.01)), Some((2.0, 0.01))).1, Verdict::HoldsOnlyWhen(w) if w.contains("memory"))
        );
        assert!(
            matches!(claim5(1000, Some((2.0, 1.0)), Some((2.0, 0.01))).1, Verdict::HoldsOnlyWhen(w) if w.contains("context"))
        );
        assert_eq!(
            claim5(1000, Some((2.0, 0.01)), Some((2.0, 0.01))).1,
            Verdict::DoesNotHold
        );
        assert_eq!(
            claim5(1000, None, Some((2.0, 0.01))).1,
            Verdict::NotMeasured
        );
    }

    #[test]
    fn claim6_every_verdict() {
        assert_eq!(claim6(Some(0.95), Some(0.0)).1, Verdict::Holds);
        assert!(matches!(
            claim6(Some(0.95), Some(0.2)).1,
            Verdict::HoldsOnlyWhen(_)
        ));
        assert_eq!(claim6(Some(0.1), Some(0.0)).1, Verdict::DoesNotHold);
        assert_eq!(claim6(None, Some(0.0)).1, Verdict::NotMeasured);
    }

    #[test]
    fn claim7_every_verdict() {
        assert_eq!(claim7(Some((0.9, 7)), Some(5), 0).1, Verdict::Holds);
        assert!(
            matches!(claim7(Some((2.0, 7)), Some(5), 0).1, Verdict::HoldsOnlyWhen(w) if w.contains("fragility"))
        );
        assert!(
            matches!(claim7(Some((1.05, 7)), Some(0), 0).1, Verdict::HoldsOnlyWhen(w) if w.contains("cost"))
        );
        assert_eq!(claim7(Some((2.0, 7)), Some(0), 0).1, Verdict::DoesNotHold);
        assert_eq!(claim7(None, Some(0), 0).1, Verdict::NotMeasured);
    }

    #[test]
    fn claim8_every_verdict() {
        let p = |us: f64, uc: f64| (String::from("B:c1+0"), us, 3.0, uc, 10_000.0);
        assert_eq!(claim8(&[p(1.0, 9000.0)], None).1, Verdict::Holds);
        assert!(
            matches!(claim8(&[p(1.0, 11_000.0)], Some(80.0)).1, Verdict::HoldsOnlyWhen(w) if w.contains("syscalls"))
        );
        // Equal CPU within the tie is not "lower".
        assert!(matches!(
            claim8(&[p(1.0, 9500.0)], None).1,
            Verdict::HoldsOnlyWhen(_)
        ));
        assert!(
            matches!(claim8(&[p(1.0, 9000.0), p(3.0, 9000.0)], None).1, Verdict::HoldsOnlyWhen(w) if w.starts_with("at "))
        );
        assert_eq!(claim8(&[p(3.0, 9000.0)], None).1, Verdict::DoesNotHold);
        assert_eq!(claim8(&[], None).1, Verdict::NotMeasured);
        assert!(
            claim8(&[p(1.0, 9000.0)], Some(80.0))
                .0
                .contains("network stack 80% of epoll")
        );
    }

    #[test]
    fn slopes_fit_every_run_of_sweep_a() {
        let pt = |b: &str, idle: u32, cpu: f64| ModelPoint {
            sweep: "A".into(),
            backend: b.into(),
            idle,
            conns: 1,
            runs: vec![ModelRun {
                cpu_ns_per_msg: cpu,
                syscalls_per_msg: Some(2.0),
                ..Default::default()
            }],
            ..Default::default()
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
        let pt = |b: &str, idle: u32, cpu: f64| ModelPoint {
            sweep: "A".into(),
            backend: b.into(),
            idle,
            conns: 1,
            runs: vec![ModelRun {
                cpu_ns_per_msg: cpu,
                msgs: 10,
                ..Default::default()
            }],
            median: ModelRun {
                cpu_ns_per_msg: cpu,
                msgs: 10,
                ..Default::default()
            },
            ..Default::default()
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
        assert!(models_html(&m).contains("<table>"));
    }

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
