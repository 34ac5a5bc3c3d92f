//! The two cost views that explain the matrix: what each server costs doing nothing
//! (quiet rows), and where its CPU goes under load (`bench --profile`). Rendered into
//! report.md and report.html by one call each, so the rest of the report stays put.

use std::fmt::Write;

use super::fmt::esc;
use super::profile::{GROUPS, Profile, stacked_svg};
use crate::results::schema::BenchResults;

fn label(server: &str, features: Option<&str>) -> String {
    match features {
        Some(f) if !server.contains(':') => format!("{server} ({f})"),
        _ => server.to_string(),
    }
}

/// The quiet table (Markdown); empty when the bench measured none.
pub fn quiet_markdown(r: &BenchResults) -> String {
    let mut s = String::new();
    if r.quiet.is_empty() {
        return s;
    }
    let _ = writeln!(s, "\n## Idle cost: CPU and wake-ups with no traffic\n");
    let _ = writeln!(
        s,
        "Each server, fresh, sat idle with no connection, then with silent connections that had each echoed once. An idle server should cost nothing: a loop that spins shows here. Syscalls come from ringmux's own counts; context switches from /proc for every server.\n"
    );
    let _ = writeln!(
        s,
        "| server | idle conns | CPU (% of a core) | syscalls/s | ctx switches/s |\n|---|--:|--:|--:|--:|"
    );
    for q in &r.quiet {
        let _ = writeln!(
            s,
            "| {} | {} | {:.2}% | {} | {:.1} |",
            label(&q.server, q.features.as_deref()),
            q.conns,
            q.cpu_share * 100.0,
            q.syscalls_per_s.map_or("–".into(), |v| format!("{v:.1}")),
            q.ctx_per_s
        );
    }
    s
}

/// Cells with a profile, as (row label, profile), in results order.
fn profiled(r: &BenchResults) -> Vec<(String, &Profile)> {
    r.cells
        .iter()
        .filter_map(|c| {
            c.profile.as_ref().map(|p| {
                (
                    format!(
                        "{} {}",
                        label(&c.server, c.features.as_deref()),
                        shape_of(&c.id)
                    ),
                    p,
                )
            })
        })
        .collect()
}

/// "closed/c50" from "uring/closed/c50/s128".
fn shape_of(id: &str) -> String {
    let parts: Vec<&str> = id.split('/').collect();
    if parts.len() >= 3 {
        format!("{}/{}", parts[parts.len() - 3], parts[parts.len() - 2])
    } else {
        id.to_string()
    }
}

/// The profile table (Markdown): each group's share per server and cell.
pub fn profile_markdown(r: &BenchResults) -> String {
    let rows = profiled(r);
    let mut s = String::new();
    if rows.is_empty() {
        return s;
    }
    let _ = writeln!(s, "\n## Where the server's CPU goes (perf)\n");
    let _ = writeln!(
        s,
        "Shares of the server's perf samples during the measured runs (mean over runs), grouped by symbol. On loopback the sender's CPU also runs the receiver's TCP input, so the network stack is most of every server's time and no IO model removes it.\n"
    );
    let _ = writeln!(s, "| server, cell | {} |", GROUPS.join(" | "));
    let _ = writeln!(s, "|---|{}", "--:|".repeat(GROUPS.len()));
    for (l, p) in &rows {
        let v: Vec<String> = GROUPS
            .iter()
            .map(|g| format!("{:.1}%", p.groups.get(*g).copied().unwrap_or(0.0)))
            .collect();
        let _ = writeln!(s, "| {l} | {} |", v.join(" | "));
    }
    s
}

/// Both sections as HTML (empty when there is nothing to show).
pub fn cost_html(r: &BenchResults) -> String {
    let mut h = String::new();
    if !r.quiet.is_empty() {
        h.push_str("<section><h2>Idle cost: CPU and wake-ups with no traffic</h2><p class=lead>Each server, fresh, sat idle with no connection, then with silent connections that had each echoed once. An idle server should cost nothing: a loop that spins shows here.</p><div class=tablewrap><table><thead><tr><th>server</th><th class=n>idle conns</th><th class=n>CPU (% of a core)</th><th class=n>syscalls/s</th><th class=n>ctx switches/s</th></tr></thead><tbody>");
        for q in &r.quiet {
            let hot = q.cpu_share >= 0.01;
            let _ = write!(
                h,
                "<tr{}><td>{}</td><td class=n>{}</td><td class=\"n {}\">{:.2}%</td><td class=n>{}</td><td class=n>{:.1}</td></tr>",
                if hot { " class=err" } else { "" },
                esc(&label(&q.server, q.features.as_deref())),
                q.conns,
                if hot { "worse" } else { "better" },
                q.cpu_share * 100.0,
                q.syscalls_per_s.map_or("–".into(), |v| format!("{v:.1}")),
                q.ctx_per_s
            );
        }
        h.push_str("</tbody></table></div></section>\n");
    }
    let rows = profiled(r);
    if !rows.is_empty() {
        h.push_str("<section><h2>Where the server's CPU goes</h2><p class=lead>perf samples of the server during the measured runs, grouped by kernel symbol (mean over runs). On loopback the network stack is most of every server's time: what an IO model can save is the rest.</p>");
        h.push_str(&stacked_svg(&rows));
        h.push_str("<div class=tablewrap><table><thead><tr><th>server, cell</th><th>heaviest symbols</th></tr></thead><tbody>");
        for (l, p) in &rows {
            let top: Vec<String> = p
                .top
                .iter()
                .take(5)
                .map(|(g, s, v)| format!("{} {v:.1}% ({g})", esc(s)))
                .collect();
            let _ = write!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(l), top.join(", "));
        }
        h.push_str("</tbody></table></div></section>\n");
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::profile::parse_perf_report;
    use crate::results::schema::{QuietRow, RunMetrics};

    #[test]
    fn renders_quiet_and_profile() {
        let mut r: BenchResults = serde_json::from_value(serde_json::json!({
            "schema": crate::results::schema::BENCH_SCHEMA, "sys": crate::sysinfo::SysInfo::collect(), "start_unix_s": 0.0,
            "args": null, "cells": []
        }))
        .unwrap();
        assert!(
            quiet_markdown(&r).is_empty()
                && profile_markdown(&r).is_empty()
                && cost_html(&r).is_empty()
        );
        r.quiet.push(QuietRow {
            server: "uring".into(),
            features: Some("full".into()),
            conns: 0,
            seconds: 1.5,
            cpu_share: 0.2,
            syscalls_per_s: Some(12000.0),
            ctx_per_s: 3.0,
        });
        let md = quiet_markdown(&r);
        assert!(
            md.contains("| uring (full) | 0 | 20.00% | 12000.0 | 3.0 |"),
            "{md}"
        );
        assert!(
            cost_html(&r).contains("class=err"),
            "a spinning server is flagged"
        );
        let _ = RunMetrics::default();
    }

    #[test]
    fn shape_of_id() {
        assert_eq!(shape_of("uring:full/closed/c50/s128"), "closed/c50");
        assert_eq!(shape_of("epoll/pipelined8/c50/s128"), "pipelined8/c50");
        let p = parse_perf_report("  50.00%  [kernel.kallsyms]  [k] tcp_ack\n");
        assert_eq!(p.groups["network stack"], 50.0);
    }
}
