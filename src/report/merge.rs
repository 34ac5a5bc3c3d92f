//! `ringmux merge`: add interval logs from several load processes into one, or (one
//! folder given) the `.json` + `.hlog` files of `load --agents N` agents into one load
//! result ([`merge_agents`]).
//!
//! Intervals are aligned on absolute time: the slot length is the first input's first
//! interval length, slots start at the earliest interval start over all inputs, and an
//! interval goes to the slot its start falls in (with a 1% tolerance for clocks that
//! start a hair early). Histograms with the same tag in the same slot are added.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use hdrhistogram::Histogram;

use super::fmt;
use super::input::{bad_input, read_json};
use crate::results::hlog::{Hlog, HlogInterval, read_hlog_file, write_hlog};
use crate::results::schema::{LOAD_SCHEMA, LoadErrors, LoadResult, Percentiles};

/// `ringmux merge`: one folder of `load --agents N` outputs into one load result
/// ([`run_agents`]), or interval logs into one ([`run`]).
pub fn merge_cmd(
    inputs: &[PathBuf],
    output: &Path,
    allow_partial: bool,
) -> anyhow::Result<std::process::ExitCode> {
    if let [dir] = inputs
        && dir.is_dir()
    {
        return run_agents(dir, output, allow_partial);
    }
    // A missing input is bad usage (exit 2), like compare's; checked here so that
    // `run` keeps its own errors (unreadable or malformed logs) as they are.
    if let Some(p) = inputs.iter().find(|p| !p.exists()) {
        return Err(bad_input(format!("{}: no such file", p.display())));
    }
    if let Some(p) = inputs.iter().find(|p| same_file(p, output)) {
        return Err(bad_input(format!(
            "{}: the output is one of the inputs; name another output file",
            p.display()
        )));
    }
    run(inputs, output)?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// True when `a` and `b` name the same file (both may not exist yet: then compared by
/// their absolute paths).
fn same_file(a: &Path, b: &Path) -> bool {
    let abs = |p: &Path| {
        std::fs::canonicalize(p).unwrap_or_else(|_| {
            let parent = p.parent().filter(|d| !d.as_os_str().is_empty());
            let dir = parent.map_or_else(|| std::fs::canonicalize("."), std::fs::canonicalize);
            match (dir, p.file_name()) {
                (Ok(d), Some(n)) => d.join(n),
                _ => p.to_path_buf(),
            }
        })
    };
    abs(a) == abs(b)
}

/// Where `merge DIR -o OUTPUT` writes: (the load result .json, the interval log .hlog).
/// The kind of the name given decides which is OUTPUT itself: `X.hlog` is the log and
/// `X.json` the result; any other name is the result and `X.hlog` (extension replaced)
/// the log. The two can never be one file.
pub fn agent_outputs(output: &Path) -> (PathBuf, PathBuf) {
    if output.extension().is_some_and(|x| x == "hlog") {
        (output.with_extension("json"), output.to_path_buf())
    } else {
        (output.to_path_buf(), output.with_extension("hlog"))
    }
}

/// Merge the logs; returns the merged log (not yet written).
pub fn merge_logs(logs: &[Hlog]) -> anyhow::Result<Hlog> {
    let first = logs
        .iter()
        .flat_map(|l| l.intervals.first())
        .next()
        .context("the inputs hold no intervals")?;
    let slot = if first.length_s > 0.0 {
        first.length_s
    } else {
        1.0
    };
    let origin = logs
        .iter()
        .flat_map(|l| l.intervals.iter())
        .map(|i| i.start_unix_s)
        .fold(f64::INFINITY, f64::min);
    // (slot index, tag) -> histogram
    let mut acc: BTreeMap<(i64, Option<String>), Histogram<u64>> = BTreeMap::new();
    for iv in logs.iter().flat_map(|l| l.intervals.iter()) {
        let k = ((iv.start_unix_s - origin) / slot + 0.01).floor() as i64;
        let h = match acc.entry((k, iv.tag.clone())) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(new_hist()),
        };
        h.add(&iv.hist)
            .map_err(|e| anyhow::anyhow!("cannot add histograms: {e:?}"))?;
    }
    let intervals = acc
        .into_iter()
        .map(|((k, tag), hist)| HlogInterval {
            tag,
            start_unix_s: origin + k as f64 * slot,
            length_s: slot,
            hist,
        })
        .collect();
    Ok(Hlog {
        start_unix_s: origin,
        intervals,
    })
}

/// An empty auto-resizing histogram (3 significant digits) to add others into.
pub fn new_hist() -> Histogram<u64> {
    let mut h = Histogram::<u64>::new(3).expect("3 significant digits is valid");
    h.auto(true);
    h
}

/// Per tag, the sum of all its intervals (None = untagged), in tag order.
pub fn totals_by_tag(log: &Hlog) -> anyhow::Result<BTreeMap<Option<String>, Histogram<u64>>> {
    let mut out: BTreeMap<Option<String>, Histogram<u64>> = BTreeMap::new();
    for iv in &log.intervals {
        out.entry(iv.tag.clone())
            .or_insert_with(new_hist)
            .add(&iv.hist)
            .map_err(|e| anyhow::anyhow!("cannot add histograms: {e:?}"))?;
    }
    Ok(out)
}

/// One agent's files in the folder given to `merge`.
#[derive(Debug)]
pub struct AgentFiles {
    /// The result file's name, for messages.
    pub name: String,
    /// The agent's load result.
    pub result: LoadResult,
    /// Its interval log (`<stem>.hlog` beside the JSON), if there is one.
    pub log: Option<Hlog>,
}

/// What merging agents produced: the merged result and log, and the agents that were
/// missing or failed (named; empty when every agent of `params.agents` is there).
#[derive(Debug)]
pub struct AgentsMerged {
    /// The merged result (counts summed, percentiles from the merged histograms).
    pub result: LoadResult,
    /// The merged interval log.
    pub log: Hlog,
    /// One sentence per agent missing or failed; empty when the merge is complete.
    pub problems: Vec<String>,
}

/// Read every `*.json` of `dir` that is a load result, with the `.hlog` of the same stem.
pub fn read_agents(dir: &Path) -> anyhow::Result<Vec<AgentFiles>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for p in names {
        let (v, schema) = read_json(&p)?;
        if schema != LOAD_SCHEMA {
            continue;
        }
        let result: LoadResult = serde_json::from_value(v)
            .with_context(|| format!("{}: not a {LOAD_SCHEMA} file", p.display()))?;
        if result.params.agents.is_some() && result.params.agent_id.is_none() {
            // An earlier merged result (written into the same folder): not an agent.
            continue;
        }
        let hp = p.with_extension("hlog");
        let log = if hp.exists() {
            Some(read_hlog_file(&hp)?)
        } else {
            None
        };
        out.push(AgentFiles {
            name: p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            result,
            log,
        });
    }
    Ok(out)
}

/// Merge agents' results: counts summed, percentiles from the merged histograms (never
/// averaged), the rate over the union of their windows, `rate_kept` only if every
/// agent kept its share and none is missing.
pub fn merge_agents(agents: &[AgentFiles]) -> anyhow::Result<AgentsMerged> {
    let first = agents
        .first()
        .context("no load results (.json with schema ringmux.load/1) in the folder")?;
    let n = first.result.params.agents.unwrap_or(1);
    let mut problems = Vec::new();
    let mut seen = vec![false; n as usize];
    for a in agents {
        let p = &a.result.params;
        if p.agents.unwrap_or(1) != n {
            anyhow::bail!(
                "{}: run with --agents {}, {} with --agents {n}",
                a.name,
                p.agents.unwrap_or(1),
                first.name
            );
        }
        let id = p.agent_id.unwrap_or(0);
        match seen.get_mut(id as usize) {
            Some(s) if !*s => *s = true,
            Some(_) => anyhow::bail!("{}: agent {id} appears twice", a.name),
            None => anyhow::bail!("{}: agent id {id} out of range for --agents {n}", a.name),
        }
        if a.log.is_none() {
            problems.push(format!(
                "agent {id} ({}) failed: no interval log (.hlog) beside it",
                a.name
            ));
        } else if a.result.interrupted {
            problems.push(format!("agent {id} ({}) failed: interrupted", a.name));
        } else if a.result.conns_established == Some(0) {
            problems.push(format!(
                "agent {id} ({}) failed: no connection established",
                a.name
            ));
        }
    }
    for (id, s) in seen.iter().enumerate() {
        if !*s {
            problems.push(format!("agent {id} of {n} is missing (no result file)"));
        }
    }
    let logs: Vec<Hlog> = agents.iter().filter_map(|a| a.log.clone()).collect();
    let log = merge_logs(&logs).context("merging the agents' interval logs")?;
    let totals = totals_by_tag(&log)?;
    let corrected = totals
        .get(&Some("corrected".to_string()))
        .or_else(|| totals.get(&None))
        .cloned()
        .unwrap_or_else(new_hist);
    let uncorrected = totals.get(&Some("uncorrected".to_string()));
    let rs: Vec<&LoadResult> = agents.iter().map(|a| &a.result).collect();
    let sum = |f: fn(&LoadResult) -> u64| rs.iter().map(|r| f(r)).sum::<u64>();
    let messages = sum(|r| r.messages);
    let start = rs
        .iter()
        .map(|r| r.start_unix_s)
        .fold(f64::INFINITY, f64::min);
    let end = rs
        .iter()
        .map(|r| r.start_unix_s + r.elapsed_s)
        .fold(f64::NEG_INFINITY, f64::max);
    let elapsed_s = (end - start).max(0.0);
    let msgs_per_s = if elapsed_s > 0.0 {
        messages as f64 / elapsed_s
    } else {
        0.0
    };
    let open = first.result.params.rate.is_some();
    let mut errors = LoadErrors::default();
    for r in &rs {
        let e = &r.errors;
        errors.mismatch += e.mismatch;
        errors.reset += e.reset;
        errors.timeout += e.timeout;
        errors.connect += e.connect;
        errors.other += e.other;
    }
    let cpu: f64 = rs
        .iter()
        .filter_map(|r| r.load_cpu_ns_per_msg.map(|c| c * r.messages as f64))
        .sum();
    let mut params = first.result.params.clone();
    params.conns = rs.iter().map(|r| r.params.conns).sum();
    params.rate = open.then(|| rs.iter().filter_map(|r| r.params.rate).sum());
    params.threads = rs.iter().map(|r| r.params.threads).sum();
    params.agents = Some(n);
    params.agent_id = None;
    let complete = problems.is_empty();
    let result = LoadResult {
        schema: LOAD_SCHEMA.to_string(),
        params,
        sys: first.result.sys.clone(),
        start_unix_s: start,
        elapsed_s,
        messages,
        warmup_messages: sum(|r| r.warmup_messages),
        msgs_per_s,
        mb_per_s: msgs_per_s * f64::from(first.result.params.size) / 1e6,
        rate_kept: open.then(|| complete && rs.iter().all(|r| r.rate_kept == Some(true))),
        latency: Percentiles::of(&corrected),
        latency_uncorrected: uncorrected.map(Percentiles::of),
        errors,
        load_cpu_ns_per_msg: (messages > 0 && cpu > 0.0).then(|| cpu / messages as f64),
        missing: open.then(|| sum(|r| r.missing.unwrap_or(0))),
        interrupted: rs.iter().any(|r| r.interrupted),
        max_lag_s: rs.iter().filter_map(|r| r.max_lag_s).reduce(f64::max),
        max_lag_limit_s: first.result.max_lag_limit_s,
        conns_established: Some(
            rs.iter()
                .map(|r| r.conns_established.unwrap_or(r.params.conns))
                .sum(),
        ),
        connect_refused: sum(|r| r.connect_refused),
        idle_conns: rs.iter().map(|r| r.idle_conns).sum(),
        idle_closed: rs.iter().map(|r| r.idle_closed).sum(),
    };
    Ok(AgentsMerged {
        result,
        log,
        problems,
    })
}

/// `ringmux merge DIR -o merged.json`: merge the agents' files; writes the result and
/// `merged.hlog` beside it ([`agent_outputs`]: `-o merged.hlog` writes the same two).
/// An output that would overwrite an agent's file is refused (exit 2) before anything
/// is written. A missing or failed agent fails it unless `allow_partial`.
pub fn run_agents(
    dir: &Path,
    output: &Path,
    allow_partial: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let agents = read_agents(dir)?;
    let (json_path, hlog_path) = agent_outputs(output);
    for out in [&json_path, &hlog_path] {
        let input = agents.iter().find_map(|a| {
            let j = dir.join(&a.name);
            [j.with_extension("hlog"), j]
                .into_iter()
                .find(|f| f.exists() && same_file(f, out))
        });
        if let Some(f) = input {
            return Err(bad_input(format!(
                "{}: would overwrite an agent's file; name the output outside the agents' names",
                f.display()
            )));
        }
    }
    let m = merge_agents(&agents)?;
    for p in &m.problems {
        eprintln!(
            "ringmux: {}: {p}",
            if allow_partial { "warning" } else { "error" }
        );
    }
    if !m.problems.is_empty() && !allow_partial {
        anyhow::bail!(
            "{} of {} agents missing or failed (use --allow-partial to merge what is there)",
            m.problems.len(),
            m.result.params.agents.unwrap_or(1)
        );
    }
    let mut buf = Vec::new();
    write_hlog(&mut buf, &m.log)?;
    std::fs::write(&hlog_path, &buf)
        .with_context(|| format!("cannot write {}", hlog_path.display()))?;
    let mut json = serde_json::to_vec_pretty(&m.result)?;
    json.push(b'\n');
    std::fs::write(&json_path, &json)
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    let r = &m.result;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "merged {} agent(s) of {} into {} and {}",
        agents.len(),
        r.params.agents.unwrap_or(1),
        json_path.display(),
        hlog_path.display()
    )?;
    writeln!(
        out,
        "  {} messages in {:.3} s: {:.1} msgs/s{}; p50 {} p99 {} p99.9 {} max {}",
        r.messages,
        r.elapsed_s,
        r.msgs_per_s,
        r.params
            .rate
            .map_or(String::new(), |x| format!(" of {x} asked")),
        fmt::ns(r.latency.p50 as f64),
        fmt::ns(r.latency.p99 as f64),
        fmt::ns(r.latency.p99_9 as f64),
        fmt::ns(r.latency.max as f64)
    )?;
    if let Some(k) = r.rate_kept {
        writeln!(
            out,
            "  rate {}",
            if k {
                "kept by every agent"
            } else {
                "NOT KEPT (an agent fell short or is missing)"
            }
        )?;
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `ringmux merge A.hlog B.hlog -o OUT.hlog`: add interval logs on absolute time and
/// print the merged percentiles per tag.
pub fn run(inputs: &[PathBuf], output: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(!inputs.is_empty(), "no input logs given");
    let logs = inputs
        .iter()
        .map(|p| read_hlog_file(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let merged = merge_logs(&logs)?;
    let mut buf = Vec::new();
    write_hlog(&mut buf, &merged)?;
    std::fs::write(output, &buf).with_context(|| format!("cannot write {}", output.display()))?;

    let mut out = std::io::stdout().lock();
    let slots =
        merged
            .intervals
            .iter()
            .map(|i| i.start_unix_s)
            .fold(Vec::<f64>::new(), |mut v, s| {
                if v.last() != Some(&s) {
                    v.push(s);
                }
                v
            });
    writeln!(
        out,
        "merged {} logs into {} ({} intervals of {:.3} s from {})",
        inputs.len(),
        output.display(),
        slots.len(),
        merged.intervals.first().map_or(0.0, |i| i.length_s),
        fmt::utc(merged.start_unix_s)
    )?;
    writeln!(
        out,
        "{:<14} {:>12} {:>10} {:>10} {:>10} {:>10}",
        "tag", "count", "p50", "p99", "p99.9", "max"
    )?;
    for (tag, h) in totals_by_tag(&merged)? {
        let q = |p: f64| fmt::ns(h.value_at_quantile(p) as f64);
        writeln!(
            out,
            "{:<14} {:>12} {:>10} {:>10} {:>10} {:>10}",
            tag.as_deref().unwrap_or("(untagged)"),
            h.len(),
            q(0.5),
            q(0.99),
            q(0.999),
            fmt::ns(h.max() as f64)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(tag: &str, start: f64, n: u64, v: u64) -> HlogInterval {
        let mut h = Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3).unwrap();
        h.record_n(v, n).unwrap();
        HlogInterval {
            tag: Some(tag.into()),
            start_unix_s: start,
            length_s: 1.0,
            hist: h,
        }
    }

    #[test]
    fn aligns_on_absolute_time_and_adds_same_tags() {
        let a = Hlog {
            start_unix_s: 100.0,
            intervals: vec![
                iv("c", 100.0, 10, 1000),
                iv("c", 101.0, 10, 2000),
                iv("u", 101.0, 1, 5),
            ],
        };
        let b = Hlog {
            start_unix_s: 100.3,
            intervals: vec![
                iv("c", 100.3, 5, 3000),
                iv("c", 101.3, 5, 4000),
                iv("c", 102.3, 1, 9),
            ],
        };
        let m = merge_logs(&[a, b]).unwrap();
        assert_eq!(m.start_unix_s, 100.0);
        let c: Vec<_> = m
            .intervals
            .iter()
            .filter(|i| i.tag.as_deref() == Some("c"))
            .map(|i| (i.start_unix_s, i.hist.len()))
            .collect();
        assert_eq!(c, [(100.0, 15), (101.0, 15), (102.0, 1)]);
        let totals = totals_by_tag(&m).unwrap();
        assert_eq!(totals[&Some("c".to_string())].len(), 31);
        assert_eq!(totals[&Some("u".to_string())].len(), 1);
    }

    #[test]
    fn agent_outputs_never_collide() {
        for (o, j, h) in [
            ("m.hlog", "m.json", "m.hlog"),
            ("m.json", "m.json", "m.hlog"),
            ("m", "m", "m.hlog"),
            ("d/m.out", "d/m.out", "d/m.hlog"),
        ] {
            let (jj, hh) = agent_outputs(Path::new(o));
            assert_eq!((jj.to_str().unwrap(), hh.to_str().unwrap()), (j, h), "{o}");
            assert_ne!(jj, hh);
        }
    }

    #[test]
    fn empty_inputs_are_an_error() {
        assert!(merge_logs(&[]).is_err());
        assert!(
            merge_logs(&[Hlog {
                start_unix_s: 1.0,
                intervals: vec![]
            }])
            .is_err()
        );
    }
}
