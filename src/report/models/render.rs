//! The lab in report.md and report.html: the Claims table, the slopes, the sweep
//! tables, and CPU per message against idle connections as a hand-drawn SVG chart.

use std::fmt::Write as _;

use crate::report::fmt::{self, esc};
use crate::results::models::{Claim, ModelPoint, ModelRun, ModelsResults, Spread, Verdict};

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

/// A key figure: ratios and shares with two decimals, counts and large values whole.
fn figure(v: f64) -> String {
    if v.fract() == 0.0 || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// "holds in k of n repeats", with the repeats that had no data, and, for a verdict
/// other than holds or mixed, in how many repeats it was reached.
pub fn repeats_text(c: &Claim) -> String {
    let n = c.repeats.len();
    let count = |v: &Verdict| c.repeats.iter().filter(|r| r.verdict == *v).count();
    let mut s = format!(
        "holds in {} of {n} repeat{}",
        c.holds_in,
        if n == 1 { "" } else { "s" }
    );
    if !matches!(c.verdict, Verdict::Holds | Verdict::Mixed) && n > 0 {
        let what = match &c.verdict {
            Verdict::HoldsOnlyWhen(_) => "this verdict".into(),
            v => v.text(),
        };
        let _ = write!(s, "; {what} in {}", count(&c.verdict));
    }
    let none = count(&Verdict::NotMeasured);
    if none > 0 && c.verdict != Verdict::NotMeasured {
        let _ = write!(s, " ({none} with no data)");
    }
    s
}

/// The key figure's spread over the repeats: "name: min / median / max", one value
/// with one repeat, "no data" without any.
pub fn spread_text(c: &Claim) -> String {
    let v = match c.spread {
        None => "no data".to_string(),
        Some(Spread {
            min,
            median,
            max,
            of: 1,
        }) if min == max && median == min => figure(min),
        Some(s) => format!(
            "{} / {} / {} (min / median / max of {})",
            figure(s.min),
            figure(s.median),
            figure(s.max),
            s.of
        ),
    };
    format!("{}: {v}", c.figure)
}

/// The Claims table alone (terminal, README).
pub fn claims_markdown(m: &ModelsResults) -> String {
    let mut s = String::from(
        "| # | claim | measured (medians) | verdict | repeats | spread over the repeats |\n|--:|---|---|---|---|---|\n",
    );
    for c in &m.claims {
        let _ = writeln!(
            s,
            "| {} | {} | {} | **{}** | {} | {} |",
            c.n,
            c.claim,
            c.figures.replace('|', "/"),
            c.verdict.text(),
            repeats_text(c),
            spread_text(c).replace('|', "/")
        );
    }
    s
}

/// Each claim's verdict and key figure per repeat (Markdown).
pub fn repeats_markdown(m: &ModelsResults) -> String {
    let n = m.claims.iter().map(|c| c.repeats.len()).max().unwrap_or(0);
    let mut s = String::from("| # |");
    for r in 1..=n {
        let _ = write!(s, " repeat {r} |");
    }
    s.push_str("\n|--:|");
    s.push_str(&"---|".repeat(n));
    s.push('\n');
    for c in &m.claims {
        let _ = write!(s, "| {} |", c.n);
        for r in &c.repeats {
            let f = r.figure.map_or("no data".into(), figure);
            let _ = write!(s, " {} ({f}) |", r.verdict.text().replace('|', "/"));
        }
        s.push('\n');
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
        "Each verdict is computed from the figures by the rule shown (src/report/models/claims.rs), never written by hand. Each claim is judged on every repeat alone (\"holds in k of n repeats\"); the verdict over the repeats is the one reached in at least two thirds of them (rounded up), else \"mixed\". \"measured\" shows the medians of the {} repeat(s); the spread is the min / median / max of the claim's key figure over the repeats. A run that measured nothing is \"no data\", never 0. {} s measured per run, {}-byte echo messages, server and load pinned apart. Load average at start {:?}, at end {:?}.\n",
        m.repeat, m.duration_s, m.size, m.loadavg_start, m.loadavg_end
    );
    s.push_str(&claims_markdown(m));
    if m.claims.iter().any(|c| c.repeats.len() > 1) {
        let _ = writeln!(s, "\n### Claims per repeat (verdict, and the key figure)\n");
        s.push_str(&repeats_markdown(m));
    }
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
        "<p class=lead>Verdicts computed from the figures by the rules below (src/report/models/claims.rs), never written by hand. Each claim is judged on every repeat alone (holds in k of n repeats); the verdict over the repeats is the one reached in at least two thirds of them (rounded up), else mixed. The spread is the min / median / max of the claim's key figure over the repeats; a run that measured nothing is no data, never 0. Load average at start {:?}, at end {:?}.</p>",
        m.loadavg_start, m.loadavg_end
    );
    h.push_str(&md_table_html(&claims_markdown(m)));
    if m.claims.iter().any(|c| c.repeats.len() > 1) {
        h.push_str("<h3>Claims per repeat (verdict, and the key figure)</h3>");
        h.push_str(&md_table_html(&repeats_markdown(m)));
    }
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
