//! Load results (`load --json`, and what `merge DIR` makes of agents) in a report:
//! found in a folder or named alone, shown as one table (Markdown and HTML).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::fmt::{self, esc};
use super::input::read_json;
use crate::results::schema::{LOAD_SCHEMA, LoadResult};

/// One load result and the name it is shown under (its file stem).
pub type NamedLoad = (String, LoadResult);

/// The column heads of the load table.
const COLS: [&str; 10] = [
    "result", "agents", "conns", "messages", "msgs/s", "p50", "p99", "p99.9", "max", "errors",
];

/// Read one load result file (bad input when it is not one).
pub fn read_load(path: &Path) -> anyhow::Result<NamedLoad> {
    let (v, schema) = read_json(path)?;
    anyhow::ensure!(
        schema == LOAD_SCHEMA,
        "{}: schema {schema:?} is not {LOAD_SCHEMA} (a load result)",
        path.display()
    );
    let r: LoadResult = serde_json::from_value(v)
        .map_err(|e| anyhow::anyhow!("{}: not a load result: {e}", path.display()))?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((name, r))
}

/// Every load result among the folder's `.json` files, in name order (other JSON files
/// are not load results and are left out).
pub fn loads_in(dir: &Path) -> Vec<NamedLoad> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    names.iter().filter_map(|p| read_load(p).ok()).collect()
}

/// One row per result: a merged result shows its agent count, an agent "i/n".
fn rows(loads: &[NamedLoad]) -> Vec<[String; 10]> {
    loads
        .iter()
        .map(|(n, r)| {
            let p = &r.params;
            let agents = match (p.agents, p.agent_id) {
                (Some(a), Some(i)) => format!("agent {i} of {a}"),
                (Some(a), None) => format!("{a} merged"),
                _ => "1".into(),
            };
            let rate = match (p.rate, r.rate_kept) {
                (Some(x), Some(false)) => format!(" of {} (NOT KEPT)", fmt::num(x)),
                (Some(x), _) => format!(" of {}", fmt::num(x)),
                _ => String::new(),
            };
            [
                n.clone(),
                agents,
                p.conns.to_string(),
                r.messages.to_string(),
                format!("{}{rate}", fmt::num(r.msgs_per_s)),
                fmt::ns(r.latency.p50 as f64),
                fmt::ns(r.latency.p99 as f64),
                fmt::ns(r.latency.p99_9 as f64),
                fmt::ns(r.latency.max as f64),
                r.errors.total().to_string(),
            ]
        })
        .collect()
}

/// The load results as a Markdown table ("" when there are none).
pub fn loads_markdown(loads: &[NamedLoad]) -> String {
    if loads.is_empty() {
        return String::new();
    }
    let mut s = format!("| {} |\n|", COLS.join(" | "));
    s.push_str(&"---|".repeat(COLS.len()));
    s.push('\n');
    for r in rows(loads) {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    s
}

/// The load results as an HTML section ("" when there are none).
pub fn loads_html(loads: &[NamedLoad]) -> String {
    if loads.is_empty() {
        return String::new();
    }
    let mut h = String::from(
        "<section><h2>Load results</h2><p class=lead>The .json load results here: a merged result's percentiles come from the agents' merged histograms, never averaged. Latency is corrected (from the intended send) in open loop.</p><div class=tablewrap><table><thead><tr>",
    );
    let cell = |h: &mut String, tag: &str, i: usize, v: &str| {
        let class = if i >= 2 { " class=n" } else { "" };
        let _ = write!(h, "<{tag}{class}>{}</{tag}>", esc(v));
    };
    for (i, c) in COLS.iter().enumerate() {
        cell(&mut h, "th", i, c);
    }
    h.push_str("</tr></thead><tbody>");
    for r in rows(loads) {
        h.push_str("<tr>");
        for (i, v) in r.iter().enumerate() {
            cell(&mut h, "td", i, v);
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table></div></section>\n");
    h
}
