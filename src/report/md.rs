//! report.md and the headline table (terminal, CI job summary).

use std::fmt::Write;

use super::fmt;
use crate::results::schema::{BenchResults, Cell, IdleResults};

/// The server every other one is measured against.
pub const BASELINE: &str = "epoll";

/// A load shape: what the load generator did, independent of the server.
pub fn shape_key(c: &Cell) -> String {
    let mut s = format!("{} c{} s{}", c.mode, c.conns, c.size);
    if c.pipeline > 1 {
        let _ = write!(s, " p{}", c.pipeline);
    }
    if let Some(r) = c.rate {
        let _ = write!(s, " @{}/s", fmt::si(r));
    }
    s
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

/// Shapes in first-seen order, each with its cells in first-seen order.
pub fn by_shape(r: &BenchResults) -> Vec<(String, Vec<&Cell>)> {
    let mut out: Vec<(String, Vec<&Cell>)> = Vec::new();
    for c in &r.cells {
        let k = shape_key(c);
        match out.iter_mut().find(|(s, _)| *s == k) {
            Some((_, v)) => v.push(c),
            None => out.push((k, vec![c])),
        }
    }
    out
}

/// Servers in first-seen order.
pub fn servers(r: &BenchResults) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in &r.cells {
        if !out.contains(&c.server) {
            out.push(c.server.clone());
        }
    }
    out
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Column titles of the headline table.
pub const HEADLINE_COLS: [&str; 12] = [
    "server",
    "features",
    "mode",
    "conns",
    "size",
    "msgs/s median [min–max]",
    "p50",
    "p99",
    "p99.9",
    "CPU/msg",
    "syscalls/msg",
    "ctx/msg",
];

/// The headline table as text cells (no escaping), grouped by shape, and whether the
/// row's cell counted errors. A cell with runs that measured nothing says so beside
/// the server, and a cell with no run left shows "no data", never a 0.
pub fn headline_rows(results: &BenchResults) -> Vec<([String; 12], u64)> {
    let mut rows = Vec::new();
    for (_, cells) in by_shape(results) {
        for c in cells {
            let m = &c.median;
            let mode = if c.pipeline > 1 {
                format!("{} ×{}", c.mode, c.pipeline)
            } else if let Some(r) = c.rate {
                format!("{} @{}/s", c.mode, fmt::si(r))
            } else {
                c.mode.clone()
            };
            let thr = if c.runs.len() > 1 {
                format!(
                    "{} [{}–{}]",
                    fmt::si(m.msgs_per_s),
                    fmt::si(c.min.msgs_per_s),
                    fmt::si(c.max.msgs_per_s)
                )
            } else {
                fmt::si(m.msgs_per_s)
            };
            let mut server = c.server.clone();
            if c.empty_runs > 0 {
                let _ = write!(
                    server,
                    " ⚠ {} empty run{}",
                    c.empty_runs,
                    if c.empty_runs == 1 { "" } else { "s" }
                );
            }
            let mut row = [
                server,
                c.features.clone().unwrap_or_else(|| "–".into()),
                mode,
                c.conns.to_string(),
                c.size.to_string(),
                thr,
                fmt::ns(m.p50_ns),
                fmt::ns(m.p99_ns),
                fmt::ns(m.p99_9_ns),
                fmt::ns_opt(m.cpu_ns_per_msg),
                fmt::num_opt(m.syscalls_per_msg),
                fmt::num_opt(m.ctx_switches_per_msg),
            ];
            if c.runs.is_empty() {
                for v in &mut row[5..] {
                    *v = "no data".into();
                }
            }
            rows.push((row, m.errors));
        }
    }
    rows
}

/// The headline table (Markdown) the bench prints to the terminal and CI puts in the job summary.
pub fn headline_markdown(results: &BenchResults) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "| {} |", HEADLINE_COLS.join(" | "));
    s.push_str("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for (mut row, errors) in headline_rows(results) {
        if errors > 0 {
            row[0] = format!("{} ⚠ {errors} errors", row[0]);
        }
        let cells: Vec<String> = row.iter().map(|c| md_escape(c)).collect();
        let _ = writeln!(s, "| {} |", cells.join(" | "));
    }
    s.push_str(&super::pairs::pairs_markdown(results));
    s
}

/// One row of the "versus baseline" table.
pub struct Ratio<'a> {
    /// The load shape ([`shape_key`]: mode, connections, size, pipeline, rate).
    pub shape: String,
    /// The cell compared with the baseline.
    pub cell: &'a Cell,
    /// Its median throughput over the baseline's (above 1: faster); None without figures.
    pub throughput: Option<f64>,
    /// Its median p99 latency over the baseline's (below 1: lower).
    pub p99: Option<f64>,
    /// Its CPU per message over the baseline's; None when either lacks the figure.
    pub cpu: Option<f64>,
    /// Its syscalls per message over the baseline's; None when either lacks the figure.
    pub syscalls: Option<f64>,
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() && b.is_finite() => Some(a / b),
        _ => None,
    }
}

/// Each non-baseline cell against the baseline cell of the same shape.
pub fn ratios(results: &BenchResults) -> Vec<Ratio<'_>> {
    let mut out = Vec::new();
    for (shape, cells) in by_shape(results) {
        let Some(base) = cells.iter().find(|c| c.server == BASELINE) else {
            continue;
        };
        for c in cells.iter().filter(|c| c.server != BASELINE) {
            let (m, b) = (&c.median, &base.median);
            out.push(Ratio {
                shape: shape.clone(),
                cell: c,
                throughput: ratio(Some(m.msgs_per_s), Some(b.msgs_per_s)),
                p99: ratio(Some(m.p99_ns), Some(b.p99_ns)),
                cpu: ratio(m.cpu_ns_per_msg, b.cpu_ns_per_msg),
                syscalls: ratio(m.syscalls_per_msg, b.syscalls_per_msg),
            });
        }
    }
    out
}

/// A ratio as `1.23×`, or a dash.
pub fn times(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |x| format!("{x:.2}×"))
}

/// What the idle-memory table shows and what it leaves out.
pub fn idle_lead(i: &IdleResults) -> String {
    let runs = i.servers.iter().map(|s| s.runs.len()).max().unwrap_or(0);
    format!(
        "{} connections per server, opened {} at a time; each sent {} bytes and read the echo once, then stayed open and silent. \
         Per connection: (VmRSS after − before) / {}, median [min–max] over {runs} fresh server process(es); RssAnon counts the heap and \
         anonymous mappings alone. The server served {} connections before the first reading. The kernel's memory for each socket \
         (socket structures, buffers, epoll items, io_uring requests) is not in the process's RSS and is not counted here.",
        i.conns, i.wave, i.round_trip_bytes, i.conns, i.warmup_conns
    )
}

/// Column titles of the idle-memory table.
pub const IDLE_COLS: [&str; 7] = [
    "server",
    "features",
    "conns",
    "bytes/conn median [min–max]",
    "RssAnon bytes/conn",
    "RSS before → after",
    "budget",
];

/// The idle-memory table as text cells, and whether the row is within the budget.
pub fn idle_rows(i: &IdleResults) -> Vec<([String; 7], bool)> {
    i.servers
        .iter()
        .map(|s| {
            let per = if s.runs.len() > 1 {
                format!(
                    "{} [{}–{}]",
                    fmt::bytes(s.bytes_per_conn),
                    fmt::bytes(s.bytes_per_conn_min),
                    fmt::bytes(s.bytes_per_conn_max)
                )
            } else {
                fmt::bytes(s.bytes_per_conn)
            };
            let rss = s.runs.first().map_or_else(
                || "–".into(),
                |r| {
                    format!(
                        "{} → {}",
                        fmt::bytes(r.rss_before_kib as f64 * 1024.0),
                        fmt::bytes(r.rss_after_kib as f64 * 1024.0)
                    )
                },
            );
            let within = s.bytes_per_conn < i.budget_bytes_per_conn;
            let budget = if within {
                format!("ok, < {}", budget_text(i.budget_bytes_per_conn))
            } else {
                format!(
                    "over {}, {:.1}×",
                    budget_text(i.budget_bytes_per_conn),
                    s.bytes_per_conn / i.budget_bytes_per_conn
                )
            };
            (
                [
                    s.server.clone(),
                    s.features.clone().unwrap_or_else(|| "–".into()),
                    i.conns.to_string(),
                    per,
                    fmt::bytes(s.anon_bytes_per_conn),
                    rss,
                    budget,
                ],
                within,
            )
        })
        .collect()
}

/// "1 KiB" for a whole number of KiB, else as [`fmt::bytes`] writes it.
pub fn budget_text(b: f64) -> String {
    if b >= 1024.0 && (b / 1024.0).fract() == 0.0 {
        format!("{} KiB", b / 1024.0)
    } else {
        fmt::bytes(b)
    }
}

/// The idle-memory table (Markdown), for report.md and the terminal.
pub fn idle_markdown(i: &IdleResults) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "| {} |", IDLE_COLS.join(" | "));
    s.push_str("|---|---|--:|--:|--:|--:|---|\n");
    for (row, within) in idle_rows(i) {
        let mut cells: Vec<String> = row.iter().map(|c| md_escape(c)).collect();
        if !within {
            cells[6] = format!("⚠ {}", cells[6]);
        }
        let _ = writeln!(s, "| {} |", cells.join(" | "));
    }
    s
}

/// report.md of a bench run: machine, matrix, results, ratios, idle cost, notes and
/// the `files` written beside it.
pub fn report_markdown(r: &BenchResults, files: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# ringmux bench report\n");
    let _ = writeln!(s, "Run started {}.\n", fmt::utc(r.start_unix_s));
    let _ = writeln!(s, "## Machine\n");
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| kernel | {} |", md_escape(&r.sys.kernel));
    let _ = writeln!(s, "| CPU | {} |", md_escape(&r.sys.cpu_model));
    let _ = writeln!(s, "| cores | {} |", r.sys.cores);
    if !r.sys.hostname.is_empty() {
        let _ = writeln!(s, "| host | {} |", md_escape(&r.sys.hostname));
    }
    let _ = writeln!(s, "| ringmux | {} |", md_escape(&r.sys.ringmux_version));
    if !r.args.is_null() {
        let _ = writeln!(
            s,
            "| matrix | {} |",
            md_escape(&super::matrix_line::matrix_text(&r.args))
        );
    }
    if !r.cells.is_empty() {
        let _ = writeln!(s, "\n## Results\n");
        let _ = writeln!(
            s,
            "Medians over runs; throughput spread is [min–max]. Latency percentiles come from the load generator's HdrHistograms (ns precision, 3 significant digits); CPU, syscalls and context switches are the server's, per message.\n"
        );
        s.push_str(&headline_markdown(r));
    }
    if let Some(idle) = &r.idle {
        let _ = writeln!(s, "\n## Idle connections: resident memory\n");
        let _ = writeln!(s, "{}\n", idle_lead(idle));
        s.push_str(&idle_markdown(idle));
    }
    s.push_str(
        &r.models
            .as_ref()
            .map(super::models::models_markdown)
            .unwrap_or_default(),
    );
    s.push_str(&super::cost::quiet_markdown(r));
    s.push_str(&super::cost::profile_markdown(r));
    let rs = ratios(r);
    if !rs.is_empty() {
        let _ = writeln!(s, "\n## Versus {BASELINE}, same load shape\n");
        let _ = writeln!(
            s,
            "Ratios of medians: above 1× is more throughput, below 1× is less latency, CPU or syscalls.\n"
        );
        let _ = writeln!(
            s,
            "| shape | server | msgs/s | p99 | CPU/msg | syscalls/msg |\n|---|---|--:|--:|--:|--:|"
        );
        for x in &rs {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                md_escape(&x.shape),
                md_escape(&x.cell.server),
                times(x.throughput),
                times(x.p99),
                times(x.cpu),
                times(x.syscalls)
            );
        }
    }
    let _ = writeln!(s, "\n## Notes\n");
    for n in &r.notes {
        let _ = writeln!(s, "- {}", n.replace('\n', " "));
    }
    let errs: u64 = r.cells.iter().map(|c| c.median.errors).sum();
    if errs > 0 {
        let _ = writeln!(
            s,
            "- ⚠ errors were counted (mismatches, resets or timeouts): those cells' figures are suspect."
        );
    }
    let _ = writeln!(
        s,
        "- One run on one machine proves little: compare ratios within a run, and repeat."
    );
    if !files.is_empty() {
        let _ = writeln!(s, "\n## Files\n");
        for f in files {
            let _ = writeln!(s, "- [{f}]({f})");
        }
    }
    s
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

    #[test]
    fn a_cell_whose_runs_measured_nothing_says_so() {
        let run = crate::results::schema::RunMetrics {
            msgs_per_s: 1000.0,
            p50_ns: 50_000.0,
            ..Default::default()
        };
        let cell = |server: &str, runs: Vec<crate::results::schema::RunMetrics>, empty| Cell {
            id: format!("{server}/closed/c100/s128"),
            server: server.into(),
            features: None,
            server_threads: Some(1),
            mode: "closed".into(),
            conns: 100,
            size: 128,
            pipeline: 1,
            rate: None,
            median: runs.first().cloned().unwrap_or_default(),
            min: runs.first().cloned().unwrap_or_default(),
            max: runs.first().cloned().unwrap_or_default(),
            runs,
            hgrm: vec![],
            hlog: vec![],
            profile: None,
            empty_runs: empty,
        };
        let r = BenchResults {
            schema: crate::results::schema::BENCH_SCHEMA.into(),
            sys: crate::sysinfo::SysInfo::collect(),
            start_unix_s: 0.0,
            args: serde_json::json!({}),
            cells: vec![
                cell("epoll", vec![], 1),
                cell("uring", vec![run.clone(), run], 1),
            ],
            notes: vec![],
            idle: None,
            quiet: vec![],
            models: None,
        };
        let rows = headline_rows(&r);
        let epoll = &rows.iter().find(|x| x.0[0].starts_with("epoll")).unwrap().0;
        assert_eq!(epoll[0], "epoll ⚠ 1 empty run");
        assert!(epoll[5..].iter().all(|v| v == "no data"), "{epoll:?}");
        let uring = &rows.iter().find(|x| x.0[0].starts_with("uring")).unwrap().0;
        assert_eq!(
            (uring[0].as_str(), uring[6].as_str()),
            ("uring ⚠ 1 empty run", "50.0 µs")
        );
    }
}
