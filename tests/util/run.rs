//! Child processes with a deadline. Whatever a child writes to a piped stdout or stderr
//! is read on threads from the moment it starts, so a chatty child never blocks on a
//! full pipe; past its deadline it is killed and the test fails naming the command.

use std::ffi::OsStr;
use std::fmt::Debug;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{BIN, wait_until};

/// A child that has exited: how, and everything it wrote to its piped outputs.
#[derive(Debug)]
pub struct Finished {
    /// The command, as `{:?}` prints it.
    pub cmd: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// From the spawn to the exit.
    pub elapsed: Duration,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The command, how it ended and all it wrote: for assertion messages.
    pub fn explain(&self) -> String {
        format!(
            "command: {}\nexit: {:?} after {:.2?}\nstdout:\n{}\nstderr:\n{}",
            self.cmd, self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// A running child whose piped stdout and stderr are read as they come. Its stdout
/// lines are also sent to a channel ([`Running::wait_line`]). Dropped while running,
/// it is killed.
pub struct Running {
    pub child: Child,
    pub cmd: String,
    t0: Instant,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    lines: Option<Receiver<String>>,
    /// The reader threads: they end at EOF, once every process holding the pipes exited.
    pumps: Vec<thread::JoinHandle<()>>,
}

/// Append what `r` yields to `sink` line by line (bytes that are not UTF-8 replaced, so
/// reading never stops early), and send each line to `lines`.
fn pump(
    r: impl Read + Send + 'static,
    sink: Arc<Mutex<String>>,
    lines: Option<Sender<String>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut line = Vec::new();
        while r
            .read_until(b'\n', &mut line)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            let text = String::from_utf8_lossy(&line).into_owned();
            if let Some(tx) = &lines {
                let _ = tx.send(text.clone());
            }
            sink.lock().unwrap().push_str(&text);
            line.clear();
        }
    })
}

impl Running {
    /// Spawn `cmd` with stdin closed and stdout and stderr piped.
    pub fn spawn(cmd: &mut Command) -> Running {
        Running::try_spawn(cmd).unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"))
    }

    /// [`Running::spawn`], or why the program could not be started.
    pub fn try_spawn(cmd: &mut Command) -> std::io::Result<Running> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        Ok(Running::adopt(child, format!("{cmd:?}")))
    }

    /// Read the outputs `child` was spawned with piped (those not taken already).
    pub fn adopt(mut child: Child, cmd: String) -> Running {
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pumps = Vec::new();
        let mut lines = None;
        if let Some(out) = child.stdout.take() {
            let (tx, rx) = std::sync::mpsc::channel();
            lines = Some(rx);
            pumps.push(pump(out, stdout.clone(), Some(tx)));
        }
        if let Some(err) = child.stderr.take() {
            pumps.push(pump(err, stderr.clone(), None));
        }
        Running {
            child,
            cmd,
            t0: Instant::now(),
            stdout,
            stderr,
            lines,
            pumps,
        }
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The stdout lines, for another thread to wait on ([`wait_line`]); afterwards
    /// [`Running::wait_line`] is not available.
    pub fn take_lines(&mut self) -> Receiver<String> {
        self.lines
            .take()
            .expect("stdout piped and its lines not taken")
    }

    /// The next stdout line that satisfies `f` (earlier ones are passed over), at most
    /// `within`; None past it or at EOF.
    pub fn wait_line(&self, within: Duration, f: impl FnMut(&str) -> bool) -> Option<String> {
        wait_line(
            self.lines
                .as_ref()
                .expect("stdout piped and its lines not taken"),
            within,
            f,
        )
    }

    /// Wait for the exit, at most `within`: what it did, or None if it still runs.
    pub fn wait_for(&mut self, within: Duration) -> Option<Finished> {
        let mut status = None;
        wait_until(within, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        let status = status?;
        // Everything it wrote is read once the readers reach EOF.
        let pumps = &mut self.pumps;
        let closed = wait_until(Duration::from_secs(10), || {
            pumps.iter().all(|p| p.is_finished())
        });
        assert!(
            closed,
            "{}: its stdout/stderr stayed open 10 s after it exited (a descendant holds them?)",
            self.cmd
        );
        for p in self.pumps.drain(..) {
            p.join().expect("output reader thread");
        }
        Some(Finished {
            cmd: self.cmd.clone(),
            status,
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr(),
            elapsed: self.t0.elapsed(),
        })
    }

    /// Wait for the exit, at most `within`; past it, kill it and fail the test with its
    /// stderr so far.
    pub fn wait(&mut self, within: Duration) -> Finished {
        self.wait_for(within).unwrap_or_else(|| {
            self.kill();
            panic!(
                "{}: did not exit within {within:?}; stderr: {}",
                self.cmd,
                self.stderr()
            )
        })
    }

    /// [`Running::wait`], consuming it.
    pub fn finish(mut self, within: Duration) -> Finished {
        self.wait(within)
    }

    /// SIGKILL, if it still runs, and reap it.
    pub fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The next line from `lines` that satisfies `f`, at most `within`; None past it or
/// once the writer is gone.
pub fn wait_line(
    lines: &Receiver<String>,
    within: Duration,
    mut f: impl FnMut(&str) -> bool,
) -> Option<String> {
    let end = Instant::now() + within;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).ok()?;
        if f(&line) {
            return Some(line);
        }
    }
}

/// Run `ringmux ARGS` (stdin closed) to its end, at most `limit`; past it the child is
/// killed and the test fails naming the command.
pub fn run_bounded<S: AsRef<OsStr> + Debug>(args: &[S], limit: Duration) -> Finished {
    Running::spawn(Command::new(BIN).args(args)).finish(limit)
}

/// `strace -f -qq -o /dev/null -e trace=SYSCALL -e inject=SYSCALL:SPEC`: the command to
/// trace follows as its arguments.
pub fn strace_inject(syscall: &str, spec: &str) -> Command {
    let mut c = Command::new("strace");
    c.args(["-f", "-qq", "-o", "/dev/null", "-e"])
        .arg(format!("trace={syscall}"))
        .arg("-e")
        .arg(format!("inject={syscall}:{spec}"));
    c
}

/// Make `cmd`'s process start with `resource` limited to `n` (soft and hard).
pub fn with_rlimit(cmd: &mut Command, resource: libc::__rlimit_resource_t, n: u64) -> &mut Command {
    // SAFETY: runs in the forked child before exec; setrlimit is async-signal-safe and
    // `lim` lives on this closure's stack for the call.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            if libc::setrlimit(resource, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// A finished `ringmux load` and the result it wrote with `--json` (None: none).
#[derive(Debug)]
pub struct LoadRun {
    pub run: Finished,
    pub json: Option<Value>,
}

impl std::ops::Deref for LoadRun {
    type Target = Finished;
    fn deref(&self) -> &Finished {
        &self.run
    }
}

impl LoadRun {
    /// The `--json` result; fails the test with the run's output when none was written.
    pub fn json(&self) -> &Value {
        self.json
            .as_ref()
            .unwrap_or_else(|| panic!("no JSON written\n{}", self.explain()))
    }
}

/// A `--json` path of its own for each load run of this process.
fn load_json_path() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "ringmux-load-{}-{}.json",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Run `cmd` (a command ending in `ringmux load ...`) with `--json F` added, at most
/// `limit`, and read F back.
pub fn run_load(mut cmd: Command, limit: Duration) -> LoadRun {
    let json_path = load_json_path();
    let _ = std::fs::remove_file(&json_path);
    cmd.arg("--json").arg(&json_path);
    let run = Running::spawn(&mut cmd).finish(limit);
    let json = std::fs::read_to_string(&json_path).ok().map(|s| {
        serde_json::from_str(&s)
            .unwrap_or_else(|e| panic!("--json is not JSON ({e})\n{}", run.explain()))
    });
    let _ = std::fs::remove_file(&json_path);
    LoadRun { run, json }
}

/// `ringmux load ARGS --json F`, at most `limit`.
pub fn load<S: AsRef<OsStr>>(args: &[S], limit: Duration) -> LoadRun {
    let mut cmd = Command::new(BIN);
    cmd.arg("load").args(args);
    run_load(cmd, limit)
}
