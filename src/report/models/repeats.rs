//! Verdicts that hold: each claim judged on every repeat alone, so one noisy run cannot
//! flip a verdict unseen. A claim reports "holds in k of n repeats", the spread (min,
//! median, max) of its key figure ([`super::claims::FIGURES`]) over the repeats, and
//! the verdict over them ([`overall`]): the verdict reached in at least two thirds of
//! the repeats, rounded up, else "mixed". With one repeat that is the repeat's own.
//!
//! A repeat is the runs with the same index in every point (the lab runs every point
//! once per repeat, in order). A run that measured nothing is no data in its repeat.

use super::claims::{CLAIMS, FIGURES};
use super::{judge_figures, slopes};
use crate::results::models::{Claim, ModelPoint, ModelsResults, RepeatClaim, Spread, Verdict};
use crate::results::stats::median;

/// How many repeats the figures hold: the most runs of any point.
pub fn repeat_count(m: &ModelsResults) -> usize {
    m.points.iter().map(|p| p.runs.len()).max().unwrap_or(0)
}

/// The figures of repeat `r` (from 0) alone: each point with its run of that repeat as
/// its only run and its median (a point with no such run is left out), and the slopes
/// fitted to those runs.
pub fn repeat_view(m: &ModelsResults, r: usize) -> ModelsResults {
    let points: Vec<ModelPoint> = m
        .points
        .iter()
        .filter_map(|p| {
            let run = p.runs.get(r)?;
            Some(ModelPoint {
                sweep: p.sweep.clone(),
                backend: p.backend.clone(),
                features: p.features.clone(),
                conns: p.conns,
                idle: p.idle,
                runs: vec![run.clone()],
                median: run.clone(),
            })
        })
        .collect();
    ModelsResults {
        quick: m.quick,
        repeat: 1,
        duration_s: m.duration_s,
        size: m.size,
        loadavg_start: Vec::new(),
        loadavg_end: Vec::new(),
        slopes: slopes(&points),
        points,
        sigpending_limit: m.sigpending_limit,
        net_stack_share: m.net_stack_share.clone(),
        claims: Vec::new(),
    }
}

/// The verdict over the repeats' verdicts: the one reached in at least
/// ceil(2n/3) of the n repeats (1 of 1, 2 of 2, 2 of 3, 3 of 4, 4 of 5), else
/// [`Verdict::Mixed`]; with no repeat, [`Verdict::NotMeasured`]. "no data" in enough
/// repeats is itself the verdict.
pub fn overall(v: &[Verdict]) -> Verdict {
    if v.is_empty() {
        return Verdict::NotMeasured;
    }
    let need = (2 * v.len()).div_ceil(3);
    v.iter()
        .find(|x| v.iter().filter(|y| y == x).count() >= need)
        .cloned()
        .unwrap_or(Verdict::Mixed)
}

/// Min, median and max of the figures present (None when none is).
pub fn spread(v: &[Option<f64>]) -> Option<Spread> {
    let mut x: Vec<f64> = v.iter().flatten().copied().collect();
    if x.is_empty() {
        return None;
    }
    let min = x.iter().copied().fold(f64::INFINITY, f64::min);
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some(Spread {
        min,
        median: median(&mut x),
        max,
        of: x.len() as u32,
    })
}

/// Judge every claim: the figures over the medians (and the slopes over every run),
/// each repeat alone, and the verdict over the repeats.
pub fn judge(m: &ModelsResults) -> Vec<Claim> {
    let whole = judge_figures(m);
    let per: Vec<_> = (0..repeat_count(m))
        .map(|r| judge_figures(&repeat_view(m, r)))
        .collect();
    whole
        .into_iter()
        .enumerate()
        .map(|(i, (j, rule))| {
            let repeats: Vec<RepeatClaim> = per
                .iter()
                .enumerate()
                .map(|(r, js)| RepeatClaim {
                    repeat: r as u32 + 1,
                    figures: js[i].0.figures.clone(),
                    verdict: js[i].0.verdict.clone(),
                    figure: js[i].0.figure,
                })
                .collect();
            let verdicts: Vec<Verdict> = repeats.iter().map(|r| r.verdict.clone()).collect();
            let figures: Vec<Option<f64>> = repeats.iter().map(|r| r.figure).collect();
            Claim {
                n: i as u32 + 1,
                claim: CLAIMS[i].into(),
                figures: j.figures,
                verdict: if repeats.is_empty() {
                    j.verdict
                } else {
                    overall(&verdicts)
                },
                rule,
                figure: FIGURES[i].into(),
                spread: spread(&figures),
                holds_in: verdicts.iter().filter(|v| **v == Verdict::Holds).count() as u32,
                repeats,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::models::ModelRun;

    fn pt(sweep: &str, backend: &str, conns: u32, runs: Vec<ModelRun>) -> ModelPoint {
        let mut p = ModelPoint {
            sweep: sweep.into(),
            backend: backend.into(),
            conns,
            runs,
            ..Default::default()
        };
        p.median = p.median_of_data();
        p
    }

    /// A run of the load sweeps with latency p50 (ns) and CPU per message; p50 0: a
    /// run that measured nothing (no message).
    fn run(p50: f64, cpu: f64) -> ModelRun {
        ModelRun {
            msgs: if p50 > 0.0 { 1000 } else { 0 },
            p50_ns: p50,
            cpu_ns_per_msg: cpu,
            syscalls_per_msg: (p50 > 0.0).then_some(2.0),
            ..Default::default()
        }
    }

    /// Sweep C at 1 and 100 connections: threads' p50 per repeat against epoll's and
    /// uring's.
    fn sweep_c(threads: &[f64], epoll: &[f64], uring: &[f64]) -> ModelsResults {
        let runs = |v: &[f64]| v.iter().map(|&p| run(p, 1000.0)).collect::<Vec<_>>();
        let mut m = ModelsResults {
            repeat: threads.len() as u32,
            points: [1, 100]
                .iter()
                .flat_map(|&c| {
                    [
                        pt("C", "threads", c, runs(threads)),
                        pt("C", "epoll", c, runs(epoll)),
                        pt("C", "uring", c, runs(uring)),
                    ]
                })
                .collect(),
            ..Default::default()
        };
        m.slopes = slopes(&m.points);
        m
    }

    #[test]
    fn overall_needs_two_thirds_of_the_repeats() {
        use Verdict::*;
        assert_eq!(overall(&[]), NotMeasured);
        assert_eq!(overall(&[DoesNotHold]), DoesNotHold);
        assert_eq!(overall(&[Holds, Holds]), Holds);
        assert_eq!(overall(&[Holds, DoesNotHold]), Mixed);
        assert_eq!(overall(&[Holds, DoesNotHold, Holds]), Holds);
        assert_eq!(overall(&[Holds, DoesNotHold, NotMeasured]), Mixed);
        assert_eq!(overall(&[Holds, Holds, DoesNotHold, DoesNotHold]), Mixed);
        assert_eq!(overall(&[Holds, Holds, Holds, DoesNotHold]), Holds);
        assert_eq!(
            overall(&[Holds, Holds, Holds, DoesNotHold, DoesNotHold]),
            Mixed
        );
        let w = HoldsOnlyWhen("connections <= 10".into());
        assert_eq!(overall(&[w.clone(), w.clone(), Holds]), w);
        assert_eq!(overall(&[NotMeasured, NotMeasured, Holds]), NotMeasured);
    }

    #[test]
    fn spread_over_the_repeats_that_had_the_figure() {
        assert_eq!(spread(&[None, None]), None);
        assert_eq!(
            spread(&[Some(1.2), None, Some(0.8), Some(1.0)]),
            Some(Spread {
                min: 0.8,
                median: 1.0,
                max: 1.2,
                of: 3
            })
        );
    }

    #[test]
    fn each_repeat_judged_alone_k_of_n_and_spread() {
        // Repeat 2 is the noisy one: threads 30% slower than the best multiplexer.
        let m = sweep_c(
            &[10_000.0, 13_000.0, 10_200.0],
            &[10_000.0, 10_000.0, 10_000.0],
            &[11_000.0, 11_000.0, 11_000.0],
        );
        let c = &judge(&m)[3];
        assert_eq!(c.n, 4);
        assert_eq!(
            c.repeats.iter().map(|r| &r.verdict).collect::<Vec<_>>(),
            [&Verdict::Holds, &Verdict::DoesNotHold, &Verdict::Holds]
        );
        assert_eq!((c.holds_in, c.repeats.len()), (2, 3));
        assert_eq!(c.verdict, Verdict::Holds, "2 of 3 is two thirds");
        let s = c.spread.unwrap();
        assert_eq!((s.min, s.median, s.max, s.of), (1.0, 1.02, 1.3, 3));
        assert_eq!(c.figure, FIGURES[3]);

        // Two noisy repeats of three: the verdict is no longer "holds", and says so.
        let m = sweep_c(
            &[10_000.0, 13_000.0, 12_000.0],
            &[10_000.0, 10_000.0, 10_000.0],
            &[11_000.0, 11_000.0, 11_000.0],
        );
        let c = &judge(&m)[3];
        assert_eq!((c.holds_in, c.verdict.clone()), (1, Verdict::DoesNotHold));
        let m = sweep_c(&[10_000.0, 13_000.0], &[10_000.0; 2], &[11_000.0; 2]);
        let c = &judge(&m)[3];
        assert_eq!((c.holds_in, c.verdict.clone()), (1, Verdict::Mixed));
    }

    #[test]
    fn a_run_that_measured_nothing_is_no_data_in_its_repeat_only() {
        // epoll's second run measured nothing (p50 0 ns, 0 messages): repeat 2 has no
        // data for claim 4, the best multiplexer is never "0 ns", and the medians
        // leave that run out.
        let m = sweep_c(
            &[10_000.0, 10_000.0, 10_100.0],
            &[10_000.0, 0.0, 10_000.0],
            &[11_000.0, 11_000.0, 11_000.0],
        );
        let epoll_c1 = m
            .points
            .iter()
            .find(|p| p.backend == "epoll" && p.conns == 1)
            .unwrap();
        assert_eq!(epoll_c1.median.p50_ns, 10_000.0);
        let c = &judge(&m)[3];
        let r2 = &c.repeats[1];
        assert_eq!((&r2.verdict, r2.figure), (&Verdict::NotMeasured, None));
        assert!(
            r2.figures.contains("no data") && !r2.figures.contains(" 0 ns"),
            "{}",
            r2.figures
        );
        assert_eq!((c.holds_in, c.repeats.len()), (2, 3));
        assert_eq!(c.verdict, Verdict::Holds);
        assert_eq!(c.spread.unwrap().of, 2);
        assert!(!c.figures.contains(" 0 ns"), "{}", c.figures);

        // Every run of a point empty: no data over the repeats too.
        let m = sweep_c(&[10_000.0], &[0.0], &[0.0]);
        let c = &judge(&m)[3];
        assert_eq!((c.verdict.clone(), c.spread), (Verdict::NotMeasured, None));
        assert!(c.figures.contains("c1: no data"), "{}", c.figures);
    }

    #[test]
    fn one_repeat_is_that_repeats_verdict() {
        let m = sweep_c(&[10_000.0], &[10_000.0], &[11_000.0]);
        for c in judge(&m) {
            assert_eq!(c.repeats.len(), 1, "claim {}", c.n);
            assert_eq!(c.verdict, c.repeats[0].verdict, "claim {}", c.n);
        }
    }
}
