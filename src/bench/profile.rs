//! `bench --profile`: record the server with `perf` during each measured run and group
//! the samples (the grouping itself is a pure step in [`crate::report::profile`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::report::profile::{Profile, parse_perf_report};
use crate::results::profile::SCOPE_CPUS;

/// Sampling frequency: enough samples in a 1 s run (about 2,000 per busy core)
/// without perf itself costing the server much.
const FREQ: &str = "1999";

/// Whether `perf` can be run here; `Err` says why not, in one line.
pub fn available() -> Result<(), String> {
    match Command::new("perf")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("`perf --version` failed ({s})")),
        Err(e) => Err(format!(
            "perf is not installed ({e}); install it (Debian: linux-perf) to see where the server's CPU goes"
        )),
    }
}

/// A `perf record` of the servers of one run: every sample on the servers' CPUs, kept
/// per server process when the report is made, or (servers not pinned, or CPU-wide
/// recording refused) a recording attached to the processes.
///
/// CPU-wide is the default because attaching to a process (`-p`) costs the process at
/// every context switch: perf switches its per-task events in and out. At one
/// connection, where the server sleeps and wakes once per message, that cut a
/// server's rate from 13.9k-15.9k to 8.6k msgs/s here and more than doubled its CPU
/// per message (docs/io_uring-work.md, section 13). One recording serves every server of a run
/// (`--together`): two recordings of one CPU would each sample the other's work.
pub struct Recording {
    child: Child,
    data: PathBuf,
    pids: Vec<u32>,
    scope: String,
}

impl Recording {
    /// Start sampling the servers `pids` (all their threads) into `data`: on `cpus`,
    /// the CPUs they are pinned to, when given and allowed; else attached to them.
    pub fn start(pids: &[u32], cpus: Option<&[usize]>, data: &Path) -> anyhow::Result<Recording> {
        if let Some(cpus) = cpus.filter(|c| !c.is_empty()) {
            let list = crate::os::cpus::format_cpu_list(cpus);
            let mut child = spawn(&["-a", "-C", &list], data)?;
            // perf needs a moment to attach; samples before that are lost, not wrong.
            std::thread::sleep(Duration::from_millis(50));
            if child.try_wait()?.is_none() {
                return Ok(Recording {
                    child,
                    data: data.to_path_buf(),
                    pids: pids.to_vec(),
                    scope: format!("{SCOPE_CPUS} {list}"),
                });
            }
            // Refused (perf_event_paranoid above 0 without CAP_PERFMON): per process.
        }
        let list: Vec<String> = pids.iter().map(u32::to_string).collect();
        let child = spawn(&["-p", &list.join(",")], data)?;
        std::thread::sleep(Duration::from_millis(50));
        Ok(Recording {
            child,
            data: data.to_path_buf(),
            pids: pids.to_vec(),
            scope: "process".to_string(),
        })
    }

    /// Stop (SIGINT, as perf expects), wait at most 10 s, remove the data file, and
    /// group each server's samples: one profile per pid, in `start`'s order.
    pub fn finish(mut self) -> anyhow::Result<Vec<anyhow::Result<Profile>>> {
        self.stop()?;
        let each = self
            .pids
            .iter()
            .map(|&pid| report(&self.data, pid, &self.scope));
        Ok(each.collect()) // the data file goes with `self` (Drop)
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        // SAFETY: kill(2) on the perf process we spawned.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let t0 = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait()? {
                break st;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("perf record did not stop within 10 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if !status.success() && status.code() != Some(130) && !self.data.exists() {
            let mut err = String::new();
            if let Some(mut e) = self.child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            bail!("perf record failed ({status}): {}", err.trim());
        }
        Ok(())
    }
}

impl Drop for Recording {
    /// A run that failed before `finish` leaves no perf recording behind, nor its data.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.data);
    }
}

/// One process's samples from `data`, grouped, in shares of its own samples.
fn report(data: &Path, pid: u32, scope: &str) -> anyhow::Result<Profile> {
    let out = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            // pid in the key: with `--sort dso,sym` a symbol both servers (or the
            // idle task) sampled is one entry, and `--pid` keeps or drops it whole,
            // for whichever process made it first.
            "--sort",
            "pid,dso,sym",
            "-q",
            "--percent-limit",
            "0.05",
            "--percentage",
            "relative",
        ])
        .arg("--pid")
        .arg(pid.to_string())
        .arg("-i")
        .arg(data)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .context("cannot run perf report")?;
    if !out.status.success() {
        bail!("perf report failed ({})", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut p = parse_perf_report(&text);
    if p.top.is_empty() {
        bail!("perf recorded no samples of the server");
    }
    p.scope = Some(scope.to_string());
    Ok(p)
}

/// `perf record` with `target` (`-p PID` or `-a -C LIST`) into `data`.
fn spawn(target: &[&str], data: &Path) -> anyhow::Result<Child> {
    Command::new("perf")
        .args(["record", "-q", "-F", FREQ])
        .args(target)
        .arg("-o")
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start perf record")
}
