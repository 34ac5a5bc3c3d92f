//! The charts of report.html, drawn with plotters' SVG backend in one house style:
//! percentile spectrum, latency over time, per-shape bars, idle memory.

use plotters::chart::MeshStyle;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::fmt;
use super::md;
use crate::results::schema::IdleResults;

/// Series colours, in the order servers are first seen.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(37, 99, 235),  // blue
    RGBColor(234, 88, 12),  // orange
    RGBColor(22, 163, 74),  // green
    RGBColor(147, 51, 234), // purple
    RGBColor(219, 39, 119), // pink
    RGBColor(8, 145, 178),  // cyan
    RGBColor(202, 138, 4),  // amber
    RGBColor(71, 85, 105),  // slate
];
/// Width of the large charts, px (spectrum, timeline, idle memory). The page shows them at
/// this size or larger (two per row from about 1240 px wide, one below), so text keeps
/// at least its SVG size at 100% zoom: plotters writes font-size = size / 1.24, and the
/// sizes used (16) give 12.9 px.
pub const W: u32 = 600;
/// Height of the large charts, px (see [`W`]).
pub const H: u32 = 370;
/// Size of the small per-shape bar charts: no wider than their grid cell (320 px
/// minimum, less padding), so they too are never scaled down.
const SW: u32 = 300;
const SH: u32 = 240;
const FONT: &str = "sans-serif";

/// The colour of server `s` in every chart: its place in `servers` picks it.
pub fn color_of(servers: &[String], s: &str) -> RGBColor {
    PALETTE[servers.iter().position(|x| x == s).unwrap_or(0) % PALETTE.len()]
}

/// `#rrggbb` for SVG and HTML.
pub fn hex(c: RGBColor) -> String {
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
pub type BarRow = Vec<Option<(f64, f64, f64)>>;

/// One line of a chart: its name, colour and (x, y) points.
pub type Series<'a> = (String, RGBColor, &'a [(f64, f64)]);

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
                .legend(legend_key(c, 3));
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft, 16)?;
        root.present()?;
    }
    Ok(s)
}

/// One server's latency over time: name, colour and (t, p50, p99, max) points.
pub type Timeline<'a> = (String, RGBColor, &'a [(f64, f64, f64, f64)]);

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
                .legend(legend_key(c, 3));
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
            .legend(legend_key(red, 2));
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

/// A series' key in the legend: a short line in its colour.
fn legend_key(c: RGBColor, width: u32) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(width))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::md::idle_rows;

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
