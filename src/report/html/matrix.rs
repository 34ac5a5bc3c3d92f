//! The throughput matrix in report.html: the results table, the ratios to the
//! baseline, the latency charts per load shape, and the cost bars.

use std::fmt::Write as _;
use std::path::Path;

use plotters::style::RGBColor;

use super::page::figure;
use crate::report::charts::{
    BarRow, Series, Timeline, bars_svg, color_of, hex, spectrum_svg, timeline_svg,
};
use crate::report::fmt::{self, esc};
use crate::report::md::{self, by_shape, headline_rows, ratios, servers, shape_text, times};
use crate::report::series::{CellData, load_series};
use crate::results::schema::{BenchResults, Cell, RunMetrics};

/// A ratio cell: green when better than the baseline, red when worse.
fn ratio_td(v: Option<f64>, higher_is_better: bool) -> String {
    let class = match v {
        Some(x) if (x > 1.02) == higher_is_better && (x - 1.0).abs() > 0.02 => "better",
        Some(x) if (x - 1.0).abs() > 0.02 => "worse",
        _ => "",
    };
    format!("<td class=\"n {class}\">{}</td>", times(v))
}

/// Headline table, ratios, latency charts and cost bars of the throughput matrix.
pub(super) fn matrix_sections(
    h: &mut String,
    dir: &Path,
    r: &BenchResults,
    warnings: &mut Vec<String>,
) {
    let srv = servers(r);
    let shapes = by_shape(r);
    let data: Vec<(String, CellData)> = r
        .cells
        .iter()
        .map(|c| {
            let d = load_series(dir, &c.id, &c.hgrm, &c.hlog, warnings);
            (c.id.clone(), d)
        })
        .collect();
    let data_of = |c: &Cell| data.iter().find(|(id, _)| *id == c.id).map(|(_, d)| d);

    // Headline table. The shape row names mode, connections and size, so the rows
    // leave them out and the table fits a 1400 px window with every per-message column.
    h.push_str("<section><h2>Results</h2><p class=lead>Medians over runs, throughput spread [min–max] in brackets. Latency from the load generator's HdrHistograms. The last three columns are the server's own cost per message (CPU user + system time, syscalls, context switches); – where the server does not report it (syscalls are counted by ringmux only).</p><div class=tablewrap><table class=results><thead><tr>");
    for (i, col) in HTML_COLS.iter().enumerate() {
        let _ = write!(
            h,
            "<th{}>{}</th>",
            if i >= 1 { " class=n" } else { "" },
            col
        );
    }
    h.push_str("</tr></thead><tbody>");
    let rows = headline_rows(r);
    let mut it = rows.iter();
    for (shape, cells) in &shapes {
        let _ = write!(
            h,
            "<tr class=shape><td colspan={}>{}</td></tr>",
            HTML_COLS.len(),
            esc(&shape_text(shape))
        );
        for c in cells {
            let Some((row, errors)) = it.next() else {
                break;
            };
            let _ = write!(h, "<tr{}>", if *errors > 0 { " class=err" } else { "" });
            let warn = if *errors > 0 {
                format!(" <span class=warn>⚠ {errors} errors</span>")
            } else {
                String::new()
            };
            let feat = c
                .features
                .as_deref()
                .map(|f| format!(" <span class=feat>{}</span>", esc(f)))
                .unwrap_or_default();
            let _ = write!(
                h,
                "<td><span class=dot style=\"background:{}\"></span>{}{feat}{warn}</td>",
                hex(color_of(&srv, &c.server)),
                esc(&row[0])
            );
            // Throughput, p50, p99, p99.9, CPU, syscalls, ctx (headline_rows columns 5..).
            for v in &row[5..] {
                let _ = write!(h, "<td class=n>{}</td>", esc(v));
            }
            h.push_str("</tr>");
        }
    }
    h.push_str("</tbody></table></div></section>\n");
    h.push_str(&crate::report::pairs::pairs_html(r));

    // Ratios
    let rs = ratios(r);
    if !rs.is_empty() {
        let _ = write!(
            h,
            "<section><h2>Versus {} on the same load shape</h2><p class=lead>Ratios of medians. Green is better than {}, red is worse (beyond ±2%).</p><div class=tablewrap><table><thead><tr><th>shape</th><th>server</th><th class=n>msgs/s</th><th class=n>p99</th><th class=n>CPU/msg</th><th class=n>syscalls/msg</th></tr></thead><tbody>",
            md::BASELINE,
            md::BASELINE
        );
        for x in &rs {
            let _ = write!(
                h,
                "<tr><td>{}</td><td><span class=dot style=\"background:{}\"></span>{}</td>{}{}{}{}</tr>",
                esc(&shape_text(&x.shape)),
                hex(color_of(&srv, &x.cell.server)),
                esc(&x.cell.server),
                ratio_td(x.throughput, true),
                ratio_td(x.p99, false),
                ratio_td(x.cpu, false),
                ratio_td(x.syscalls, false)
            );
        }
        h.push_str("</tbody></table></div></section>\n");
    }

    // Percentile spectrum per shape
    h.push_str("<section><h2>Latency by percentile</h2><p class=lead>The HdrHistogram percentile spectrum: the x axis stretches the tail (each step is ten times rarer), so a stall that hits one request in a thousand shows up at 99.9%. Lower is better.</p><div class=grid>\n");
    for (shape, cells) in &shapes {
        let series: Vec<Series> = cells
            .iter()
            .filter_map(|c| {
                data_of(c).filter(|d| !d.spectrum.is_empty()).map(|d| {
                    (
                        c.server.clone(),
                        color_of(&srv, &c.server),
                        d.spectrum.as_slice(),
                    )
                })
            })
            .collect();
        let sources: Vec<String> = cells
            .iter()
            .filter_map(|c| {
                data_of(c).map(|d| {
                    format!(
                        "{}: {}",
                        c.server,
                        if d.source.is_empty() {
                            "no histogram"
                        } else {
                            &d.source
                        }
                    )
                })
            })
            .collect();
        if series.is_empty() {
            let _ = write!(
                h,
                "<figure><figcaption>{}<small>no histogram files for this shape</small></figcaption></figure>",
                esc(&shape_text(shape))
            );
            continue;
        }
        figure(
            h,
            &shape_text(shape),
            &sources.join("; "),
            spectrum_svg(&series),
            warnings,
        );
    }
    h.push_str("</div></section>\n");

    // Latency over time per shape
    let any_timeline = data.iter().any(|(_, d)| !d.timeline.is_empty());
    if any_timeline {
        h.push_str("<section><h2>Latency over time</h2><p class=lead>Per interval of the first run's interval log: p99 (bold line), p50 (thin line) and max (dots), log scale.</p><div class=grid>\n");
        for (shape, cells) in &shapes {
            let series: Vec<Timeline> = cells
                .iter()
                .filter_map(|c| {
                    data_of(c).filter(|d| !d.timeline.is_empty()).map(|d| {
                        (
                            c.server.clone(),
                            color_of(&srv, &c.server),
                            d.timeline.as_slice(),
                        )
                    })
                })
                .collect();
            if series.is_empty() {
                continue;
            }
            figure(h, &shape_text(shape), "", timeline_svg(&series), warnings);
        }
        h.push_str("</div></section>\n");
    }

    // Bars: one small chart per load shape and metric, each on its own axis.
    let colors: Vec<RGBColor> = srv.iter().map(|s| color_of(&srv, s)).collect();
    let row_of = |cells: &[&Cell], get: &dyn Fn(&RunMetrics) -> Option<f64>| -> BarRow {
        srv.iter()
            .map(|s| {
                let c = cells.iter().find(|c| c.server == *s)?;
                let med = get(&c.median).filter(|v| v.is_finite())?;
                let lo = get(&c.min).filter(|v| v.is_finite()).unwrap_or(med);
                let hi = get(&c.max).filter(|v| v.is_finite()).unwrap_or(med);
                Some((med, lo, hi))
            })
            .collect()
    };
    h.push_str("<section><h2>Throughput and cost per message</h2><p class=lead>One small chart per load shape, each on its own scale: compare servers within a chart, not bars across charts. Bars are medians (the label), whiskers span min to max over runs.</p>\n");
    type Label<'a> = &'a dyn Fn(f64) -> String;
    type Get<'a> = &'a dyn Fn(&RunMetrics) -> Option<f64>;
    let charts: [(&str, &str, Get, Label, &str); 3] = [
        (
            "Throughput",
            "messages per second, higher is better",
            &|m| Some(m.msgs_per_s),
            &|v| fmt::si(v),
            "msgs/s",
        ),
        (
            "Server CPU per message",
            "user + system time per message, lower is better",
            &|m| m.cpu_ns_per_msg,
            &|v| fmt::ns(v),
            "CPU time / msg",
        ),
        (
            "Server syscalls per message",
            "counted by ringmux servers only, lower is better",
            &|m| m.syscalls_per_msg,
            &|v| fmt::num(v),
            "syscalls / msg",
        ),
    ];
    for (title, sub, get, label, ydesc) in charts {
        let _ = write!(h, "<h3>{}<small>{}</small></h3>", esc(title), esc(sub));
        let rows: Vec<(&String, BarRow)> = shapes
            .iter()
            .map(|(shape, cells)| (shape, row_of(cells, get)))
            .collect();
        if rows.iter().all(|(_, r)| r.iter().all(Option::is_none)) {
            h.push_str("<p class=lead>not measured for any server</p>\n");
            continue;
        }
        h.push_str("<div class=small>\n");
        for (shape, row) in rows {
            if row.iter().all(Option::is_none) {
                continue;
            }
            // Only the servers measured in this shape, so no empty slots.
            let keep: Vec<usize> = (0..srv.len()).filter(|&j| row[j].is_some()).collect();
            let names: Vec<String> = keep.iter().map(|&j| srv[j].clone()).collect();
            let cols: Vec<RGBColor> = keep.iter().map(|&j| colors[j]).collect();
            let vals: BarRow = keep.iter().map(|&j| row[j]).collect();
            figure(
                h,
                &shape_text(shape),
                "",
                bars_svg(&names, &cols, &vals, label, ydesc),
                warnings,
            );
        }
        h.push_str("</div>\n");
    }
    h.push_str("</section>\n");
}

/// Column titles of the HTML results table (the shape row carries mode, conns, size).
const HTML_COLS: [&str; 8] = [
    "server",
    "msgs/s [min–max]",
    "p50",
    "p99",
    "p99.9",
    "CPU / msg",
    "syscalls / msg",
    "ctx sw. / msg",
];
