//! The verdict on each figure: the change of the medians, its bootstrap interval
//! when both sides have enough runs, and the limit (see [`super`] for the rules).

use super::entries::{Entry, Figures};
use super::limits::{Limit, limit_for};
use super::metrics::METRICS;
use crate::results::stats::median;

/// The fewest per-run values on each side for a verdict with an interval.
pub const MIN_RUNS: usize = 3;
/// Bootstrap resamples.
pub const RESAMPLES: usize = 2000;
const SEED: u64 = 0x5EED_2026_0013;

/// What the verdict on one figure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Worse than the limit (the whole interval, or the single value without noise).
    Regression,
    /// Better than minus the limit.
    Improvement,
    /// Within the limit.
    Ok,
    /// The interval straddles the limit: cannot tell.
    Inconclusive,
    /// No limit on this metric: shown, not judged.
    Unjudged,
}

impl Verdict {
    /// The verdict as the table prints it ("" when unjudged).
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Regression => "REGRESSION",
            Verdict::Improvement => "improvement",
            Verdict::Ok => "ok",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Unjudged => "",
        }
    }
}

/// One compared figure.
#[derive(Debug, Clone)]
pub struct Row {
    /// The cell id.
    pub cell: String,
    /// The metric's name.
    pub metric: &'static str,
    /// The base's median (None: not measured there).
    pub base: Option<f64>,
    /// The head's median (None: not measured there).
    pub head: Option<f64>,
    /// (head - base) / base, of the medians.
    pub change: Option<f64>,
    /// 95% bootstrap interval of the change (None: fewer than MIN_RUNS on a side).
    pub interval: Option<(f64, f64)>,
    /// Per-run values on (base, head).
    pub runs: (usize, usize),
    /// The allowed change toward worse (fraction); None: shown, not judged.
    pub limit: Option<f64>,
    /// What the interval (or the single values) say against the limit.
    pub verdict: Verdict,
    /// A regression that fails the comparison (exit 1).
    pub regressed: bool,
    /// How to print its values.
    pub show: fn(f64) -> String,
}

/// Relative change; None when it cannot be told (missing values, base 0 with head 0 is 0).
fn change(base: f64, head: f64) -> Option<f64> {
    if !base.is_finite() || !head.is_finite() {
        return None;
    }
    if base == 0.0 {
        return Some(if head == 0.0 {
            0.0
        } else {
            f64::INFINITY * head.signum()
        });
    }
    Some((head - base) / base.abs())
}

/// A small deterministic generator (xorshift64*) for the bootstrap.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

/// The 2.5th and 97.5th percentiles of the resampled changes.
fn interval_95(mut changes: Vec<f64>) -> (f64, f64) {
    changes.sort_by(f64::total_cmp);
    let n = changes.len();
    let at = |q: f64| changes[((q * (n - 1) as f64).round() as usize).min(n - 1)];
    (at(0.025), at(0.975))
}

/// 95% percentile-bootstrap interval of the relative change of the medians, head
/// against base: both samples resampled with replacement [`RESAMPLES`] times with a
/// fixed seed. None when a side is empty or a change cannot be told (base 0).
pub fn bootstrap(base: &[f64], head: &[f64]) -> Option<(f64, f64)> {
    if base.is_empty() || head.is_empty() {
        return None;
    }
    let mut rng = Rng(SEED);
    let (mut b, mut h) = (vec![0.0; base.len()], vec![0.0; head.len()]);
    let mut changes = Vec::with_capacity(RESAMPLES);
    for _ in 0..RESAMPLES {
        for x in b.iter_mut() {
            *x = base[rng.below(base.len())];
        }
        for x in h.iter_mut() {
            *x = head[rng.below(head.len())];
        }
        changes.push(change(median(&mut b), median(&mut h))?);
    }
    Some(interval_95(changes))
}

/// The change of a paired comparison: the median over pairs of (head_i - base_i) /
/// base_i, where run i of each side ran back to back (`bench --versus`), so whatever
/// slowed or sped up the machine during pair i cancels out of its ratio.
pub fn paired_change(base: &[f64], head: &[f64]) -> Option<f64> {
    if base.is_empty() || base.len() != head.len() {
        return None;
    }
    let mut v = base
        .iter()
        .zip(head)
        .map(|(&b, &h)| change(b, h))
        .collect::<Option<Vec<f64>>>()?;
    Some(median(&mut v))
}

/// 95% percentile-bootstrap interval of [`paired_change`]: the pairs resampled with
/// replacement (each pair kept whole), [`RESAMPLES`] times, the same fixed seed.
pub fn bootstrap_paired(base: &[f64], head: &[f64]) -> Option<(f64, f64)> {
    let n = base.len();
    paired_change(base, head)?;
    let mut rng = Rng(SEED);
    let (mut b, mut h) = (vec![0.0; n], vec![0.0; n]);
    let mut changes = Vec::with_capacity(RESAMPLES);
    for _ in 0..RESAMPLES {
        for k in 0..n {
            let i = rng.below(n);
            b[k] = base[i];
            h[k] = head[i];
        }
        changes.push(paired_change(&b, &h)?);
    }
    Some(interval_95(changes))
}

/// The verdict on a change interval `[lo, hi]` against `limit`, in the metric's "worse"
/// direction (a point when there is no noise to see).
pub fn judge(lo: f64, hi: f64, limit: Option<f64>, higher_is_better: bool) -> Verdict {
    let Some(l) = limit else {
        return Verdict::Unjudged;
    };
    let (wlo, whi) = if higher_is_better {
        (-hi, -lo)
    } else {
        (lo, hi)
    };
    let eps = 1e-12;
    if wlo > l + eps {
        Verdict::Regression
    } else if whi < -l - eps {
        Verdict::Improvement
    } else if whi <= l + eps {
        Verdict::Ok
    } else {
        Verdict::Inconclusive
    }
}

/// Compare medians only (no per-run values): the single-value comparison.
pub fn compare(
    base: &[(String, Figures)],
    head: &[(String, Figures)],
    limits: &[Limit],
) -> Vec<Row> {
    let wrap = |v: &[(String, Figures)]| -> Vec<(String, Entry)> {
        v.iter()
            .map(|(i, f)| {
                (
                    i.clone(),
                    Entry {
                        median: f.clone(),
                        runs: vec![f.clone()],
                        open_rate: None,
                        io: String::new(),
                    },
                )
            })
            .collect()
    };
    compare_entries(&wrap(base), &wrap(head), limits)
}

/// Compare entry by entry, metric by metric (see the module docs for the verdicts).
pub fn compare_entries(
    base: &[(String, Entry)],
    head: &[(String, Entry)],
    limits: &[Limit],
) -> Vec<Row> {
    compare_with(base, head, limits, false)
}

/// As [`compare_entries`], for the two sides of one paired bench (`bench --versus`):
/// run i of base and run i of head ran back to back, so the change is the median of
/// the per-pair changes and its interval resamples whole pairs ([`bootstrap_paired`]).
/// Same limits, verdicts and exit codes. Sides with unequal run counts fall back to
/// the unpaired comparison.
pub fn compare_pairs(
    base: &[(String, Entry)],
    head: &[(String, Entry)],
    limits: &[Limit],
) -> Vec<Row> {
    compare_with(base, head, limits, true)
}

fn compare_with(
    base: &[(String, Entry)],
    head: &[(String, Entry)],
    limits: &[Limit],
    paired: bool,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for (id, b) in base {
        let Some((_, h)) = head.iter().find(|(hid, _)| hid == id) else {
            continue;
        };
        let open = b.open_rate.is_some() || h.open_rate.is_some();
        for (mi, m) in METRICS.iter().enumerate() {
            if open && m.name == "throughput" {
                continue;
            }
            let (bv, hv) = ((m.get)(&b.median), (m.get)(&h.median));
            if bv.is_none() && hv.is_none() {
                continue;
            }
            let server = id.split('/').next().unwrap_or(id);
            let limit = limit_for(limits, mi, server);
            let per_run = |e: &Entry| -> Vec<f64> {
                e.runs
                    .iter()
                    .filter_map(m.get)
                    .filter(|v| v.is_finite())
                    .collect()
            };
            let (br, hr) = (per_run(b), per_run(h));
            let pairs = paired && br.len() == hr.len() && !br.is_empty();
            let ch = if pairs {
                paired_change(&br, &hr)
            } else {
                bv.zip(hv).and_then(|(x, y)| change(x, y))
            };
            let interval = match (br.len() >= MIN_RUNS && hr.len() >= MIN_RUNS, pairs) {
                (true, true) => bootstrap_paired(&br, &hr),
                (true, false) => bootstrap(&br, &hr),
                _ => None,
            };
            let verdict = match (interval, ch) {
                (Some((lo, hi)), _) => judge(lo, hi, limit, m.higher_is_better),
                (None, Some(c)) => judge(c, c, limit, m.higher_is_better),
                (None, None) => Verdict::Unjudged,
            };
            let regressed = verdict == Verdict::Regression;
            rows.push(Row {
                cell: id.clone(),
                metric: m.name,
                base: bv,
                head: hv,
                change: ch,
                interval,
                runs: (br.len(), hr.len()),
                limit,
                verdict,
                regressed,
                show: m.show,
            });
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::super::limits::parse_limits;
    use super::*;
    use crate::results::schema::RunMetrics;

    fn m(thr: f64, p99: f64) -> Figures {
        Figures::Run(RunMetrics {
            msgs_per_s: thr,
            p99_ns: p99,
            ..Default::default()
        })
    }

    #[test]
    fn regression_directions() {
        let limits = parse_limits("p99=10%,throughput=5%").unwrap();
        let base = vec![("a".to_string(), m(100_000.0, 100_000.0))];
        // throughput -4% ok, p99 +9% ok
        let rows = compare(&base, &[("a".into(), m(96_000.0, 109_000.0))], &limits);
        assert!(rows.iter().all(|r| !r.regressed));
        // throughput -6% regressed; p99 -50% is better
        let rows = compare(&base, &[("a".into(), m(94_000.0, 50_000.0))], &limits);
        let bad: Vec<_> = rows
            .iter()
            .filter(|r| r.regressed)
            .map(|r| r.metric)
            .collect();
        assert_eq!(bad, ["throughput"]);
        // p99 +11% regressed; throughput up is fine
        let rows = compare(&base, &[("a".into(), m(200_000.0, 111_000.0))], &limits);
        let bad: Vec<_> = rows
            .iter()
            .filter(|r| r.regressed)
            .map(|r| r.metric)
            .collect();
        assert_eq!(bad, ["p99"]);
        // unlimited metrics never regress
        assert!(
            compare(&base, &[("a".into(), m(1.0, 1e12))], &[])
                .iter()
                .all(|r| !r.regressed)
        );
        // cpu/syscalls absent on both sides: no row
        assert!(rows.iter().all(|r| r.metric != "cpu"));
    }

    #[test]
    fn idle_memory_is_smaller_is_better() {
        let limits = parse_limits("memory=10%").unwrap();
        let idle = |b: f64| {
            vec![(
                "epoll/idle/c10000".to_string(),
                Figures::Idle { bytes_per_conn: b },
            )]
        };
        let rows = compare(&idle(100.0), &idle(105.0), &limits);
        assert_eq!(
            rows.len(),
            1,
            "only the memory metric applies to an idle entry"
        );
        assert!(!rows[0].regressed);
        let rows = compare(&idle(100.0), &idle(120.0), &limits);
        assert!(rows[0].regressed && rows[0].metric == "memory");
        assert!(!compare(&idle(100.0), &idle(50.0), &limits)[0].regressed);
    }

    fn entry(thr: &[f64], p99: &[f64], open: Option<f64>) -> Entry {
        let runs: Vec<Figures> = thr.iter().zip(p99).map(|(&t, &p)| m(t, p)).collect();
        let mut t = thr.to_vec();
        let mut p = p99.to_vec();
        Entry {
            median: m(median(&mut t), median(&mut p)),
            runs,
            open_rate: open,
            io: "epoll".into(),
        }
    }

    #[test]
    fn bootstrap_is_deterministic_and_covers_the_runs() {
        let (b, h) = ([100.0, 104.0, 98.0, 101.0], [90.0, 93.0, 91.0, 95.0]);
        let a = bootstrap(&b, &h).unwrap();
        assert_eq!(a, bootstrap(&b, &h).unwrap(), "fixed seed: same interval");
        // Every resampled median lies between the extremes: -10% .. -3% or so.
        assert!(
            a.0 >= 90.0 / 104.0 - 1.0 - 1e-12 && a.1 <= 95.0 / 98.0 - 1.0 + 1e-12,
            "{a:?}"
        );
        assert!(a.0 < a.1 && a.1 < 0.0, "{a:?}");
        // Identical runs: a point.
        assert_eq!(bootstrap(&[5.0; 3], &[6.0; 3]).unwrap(), (0.2, 0.2));
        assert!(bootstrap(&[], &[1.0]).is_none());
    }

    #[test]
    fn pairing_cancels_noise_shared_by_a_pair() {
        // The machine's speed swings 2x between pairs; head is 10% slower in each.
        let base = [100.0, 200.0, 150.0, 120.0, 180.0];
        let head: Vec<f64> = base.iter().map(|b| b * 1.1).collect();
        let (lo, hi) = bootstrap_paired(&base, &head).unwrap();
        assert!(
            (lo - 0.1).abs() < 1e-9 && (hi - 0.1).abs() < 1e-9,
            "{lo} {hi}"
        );
        assert!((paired_change(&base, &head).unwrap() - 0.1).abs() < 1e-9);
        // Unpaired, the same runs cannot tell the 10% from the swings.
        let (lo, hi) = bootstrap(&base, &head).unwrap();
        assert!(lo < 0.0 && hi > 0.2, "{lo} {hi}");
        assert!(bootstrap_paired(&base, &head[..4]).is_none());
        let limits = crate::report::compare::parse_limits("p99=5%").unwrap();
        let e = |v: &[f64]| Entry {
            median: m(1.0, median(&mut v.to_vec())),
            runs: v.iter().map(|&p| m(1.0, p)).collect(),
            open_rate: None,
            io: String::new(),
        };
        let (b, h) = (
            vec![("a".to_string(), e(&base))],
            vec![("a".to_string(), e(&head))],
        );
        let p99 = |rows: Vec<Row>| rows.into_iter().find(|r| r.metric == "p99").unwrap();
        assert_eq!(
            p99(compare_pairs(&b, &h, &limits)).verdict,
            Verdict::Regression
        );
        assert_eq!(
            p99(compare_entries(&b, &h, &limits)).verdict,
            Verdict::Inconclusive
        );
    }

    #[test]
    fn verdicts_from_intervals() {
        // throughput (higher is better), limit 5%
        assert_eq!(judge(-0.20, -0.08, Some(0.05), true), Verdict::Regression);
        assert_eq!(judge(-0.20, 0.02, Some(0.05), true), Verdict::Inconclusive);
        assert_eq!(judge(-0.03, 0.04, Some(0.05), true), Verdict::Ok);
        assert_eq!(judge(0.06, 0.20, Some(0.05), true), Verdict::Improvement);
        // p99 (lower is better), limit 10%
        assert_eq!(judge(0.11, 0.30, Some(0.10), false), Verdict::Regression);
        assert_eq!(judge(0.05, 0.30, Some(0.10), false), Verdict::Inconclusive);
        assert_eq!(judge(-0.3, -0.2, Some(0.10), false), Verdict::Improvement);
        assert_eq!(judge(0.5, 0.6, None, false), Verdict::Unjudged);
    }

    #[test]
    fn noise_makes_a_drop_inconclusive_and_a_clear_one_a_regression() {
        let limits = parse_limits("throughput=5%").unwrap();
        let base = vec![(
            "a".to_string(),
            entry(&[100.0, 80.0, 120.0], &[1e5; 3], None),
        )];
        // The median drops 10%, but the runs overlap: inconclusive, not a regression.
        let noisy = vec![(
            "a".to_string(),
            entry(&[90.0, 118.0, 75.0], &[1e5; 3], None),
        )];
        let r = compare_entries(&base, &noisy, &limits);
        let t = r.iter().find(|r| r.metric == "throughput").unwrap();
        assert_eq!(t.verdict, Verdict::Inconclusive, "{t:?}");
        assert!(!t.regressed && t.interval.is_some() && t.runs == (3, 3));
        // Every head run is far below every base run: a regression.
        let slow = vec![("a".to_string(), entry(&[50.0, 55.0, 52.0], &[1e5; 3], None))];
        let r = compare_entries(&base, &slow, &limits);
        let t = r.iter().find(|r| r.metric == "throughput").unwrap();
        assert_eq!(t.verdict, Verdict::Regression, "{t:?}");
        assert!(t.interval.unwrap().1 < -0.05);
    }

    #[test]
    fn fewer_runs_fall_back_to_single_values_and_open_loop_throughput_is_not_judged() {
        let limits = parse_limits("throughput=5%,p99=10%").unwrap();
        let base = vec![("a".to_string(), entry(&[100.0, 100.0], &[1e5, 1e5], None))];
        let head = vec![("a".to_string(), entry(&[90.0, 90.0], &[1e5, 1e5], None))];
        let r = compare_entries(&base, &head, &limits);
        let t = r.iter().find(|r| r.metric == "throughput").unwrap();
        assert!(
            t.interval.is_none() && t.regressed,
            "2 runs: single values compared: {t:?}"
        );
        // Open loop: the throughput is the asked rate; only latency is judged.
        let base = vec![(
            "o".to_string(),
            entry(&[1000.0; 3], &[1e5; 3], Some(1000.0)),
        )];
        let head = vec![(
            "o".to_string(),
            entry(&[500.0; 3], &[1.5e5; 3], Some(1000.0)),
        )];
        let r = compare_entries(&base, &head, &limits);
        assert!(r.iter().all(|r| r.metric != "throughput"));
        assert!(r.iter().any(|r| r.metric == "p99" && r.regressed));
    }
}
