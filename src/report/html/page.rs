//! The frame every report.html page shares: the style sheet, the head, and a chart in
//! its figure.

use std::fmt::Write as _;

use crate::report::charts::{H, W};
use crate::report::fmt::esc;

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
pub(super) fn page_head(title: &str) -> String {
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
pub(super) fn figure(
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
