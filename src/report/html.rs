//! report.html: one self-contained page (inline CSS and SVG, no scripts, nothing
//! fetched from the network). Charts are drawn with plotters' SVG backend.

use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;
use plotters::chart::MeshStyle;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::fmt::{self, esc};
use super::md::{
    self, IDLE_COLS, by_shape, headline_rows, idle_lead, idle_rows, ratios, servers, times,
};
use super::merge::new_hist;
use crate::results::hgrm::{HgrmPoint, points_of, read_hgrm};
use crate::results::hlog::{Hlog, read_hlog_file};
use crate::results::schema::{BenchResults, Cell, IdleResults};

const PALETTE: [RGBColor; 8] = [
    RGBColor(37, 99, 235),  // blue
    RGBColor(234, 88, 12),  // orange
    RGBColor(22, 163, 74),  // green
    RGBColor(147, 51, 234), // purple
    RGBColor(219, 39, 119), // pink
    RGBColor(8, 145, 178),  // cyan
    RGBColor(202, 138, 4),  // amber
    RGBColor(71, 85, 105),  // slate
];
/// Size of the large charts (spectrum, timeline, idle memory). The page shows them at
/// this size or larger (two per row from about 1240 px wide, one below), so text keeps
/// at least its SVG size at 100% zoom: plotters writes font-size = size / 1.24, and the
/// sizes used (16) give 12.9 px.
const W: u32 = 600;
const H: u32 = 370;
/// Size of the small per-shape bar charts: no wider than their grid cell (320 px
/// minimum, less padding), so they too are never scaled down.
const SW: u32 = 300;
const SH: u32 = 240;
const FONT: &str = "sans-serif";

/// The latency series a cell's histogram files hold, ready to draw.
#[derive(Default)]
pub struct CellData {
    /// (1/(1-p), latency ns), without the final 100% point.
    pub spectrum: Vec<(f64, f64)>,
    /// (seconds since the log's start, p50, p99, max) in ns, from the first run's .hlog.
    pub timeline: Vec<(f64, f64, f64, f64)>,
    /// Where the spectrum came from, for the caption.
    pub source: String,
}

/// The tag that holds the latency to show: "corrected" if present, else untagged,
/// else the first tag seen.
fn main_tag(log: &Hlog) -> Option<Option<String>> {
    let tags: Vec<&Option<String>> = log.intervals.iter().map(|i| &i.tag).collect();
    if tags.iter().any(|t| t.as_deref() == Some("corrected")) {
        return Some(Some("corrected".into()));
    }
    if tags.iter().any(|t| t.is_none()) {
        return Some(None);
    }
    tags.first().map(|t| (*t).clone())
}

/// Read what a cell's files hold. Problems become warnings, never a failed report.
pub fn load_cell(dir: &Path, c: &Cell, warnings: &mut Vec<String>) -> CellData {
    let mut d = CellData::default();
    let mut merged: Option<Histogram<u64>> = None;
    let mut logs_ok = 0;
    for (i, rel) in c.hlog.iter().enumerate() {
        match read_hlog_file(&dir.join(rel)) {
            Ok(log) => {
                let tag = main_tag(&log);
                let sel = log
                    .intervals
                    .iter()
                    .filter(|iv| Some(&iv.tag) == tag.as_ref());
                let acc = merged.get_or_insert_with(new_hist);
                for iv in sel.clone() {
                    if let Err(e) = acc.add(&iv.hist) {
                        warnings.push(format!("{}: {rel}: cannot add histograms: {e:?}", c.id));
                    }
                }
                if i == 0 {
                    d.timeline = sel
                        .filter(|iv| !iv.hist.is_empty())
                        .map(|iv| {
                            let h = &iv.hist;
                            (
                                iv.start_unix_s - log.start_unix_s + iv.length_s,
                                h.value_at_quantile(0.5) as f64,
                                h.value_at_quantile(0.99) as f64,
                                h.max() as f64,
                            )
                        })
                        .collect();
                }
                logs_ok += 1;
            }
            Err(e) => warnings.push(format!("{}: {e:#}", c.id)),
        }
    }
    let from_points = |pts: &[HgrmPoint]| -> Vec<(f64, f64)> {
        pts.iter()
            .filter(|p| p.percentile < 1.0)
            .map(|p| (1.0 / (1.0 - p.percentile), p.value_ms * 1e6))
            .collect()
    };
    if let Some(h) = merged.filter(|h| !h.is_empty()) {
        d.spectrum = from_points(&points_of(&h));
        d.source = format!("{logs_ok} interval log(s) merged, {} samples", h.len());
        return d;
    }
    // No usable interval log: fall back to the first readable .hgrm.
    for rel in &c.hgrm {
        match std::fs::read_to_string(dir.join(rel))
            .map_err(anyhow::Error::from)
            .and_then(|t| read_hgrm(&t))
        {
            Ok(pts) => {
                d.spectrum = from_points(&pts);
                d.source = rel.to_string();
                if c.hgrm.len() > 1 {
                    d.source.push_str(&format!(" (run 1 of {})", c.hgrm.len()));
                }
                return d;
            }
            Err(e) => warnings.push(format!("{}: {rel}: {e:#}", c.id)),
        }
    }
    d
}

fn color_of(servers: &[String], s: &str) -> RGBColor {
    PALETTE[servers.iter().position(|x| x == s).unwrap_or(0) % PALETTE.len()]
}

fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// "99.9%" for x = 1/(1-p) = 1000.
fn pct_label(x: f64) -> String {
    let p = (1.0 - 1.0 / x) * 100.0;
    if p <= 0.0 {
        return "0%".into();
    }
    let digits = ((x.log10().round() as i64) - 2).max(0) as usize;
    format!("{p:.digits$}%")
}

/// y axis unit for latencies up to `max_ns`.
fn unit_for(max_ns: f64) -> (&'static str, f64) {
    if max_ns < 2e3 {
        ("ns", 1.0)
    } else if max_ns < 2e6 {
        ("µs", 1e3)
    } else if max_ns < 2e9 {
        ("ms", 1e6)
    } else {
        ("s", 1e9)
    }
}

/// Per shape, per server: (median, min, max).
type BarRow = Vec<Option<(f64, f64, f64)>>;

type Series<'a> = (String, RGBColor, &'a [(f64, f64)]);

/// Percentile spectrum, one line per server, x log 1/(1-p) labeled as percentiles.
pub fn spectrum_svg(series: &[Series]) -> anyhow::Result<String> {
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (W, H)).into_drawing_area();
        root.fill(&WHITE)?;
        let xmax_data = series
            .iter()
            .flat_map(|s| s.2.iter().map(|p| p.0))
            .fold(100.0f64, f64::max);
        let decades = xmax_data.log10().ceil().clamp(2.0, 7.0) as i32;
        let xmax = 10f64.powi(decades);
        let ymax = series
            .iter()
            .flat_map(|s| s.2.iter().map(|p| p.1))
            .fold(1.0f64, f64::max);
        let (unit, div) = unit_for(ymax);
        // 0%, 90%, 99%, ...: a 50% key would crowd 0% at this width.
        let mut keys = vec![1.0];
        keys.extend((1..=decades).map(|d| 10f64.powi(d)));
        let mut chart = ChartBuilder::on(&root)
            .margin(14)
            .margin_right(36)
            .x_label_area_size(48)
            .y_label_area_size(76)
            .build_cartesian_2d(
                (1f64..xmax).log_scale().with_key_points(keys),
                0f64..ymax / div * 1.08,
            )?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc(format!("latency ({unit})"))
            .x_label_formatter(&|x| pct_label(*x))
            .y_label_formatter(&|y| fmt::num(*y))
            .house_style()
            .draw()?;
        for (name, color, pts) in series {
            let c = *color;
            chart
                .draw_series(LineSeries::new(
                    pts.iter()
                        .filter(|p| p.0 <= xmax)
                        .map(|&(x, y)| (x, y / div)),
                    c.stroke_width(2),
                ))?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3))
                });
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft, 16)?;
        root.present()?;
    }
    Ok(s)
}

type Timeline<'a> = (String, RGBColor, &'a [(f64, f64, f64, f64)]);

/// Latency over time: p99 (bold), p50 (thin), max (dots) per server, log y.
pub fn timeline_svg(series: &[Timeline]) -> anyhow::Result<String> {
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (W, H)).into_drawing_area();
        root.fill(&WHITE)?;
        let all = || series.iter().flat_map(|s| s.2.iter());
        let xmax = all().map(|p| p.0).fold(0.1f64, f64::max) * 1.03;
        let ymin = all()
            .map(|p| p.1)
            .filter(|v| *v > 0.0)
            .fold(f64::INFINITY, f64::min);
        let ymin = if ymin.is_finite() { ymin * 0.7 } else { 1.0 };
        // Headroom on the log axis, so that the legend (upper right) covers no data.
        let ymax = all().map(|p| p.3).fold(ymin * 10.0, f64::max) * 4.0;
        let mut chart = ChartBuilder::on(&root)
            .margin(14)
            .x_label_area_size(48)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..xmax, (ymin..ymax).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("seconds into the run")
            .y_desc("latency")
            .y_labels(6)
            .x_labels(8)
            .y_label_formatter(&|y| fmt::ns(*y))
            .x_label_formatter(&|x| fmt::num(*x))
            .house_style()
            .draw()?;
        for (name, color, pts) in series {
            let c = *color;
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|p| (p.0, p.2.max(ymin))),
                    c.stroke_width(2),
                ))?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3))
                });
            // p50 and max share the server's colour; the caption says which is which, so
            // the legend keeps one line per server.
            chart.draw_series(LineSeries::new(
                pts.iter().map(|p| (p.0, p.1.max(ymin))),
                c.mix(0.55).stroke_width(1),
            ))?;
            chart.draw_series(
                pts.iter()
                    .map(|p| Circle::new((p.0, p.3.max(ymin)), 3, c.mix(0.8).filled())),
            )?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight, 16)?;
        root.present()?;
    }
    Ok(s)
}

/// Bars for one load shape: one bar per server on this shape's own axis (so a 30 µs
/// single-connection figure never dwarfs a 400 ns pipelined one), the server's name
/// under its bar, the median as the bar's label and a whisker for min–max.
/// `values[server] = Some((median, min, max))`; `colors` gives each bar's colour.
pub fn bars_svg(
    servers: &[String],
    colors: &[RGBColor],
    values: &[Option<(f64, f64, f64)>],
    label: &dyn Fn(f64) -> String,
    y_desc: &str,
) -> anyhow::Result<String> {
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (SW, SH)).into_drawing_area();
        root.fill(&WHITE)?;
        let ymax = values
            .iter()
            .flatten()
            .map(|v| v.0.max(v.2))
            .fold(0.0f64, f64::max);
        let ymax = if ymax > 0.0 { ymax * 1.25 } else { 1.0 };
        let n = servers.len().max(1) as i64;
        // x in thousandths of a bar slot: f64 ranges cannot take custom key points.
        let centers: Vec<i64> = (0..n).map(|i| i * 1000 + 500).collect();
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .margin_top(22)
            .margin_right(14)
            .x_label_area_size(30)
            .y_label_area_size(72)
            .build_cartesian_2d((0i64..n * 1000).with_key_points(centers), 0f64..ymax)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc(y_desc)
            .y_labels(5)
            .x_label_formatter(&|x| {
                servers
                    .get((*x / 1000) as usize)
                    .cloned()
                    .unwrap_or_default()
            })
            .y_label_formatter(&|y| label(*y))
            .house_style()
            .draw()?;
        for (j, v) in values.iter().enumerate() {
            let Some((med, lo, hi)) = *v else { continue };
            let c = colors.get(j).copied().unwrap_or(PALETTE[0]);
            let (x0, x1) = (j as i64 * 1000 + 150, j as i64 * 1000 + 850);
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x0, 0.0), (x1, med)],
                c.mix(0.85).filled(),
            )))?;
            if hi > lo {
                let xm = (x0 + x1) / 2;
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(xm, lo), (xm, hi)],
                    RGBColor(15, 23, 42).stroke_width(1),
                )))?;
            }
            let style = (FONT, 16)
                .into_font()
                .color(&RGBColor(30, 41, 59))
                .pos(Pos::new(HPos::Center, VPos::Bottom));
            chart.draw_series(std::iter::once(Text::new(
                label(med),
                ((x0 + x1) / 2, med.max(hi) + ymax * 0.02),
                style,
            )))?;
        }
        root.present()?;
    }
    Ok(s)
}

/// Idle memory: one bar per server (median bytes per connection, min–max whisker)
/// and a line at the budget.
pub fn idle_bars_svg(idle: &IdleResults) -> anyhow::Result<String> {
    let names: Vec<String> = idle.servers.iter().map(|s| s.server.clone()).collect();
    let budget = idle.budget_bytes_per_conn;
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (W, H)).into_drawing_area();
        root.fill(&WHITE)?;
        let top = idle
            .servers
            .iter()
            .map(|s| s.bytes_per_conn.max(s.bytes_per_conn_max))
            .filter(|v| v.is_finite())
            .fold(budget, f64::max);
        let ymax = top * 1.18;
        let n = names.len().max(1) as i64;
        let centers: Vec<i64> = (0..n).map(|i| i * 1000 + 500).collect();
        let mut chart = ChartBuilder::on(&root)
            .margin(14)
            .x_label_area_size(48)
            .y_label_area_size(80)
            .build_cartesian_2d((0i64..n * 1000).with_key_points(centers), 0f64..ymax)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc("resident bytes per idle connection")
            .x_label_formatter(&|x| names.get((*x / 1000) as usize).cloned().unwrap_or_default())
            .y_label_formatter(&|y| fmt::bytes(*y))
            .house_style()
            .draw()?;
        for (i, srv) in idle.servers.iter().enumerate() {
            if !srv.bytes_per_conn.is_finite() {
                continue;
            }
            let c = color_of(&names, &srv.server);
            let (x0, x1) = (i as i64 * 1000 + 200, i as i64 * 1000 + 800);
            let med = srv.bytes_per_conn.max(0.0);
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x0, 0.0), (x1, med)],
                c.mix(0.85).filled(),
            )))?;
            let (lo, hi) = (srv.bytes_per_conn_min, srv.bytes_per_conn_max);
            if hi > lo && lo.is_finite() && hi.is_finite() {
                let xm = (x0 + x1) / 2;
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(xm, lo.max(0.0)), (xm, hi)],
                    RGBColor(15, 23, 42).stroke_width(1),
                )))?;
            }
            let y = med.max(if hi.is_finite() { hi } else { med }) + ymax * 0.03;
            chart.draw_series(std::iter::once(Text::new(
                fmt::bytes(srv.bytes_per_conn),
                (x0 + 150, y),
                (FONT, 16).into_font().color(&RGBColor(51, 65, 85)),
            )))?;
        }
        let red = RGBColor(185, 28, 28);
        chart
            .draw_series(LineSeries::new(
                [(0, budget), (n * 1000, budget)],
                red.stroke_width(2),
            ))?
            .label(format!("budget {}", md::budget_text(budget)))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], red.stroke_width(2)));
        legend(&mut chart, SeriesLabelPosition::UpperLeft, 16)?;
        root.present()?;
    }
    Ok(s)
}

/// The grid, labels and axes every chart draws, in one style.
trait HouseStyle {
    fn house_style(&mut self) -> &mut Self;
}

impl<X: Ranged, Y: Ranged, DB: DrawingBackend> HouseStyle for MeshStyle<'_, '_, X, Y, DB> {
    fn house_style(&mut self) -> &mut Self {
        self.label_style((FONT, 16))
            .axis_desc_style((FONT, 16))
            .light_line_style(RGBColor(241, 245, 249))
            .bold_line_style(RGBColor(226, 232, 240))
            .axis_style(RGBColor(148, 163, 184))
    }
}

/// The legend box every chart draws, in one style.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    at: SeriesLabelPosition,
    font: u32,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart
        .configure_series_labels()
        .position(at)
        .label_font((FONT, font))
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(203, 213, 225))
        .draw()
}

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

/// A ratio cell: green when better than the baseline, red when worse.
fn ratio_td(v: Option<f64>, higher_is_better: bool) -> String {
    let class = match v {
        Some(x) if (x > 1.02) == higher_is_better && (x - 1.0).abs() > 0.02 => "better",
        Some(x) if (x - 1.0).abs() > 0.02 => "worse",
        _ => "",
    };
    format!("<td class=\"n {class}\">{}</td>", times(v))
}

pub fn report_html(dir: &Path, r: &BenchResults, warnings: &mut Vec<String>) -> String {
    let mut h = String::new();
    h.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    h.push_str("<title>ringmux bench report</title><style>");
    h.push_str(CSS);
    h.push_str("</style></head><body><main>\n");
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
            .map(super::models::models_html)
            .unwrap_or_default(),
    );
    if !r.cells.is_empty() {
        matrix_sections(&mut h, dir, r, warnings);
    }
    h.push_str(&super::cost::cost_html(r));

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
pub fn files_report_html(
    dir: &Path,
    stems: &[super::StemFiles],
    warnings: &mut Vec<String>,
) -> String {
    let mut h = String::new();
    h.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    h.push_str("<title>ringmux load report</title><style>");
    h.push_str(CSS);
    h.push_str("</style></head><body><main>\n");
    let _ = writeln!(
        h,
        "<header><h1>ringmux load report</h1><p>{} · {} series from the .hlog/.hgrm files in this folder (no results.json)</p></header>",
        esc(&dir.display().to_string()),
        stems.len()
    );
    let names: Vec<String> = stems.iter().map(|s| s.0.clone()).collect();
    let data: Vec<CellData> = stems
        .iter()
        .map(|(stem, hgrm, hlog)| {
            let c = Cell {
                id: stem.clone(),
                server: stem.clone(),
                features: None,
                server_threads: None,
                mode: String::new(),
                conns: 0,
                size: 0,
                pipeline: 1,
                rate: None,
                runs: Vec::new(),
                median: Default::default(),
                min: Default::default(),
                max: Default::default(),
                hgrm: hgrm.clone(),
                hlog: hlog.clone(),
                profile: Default::default(),
            };
            load_cell(dir, &c, warnings)
        })
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

/// Headline table, ratios, latency charts and cost bars of the throughput matrix.
fn matrix_sections(h: &mut String, dir: &Path, r: &BenchResults, warnings: &mut Vec<String>) {
    let srv = servers(r);
    let shapes = by_shape(r);
    let data: Vec<(String, CellData)> = r
        .cells
        .iter()
        .map(|c| (c.id.clone(), load_cell(dir, c, warnings)))
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
    let row_of = |cells: &[&Cell],
                  get: &dyn Fn(&crate::results::schema::RunMetrics) -> Option<f64>|
     -> BarRow {
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
    type Get<'a> = &'a dyn Fn(&crate::results::schema::RunMetrics) -> Option<f64>;
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
    fn percentile_labels() {
        assert_eq!(pct_label(1.0), "0%");
        assert_eq!(pct_label(2.0), "50%");
        assert_eq!(pct_label(10.0), "90%");
        assert_eq!(pct_label(100.0), "99%");
        assert_eq!(pct_label(1000.0), "99.9%");
        assert_eq!(pct_label(100_000.0), "99.999%");
    }

    #[test]
    fn charts_draw() {
        let pts = [(1.0, 1000.0), (10.0, 5000.0), (1000.0, 90_000.0)];
        let s = spectrum_svg(&[("uring".into(), PALETTE[0], &pts)]).unwrap();
        assert!(
            s.starts_with("<svg") && s.contains("99.9%"),
            "{}",
            &s[..200.min(s.len())]
        );
        let tl = [(1.0, 1e3, 1e4, 1e5), (2.0, 2e3, 2e4, 2e5)];
        assert!(
            timeline_svg(&[("epoll".into(), PALETTE[1], &tl)])
                .unwrap()
                .contains("<svg")
        );
        let b = bars_svg(
            &["x".into(), "y".into()],
            &PALETTE[..2],
            &[Some((1.0, 0.9, 1.1)), None],
            &|v| fmt::num(v),
            "y",
        )
        .unwrap();
        assert!(
            b.contains("<rect") && b.contains("\nx\n") && b.contains("\n1.00\n"),
            "{b}"
        );
        // Readable at 100% zoom: every text at least 12 px (the page never shows a chart
        // below its own size at 1000 px and wider).
        for svg in [&s, &b] {
            for fs in svg.split("font-size=\"").skip(1) {
                let px: f64 = fs.split('"').next().unwrap().parse().unwrap();
                assert!(px >= 12.0, "font-size {px} px");
            }
        }
    }

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

    #[test]
    fn idle_table_and_chart() {
        use crate::results::schema::{IdleRun, IdleServer};
        let srv = |name: &str, b: f64| IdleServer {
            id: format!("{name}/idle/c100"),
            server: name.into(),
            features: None,
            runs: vec![IdleRun {
                rss_before_kib: 4000,
                rss_after_kib: 4010,
                bytes_per_conn: b,
                anon_bytes_per_conn: b,
                ..Default::default()
            }],
            bytes_per_conn: b,
            bytes_per_conn_min: b,
            bytes_per_conn_max: b * 1.1,
            anon_bytes_per_conn: b,
        };
        let idle = IdleResults {
            conns: 100,
            round_trip_bytes: 16,
            wave: 100,
            warmup_conns: 16,
            settle_ms: 200,
            budget_bytes_per_conn: 1024.0,
            servers: vec![srv("epoll", 101.0), srv("uring:fastpoll", 15_700.0)],
        };
        let svg = idle_bars_svg(&idle).unwrap();
        assert!(
            svg.contains("budget 1 KiB") && svg.contains("15.3 KiB"),
            "{svg}"
        );
        let rows = idle_rows(&idle);
        assert_eq!(
            rows.iter().map(|(_, ok)| *ok).collect::<Vec<_>>(),
            [true, false]
        );
        assert_eq!(rows[0].0[6], "ok, < 1 KiB");
        assert_eq!(rows[1].0[6], "over 1 KiB, 15.3×");
        let md = md::idle_markdown(&idle);
        assert_eq!(md.lines().count(), 4);
        assert!(md.contains("| epoll | – | 100 | 101 B |"), "{md}");
    }
}
