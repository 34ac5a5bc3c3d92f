//! The two cost views that explain the matrix: what each server costs doing nothing
//! (quiet rows), and where its CPU goes under load (`bench --profile`). Rendered into
//! report.md and report.html by one call each, so the rest of the report stays put.

use std::fmt::Write;

use super::fmt::esc;
use super::profile::{GROUPS, Profile, stacked_svg};
use crate::results::profile::SCOPE_CPUS;
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

/// Cells with a profile, as (row label, profile, the cell's median server CPU ns per
/// message), in results order.
fn profiled(r: &BenchResults) -> Vec<(String, &Profile, Option<f64>)> {
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
                    c.median.cpu_ns_per_msg,
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

/// The profile tables (Markdown): each group's share per server and cell, then the
/// same shares as server CPU per message, so two servers of one cell compare in µs.
pub fn profile_markdown(r: &BenchResults) -> String {
    let rows = profiled(r);
    let mut s = String::new();
    if rows.is_empty() {
        return s;
    }
    let _ = writeln!(s, "\n## Where the server's CPU goes (perf)\n");
    let _ = writeln!(
        s,
        "Shares of the server's perf samples during the measured runs (mean over runs), grouped by symbol{}. On loopback the sender's CPU also runs the receiver's TCP input, so the network stack is most of every server's time and no IO model removes it.\n",
        scope_note(&rows)
    );
    let _ = writeln!(s, "| server, cell | {} |", GROUPS.join(" | "));
    let _ = writeln!(s, "|---|{}", "--:|".repeat(GROUPS.len()));
    for (l, p, _) in &rows {
        let v: Vec<String> = GROUPS
            .iter()
            .map(|g| format!("{:.1}%", p.groups.get(*g).copied().unwrap_or(0.0)))
            .collect();
        let _ = writeln!(s, "| {l} | {} |", v.join(" | "));
    }
    let us = per_msg(&rows);
    if !us.is_empty() {
        let _ = writeln!(
            s,
            "\nThe same shares in server CPU per message (µs: share × the cell's median CPU/msg), so the servers of one cell compare group by group: where one costs more, this says in what.\n"
        );
        let _ = writeln!(s, "| server, cell | CPU/msg | {} |", GROUPS.join(" | "));
        let _ = writeln!(s, "|---|--:|{}", "--:|".repeat(GROUPS.len()));
        for (l, v) in us {
            let groups: Vec<String> = v[1..].iter().map(|u| format!("{u:.2}")).collect();
            let _ = writeln!(s, "| {l} | {:.2} | {} |", v[0], groups.join(" | "));
        }
    }
    s
}

/// Rows with a CPU/msg: (label, [CPU/msg µs, then each group's µs in `GROUPS` order]).
fn per_msg(rows: &[(String, &Profile, Option<f64>)]) -> Vec<(String, Vec<f64>)> {
    rows.iter()
        .filter_map(|(l, p, cpu)| {
            let us = cpu.as_ref()? / 1000.0;
            let mut v = vec![us];
            v.extend(
                GROUPS
                    .iter()
                    .map(|g| p.groups.get(*g).copied().unwrap_or(0.0) / 100.0 * us),
            );
            Some((l.clone(), v))
        })
        .collect()
}

/// ", recorded on the server's CPUs" and the like, from how perf recorded.
fn scope_note(rows: &[(String, &Profile, Option<f64>)]) -> &'static str {
    let cpus = rows
        .iter()
        .filter(|(_, p, _)| {
            p.scope
                .as_deref()
                .is_some_and(|s| s.starts_with(SCOPE_CPUS))
        })
        .count();
    match cpus {
        0 => ", perf attached to the server's process (which costs it at every context switch)",
        n if n == rows.len() => ", recorded on the server's CPUs and kept for its process",
        _ => ", some recorded on the server's CPUs, some attached to the process",
    }
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
        let bars: Vec<(String, &Profile)> = rows.iter().map(|(l, p, _)| (l.clone(), *p)).collect();
        h.push_str(&stacked_svg(&bars));
        h.push_str("<div class=tablewrap><table><thead><tr><th>server, cell</th><th>heaviest symbols</th></tr></thead><tbody>");
        for (l, p, _) in &rows {
            let top: Vec<String> = p
                .top
                .iter()
                .take(5)
                .map(|(g, s, v)| format!("{} {v:.1}% ({g})", esc(s)))
                .collect();
            let _ = write!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(l), top.join(", "));
        }
        h.push_str("</tbody></table></div>");
        let us = per_msg(&rows);
        if !us.is_empty() {
            h.push_str("<p>The same shares in server CPU per message (µs: share × the cell's median CPU/msg): where one server of a cell costs more than another, this says in what.</p><div class=tablewrap><table><thead><tr><th>server, cell</th><th class=n>CPU/msg</th>");
            for g in GROUPS {
                let _ = write!(h, "<th class=n>{}</th>", esc(g));
            }
            h.push_str("</tr></thead><tbody>");
            for (l, v) in us {
                let _ = write!(h, "<tr><td>{}</td>", esc(&l));
                for u in v {
                    let _ = write!(h, "<td class=n>{u:.2}</td>");
                }
                h.push_str("</tr>");
            }
            h.push_str("</tbody></table></div>");
        }
        h.push_str("</section>\n");
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::profile::parse_perf_report;
    use crate::results::schema::{QuietRow, RunMetrics};

    /// Results with no cell and no quiet row.
    fn empty_results() -> BenchResults {
        serde_json::from_value(serde_json::json!({
            "schema": crate::results::schema::BENCH_SCHEMA, "sys": crate::sysinfo::SysInfo::collect(), "start_unix_s": 0.0,
            "args": null, "cells": []
        }))
        .unwrap()
    }

    #[test]
    fn renders_quiet_and_profile() {
        let mut r = empty_results();
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
    fn profile_in_microseconds_per_message() {
        let mut r = empty_results();
        let cell = |server: &str, cpu: f64, text: &str, scope: &str| {
            let mut p = parse_perf_report(text);
            p.scope = Some(scope.into());
            crate::results::schema::Cell {
                id: format!("{server}/closed/c1/s128"),
                server: server.into(),
                features: None,
                server_threads: None,
                mode: "closed".into(),
                conns: 1,
                size: 128,
                pipeline: 1,
                rate: None,
                runs: vec![],
                median: RunMetrics {
                    cpu_ns_per_msg: Some(cpu),
                    ..RunMetrics::default()
                },
                min: RunMetrics::default(),
                max: RunMetrics::default(),
                hgrm: vec![],
                hlog: vec![],
                profile: Some(p),
                empty_runs: 0,
            }
        };
        r.cells.push(cell(
            "uring",
            20_000.0,
            "  50.00%  [kernel.kallsyms]  [k] tcp_ack\n  10.00%  [kernel.kallsyms]  [k] io_submit_sqes\n",
            "server CPUs 0",
        ));
        r.cells.push(cell(
            "epoll",
            10_000.0,
            "  40.00%  [kernel.kallsyms]  [k] tcp_ack\n",
            "server CPUs 0",
        ));
        let md = profile_markdown(&r);
        assert!(md.contains("recorded on the server's CPUs"), "{md}");
        // 50% of 20 µs is 10 µs of network stack; 10% is 2 µs of io_uring.
        assert!(
            md.contains("| uring closed/c1 | 20.00 | 10.00 | 2.00 | 0.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| epoll closed/c1 | 10.00 | 4.00 | 0.00 |"),
            "{md}"
        );
        assert!(cost_html(&r).contains("<td class=n>2.00</td>"));
        r.cells[1].profile.as_mut().unwrap().scope = Some("process".into());
        assert!(profile_markdown(&r).contains("some recorded on the server's CPUs"));
        r.cells[0].profile.as_mut().unwrap().scope = None;
        assert!(profile_markdown(&r).contains("perf attached to the server's process"));
    }

    #[test]
    fn shape_of_id() {
        assert_eq!(shape_of("uring:full/closed/c50/s128"), "closed/c50");
        assert_eq!(shape_of("epoll/pipelined8/c50/s128"), "pipelined8/c50");
        let p = parse_perf_report("  50.00%  [kernel.kallsyms]  [k] tcp_ack\n");
        assert_eq!(p.groups["network stack"], 50.0);
    }
}
