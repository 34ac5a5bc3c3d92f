//! Test harness: start the real binary, find its port, stop it, read its /proc.
//! Every wait has a deadline; assertion messages carry the command and stderr.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ringmux");

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
        let out = Command::new(BIN)
            .args(["probe", "--json"])
            .output()
            .expect("run ringmux probe");
        serde_json::from_slice(&out.stdout).expect("probe --json is JSON")
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

/// Run `body` for one variant, or record why it is skipped (by name, never silently).
pub fn run_variant(v: Variant, test: &str, body: fn(Variant)) {
    match v.available() {
        Ok(()) => body(v),
        Err(why) => record_skip(test, &format!("{v:?}"), &why),
    }
}

/// Define a test module with one #[test] per backend variant.
#[macro_export]
macro_rules! backend_test {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn epoll() {
                $crate::util::run_variant($crate::util::Variant::Epoll, stringify!($name), $body);
            }
            #[test]
            fn poll() {
                $crate::util::run_variant($crate::util::Variant::Poll, stringify!($name), $body);
            }
            #[test]
            fn select() {
                $crate::util::run_variant($crate::util::Variant::Select, stringify!($name), $body);
            }
            #[test]
            fn sigio() {
                $crate::util::run_variant($crate::util::Variant::Sigio, stringify!($name), $body);
            }
            #[test]
            fn blocking() {
                $crate::util::run_variant(
                    $crate::util::Variant::Blocking,
                    stringify!($name),
                    $body,
                );
            }
            #[test]
            fn threads() {
                $crate::util::run_variant($crate::util::Variant::Threads, stringify!($name), $body);
            }
            #[test]
            fn busypoll() {
                $crate::util::run_variant(
                    $crate::util::Variant::Busypoll,
                    stringify!($name),
                    $body,
                );
            }
            #[test]
            fn uring_baseline() {
                $crate::util::run_variant(
                    $crate::util::Variant::UringBaseline,
                    stringify!($name),
                    $body,
                );
            }
            #[test]
            fn uring_fastpoll() {
                $crate::util::run_variant(
                    $crate::util::Variant::UringFastpoll,
                    stringify!($name),
                    $body,
                );
            }
            #[test]
            fn uring_multishot() {
                $crate::util::run_variant(
                    $crate::util::Variant::UringMultishot,
                    stringify!($name),
                    $body,
                );
            }
            #[test]
            fn uring_full() {
                $crate::util::run_variant(
                    $crate::util::Variant::UringFull,
                    stringify!($name),
                    $body,
                );
            }
        }
    };
}

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// The server's pid (differs from child's under strace).
    pub pid: i32,
    pub start_line: String,
    pub cmdline: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    /// The threads reading the child's stdout and stderr: they end at EOF, once every
    /// process holding the pipes has exited.
    pumps: Vec<thread::JoinHandle<()>>,
}

/// Join the output readers (they end when the pipes close), at most `within`.
fn join_pumps(pumps: &mut Vec<thread::JoinHandle<()>>, within: Duration, cmdline: &str) {
    let ok = wait_until(within, || pumps.iter().all(|p| p.is_finished()));
    assert!(
        ok,
        "{cmdline}: its stdout/stderr stayed open {within:?} after it exited (a descendant holds them?)"
    );
    for p in pumps.drain(..) {
        p.join().expect("output reader thread");
    }
}

pub struct Stopped {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

fn pump(
    r: impl Read + Send + 'static,
    sink: Arc<Mutex<String>>,
    first_line: Option<std::sync::mpsc::Sender<String>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut tx = first_line;
        let mut line = String::new();
        while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if let Some(t) = &tx
                && line.contains("serving")
            {
                let _ = t.send(line.clone());
                tx = None;
            }
            sink.lock().unwrap().push_str(&line);
            line.clear();
        }
    })
}

impl Server {
    /// `ringmux serve --addr 127.0.0.1:0 <variant args> <extra>`.
    pub fn start(v: Variant, extra: &[&str]) -> Server {
        Server::start_env(v, extra, &[])
    }

    /// [`Server::start`] with environment variables set (RINGMUX_FAULTS only as given).
    pub fn start_env(v: Variant, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut args = vec!["serve", "--addr", "127.0.0.1:0"];
        args.extend(v.args());
        args.extend(extra);
        let mut cmd = Command::new(BIN);
        cmd.args(&args)
            .env_remove("RINGMUX_FAULTS")
            .envs(env.iter().copied());
        let s = Server::spawn(&mut cmd);
        assert!(
            s.start_line.contains(&v.expect()),
            "start line {:?} should say {:?}",
            s.start_line,
            v.expect()
        );
        s
    }

    /// Spawn any command that ends up running `ringmux serve` and wait for its start line.
    pub fn spawn(cmd: &mut Command) -> Server {
        let cmdline = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn server");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let mut pumps = vec![
            pump(child.stdout.take().unwrap(), stdout.clone(), Some(tx)),
            pump(child.stderr.take().unwrap(), stderr.clone(), None),
        ];
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                join_pumps(&mut pumps, Duration::from_secs(10), &cmdline);
                panic!(
                    "{cmdline}: no start line within 20 s; stderr: {}",
                    stderr.lock().unwrap()
                );
            }
        };
        let addr: SocketAddr = line
            .split_whitespace()
            .skip_while(|w| *w != "on")
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let pid: i32 = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("pid="))
            .unwrap()
            .parse()
            .unwrap();
        Server {
            child,
            addr,
            pid,
            start_line: line,
            cmdline,
            stdout,
            stderr,
            pumps,
        }
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.addr));
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    /// `n` connections, each having echoed `payload(i, len)` once, byte-exact.
    pub fn connect_echoed(&self, n: usize, len: usize) -> Vec<TcpStream> {
        (0..n)
            .map(|i| {
                let mut c = self.connect();
                c.write_all(&payload(i as u64, len)).unwrap();
                assert_eq!(
                    read_varied(&mut c, len),
                    payload(i as u64, len),
                    "{}: conn {i}",
                    self.cmdline
                );
                c
            })
            .collect()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with a pid we spawned and a valid signal number.
        unsafe { libc::kill(self.pid, sig) };
    }

    /// Open file descriptors of the server process.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Resident memory of the server process in KiB.
    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Wait for exit (no signal sent), at most `within`; kill and panic past it.
    pub fn wait(mut self, within: Duration) -> Stopped {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Everything it wrote is read once the readers reach EOF.
                join_pumps(&mut self.pumps, Duration::from_secs(10), &self.cmdline);
                return Stopped {
                    status,
                    stdout: self.stdout.lock().unwrap().clone(),
                    stderr: self.stderr.lock().unwrap().clone(),
                    elapsed: t0.elapsed(),
                };
            }
            if t0.elapsed() > within {
                let _ = self.child.kill();
                panic!(
                    "{}: did not exit within {within:?}; stderr: {}",
                    self.cmdline,
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then wait (at most `within`).
    pub fn stop(self, within: Duration) -> Stopped {
        self.signal(libc::SIGTERM);
        self.wait(within)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own child (and the traced server under strace).
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `c` (all its echo read) was closed by a server that has exited: the next read is
/// end of file or a reset, at once. Stray bytes after the echo, or a read that times
/// out (the connection still open), fail with `what` in the message.
pub fn assert_closed(c: &mut TcpStream, what: &str) {
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 64];
    match c.read(&mut b) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("{what}: {n} stray bytes after the echo: {:?}", &b[..n]),
        Err(e) => panic!("{what}: the connection is still open ({e})"),
    }
}

/// Ask for stats snapshots (SIGUSR1; the server runs with `--stats-json json`) until
/// one satisfies `f`, at most `within`; that snapshot, or None past the deadline.
pub fn snapshot_until(
    srv: &Server,
    json: &std::path::Path,
    within: Duration,
    mut f: impl FnMut(&serde_json::Value) -> bool,
) -> Option<serde_json::Value> {
    let mut hit = None;
    wait_until(within, || {
        srv.signal(libc::SIGUSR1);
        // The file is replaced whole; a read between two writes just tries again.
        let j = std::fs::read(json)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        hit = j.filter(|j| j["final"] == false && f(j));
        hit.is_some()
    });
    hit
}

/// The server's descriptor count once it has not changed for 200 ms (polled, at most
/// 10 s): start-up finishes after the start line (a reserve fd, a ring), and closes
/// of connections a client dropped land a little later.
pub fn fds_settled(srv: &Server) -> usize {
    let mut last = (usize::MAX, Instant::now());
    let stable = wait_until(Duration::from_secs(10), || {
        let n = srv.fd_count();
        if n != last.0 {
            last = (n, Instant::now());
        }
        last.1.elapsed() >= Duration::from_millis(200)
    });
    assert!(
        stable,
        "{}: the descriptor count kept changing: {}",
        srv.cmdline,
        srv.fd_count()
    );
    last.0
}

/// Run `ringmux ARGS` (stdin closed) to its end, at most `limit`: (status, stdout,
/// stderr). The pipes are drained on threads, so a chatty child cannot block on a full
/// pipe; past the limit the child is killed and the test fails naming the command.
pub fn run_bounded<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(
    args: &[S],
    limit: Duration,
) -> (ExitStatus, String, String) {
    let t0 = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringmux");
    let drain = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringmux {args:?} did not finish within {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    (status, out.join().unwrap(), err.join().unwrap())
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

/// The `blocking` model's queueing, asserted: while `first` stays open, a second
/// client's bytes get no reply (it waits in the backlog); once `first` closes, the
/// second is served. Returns the second connection, still open.
pub fn assert_second_client_waits(srv: &Server, first: TcpStream) -> TcpStream {
    let mut second = srv.connect();
    second.write_all(b"queued").unwrap();
    second
        .set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let mut b = [0u8; 6];
    let early = second.read(&mut b);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "{}: a second client was served while the first was still connected: {early:?}",
        srv.cmdline
    );
    drop(first);
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    second.read_exact(&mut b).unwrap_or_else(|e| {
        panic!(
            "{}: the waiting client was not served after the first left: {e}",
            srv.cmdline
        )
    });
    assert_eq!(&b, b"queued");
    second
}

/// `--threads 2` with a backend that has no event loop: one line, exit 2, nothing served.
pub fn assert_threads_refused(v: Variant, extra: &[&str]) {
    let mut args = vec!["serve", "--addr", "127.0.0.1:0"];
    args.extend(v.args());
    args.extend(extra);
    let out = Command::new(BIN).args(&args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{v:?} {args:?}: {err}");
    assert_eq!(
        err.trim().lines().count(),
        1,
        "{v:?}: one line expected: {err}"
    );
    assert!(
        err.contains("--threads") && err.contains(v.backend()) && !err.contains("panicked"),
        "{v:?}: {err}"
    );
    assert!(
        out.stdout.is_empty(),
        "{v:?}: nothing may start: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
