//! The docs cannot go stale: their command blocks run, their flags exist, every flag is
//! documented, and the schema tables match real output.
//!
//! - `console` blocks in README.md and docs/*.md run through trycmd: the command after
//!   `$ `, its exit status after `? `, and what it prints, compared line by line
//!   (`...` skips lines, `[..]` skips within a line). `TRYCMD=overwrite cargo test
//!   --test tests it_docs::` rewrites the blocks from the real output (review the diff).
//! - Every `--flag` written after `ringmux SUBCOMMAND` in any page must be a flag of
//!   that subcommand, and every flag of every subcommand must appear in some page
//!   other than the generated reference docs/cli.md (so it is explained somewhere,
//!   not only listed). All docs/*.md count, the notes other branches write included.
//! - docs/schemas.md: a real file of each kind (server stats, load closed and open,
//!   bench matrix and idle, probe) has no field its table lacks, and its table has no
//!   field the files lack unless the row says when it is absent ("only ...").

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::CommandFactory;
use serde_json::Value;

use crate::util::{BIN, Running, Server, read_json, scratch_dir};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every docs/**/*.md, with their text.
fn pages() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    let mut paths = vec![root().join("README.md"), root().join("CONTRIBUTING.md")];
    walk(&root().join("docs"), &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
            (p, text)
        })
        .collect()
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

/// Each subcommand's long flags: (every spelling, hidden aliases included; the
/// spellings a user sees: names and visible aliases). `--help` and `--version` are
/// clap's own and left out.
fn cli_flags() -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
    let cmd = ringmux::cli::Cli::command();
    let mut out = BTreeMap::new();
    for sub in cmd.get_subcommands() {
        let (mut all, mut shown) = (BTreeSet::new(), BTreeSet::new());
        for a in sub.get_arguments() {
            let Some(long) = a.get_long() else { continue };
            if long == "help" || long == "version" {
                continue;
            }
            all.insert(format!("--{long}"));
            for alias in a.get_all_aliases().unwrap_or_default() {
                all.insert(format!("--{alias}"));
            }
            if !a.is_hide_set() {
                shown.insert(format!("--{long}"));
                for alias in a.get_visible_aliases().unwrap_or_default() {
                    shown.insert(format!("--{alias}"));
                }
            }
        }
        out.insert(sub.get_name().to_string(), (all, shown));
    }
    out
}

/// `--flag` tokens in `s`, in order.
fn flag_tokens(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 < b.len() {
        let starts = b[i] == b'-'
            && b[i + 1] == b'-'
            && b[i + 2].is_ascii_lowercase()
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'-'));
        if starts {
            let mut j = i + 2;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'-') {
                j += 1;
            }
            out.push(s[i..j].trim_end_matches('-').to_string());
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// Every `ringmux SUB ...` command in a page, and every inline code span that starts
/// with a subcommand and has a flag (`load --rate R`): (line number, subcommand, the
/// command's text). Inline code ends at its closing backtick; in a fenced block a command runs
/// on over lines ending in `\` and over indented lines that go on with `[` or `--` (the
/// usage synopses), and stops at a shell `|`, `;`, `&&`, `>` or `#` comment.
fn commands(text: &str, subs: &BTreeSet<String>) -> Vec<(usize, String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut fenced = false;
    for (n, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        // Inline code that starts with a subcommand (`load --rate R`) is one too.
        if !fenced {
            for (i, span) in line.split('`').enumerate() {
                let sub = span.split(' ').next().unwrap_or("");
                if i % 2 == 1 && subs.contains(sub) && span.contains(" --") {
                    out.push((n + 1, sub.to_string(), span[sub.len()..].to_string()));
                }
            }
        }
        let mut from = 0;
        while let Some(k) = line[from..].find("ringmux ") {
            let at = from + k;
            from = at + 8;
            // Not a path or a word that ends in "ringmux" (…/ringmux, ringmux-serve).
            if at > 0 && !matches!(line.as_bytes()[at - 1], b' ' | b'`' | b'(' | b'$' | b'[') {
                continue;
            }
            let rest = &line[at + 8..];
            let sub: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            if !subs.contains(&sub) {
                continue;
            }
            let inline = !fenced;
            let mut body = rest[sub.len()..].to_string();
            if inline {
                if let Some(end) = body.find('`') {
                    body.truncate(end);
                }
            } else {
                let mut m = n;
                while (body.trim_end().ends_with('\\')
                    || lines.get(m + 1).is_some_and(|l| {
                        let t = l.trim_start();
                        l.starts_with(' ') && (t.starts_with('[') || t.starts_with("--"))
                    }))
                    && m + 1 < lines.len()
                    && !lines[m + 1].trim_start().starts_with("```")
                {
                    m += 1;
                    body.push(' ');
                    body.push_str(lines[m]);
                }
            }
            for stop in [" | ", " ; ", " && ", " > ", " # ", " 2>"] {
                if let Some(end) = body.find(stop) {
                    body.truncate(end);
                }
            }
            out.push((n + 1, sub, body));
        }
    }
    out
}

#[test]
fn every_flag_in_the_docs_exists() {
    let cli = cli_flags();
    let subs: BTreeSet<String> = cli.keys().cloned().collect();
    let mut bad = Vec::new();
    let mut checked = 0;
    for (path, text) in pages() {
        for (line, sub, body) in commands(&text, &subs) {
            for flag in flag_tokens(&body) {
                checked += 1;
                if !cli[&sub].0.contains(&flag) && flag != "--help" && flag != "--version" {
                    bad.push(format!(
                        "{}:{line}: `ringmux {sub}` has no flag {flag}",
                        rel(&path)
                    ));
                }
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} flags found after `ringmux SUB` in the docs: is the parser broken?"
    );
    assert!(
        bad.is_empty(),
        "flags in the docs that the CLI lacks:\n{}",
        bad.join("\n")
    );
}

#[test]
fn every_cli_flag_is_documented() {
    let cli = cli_flags();
    let mut words = BTreeSet::new();
    for (path, text) in pages() {
        // The generated reference lists every flag; each must be explained elsewhere.
        if rel(&path) == "docs/cli.md" {
            continue;
        }
        words.extend(flag_tokens(&text));
    }
    let mut missing = Vec::new();
    for (sub, (_, shown)) in &cli {
        for flag in shown {
            if !words.contains(flag) {
                missing.push(format!("ringmux {sub} {flag}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "CLI flags that appear in no docs page (README.md, CONTRIBUTING.md, docs/*.md):\n{}",
        missing.join("\n")
    );
}

/// Pages whose `console` blocks are run.
const RUN_PAGES: &[&str] = &[
    "README.md",
    "docs/cli.md",
    "docs/serve.md",
    "docs/io-models.md",
    "docs/protocols.md",
    "docs/load.md",
    "docs/bench.md",
    "docs/io_uring-work.md",
    "docs/ci-gate.md",
    "docs/io_uring.md",
    "docs/troubleshooting.md",
];

#[test]
fn console_blocks_in_the_docs_print_what_they_say() {
    let t = trycmd::TestCases::new();
    t.register_bin("ringmux", Path::new(BIN))
        .env("NO_COLOR", "1")
        .timeout(Duration::from_secs(60));
    for p in RUN_PAGES {
        t.case(root().join(p));
    }
    t.run();
}

/// A documented field: its path split into segments, and whether its row says when it
/// is absent.
struct Row {
    path: Vec<String>,
    optional: bool,
}

/// The field tables of docs/schemas.md by section: the first table's rows are the
/// fields, and every backticked name anywhere in the section is a known key (what a
/// `<placeholder>` segment may stand for).
fn schema_tables() -> BTreeMap<String, (Vec<Row>, BTreeSet<String>)> {
    let text = std::fs::read_to_string(root().join("docs/schemas.md")).unwrap();
    let mut out: BTreeMap<String, (Vec<Row>, BTreeSet<String>)> = BTreeMap::new();
    let mut section = String::new();
    let mut table_done = false;
    let mut in_table = false;
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            section = h.trim().to_string();
            table_done = false;
            in_table = false;
            continue;
        }
        if section.is_empty() {
            continue;
        }
        let entry = out.entry(section.clone()).or_default();
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 1 {
                entry.1.insert(part.to_string());
            }
        }
        if line.starts_with('|') {
            in_table = true;
            if table_done {
                continue;
            }
            let cells: Vec<&str> = line.split('|').collect();
            let first = cells.get(1).map(|c| c.trim()).unwrap_or("");
            if let Some(name) = first.strip_prefix('`').and_then(|f| f.strip_suffix('`')) {
                entry.0.push(Row {
                    path: name.split('.').map(str::to_string).collect(),
                    optional: line.contains("(only ") || line.contains("; null"),
                });
            }
        } else if in_table {
            in_table = false;
            table_done = true;
        }
    }
    out
}

/// Every field of a JSON value as a path: objects by key, arrays of objects as
/// `name[]` over all their elements; null, scalars, empty containers and arrays of
/// scalars are leaves.
fn paths(v: &Value, prefix: &mut Vec<String>, out: &mut BTreeSet<Vec<String>>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                prefix.push(k.clone());
                paths(x, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) if a.iter().any(Value::is_object) => {
            let last = prefix.pop().unwrap();
            prefix.push(format!("{last}[]"));
            for x in a.iter().filter(|x| x.is_object()) {
                paths(x, prefix, out);
            }
            prefix.pop();
            prefix.push(last);
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

fn seg_matches(doc: &str, real: &str, keys: &BTreeSet<String>) -> bool {
    if doc.starts_with('<') && doc.ends_with('>') {
        keys.contains(real)
    } else {
        // An empty array is a leaf without `[]`: it is the parent of `name[].field`.
        doc == real || doc.strip_suffix("[]") == Some(real)
    }
}

/// A real field is documented when a row names it, or a row names one of its parents
/// (a row that documents a whole structure), or it is a null or empty parent of
/// documented fields.
fn documented(real: &[String], rows: &[Row], keys: &BTreeSet<String>) -> bool {
    rows.iter().any(|r| {
        let n = r.path.len().min(real.len());
        r.path[..n]
            .iter()
            .zip(&real[..n])
            .all(|(d, x)| seg_matches(d, x, keys))
    })
}

fn check_schema(section: &str, outputs: &[(&str, Value)]) {
    let tables = schema_tables();
    let (rows, keys) = tables
        .get(section)
        .unwrap_or_else(|| panic!("docs/schemas.md has no section `## {section}`"));
    let mut real = BTreeSet::new();
    for (_, v) in outputs {
        paths(v, &mut Vec::new(), &mut real);
    }
    let undocumented: Vec<String> = real
        .iter()
        .filter(|p| !documented(p, rows, keys))
        .map(|p| p.join("."))
        .collect();
    let names: Vec<&str> = outputs.iter().map(|o| o.0).collect();
    assert!(
        undocumented.is_empty(),
        "docs/schemas.md `## {section}` lacks fields that {names:?} have:\n{}",
        undocumented.join("\n")
    );
    let absent: Vec<String> = rows
        .iter()
        .filter(|r| !r.optional)
        .filter(|r| {
            let one = [Row {
                path: r.path.clone(),
                optional: false,
            }];
            !real
                .iter()
                .any(|p| p.len() >= r.path.len() && documented(p, &one, keys))
        })
        .map(|r| r.path.join("."))
        .collect();
    assert!(
        absent.is_empty(),
        "docs/schemas.md `## {section}` names fields that {names:?} lack (say when they are absent: \"only ...\"):\n{}",
        absent.join("\n")
    );
}

/// `ringmux ARGS` (split at spaces; no path here has one) must exit 0 within 2 minutes;
/// its stdout.
fn run_cmd(args: &str) -> String {
    let out = Running::spawn(Command::new(BIN).args(args.split_whitespace()))
        .finish(Duration::from_secs(120));
    assert_eq!(out.code(), Some(0), "{}", out.explain());
    out.stdout
}

#[test]
fn schema_tables_match_real_outputs() {
    let dir = scratch_dir("docs-schemas");
    let srv_json = dir.join("server.json");
    // The best backend here with two loops: io_uring's features and per_thread appear.
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--addr", "127.0.0.1:0", "--threads", "2", "--json"])
        .arg(&srv_json);
    let srv = Server::spawn(&mut cmd);
    let addr = srv.addr.to_string();
    let (closed, open) = (dir.join("closed.json"), dir.join("open.json"));
    let load = format!("load --addr {addr} --conns 2 --duration 0.3 --warmup 0.1 --quiet");
    run_cmd(&format!("{load} --json {}", closed.display()));
    run_cmd(&format!("{load} --rate 500 --json {}", open.display()));
    srv.stop_ok(Duration::from_secs(20));
    check_schema("serve --json", &[("serve --json", read_json(&srv_json))]);
    check_schema(
        "load --json",
        &[
            ("load --json (closed)", read_json(&closed)),
            ("load --json (open)", read_json(&open)),
        ],
    );

    let (m, idle) = (dir.join("matrix"), dir.join("idle"));
    let bench = "bench --backends epoll --no-peers --quick";
    run_cmd(&format!(
        "{bench} --conns 1 --duration 0.3 --quiet-secs 0.3 --out {}",
        m.display()
    ));
    run_cmd(&format!("{bench} --idle-conns 20 --out {}", idle.display()));
    check_schema(
        "bench results.json",
        &[
            ("bench --quick", read_json(&m.join("results.json"))),
            ("bench --idle-conns", read_json(&idle.join("results.json"))),
        ],
    );

    let probe: Value = serde_json::from_str(&run_cmd("probe --json")).unwrap();
    check_schema("probe --json", &[("probe --json", probe)]);
}

#[test]
fn the_flag_parser_reads_what_the_pages_write() {
    let subs: BTreeSet<String> = ["serve", "load"].map(String::from).into();
    let page = "Run `ringmux serve --backend epoll --addr 127.0.0.1:0` and `--not-this`.\n\
                See `load --rate R` and `load` and `compare x`.\n\
                ```text\n\
                ringmux load [--conns N]\n             [--rate R] | tee x --nope\n\
                ```\n";
    let got: Vec<(usize, String, Vec<String>)> = commands(page, &subs)
        .into_iter()
        .map(|(l, s, b)| (l, s, flag_tokens(&b)))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "serve".into(), vec!["--backend".into(), "--addr".into()]),
            (2, "load".into(), vec!["--rate".into()]),
            (4, "load".into(), vec!["--conns".into(), "--rate".into()]),
        ]
    );
}

/// Pages other branches are writing now: linked already, folded in by the lead.
const PENDING_PAGES: &[&str] = &[];

#[test]
fn links_between_pages_resolve() {
    let mut bad = Vec::new();
    for (path, text) in pages() {
        let dir = path.parent().unwrap();
        for part in text.split("](").skip(1) {
            let Some(end) = part.find(')') else { continue };
            let target = part[..end].split('#').next().unwrap();
            if target.is_empty() || target.contains("://") || target.contains(' ') {
                continue;
            }
            let file = dir.join(target);
            let pending = PENDING_PAGES.iter().any(|p| root().join(p) == file);
            if !file.exists() && !pending {
                bad.push(format!("{}: link to {target}: no such file", rel(&path)));
            }
        }
    }
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}

/// Every dated run page says when, what, where and how, as scripts/run-page.sh writes.
#[test]
fn run_pages_say_where_their_figures_come_from() {
    let dir = root().join("docs/results");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let p = e.path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".md") || name == "README.md" {
            continue;
        }
        n += 1;
        assert!(
            name.len() > 11 && name[..10].chars().all(|c| c.is_ascii_digit() || c == '-'),
            "{name}: a run page is named <date>-<machine>.md"
        );
        let text = std::fs::read_to_string(&p).unwrap();
        for row in [
            "| date (UTC) |",
            "| commit |",
            "| CPU |",
            "| kernel |",
            "| command |",
        ] {
            assert!(text.contains(row), "{name} lacks the row {row}");
        }
    }
    assert!(n > 0, "no run page in docs/results/");
}
