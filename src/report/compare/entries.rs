//! What `compare` reads of a results file (a bench `results.json` or a load `--json`
//! file): its entries with their medians and per-run figures, and the machine.

use std::path::Path;

use crate::report::input::{bad_input, read_json};
use crate::results::schema::{
    BENCH_SCHEMA, BenchResults, Cell, LOAD_SCHEMA, LoadResult, RunMetrics,
};

/// What `compare` reads of one entry: a matrix cell's medians, or a server's median
/// resident bytes per idle connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Figures {
    /// A matrix cell's or a load run's figures.
    Run(RunMetrics),
    /// An idle-cost row: resident bytes per idle connection.
    Idle {
        /// Resident bytes per idle connection.
        bytes_per_conn: f64,
    },
}

pub(super) fn run_of(f: &Figures) -> Option<&RunMetrics> {
    match f {
        Figures::Run(m) => Some(m),
        Figures::Idle { .. } => None,
    }
}

/// Every figure `compare` reads of one entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The medians (bench) or the single values (load).
    pub median: Figures,
    /// One per run (bench: `runs[]`; load: the one run).
    pub runs: Vec<Figures>,
    /// Open loop: the asked rate (throughput is then an input, not a result).
    pub open_rate: Option<f64>,
    /// The IO model of this entry: "uring:full", "epoll", a load driver "load:uring".
    pub io: String,
}

/// The machine a results file was measured on: CPU model, cores, kernel, ringmux version.
#[derive(Debug, Clone, PartialEq)]
pub struct Fingerprint(pub Vec<(&'static str, String)>);

impl Fingerprint {
    /// The facts of `sys` that make two results comparable: CPU model, cores, kernel
    /// and ringmux version.
    pub fn of(sys: &crate::sysinfo::SysInfo) -> Fingerprint {
        Fingerprint(vec![
            ("cpu", sys.cpu_model.clone()),
            ("cores", sys.cores.to_string()),
            ("kernel", sys.kernel.clone()),
            ("ringmux", sys.ringmux_version.clone()),
        ])
    }

    /// "kernel 6.1 -> 6.18, cores 2 -> 4", or empty when the same.
    pub fn diff(&self, other: &Fingerprint) -> Vec<String> {
        self.0
            .iter()
            .zip(&other.0)
            .filter(|(a, b)| a.1 != b.1)
            .map(|(a, b)| format!("{} {:?} -> {:?}", a.0, a.1, b.1))
            .collect()
    }
}

/// Read a results file of either schema as a list of cells (id, median metrics).
pub fn load_cells(path: &Path) -> anyhow::Result<Vec<(String, Figures)>> {
    Ok(load_entries(path)?
        .1
        .into_iter()
        .map(|(id, e)| (id, e.median))
        .collect())
}

/// Read a results file of either schema: its machine and its entries.
pub fn load_entries(path: &Path) -> anyhow::Result<(Fingerprint, Vec<(String, Entry)>)> {
    let (v, schema) = read_json(path).map_err(|e| bad_input(format!("{e:#}")))?;
    if schema == BENCH_SCHEMA {
        let r: BenchResults = serde_json::from_value(v).map_err(|e| {
            bad_input(format!(
                "{}: not a {BENCH_SCHEMA} file: {e}",
                path.display()
            ))
        })?;
        let fp = Fingerprint::of(&r.sys);
        let idle = r.idle.into_iter().flat_map(|i| i.servers).map(|s| {
            let f = Figures::Idle {
                bytes_per_conn: s.bytes_per_conn,
            };
            let runs = s
                .runs
                .iter()
                .map(|x| Figures::Idle {
                    bytes_per_conn: x.bytes_per_conn,
                })
                .collect();
            let io = s.id.split('/').next().unwrap_or("").to_string();
            (
                s.id,
                Entry {
                    median: f,
                    runs,
                    open_rate: None,
                    io,
                },
            )
        });
        // A cell whose every run measured nothing (bench flags it: `empty_runs`) has no
        // median to judge: it is left out, so it shows as "only in" the other side
        // rather than as a 0 that reads like a collapse.
        let cells = r
            .cells
            .into_iter()
            .filter(|c| !c.runs.is_empty())
            .map(|c: Cell| {
                let io = match &c.features {
                    Some(f) => format!("{}:{f}", c.server),
                    None => c.server.clone(),
                };
                let e = Entry {
                    median: Figures::Run(c.median),
                    runs: c.runs.into_iter().map(Figures::Run).collect(),
                    open_rate: if c.mode == "open" {
                        c.rate.or(Some(f64::NAN))
                    } else {
                        None
                    },
                    io,
                };
                (c.id, e)
            });
        Ok((fp, cells.chain(idle).collect()))
    } else if schema == LOAD_SCHEMA {
        let r: LoadResult = serde_json::from_value(v)
            .map_err(|e| bad_input(format!("{}: not a {LOAD_SCHEMA} file: {e}", path.display())))?;
        let m = Figures::Run(load_metrics(&r));
        let e = Entry {
            median: m.clone(),
            runs: vec![m],
            open_rate: r.params.rate,
            io: format!("load:{}", r.params.driver),
        };
        Ok((Fingerprint::of(&r.sys), vec![("load".to_string(), e)]))
    } else {
        Err(bad_input(format!(
            "{}: schema {schema:?} is neither {BENCH_SCHEMA} nor {LOAD_SCHEMA}",
            path.display()
        )))
    }
}

/// A load result's figures as bench metrics.
pub fn load_metrics(r: &LoadResult) -> RunMetrics {
    RunMetrics::of_load(r.msgs_per_s, r.mb_per_s, &r.latency, r.errors.total())
}
