//! The base-vs-head view of a paired bench (`bench --versus BASE`): each `SERVER@base`
//! cell beside its `SERVER` cell of the same shape, as head/base ratios. Besides the
//! ratio of the medians, the spread of the per-repeat ratios: run k of the base and run
//! k of the head ran back to back, so that spread is the paired noise a gate sees.

use std::fmt::Write as _;

use super::fmt::esc;
use super::md::shape_key;
use crate::results::schema::{BASE_SUFFIX, BenchResults, Cell, RunMetrics};

/// The figures of the view: (column head, the figure of one run).
type Fig = (&'static str, fn(&RunMetrics) -> Option<f64>);

const FIGS: [Fig; 6] = [
    ("msgs/s", |m| Some(m.msgs_per_s)),
    ("p50", |m| Some(m.p50_ns)),
    ("p99", |m| Some(m.p99_ns)),
    ("CPU/msg", |m| m.cpu_ns_per_msg),
    ("syscalls/msg", |m| m.syscalls_per_msg),
    ("ctx/msg", |m| m.ctx_switches_per_msg),
];

/// Every (base cell, head cell) pair of the results, in the order of the cells.
pub fn pairs(r: &BenchResults) -> Vec<(&Cell, &Cell)> {
    r.cells
        .iter()
        .filter_map(|b| {
            let head = b.server.strip_suffix(BASE_SUFFIX)?;
            let k = shape_key(b);
            let h = r
                .cells
                .iter()
                .find(|c| c.server == head && shape_key(c) == k)?;
            Some((b, h))
        })
        .collect()
}

fn ratio(h: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (h, b) {
        (Some(h), Some(b)) if b > 0.0 && h.is_finite() && b.is_finite() => Some(h / b),
        _ => None,
    }
}

/// "0.97× [0.95–0.99]": head/base of the medians, and the range of the per-repeat
/// ratios when there is more than one repeat.
fn cell_text(b: &Cell, h: &Cell, get: fn(&RunMetrics) -> Option<f64>) -> String {
    let Some(med) = ratio(get(&h.median), get(&b.median)) else {
        return "–".into();
    };
    let per: Vec<f64> = b
        .runs
        .iter()
        .zip(&h.runs)
        .filter_map(|(x, y)| ratio(get(y), get(x)))
        .collect();
    let lo = per.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = per.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if per.len() > 1 {
        format!("{med:.3}× [{lo:.3}–{hi:.3}]")
    } else {
        format!("{med:.3}×")
    }
}

/// The rows: head cell id, runs per side, then one ratio text per figure.
pub fn pair_rows(r: &BenchResults) -> Vec<Vec<String>> {
    pairs(r)
        .into_iter()
        .map(|(b, h)| {
            let mut row = vec![h.id.clone(), format!("{}/{}", b.runs.len(), h.runs.len())];
            row.extend(FIGS.iter().map(|(_, get)| cell_text(b, h, *get)));
            row
        })
        .collect()
}

/// The paragraph above the table: how the two sides ran (`args.versus_mode`).
fn lead(r: &BenchResults) -> String {
    let how = if r.args["versus_mode"].as_str() == Some("together") {
        "which ran together, sharing the server CPUs (`--versus-mode together`)"
    } else {
        "which ran back to back"
    };
    format!(
        "Head (this build) over base (`--versus`), ratios of the medians; in brackets the lowest and highest ratio of one repeat's base and head runs, {how}. Throughput above 1 is better, every other figure below 1. `ringmux compare results.json --pair @base` judges these against limits."
    )
}

/// The view as Markdown ("" without pairs).
pub fn pairs_markdown(r: &BenchResults) -> String {
    let rows = pair_rows(r);
    if rows.is_empty() {
        return String::new();
    }
    let mut s = format!("\n### Base vs head\n\n{}\n\n| cell | runs |", lead(r));
    for (name, _) in FIGS {
        let _ = write!(s, " {name} |");
    }
    s.push_str("\n|---|--:|");
    s.push_str(&"--:|".repeat(FIGS.len()));
    s.push('\n');
    for row in rows {
        let _ = writeln!(s, "| {} |", row.join(" | "));
    }
    s
}

/// The view as an HTML section ("" without pairs); a ratio beyond 2% the wrong way is
/// marked worse, the right way better.
pub fn pairs_html(r: &BenchResults) -> String {
    let ps = pairs(r);
    if ps.is_empty() {
        return String::new();
    }
    let mut h = format!(
        "<section><h2>Base vs head</h2><p class=lead>{}</p><div class=tablewrap><table><thead><tr><th>cell</th><th class=n>runs</th>",
        esc(&lead(r))
    );
    for (name, _) in FIGS {
        let _ = write!(h, "<th class=n>{}</th>", esc(name));
    }
    h.push_str("</tr></thead><tbody>");
    for (b, c) in ps {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=n>{}/{}</td>",
            esc(&c.id),
            b.runs.len(),
            c.runs.len()
        );
        for (i, (_, get)) in FIGS.iter().enumerate() {
            let class = match ratio(get(&c.median), get(&b.median)) {
                Some(x) if (i == 0 && x < 0.98) || (i > 0 && x > 1.02) => " worse",
                Some(x) if (i == 0 && x > 1.02) || (i > 0 && x < 0.98) => " better",
                _ => "",
            };
            let _ = write!(
                h,
                "<td class=\"n{class}\">{}</td>",
                esc(&cell_text(b, c, *get))
            );
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table></div></section>\n");
    h
}
