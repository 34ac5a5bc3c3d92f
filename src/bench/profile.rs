//! `bench --profile`: record the server with `perf` during each measured run and group
//! the samples (the grouping itself is a pure step in [`crate::report::profile`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::report::profile::{Profile, parse_perf_report};

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

/// A `perf record` attached to one process.
pub struct Recording {
    child: Child,
    data: PathBuf,
}

impl Recording {
    /// Start sampling `pid` (all its threads) into `data`.
    pub fn start(pid: u32, data: &Path) -> anyhow::Result<Recording> {
        let child = Command::new("perf")
            .args(["record", "-q", "-F", FREQ, "-p", &pid.to_string(), "-o"])
            .arg(data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start perf record")?;
        // perf needs a moment to attach; samples before that are lost, not wrong.
        std::thread::sleep(Duration::from_millis(50));
        Ok(Recording {
            child,
            data: data.to_path_buf(),
        })
    }

    /// Stop (SIGINT, as perf expects), wait at most 10 s, and group the samples.
    pub fn finish(mut self) -> anyhow::Result<Profile> {
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
        let out = Command::new("perf")
            .args([
                "report",
                "--stdio",
                "--no-children",
                "--sort",
                "dso,sym",
                "-q",
                "--percent-limit",
                "0.05",
                "-i",
            ])
            .arg(&self.data)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .context("cannot run perf report")?;
        if !out.status.success() {
            bail!("perf report failed ({})", out.status);
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let p = parse_perf_report(&text);
        if p.top.is_empty() {
            bail!("perf recorded no samples of the server");
        }
        Ok(p)
    }
}
