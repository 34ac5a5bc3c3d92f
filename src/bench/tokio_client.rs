//! `bench --client tokio`: the load of every cell driven by the tokio reference client
//! (peers/src/bin/tokio_echo_client.rs) instead of `ringmux load`, so a verdict can be
//! checked not to depend on ringmux's own load generator. The plan checks what it
//! cannot do ([`check`]); the matrix runs it where it would run `ringmux load`
//! ([`command`]) and reads its result ([`read_result`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::config::{BenchConfig, LoadClient};
use super::peers::{TOKIO_CLIENT, ensure_built, locked_version, peer_path};
use super::plan::Shape;
use super::proc::pinned;
use crate::proto::Proto;
use crate::results::schema::{LoadErrors, Percentiles, RunMetrics};

/// The tokio client's binary when `cfg` asks for it (built once from the source tree
/// when missing), None for ringmux's load; one line of bad usage for what it cannot do.
/// `notes` gets what results.json should say about it.
pub fn check(
    cfg: &BenchConfig,
    exe: &Path,
    load_cpus: Option<&[usize]>,
    notes: &mut Vec<String>,
) -> anyhow::Result<Option<PathBuf>> {
    if cfg.client != LoadClient::Tokio {
        return Ok(None);
    }
    if cfg.proto != Proto::Echo {
        bail!(
            "--client tokio speaks echo only: leave out --proto {}",
            cfg.proto.name()
        );
    }
    if cfg.idle_conns.is_some() {
        bail!("--client tokio drives messages, not idle connections: leave out --idle-conns");
    }
    ensure_built(exe, &[TOKIO_CLIENT]);
    let path = peer_path(exe, TOKIO_CLIENT).unwrap_or_default();
    if !path.is_file() {
        bail!(
            "--client tokio: the tokio reference client is not built ({}): cargo build --release -p ringmux-peers builds it",
            path.display()
        );
    }
    let cpus = load_cpus.map_or_else(
        || "unpinned".to_string(),
        |c| format!("pinned to CPU {}", crate::os::cpus::format_cpu_list(c)),
    );
    notes.push(format!(
        "load: every cell driven by the tokio reference client (tokio {}, one thread, {cpus}) instead of ringmux load",
        locked_version("tokio").unwrap_or_else(|| "?".into())
    ));
    Ok(Some(path))
}

/// The tokio client against `addr` in `shape` for `duration` seconds (no warm-up of its
/// own), pinned as `ringmux load` is; `--allow-errors` as the bench's load has it.
pub fn command(
    bin: &Path,
    load_cpus: Option<Vec<usize>>,
    addr: SocketAddr,
    size: u32,
    shape: &Shape,
    rate: Option<f64>,
    duration: f64,
) -> Command {
    let mut c = Command::new(bin);
    c.args(["--addr", &addr.to_string()])
        .args(["--conns", &shape.conns.to_string()])
        .args(["--size", &size.to_string()])
        .args(["--pipeline", &shape.pipeline.to_string()])
        .args(["--duration", &duration.to_string(), "--warmup", "0"])
        .arg("--allow-errors");
    if let Some(r) = rate {
        c.args(["--rate", &r.to_string()]);
    }
    pinned(c, load_cpus)
}

/// The part of the tokio client's JSON the bench reads: the same names as in
/// `ringmux load --json` (`LoadResult`).
#[derive(Debug, Deserialize)]
struct TokioResult {
    client: String,
    messages: u64,
    msgs_per_s: f64,
    mb_per_s: f64,
    latency: Percentiles,
    errors: LoadErrors,
    #[serde(default)]
    rate_kept: Option<bool>,
    #[serde(default)]
    max_lag_s: Option<f64>,
}

/// The figures of one run from the tokio client's `--json` file, the messages it
/// completed in its measured window, and a note when the open loop's asked rate was
/// not kept.
pub fn read_result(json: &Path) -> anyhow::Result<(RunMetrics, u64, Option<String>)> {
    let r: TokioResult = serde_json::from_slice(
        &std::fs::read(json)
            .with_context(|| format!("the tokio client wrote no {}", json.display()))?,
    )
    .with_context(|| format!("{} is not a tokio client result", json.display()))?;
    if r.client != "tokio" {
        bail!("{}: client {:?}, not tokio", json.display(), r.client);
    }
    let m = RunMetrics::of_load(r.msgs_per_s, r.mb_per_s, &r.latency, r.errors.total());
    let note = (r.rate_kept == Some(false)).then(|| {
        format!(
            "the tokio client did not keep the asked rate ({:.0} msgs/s, max schedule lag {:.1} ms)",
            r.msgs_per_s,
            r.max_lag_s.unwrap_or(0.0) * 1e3
        )
    });
    Ok((m, r.messages, note))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_clients_json() {
        let dir = std::env::temp_dir().join(format!("ringmux-tokio-result-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("r.json");
        let lat = r#"{"count":10,"min":1,"mean":2.0,"p50":2000,"p75":3,"p90":9000,"p99":99000,"p99_9":5,"p99_99":6,"p99_999":7,"max":8000000}"#;
        std::fs::write(
            &p,
            format!(
                r#"{{"client":"tokio","messages":10,"msgs_per_s":1000.0,"mb_per_s":0.128,"latency":{lat},"rate_kept":false,"max_lag_s":0.07,
                "errors":{{"mismatch":1,"reset":2,"timeout":0,"connect":0,"other":0}},"cpu_ns_per_msg":5.0}}"#
            ),
        )
        .unwrap();
        let (m, n, note) = read_result(&p).unwrap();
        assert_eq!(n, 10);
        assert_eq!(
            (m.msgs_per_s, m.p50_ns, m.p99_ns, m.max_ns),
            (1000.0, 2000.0, 99000.0, 8e6)
        );
        assert_eq!(m.errors, 3);
        assert_eq!(
            m.cpu_ns_per_msg, None,
            "server figures are the bench's to fill"
        );
        assert!(note.is_some_and(|n| n.contains("70.0 ms")));
        std::fs::write(&p, r#"{"client":"ringmux"}"#).unwrap();
        assert!(read_result(&p).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
