//! Test harness: which server variants exist and how a test runs on each, skips recorded
//! by name, deadlines, payloads. The rooms: `run` (child processes with a deadline and
//! `ringmux load` runs), `server` (a running `ringmux serve`: start, connect, signal,
//! stop, read its /proc), `echo` (the load tests' own echo servers and load drivers),
//! `fixtures` (synthetic histograms and result files for the report tests).
//! Every wait has a deadline; assertion messages carry the command and stderr.
#![allow(dead_code)]

pub mod echo;
pub mod fixtures;
mod run;
mod server;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

pub use run::*;
pub use server::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_ringmux");

/// The folder of the reference peers' binaries (the peers crate: `tokio_echo_server`,
/// `monoio_echo_server`, `tokio_echo_client`), beside `ringmux`. `cargo test` builds
/// that crate's binaries only as test harnesses, so the first test to need them builds
/// them once (`cargo build -p ringmux-peers`, the test's profile and target folder);
/// Err: why they are not there.
pub fn peers_dir() -> Result<&'static Path, String> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let dir = Path::new(BIN).parent().expect("ringmux is in a folder");
    let present = || {
        [
            "tokio_echo_server",
            "monoio_echo_server",
            "tokio_echo_client",
        ]
        .iter()
        .all(|b| dir.join(b).is_file())
    };
    BUILT
        .get_or_init(|| {
            if present() {
                return Ok(());
            }
            let target = dir.parent().ok_or("no target folder")?;
            let mut c = Command::new(env!("CARGO"));
            c.args(["build", "--quiet", "-p", "ringmux-peers", "--manifest-path"])
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
                .env("CARGO_TARGET_DIR", target);
            if dir.file_name().is_some_and(|p| p == "release") {
                c.arg("--release");
            }
            let st = c.status().map_err(|e| format!("cannot run cargo: {e}"))?;
            if !st.success() || !present() {
                return Err(format!("cargo build -p ringmux-peers: {st}"));
            }
            Ok(())
        })
        .clone()
        .map(|()| dir)
}

/// One backend at one io_uring feature level: every server test runs once per variant.
/// [`Variant::ALL`] covers `ringmux::server::Backend::NAMES` (checked by a test).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Epoll,
    Poll,
    Select,
    Sigio,
    Blocking,
    Threads,
    Busypoll,
    UringBaseline,
    UringFastpoll,
    UringMultishot,
    UringFull,
}

impl Variant {
    pub const ALL: [Variant; 11] = [
        Variant::Epoll,
        Variant::Poll,
        Variant::Select,
        Variant::Sigio,
        Variant::Blocking,
        Variant::Threads,
        Variant::Busypoll,
        Variant::UringBaseline,
        Variant::UringFastpoll,
        Variant::UringMultishot,
        Variant::UringFull,
    ];

    /// The `--backend` name.
    pub fn backend(self) -> &'static str {
        match self {
            Variant::Epoll => "epoll",
            Variant::Poll => "poll",
            Variant::Select => "select",
            Variant::Sigio => "sigio",
            Variant::Blocking => "blocking",
            Variant::Threads => "threads",
            Variant::Busypoll => "busypoll",
            _ => "uring",
        }
    }

    /// The io_uring feature level, for the uring variants.
    pub fn level(self) -> Option<&'static str> {
        match self {
            Variant::UringBaseline => Some("baseline"),
            Variant::UringFastpoll => Some("fastpoll"),
            Variant::UringMultishot => Some("multishot"),
            Variant::UringFull => Some("full"),
            _ => None,
        }
    }

    pub fn args(self) -> Vec<&'static str> {
        let mut a = vec!["--backend", self.backend()];
        if let Some(l) = self.level() {
            a.extend(["--uring-features", l]);
        }
        a
    }

    /// What the server's start line must say.
    pub fn expect(self) -> String {
        format!(
            "backend={} features={}",
            self.backend(),
            self.level().unwrap_or("-")
        )
    }

    /// Serves several connections at once (`blocking` serves one; the next waits in
    /// the listen backlog until it leaves).
    pub fn concurrent(self) -> bool {
        self != Variant::Blocking
    }

    /// Sends block (blocking, threads): a connection owes at most one read's worth.
    pub fn blocking_sends(self) -> bool {
        matches!(self, Variant::Blocking | Variant::Threads)
    }

    /// Has an event loop to run per core: `--threads N` > 1 is refused otherwise.
    pub fn has_event_loop(self) -> bool {
        !matches!(
            self,
            Variant::Blocking | Variant::Threads | Variant::Busypoll
        )
    }

    /// select refuses connections whose fd is FD_SETSIZE (1024) or more.
    pub fn fd_limit(self) -> Option<usize> {
        (self == Variant::Select).then_some(1024)
    }

    /// Ok, or why this kernel cannot run the variant (from `ringmux probe --json`).
    pub fn available(self) -> Result<(), String> {
        let Some(level) = self.level() else {
            return Ok(());
        };
        let p = probe();
        let usable = p["levels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l[0] == level && l[1] == true);
        if usable {
            Ok(())
        } else {
            Err(format!(
                "io_uring level {level} not usable here: {}",
                p["unavailable"]
            ))
        }
    }
}

/// `ringmux probe --json`, run once.
pub fn probe() -> &'static serde_json::Value {
    static PROBE: OnceLock<serde_json::Value> = OnceLock::new();
    PROBE.get_or_init(|| {
        let r = run_bounded(&["probe", "--json"], Duration::from_secs(20));
        serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("probe --json is not JSON ({e})\n{}", r.explain()))
    })
}

/// Whether strace can inject faults here (a skip is printed, and refused in CI).
pub fn strace_available() -> bool {
    let ok = Command::new("strace")
        .arg("-V")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "strace is missing in CI: .ci/run must install it"
        );
        record_skip("strace tests", "-", "strace not installed");
    }
    ok
}

/// Environment variable naming a file every skipped variant is appended to (one line
/// each, `test [Variant]: why`); `.ci/run` sets it and prints the lines at the end.
pub const SKIP_FILE_ENV: &str = "RINGMUX_SKIP_FILE";

/// Say that `test` did not run for `variant` and why: printed (captured output) and
/// appended to `$RINGMUX_SKIP_FILE` when set, so CI shows it after the run.
pub fn record_skip(test: &str, variant: &str, why: &str) {
    let line = format!("{test} [{variant}]: {why}");
    println!("SKIPPED {line}");
    if let Some(path) = std::env::var_os(SKIP_FILE_ENV) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{SKIP_FILE_ENV}: {e}"));
        // One write per line (O_APPEND): lines from parallel tests do not interleave.
        f.write_all(format!("{line}\n").as_bytes())
            .unwrap_or_else(|e| panic!("{SKIP_FILE_ENV}: {e}"));
    }
}

/// What a test runs on that this kernel may lack: a server [`Variant`], a load driver.
pub trait Runnable: Copy + std::fmt::Debug {
    /// Ok, or why it cannot run here.
    fn available(self) -> Result<(), String>;
}

impl Runnable for Variant {
    fn available(self) -> Result<(), String> {
        Variant::available(self)
    }
}

/// Run `body` on `v`, or record why it is skipped (by name, never silently).
pub fn run_on<V: Runnable>(v: V, test: &str, body: fn(V)) {
    match v.available() {
        Ok(()) => body(v),
        Err(why) => record_skip(test, &format!("{v:?}"), &why),
    }
}

/// Run `body` for one variant, or record why it is skipped.
pub fn run_variant(v: Variant, test: &str, body: fn(Variant)) {
    run_on(v, test, body)
}

/// Define a test module `$name` with one #[test] per listed `fn_name => what it runs
/// on` (a [`Runnable`]).
#[macro_export]
macro_rules! variant_tests {
    ($name:ident, $body:expr, $($test:ident => $on:expr),+ $(,)?) => {
        mod $name {
            use super::*;
            $(
                #[test]
                fn $test() {
                    $crate::util::run_on($on, stringify!($name), $body);
                }
            )+
        }
    };
}

/// Define a test module with one #[test] per backend variant.
#[macro_export]
macro_rules! backend_test {
    ($name:ident, $body:expr) => {
        $crate::variant_tests!(
            $name,
            $body,
            epoll => $crate::util::Variant::Epoll,
            poll => $crate::util::Variant::Poll,
            select => $crate::util::Variant::Select,
            sigio => $crate::util::Variant::Sigio,
            blocking => $crate::util::Variant::Blocking,
            threads => $crate::util::Variant::Threads,
            busypoll => $crate::util::Variant::Busypoll,
            uring_baseline => $crate::util::Variant::UringBaseline,
            uring_fastpoll => $crate::util::Variant::UringFastpoll,
            uring_multishot => $crate::util::Variant::UringMultishot,
            uring_full => $crate::util::Variant::UringFull,
        );
    };
}

/// Define a test module with one #[test] per io_uring level (the paths that exist only
/// where there is a ring).
#[macro_export]
macro_rules! uring_test {
    ($name:ident, $body:expr) => {
        $crate::variant_tests!(
            $name,
            $body,
            uring_baseline => $crate::util::Variant::UringBaseline,
            uring_fastpoll => $crate::util::Variant::UringFastpoll,
            uring_multishot => $crate::util::Variant::UringMultishot,
            uring_full => $crate::util::Variant::UringFull,
        );
    };
}

/// Poll `f` until true or the deadline passes.
pub fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Poll `f` until its value has not changed for `quiet` (at most `within`): that value,
/// or None if it kept changing. For "settled" conditions (descriptors closed, memory in
/// place, a writer stuck): no progress over a window is the condition itself.
pub fn steady<T: PartialEq>(
    within: Duration,
    quiet: Duration,
    mut f: impl FnMut() -> T,
) -> Option<T> {
    let mut last = (f(), Instant::now());
    let ok = wait_until(within, || {
        let now = f();
        if now != last.0 {
            last = (now, Instant::now());
        }
        last.1.elapsed() >= quiet
    });
    ok.then_some(last.0)
}

/// A fresh, empty folder for one test's files (`tag` names the test and variant).
pub fn scratch_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ringmux-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    d
}

/// A JSON file, parsed; panics naming the file.
pub fn read_json(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

/// A `Name:` field of a /proc status file (`/proc/PID/status`, `/proc/self/status`,
/// a task's), trimmed; None when the file or the field is missing.
pub fn proc_status(path: &Path, name: &str) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// A `Name:   N kB` field of `/proc/PID/status` in KiB.
pub fn status_kib(pid: i32, name: &str) -> Option<u64> {
    proc_status(Path::new(&format!("/proc/{pid}/status")), name)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The CPUs this test process may run on (to pick CPUs for --pin).
pub fn allowed_cpus() -> Vec<usize> {
    let list = proc_status(Path::new("/proc/self/status"), "Cpus_allowed_list")
        .expect("Cpus_allowed_list in /proc/self/status");
    ringmux::os::cpus::parse_cpu_list(&list).unwrap()
}

/// A counter from a server's exit summary (`name=N`); panics naming it when absent.
pub fn counter(stdout: &str, name: &str) -> u64 {
    let key = format!("{name}=");
    stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&key))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the exit summary: {stdout}"))
}

/// Deterministic pseudo-random bytes (xorshift), so payloads need no storage.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Read exactly `n` bytes in reads of varying size (1, 2, 3, ... up to 64 KiB).
pub fn read_varied(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut buf = vec![0u8; 65536];
    let mut step = 1usize;
    while out.len() < n {
        let want = step.min(n - out.len()).min(buf.len());
        let got = s
            .read(&mut buf[..want])
            .unwrap_or_else(|e| panic!("read after {} of {n} bytes: {e}", out.len()));
        assert!(got > 0, "EOF after {} of {n} bytes", out.len());
        out.extend_from_slice(&buf[..got]);
        step = if step >= 65536 { 1 } else { step * 3 + 1 };
    }
    out
}

/// xorshift64*, seeded per run and variant (printed, so a failure can be replayed).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        lo + self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % (hi - lo + 1)
    }

    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.range(0, xs.len() as u64 - 1) as usize]
    }
}

/// `name` from the environment as seconds, or `default`.
pub fn env_secs(name: &str, default: f64) -> f64 {
    match std::env::var(name) {
        Ok(s) => s
            .parse()
            .ok()
            .filter(|v: &f64| *v > 0.0)
            .unwrap_or_else(|| panic!("{name}={s}: seconds above 0 expected")),
        Err(_) => default,
    }
}

/// The run's seed: `RINGMUX_CHAOS_SEED`, else the clock; mixed with the variant.
pub fn seed_for(v: Variant) -> u64 {
    let base = match std::env::var("RINGMUX_CHAOS_SEED") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("RINGMUX_CHAOS_SEED={s}: an integer expected")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    base ^ (Variant::ALL.iter().position(|&x| x == v).unwrap() as u64) << 56
}
