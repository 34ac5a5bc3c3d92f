//! report.html: one self-contained page (inline CSS and SVG, no scripts, nothing
//! fetched from the network). The charts are [`crate::report::charts`]; the
//! throughput matrix's sections are [`matrix`].

mod matrix;

use std::fmt::Write as _;
use std::path::Path;

use crate::report::charts::{
    H, Series, Timeline, W, color_of, hex, idle_bars_svg, spectrum_svg, timeline_svg,
};
use crate::report::fmt::{self, esc};
use crate::report::md::{self, IDLE_COLS, idle_lead, idle_rows};
use crate::report::series::{CellData, StemFiles, load_series};
use crate::results::schema::{BenchResults, IdleResults};

const CSS: &str = r#"
:root{--fg:#0f172a;--muted:#64748b;--line:#e2e8f0;--bg:#f8fafc;--card:#fff;--accent:#2563eb}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
main{max-width:1360px;margin:0 auto;padding:28px 20px 60px}
header h1{margin:0;font-size:28px;letter-spacing:-.02em}
header p{margin:4px 0 0;color:var(--muted)}
h2{font-size:19px;margin:0 0 4px}
section{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:20px 22px;margin-top:22px;box-shadow:0 1px 2px rgba(15,23,42,.04)}
section>p.lead{color:var(--muted);margin:0 0 14px;font-size:14px}
.facts{display:grid;grid-template-columns:repeat(auto-fit,minmax(180px,1fr));gap:10px;margin:12px 0 0}
.fact{background:var(--bg);border:1px solid var(--line);border-radius:8px;padding:8px 12px}
.fact b{display:block;font-size:12px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted);font-weight:600}
.fact span{font-size:15px;word-break:break-word}
.tablewrap{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:14px;font-variant-numeric:tabular-nums}
th,td{padding:7px 10px;border-bottom:1px solid var(--line);white-space:nowrap}
th{text-align:left;font-size:13px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);background:var(--bg)}
td.n,th.n{text-align:right}
tr.shape td{background:#f1f5f9;font-weight:600;font-size:13px;color:#334155}
tr.err td{background:#fef2f2}
.dot{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:7px;vertical-align:baseline}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:18px}
.small{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:14px;margin-bottom:18px}
h3{font-size:16px;margin:14px 0 8px}h3 small{font-weight:400;color:var(--muted);font-size:14px;margin-left:8px}
.feat{color:var(--muted);font-size:13px;margin-left:6px}
figure{margin:0;border:1px solid var(--line);border-radius:10px;padding:10px 10px 4px;background:#fff}
figcaption{font-weight:600;font-size:14px;margin:0 4px 6px}
figcaption small{display:block;font-weight:400;color:var(--muted)}
svg{display:block;width:100%;height:auto;margin:0 auto}
.better{color:#15803d;font-weight:600}.worse{color:#b91c1c;font-weight:600}
ul.notes{margin:8px 0 0;padding-left:20px}
.warn{color:#b45309}
footer{color:var(--muted);font-size:13px;margin-top:26px}
code{font-size:13px;background:var(--bg);padding:1px 5px;border-radius:4px;border:1px solid var(--line)}
"#;

/// The page up to its content: doctype, title, the style sheet.
fn page_head(title: &str) -> String {
    let mut h = String::new();
    h.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    let _ = write!(h, "<title>{title}</title><style>");
    h.push_str(CSS);
    h.push_str("</style></head><body><main>\n");
    h
}

/// Make the SVG scale with its box (a viewBox when plotters wrote none), up to 1.3
/// times its own size, never beyond.
fn responsive(svg: &str) -> String {
    let attr = |name: &str| -> Option<u32> {
        let head = &svg[..svg.find('>')?];
        let at = head.find(&format!(" {name}=\""))? + name.len() + 3;
        head[at..].split('"').next()?.parse().ok()
    };
    let (w, h) = (attr("width").unwrap_or(W), attr("height").unwrap_or(H));
    let view = if svg[..svg.find('>').unwrap_or(0)].contains("viewBox") {
        String::new()
    } else {
        format!("viewBox=\"0 0 {w} {h}\" ")
    };
    svg.replacen(
        "<svg ",
        &format!(
            "<svg {view}preserveAspectRatio=\"xMidYMid meet\" style=\"max-width:{}px\" ",
            w * 13 / 10
        ),
        1,
    )
}

/// A chart in its figure with a caption; a chart that failed becomes a warning.
fn figure(
    out: &mut String,
    title: &str,
    sub: &str,
    svg: anyhow::Result<String>,
    warnings: &mut Vec<String>,
) {
    let _ = write!(
        out,
        "<figure><figcaption>{}<small>{}</small></figcaption>",
        esc(title),
        esc(sub)
    );
    match svg {
        Ok(s) => out.push_str(&responsive(&s)),
        Err(e) => {
            warnings.push(format!("chart {title}: {e:#}"));
            let _ = write!(
                out,
                "<p class=warn>chart could not be drawn: {}</p>",
                esc(&format!("{e:#}"))
            );
        }
    }
    out.push_str("</figure>\n");
}

/// report.html of a bench run: the machine, then each part results.json holds.
pub fn report_html(dir: &Path, r: &BenchResults, warnings: &mut Vec<String>) -> String {
    let mut h = page_head("ringmux bench report");
    let _ = writeln!(
        h,
        "<header><h1>ringmux bench report</h1><p>{} · {} · {} cores · kernel {}</p></header>",
        esc(&fmt::utc(r.start_unix_s)),
        esc(&r.sys.cpu_model),
        r.sys.cores,
        esc(&r.sys.kernel)
    );

    // Machine
    h.push_str("<section><h2>Machine</h2><div class=facts>");
    let mut facts = vec![
        ("kernel", r.sys.kernel.clone()),
        ("CPU", r.sys.cpu_model.clone()),
        ("cores", r.sys.cores.to_string()),
        ("ringmux", r.sys.ringmux_version.clone()),
        ("started", fmt::utc(r.start_unix_s)),
    ];
    if !r.sys.hostname.is_empty() {
        facts.push(("host", r.sys.hostname.clone()));
    }
    if let Some(p) = r.args["peers"].as_object() {
        for v in p.values().filter_map(|v| v.as_str()) {
            facts.push(("peer", v.to_string()));
        }
    }
    for (k, v) in facts {
        let _ = write!(
            h,
            "<div class=fact><b>{k}</b><span>{}</span></div>",
            esc(&v)
        );
    }
    h.push_str("</div>");
    if !r.args.is_null() {
        let _ = write!(
            h,
            "<p class=lead style=\"margin-top:12px\"><b>Matrix.</b> {}</p>",
            esc(&md::matrix_text(&r.args))
        );
    }
    h.push_str("</section>\n");

    if let Some(idle) = &r.idle {
        idle_section(&mut h, idle, warnings);
    }
    h.push_str(
        &r.models
            .as_ref()
            .map(crate::report::models::models_html)
            .unwrap_or_default(),
    );
    if !r.cells.is_empty() {
        matrix::matrix_sections(&mut h, dir, r, warnings);
    }
    h.push_str(&crate::report::cost::cost_html(r));

    // Notes
    h.push_str("<section><h2>Notes</h2><ul class=notes>");
    for n in &r.notes {
        let _ = write!(h, "<li>{}</li>", esc(n));
    }
    for w in warnings.iter() {
        let _ = write!(h, "<li class=warn>{}</li>", esc(w));
    }
    h.push_str("<li>One run on one machine proves little: compare ratios within a run, interleave, and repeat.</li></ul></section>\n");
    let _ = writeln!(
        h,
        "<footer>Generated by ringmux {} from results.json. Percentile distributions (.hgrm) open in the HdrHistogram plotter; interval logs (.hlog) in HistogramLogAnalyzer.</footer>",
        esc(env!("CARGO_PKG_VERSION"))
    );
    h.push_str("</main></body></html>\n");
    h
}

/// report.html for a folder of `load` outputs (no results.json): the percentile
/// spectrum and the latency over time of every .hlog/.hgrm file there, one series per
/// file stem (`uring.hlog` and `uring.hgrm` are one series, the interval log preferred).
pub fn files_report_html(dir: &Path, stems: &[StemFiles], warnings: &mut Vec<String>) -> String {
    let mut h = page_head("ringmux load report");
    let _ = writeln!(
        h,
        "<header><h1>ringmux load report</h1><p>{} · {} series from the .hlog/.hgrm files in this folder (no results.json)</p></header>",
        esc(&dir.display().to_string()),
        stems.len()
    );
    let names: Vec<String> = stems.iter().map(|s| s.0.clone()).collect();
    let data: Vec<CellData> = stems
        .iter()
        .map(|(stem, hgrm, hlog)| load_series(dir, stem, hgrm, hlog, warnings))
        .collect();
    h.push_str("<section><h2>Latency by percentile</h2><p class=lead>The HdrHistogram percentile spectrum: the x axis stretches the tail (each step is ten times rarer). Lower is better. Interval logs are merged over their intervals (the corrected series when tagged); a .hgrm is used when there is no interval log of the same name.</p><div class=grid>\n");
    let series: Vec<Series> = names
        .iter()
        .zip(&data)
        .filter(|(_, d)| !d.spectrum.is_empty())
        .map(|(n, d)| (n.clone(), color_of(&names, n), d.spectrum.as_slice()))
        .collect();
    let sources: Vec<String> = names
        .iter()
        .zip(&data)
        .map(|(n, d)| {
            format!(
                "{n}: {}",
                if d.source.is_empty() {
                    "nothing readable"
                } else {
                    &d.source
                }
            )
        })
        .collect();
    if series.is_empty() {
        h.push_str("<p class=warn>no readable histogram in these files</p>");
    } else {
        figure(
            &mut h,
            "All series",
            &sources.join("; "),
            spectrum_svg(&series),
            warnings,
        );
    }
    h.push_str("</div></section>\n");
    let tl: Vec<Timeline> = names
        .iter()
        .zip(&data)
        .filter(|(_, d)| !d.timeline.is_empty())
        .map(|(n, d)| (n.clone(), color_of(&names, n), d.timeline.as_slice()))
        .collect();
    if !tl.is_empty() {
        h.push_str("<section><h2>Latency over time</h2><p class=lead>Per interval of each interval log: p99 (bold line), p50 (thin line) and max (dots), log scale.</p><div class=grid>\n");
        for t in &tl {
            figure(
                &mut h,
                &t.0,
                "",
                timeline_svg(std::slice::from_ref(t)),
                warnings,
            );
        }
        h.push_str("</div></section>\n");
    }
    h.push_str("<section><h2>Files</h2><ul class=notes>");
    for (_, hgrm, hlog) in stems {
        for f in hlog.iter().chain(hgrm) {
            let _ = write!(h, "<li><a href=\"{0}\">{0}</a></li>", esc(f));
        }
    }
    for w in warnings.iter() {
        let _ = write!(h, "<li class=warn>{}</li>", esc(w));
    }
    h.push_str("</ul></section>\n");
    let _ = writeln!(
        h,
        "<footer>Generated by ringmux {}.</footer></main></body></html>",
        esc(env!("CARGO_PKG_VERSION"))
    );
    h
}

/// The idle-memory table and its chart.
fn idle_section(h: &mut String, idle: &IdleResults, warnings: &mut Vec<String>) {
    let names: Vec<String> = idle.servers.iter().map(|s| s.server.clone()).collect();
    let _ = write!(
        h,
        "<section><h2>Idle connections: resident memory</h2><p class=lead>{}</p><div class=tablewrap><table><thead><tr>",
        esc(&idle_lead(idle))
    );
    for (i, col) in IDLE_COLS.iter().enumerate() {
        let _ = write!(
            h,
            "<th{}>{}</th>",
            if (2..6).contains(&i) { " class=n" } else { "" },
            esc(col)
        );
    }
    h.push_str("</tr></thead><tbody>");
    for (row, within) in idle_rows(idle) {
        h.push_str(if within { "<tr>" } else { "<tr class=err>" });
        for (i, v) in row.iter().enumerate() {
            if i == 0 {
                let _ = write!(
                    h,
                    "<td><span class=dot style=\"background:{}\"></span>{}</td>",
                    hex(color_of(&names, v)),
                    esc(v)
                );
            } else if i == 6 {
                let _ = write!(
                    h,
                    "<td class={}>{}</td>",
                    if within { "better" } else { "worse" },
                    esc(v)
                );
            } else {
                let _ = write!(
                    h,
                    "<td{}>{}</td>",
                    if (2..6).contains(&i) { " class=n" } else { "" },
                    esc(v)
                );
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table></div><div class=grid>\n");
    figure(
        h,
        "Resident memory per idle connection",
        "median bytes per connection, whiskers min–max; lower is better",
        idle_bars_svg(idle),
        warnings,
    );
    h.push_str("</div></section>\n");
}

/// "closed c50 s128 p8 @166k/s" as a reader says it: "closed loop · 50 connections ·
/// 128 B messages · 8 in flight · 166k msgs/s asked".
pub fn shape_text(key: &str) -> String {
    let mut out = Vec::new();
    for t in key.split_whitespace() {
        let num = |p: &str| {
            t.strip_prefix(p)
                .filter(|r| r.chars().all(|c| c.is_ascii_digit()) && !r.is_empty())
        };
        out.push(match t {
            "closed" => "closed loop".to_string(),
            "pipelined" => "closed loop, pipelined".to_string(),
            "open" => "open loop".to_string(),
            _ if num("c").is_some() => {
                let n = num("c").unwrap_or_default();
                format!("{n} connection{}", if n == "1" { "" } else { "s" })
            }
            _ if num("s").is_some() => format!("{} B messages", num("s").unwrap_or_default()),
            _ if num("p").is_some() => {
                format!("{} in flight per connection", num("p").unwrap_or_default())
            }
            _ if t.starts_with('@') => format!(
                "{} asked",
                t.trim_start_matches('@').replace("/s", " msgs/s")
            ),
            _ => t.to_string(),
        });
    }
    out.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_read_as_words() {
        assert_eq!(
            shape_text("closed c1 s128"),
            "closed loop · 1 connection · 128 B messages"
        );
        assert_eq!(
            shape_text("pipelined c50 s128 p8"),
            "closed loop, pipelined · 50 connections · 128 B messages · 8 in flight per connection"
        );
        assert_eq!(
            shape_text("open c50 s128 @166k/s"),
            "open loop · 50 connections · 128 B messages · 166k msgs/s asked"
        );
    }
}
