//! The eight claims of MODELS.md as rules: each `claimN` takes the figures its claim
//! rests on (picked out of the sweeps by [`super::judge`]) and returns them as text with
//! the verdict and the claim's key figure ([`FIGURES`]). The thresholds are the
//! constants below; nothing else decides. A figure that is missing (its run measured
//! nothing) is `None` and reads "no data", never 0.

use std::fmt::Write as _;

use crate::report::fmt;
use crate::results::models::Verdict;
use crate::results::stats::median_high;

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

/// The eight claims of MODELS.md, in order.
pub const CLAIMS: [&str; 8] = [
    "select's cost grows with the highest fd, poll's with the number of fds, epoll's with the ready ones",
    "select cannot watch fd >= 1024 (the server refuses, counted)",
    "multiplexing does not make one connection faster",
    "with few connections, thread-per-connection is as good as or better than multiplexing",
    "many threads cost memory and context switches",
    "busy polling wastes a core",
    "signal-driven IO is cheap per event but fragile",
    "true async IO saves the syscalls of both phases",
];

/// The key figure of each claim: the one number whose spread over the repeats shows
/// how near its threshold the claim sits.
pub const FIGURES: [&str; 8] = [
    "epoll's slope / the smaller of select's and poll's",
    "connections refused",
    "best multiplexer p50 / best of blocking and threads",
    "threads p50 / best of epoll and uring, at the worst count",
    "threads / epoll context switches per message",
    "busypoll CPU share with no traffic",
    "sigio / epoll CPU per message, median over points",
    "uring / epoll CPU per message, median over points",
];

/// What a rule returns: the figures as text, the verdict, and the claim's key figure
/// ([`FIGURES`]; None when it could not be computed).
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    /// The figures the verdict rests on, as text ("no data" for a missing one).
    pub figures: String,
    /// What the rule decided.
    pub verdict: Verdict,
    /// The claim's key figure ([`FIGURES`]), None when it could not be computed.
    pub figure: Option<f64>,
}

fn judged(figures: String, verdict: Verdict, figure: Option<f64>) -> Judged {
    Judged {
        figures,
        verdict,
        figure,
    }
}

/// "no data" for a missing figure.
pub const NO_DATA: &str = "no data";

/// Claim 1 from the slopes (ns per fd).
pub fn claim1(select: Option<f64>, poll: Option<f64>, epoll: Option<f64>) -> Judged {
    let f = |v: Option<f64>| v.map_or(NO_DATA.into(), |v| format!("{v:.1}"));
    let figures = format!(
        "slope ns/fd: select {}, poll {}, epoll {}",
        f(select),
        f(poll),
        f(epoll)
    );
    let (Some(s), Some(p), Some(e)) = (select, poll, epoll) else {
        return judged(figures, Verdict::NotMeasured, None);
    };
    let key = (s.min(p) > 0.0).then(|| e / s.min(p));
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
    judged(figures, v, key)
}

/// Claim 2: select refused `refused` connections of `opened` (the first 1024 fds
/// minus the server's own are accepted), and then served (`served_after`).
pub fn claim2(opened: u32, refused: Option<u64>, served_after: bool) -> Judged {
    let Some(r) = refused else {
        return judged(
            "select past 1024 fds: no data".into(),
            Verdict::NotMeasured,
            None,
        );
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
    judged(figures, v, Some(r as f64))
}

/// One connection's figures in sweep B: (backend, p50 ns, syscalls/msg), or None when
/// its run measured nothing.
pub type OneConn = (String, Option<(f64, Option<f64>)>);

/// Claim 3 from sweep B at 1 connection. A backend with no data leaves the claim
/// unjudged: the best of a group is unknown without it.
pub fn claim3(b: &[OneConn]) -> Judged {
    let figures = b
        .iter()
        .map(|(n, f)| match f {
            Some((p, s)) => format!("{n} p50 {} sys/msg {}", fmt::ns(*p), fmt::num_opt(*s)),
            None => format!("{n} {NO_DATA}"),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let group = |names: &[&str]| -> Option<Vec<(f64, Option<f64>)>> {
        b.iter()
            .filter(|x| names.contains(&x.0.as_str()))
            .map(|x| x.1)
            .collect()
    };
    let (Some(simple), Some(mux)) = (
        group(&["blocking", "threads"]),
        group(&["select", "poll", "epoll", "sigio"]),
    ) else {
        return judged(figures, Verdict::NotMeasured, None);
    };
    if simple.is_empty() || mux.is_empty() {
        return judged(figures, Verdict::NotMeasured, None);
    }
    let best_simple = simple.iter().map(|x| x.0).fold(f64::INFINITY, f64::min);
    let best_mux = mux.iter().map(|x| x.0).fold(f64::INFINITY, f64::min);
    let faster = best_mux < best_simple * (1.0 - TIE);
    let sys_simple = simple
        .iter()
        .filter_map(|x| x.1)
        .fold(f64::INFINITY, f64::min);
    let extra = mux.iter().filter_map(|x| x.1).all(|s| s > sys_simple);
    let v = match (faster, extra) {
        (false, true) => Verdict::Holds,
        (false, false) => Verdict::HoldsOnlyWhen(
            "judged on latency: the multiplexers paid no extra syscall per message".into(),
        ),
        (true, _) => Verdict::DoesNotHold,
    };
    judged(
        figures,
        v,
        (best_simple > 0.0).then(|| best_mux / best_simple),
    )
}

/// Claim 4 from sweep C: per connection count (ascending), threads' p50 and the best of
/// epoll's and uring's, or None when one of them measured nothing at that count (the
/// claim is then unjudged: a sweep with a hole says nothing about where it breaks).
pub fn claim4(counts: &[(u32, Option<(f64, f64)>)]) -> Judged {
    let figures = counts
        .iter()
        .map(|(n, f)| match f {
            Some((t, e)) => format!(
                "c{n}: threads p50 {} vs best multiplexer {}",
                fmt::ns(*t),
                fmt::ns(*e)
            ),
            None => format!("c{n}: {NO_DATA}"),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let Some(c) = counts
        .iter()
        .map(|(n, f)| f.map(|(t, e)| (*n, t, e)))
        .collect::<Option<Vec<(u32, f64, f64)>>>()
        .filter(|c| !c.is_empty())
    else {
        return judged(figures, Verdict::NotMeasured, None);
    };
    let key = c
        .iter()
        .map(|(_, t, e)| t / e)
        .fold(f64::NEG_INFINITY, f64::max);
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
    judged(figures, v, key.is_finite().then_some(key))
}

/// Claim 5 at the largest count: threads vs epoll, RSS KiB per connection and
/// context switches per message.
pub fn claim5(conns: u32, threads: Option<(f64, f64)>, epoll: Option<(f64, f64)>) -> Judged {
    let (Some(t), Some(e)) = (threads, epoll) else {
        return judged(format!("c{conns}: {NO_DATA}"), Verdict::NotMeasured, None);
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
    judged(figures, v, (e.1 > 0.0).then(|| t.1 / e.1))
}

/// Claim 6: CPU shares with idle connections and no traffic.
pub fn claim6(busypoll: Option<f64>, epoll: Option<f64>) -> Judged {
    let (Some(b), Some(e)) = (busypoll, epoll) else {
        return judged(NO_DATA.into(), Verdict::NotMeasured, None);
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
    judged(figures, v, Some(b))
}

/// Claim 7: the median of sigio/epoll CPU per message over the points both ran
/// (sweeps A and B), over how many points, overflows under the burst (and its load
/// errors).
pub fn claim7(ratio: Option<(f64, usize)>, overflows: Option<u64>, errors: u64) -> Judged {
    let (Some((r, n)), Some(o)) = (ratio, overflows) else {
        return judged(NO_DATA.into(), Verdict::NotMeasured, None);
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
    judged(figures, v, Some(r))
}

/// Claim 8: per common point, (label, uring syscalls/msg, epoll syscalls/msg, uring
/// CPU/msg, epoll CPU/msg).
pub fn claim8(pts: &[(String, f64, f64, f64, f64)], net_share: Option<f64>) -> Judged {
    if pts.is_empty() {
        return judged(NO_DATA.into(), Verdict::NotMeasured, None);
    }
    let saved: Vec<bool> = pts.iter().map(|p| p.1 <= p.2 * SYSCALL_SAVING).collect();
    let cheaper = pts.iter().filter(|p| p.3 < p.4).count();
    let mut ratio: Vec<f64> = pts.iter().map(|p| p.3 / p.4.max(1.0)).collect();
    let med = median_high(&mut ratio);
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
    judged(figures, v, Some(med))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim1_every_verdict() {
        assert_eq!(
            claim1(Some(90.0), Some(80.0), Some(0.3)).verdict,
            Verdict::Holds
        );
        assert!(matches!(
            claim1(Some(90.0), Some(0.5), Some(0.3)).verdict,
            Verdict::HoldsOnlyWhen(_)
        ));
        assert!(matches!(
            claim1(Some(0.5), Some(80.0), Some(0.3)).verdict,
            Verdict::HoldsOnlyWhen(_)
        ));
        assert!(matches!(
            claim1(Some(90.0), Some(80.0), Some(60.0)).verdict,
            Verdict::HoldsOnlyWhen(_)
        ));
        assert_eq!(
            claim1(Some(0.5), Some(0.1), Some(0.3)).verdict,
            Verdict::DoesNotHold
        );
        assert_eq!(
            claim1(None, Some(0.1), Some(0.3)).verdict,
            Verdict::NotMeasured
        );
    }

    #[test]
    fn claim2_every_verdict() {
        assert_eq!(claim2(1100, Some(90), true).verdict, Verdict::Holds);
        assert!(matches!(
            claim2(1100, Some(90), false).verdict,
            Verdict::HoldsOnlyWhen(_)
        ));
        assert_eq!(claim2(1100, Some(0), true).verdict, Verdict::DoesNotHold);
        assert_eq!(claim2(1100, None, true).verdict, Verdict::NotMeasured);
    }

    #[test]
    fn claim3_every_verdict() {
        let b = |mux_p50: f64, mux_sys: f64| {
            vec![
                ("blocking".to_string(), Some((20_000.0, Some(2.0)))),
                ("threads".into(), Some((21_000.0, Some(2.0)))),
                ("epoll".into(), Some((mux_p50, Some(mux_sys)))),
            ]
        };
        assert_eq!(claim3(&b(20_500.0, 3.0)).verdict, Verdict::Holds);
        assert!(matches!(
            claim3(&b(20_500.0, 2.0)).verdict,
            Verdict::HoldsOnlyWhen(_)
        ));
        assert_eq!(claim3(&b(10_000.0, 3.0)).verdict, Verdict::DoesNotHold);
        assert_eq!(claim3(&b(10_000.0, 3.0)[2..]).verdict, Verdict::NotMeasured);
        // The key figure: best multiplexer over best of blocking and threads.
        assert_eq!(claim3(&b(10_000.0, 3.0)).figure, Some(0.5));
        // One backend that measured nothing: no verdict, and "no data", not a 0.
        let mut hole = b(20_500.0, 3.0);
        hole[2].1 = None;
        let j = claim3(&hole);
        assert_eq!((j.verdict, j.figure), (Verdict::NotMeasured, None));
        assert!(j.figures.contains("epoll no data"), "{}", j.figures);
    }

    #[test]
    fn claim4_every_verdict() {
        assert_eq!(
            claim4(&[(1, Some((10.0, 10.0))), (1000, Some((10.0, 10.0)))]).verdict,
            Verdict::Holds
        );
        let j = claim4(&[
            (1, Some((10.0, 10.0))),
            (10, Some((10.5, 10.0))),
            (1000, Some((30.0, 10.0))),
        ]);
        assert_eq!(
            (j.verdict, j.figure),
            (
                Verdict::HoldsOnlyWhen("connections <= 10".into()),
                Some(3.0)
            )
        );
        assert_eq!(
            claim4(&[(1, Some((20.0, 10.0))), (1000, Some((10.0, 10.0)))]).verdict,
            Verdict::DoesNotHold
        );
        assert_eq!(claim4(&[]).verdict, Verdict::NotMeasured);
        // The bug once seen: epoll's run at c100 measured nothing and the best
        // multiplexer read "0 ns". A hole now says "no data" and judges nothing.
        let j = claim4(&[(1, Some((10.0, 10.0))), (100, None)]);
        assert_eq!((j.verdict, j.figure), (Verdict::NotMeasured, None));
        assert!(
            j.figures.contains("c100: no data") && !j.figures.contains("multiplexer 0 ns"),
            "{}",
            j.figures
        );
    }

    #[test]
    fn claim5_every_verdict() {
        assert_eq!(
            claim5(1000, Some((40.0, 1.0)), Some((2.0, 0.01))).verdict,
            Verdict::Holds
        );
        assert!(
            matches!(claim5(1000, Some((40.0, 0.01)), Some((2.0, 0.01))).verdict, Verdict::HoldsOnlyWhen(w) if w.contains("memory"))
        );
        assert!(
            matches!(claim5(1000, Some((2.0, 1.0)), Some((2.0, 0.01))).verdict, Verdict::HoldsOnlyWhen(w) if w.contains("context"))
        );
        assert_eq!(
            claim5(1000, Some((2.0, 0.01)), Some((2.0, 0.01))).verdict,
            Verdict::DoesNotHold
        );
        assert_eq!(
            claim5(1000, None, Some((2.0, 0.01))).verdict,
            Verdict::NotMeasured
        );
    }

    #[test]
    fn claim6_every_verdict() {
        assert_eq!(claim6(Some(0.95), Some(0.0)).verdict, Verdict::Holds);
        assert!(matches!(
            claim6(Some(0.95), Some(0.2)).verdict,
            Verdict::HoldsOnlyWhen(_)
        ));
        assert_eq!(claim6(Some(0.1), Some(0.0)).verdict, Verdict::DoesNotHold);
        assert_eq!(claim6(None, Some(0.0)).verdict, Verdict::NotMeasured);
    }

    #[test]
    fn claim7_every_verdict() {
        assert_eq!(claim7(Some((0.9, 7)), Some(5), 0).verdict, Verdict::Holds);
        assert!(
            matches!(claim7(Some((2.0, 7)), Some(5), 0).verdict, Verdict::HoldsOnlyWhen(w) if w.contains("fragility"))
        );
        assert!(
            matches!(claim7(Some((1.05, 7)), Some(0), 0).verdict, Verdict::HoldsOnlyWhen(w) if w.contains("cost"))
        );
        assert_eq!(
            claim7(Some((2.0, 7)), Some(0), 0).verdict,
            Verdict::DoesNotHold
        );
        assert_eq!(claim7(None, Some(0), 0).verdict, Verdict::NotMeasured);
    }

    #[test]
    fn claim8_every_verdict() {
        let p = |us: f64, uc: f64| (String::from("B:c1+0"), us, 3.0, uc, 10_000.0);
        assert_eq!(claim8(&[p(1.0, 9000.0)], None).verdict, Verdict::Holds);
        assert!(
            matches!(claim8(&[p(1.0, 11_000.0)], Some(80.0)).verdict, Verdict::HoldsOnlyWhen(w) if w.contains("syscalls"))
        );
        // Equal CPU within the tie is not "lower".
        assert!(matches!(
            claim8(&[p(1.0, 9500.0)], None).verdict,
            Verdict::HoldsOnlyWhen(_)
        ));
        assert!(
            matches!(claim8(&[p(1.0, 9000.0), p(3.0, 9000.0)], None).verdict, Verdict::HoldsOnlyWhen(w) if w.starts_with("at "))
        );
        assert_eq!(
            claim8(&[p(3.0, 9000.0)], None).verdict,
            Verdict::DoesNotHold
        );
        assert_eq!(claim8(&[], None).verdict, Verdict::NotMeasured);
        assert!(
            claim8(&[p(1.0, 9000.0)], Some(80.0))
                .figures
                .contains("network stack 80% of epoll")
        );
    }
}
