//! Exports for CI benchmark trackers: github-action-benchmark (custom tools) and the
//! Bencher Metric Format.

use serde_json::{Map, Value, json};

use crate::results::schema::{BenchResults, Cell, RunMetrics};

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn spread(c: &Cell, get: impl Fn(&RunMetrics) -> Option<f64>) -> Option<String> {
    let (lo, hi) = (get(&c.min)?, get(&c.max)?);
    (c.runs.len() > 1 && lo.is_finite() && hi.is_finite())
        .then(|| format!("± {:.3}", (hi - lo) / 2.0))
}

fn entry(
    name: String,
    unit: &str,
    value: f64,
    range: Option<String>,
    runs: usize,
) -> Option<Value> {
    // A cell whose every run measured nothing (`empty_runs`) has no figure to export.
    if runs == 0 {
        return None;
    }
    let value = finite(value)?;
    let mut o = json!({ "name": name, "unit": unit, "value": value, "extra": format!("median of {runs} runs") });
    if let Some(r) = range {
        o["range"] = Value::String(r);
    }
    Some(o)
}

/// `customSmallerIsBetter`: p99 latency (µs), CPU ns/msg and syscalls/msg per cell;
/// resident bytes per idle connection per server of an idle run.
pub fn gab_smaller(r: &BenchResults) -> Value {
    let mut v = Vec::new();
    for c in &r.cells {
        let m = &c.median;
        let n = c.runs.len();
        v.extend(entry(
            format!("{} p99 latency", c.id),
            "us",
            m.p99_ns / 1e3,
            spread(c, |m| Some(m.p99_ns / 1e3)),
            n,
        ));
        if let Some(cpu) = m.cpu_ns_per_msg {
            v.extend(entry(
                format!("{} cpu per msg", c.id),
                "ns/msg",
                cpu,
                spread(c, |m| m.cpu_ns_per_msg),
                n,
            ));
        }
        if let Some(sc) = m.syscalls_per_msg {
            v.extend(entry(
                format!("{} syscalls per msg", c.id),
                "syscalls/msg",
                sc,
                spread(c, |m| m.syscalls_per_msg),
                n,
            ));
        }
    }
    for s in r.idle.iter().flat_map(|i| &i.servers) {
        let n = s.runs.len();
        let range = (n > 1).then(|| {
            format!(
                "± {:.3}",
                (s.bytes_per_conn_max - s.bytes_per_conn_min) / 2.0
            )
        });
        v.extend(entry(
            format!("{} memory per connection", s.id),
            "bytes/conn",
            s.bytes_per_conn,
            range,
            n,
        ));
    }
    Value::Array(v)
}

/// `customBiggerIsBetter`: throughput per cell.
pub fn gab_bigger(r: &BenchResults) -> Value {
    Value::Array(
        r.cells
            .iter()
            .filter_map(|c| {
                entry(
                    format!("{} throughput", c.id),
                    "msgs/s",
                    c.median.msgs_per_s,
                    spread(c, |m| Some(m.msgs_per_s)),
                    c.runs.len(),
                )
            })
            .collect(),
    )
}

/// Bencher Metric Format: per cell, each measure with min/max as lower/upper.
pub fn bencher(r: &BenchResults) -> Value {
    let mut root = Map::new();
    // A cell whose every run measured nothing has no figure: it is left out.
    for c in r.cells.iter().filter(|c| !c.runs.is_empty()) {
        let mut measures = Map::new();
        let mut put = |name: &str, get: &dyn Fn(&RunMetrics) -> Option<f64>| {
            let Some(v) = get(&c.median).and_then(finite) else {
                return;
            };
            let mut o = json!({ "value": v });
            if let Some(lo) = get(&c.min).and_then(finite) {
                o["lower_value"] = json!(lo.min(v));
            }
            if let Some(hi) = get(&c.max).and_then(finite) {
                o["upper_value"] = json!(hi.max(v));
            }
            measures.insert(name.to_string(), o);
        };
        put("throughput", &|m| Some(m.msgs_per_s));
        put("latency_p50_ns", &|m| Some(m.p50_ns));
        put("latency_p99_ns", &|m| Some(m.p99_ns));
        put("latency_p99_9_ns", &|m| Some(m.p99_9_ns));
        put("cpu_ns_per_msg", &|m| m.cpu_ns_per_msg);
        put("syscalls_per_msg", &|m| m.syscalls_per_msg);
        put("ctx_switches_per_msg", &|m| m.ctx_switches_per_msg);
        root.insert(c.id.clone(), Value::Object(measures));
    }
    for s in r.idle.iter().flat_map(|i| &i.servers) {
        let Some(v) = finite(s.bytes_per_conn) else {
            continue;
        };
        let mut o = json!({ "value": v });
        if let Some(lo) = finite(s.bytes_per_conn_min) {
            o["lower_value"] = json!(lo.min(v));
        }
        if let Some(hi) = finite(s.bytes_per_conn_max) {
            o["upper_value"] = json!(hi.max(v));
        }
        root.insert(s.id.clone(), json!({ "memory_bytes_per_conn": o }));
    }
    Value::Object(root)
}
