//! What the `ringmux load` tests run against and with: small echo servers of the tests'
//! own (the project's server is not used: the load generator must work against any TCP
//! echo server), the load driver under test (`driver_test!`: one #[test] per driver, a
//! driver this kernel cannot run skipped by name with the reason), and one lock that
//! serializes the runs, so timing assertions do not compete for the CPU.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

use super::{BIN, LoadRun, Runnable, probe, run_load};

static SERIAL: Mutex<()> = Mutex::new(());

/// Hold this while a load runs: one load test at a time, in every module.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a test echo server misbehaves.
#[derive(Clone, Default)]
pub struct Behaviour {
    /// Flip this byte (index in the stream of the first connection accepted).
    pub corrupt_at: Option<u64>,
    /// Close each connection after echoing this many bytes.
    pub close_after: Option<u64>,
    /// Read but never answer.
    pub mute: bool,
    /// Sleep this long before each echo.
    pub delay: Option<Duration>,
    /// While set, hold every reply (the server stalls).
    pub paused: Option<Arc<AtomicBool>>,
    /// Add every byte read, over all connections (how far a run has come).
    pub received: Option<Arc<AtomicU64>>,
}

/// A thread-per-connection std echo server on 127.0.0.1:0. Its threads die with the test
/// process.
pub fn echo_server(b: Behaviour) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut first = true;
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let b = b.clone();
            let corrupt = if first { b.corrupt_at } else { None };
            first = false;
            std::thread::spawn(move || serve_conn(s, b, corrupt));
        }
    });
    addr
}

fn serve_conn(mut s: TcpStream, b: Behaviour, corrupt_at: Option<u64>) {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; 16 * 1024];
    let mut pos = 0u64;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Some(r) = &b.received {
            r.fetch_add(n as u64, Ordering::SeqCst);
        }
        if b.mute {
            continue;
        }
        if let Some(p) = &b.paused {
            while p.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if let Some(d) = b.delay {
            std::thread::sleep(d);
        }
        if let Some(c) = corrupt_at
            && c >= pos
            && c < pos + n as u64
        {
            buf[(c - pos) as usize] ^= 0x20;
        }
        let mut out = &buf[..n];
        if let Some(limit) = b.close_after {
            let left = limit.saturating_sub(pos) as usize;
            out = &out[..left.min(n)];
        }
        if s.write_all(out).is_err() {
            return;
        }
        pos += n as u64;
        if b.close_after.is_some_and(|l| pos >= l) {
            return;
        }
    }
}

/// The load generator's IO driver under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drv {
    Epoll,
    Uring,
}

impl Drv {
    pub fn name(self) -> &'static str {
        match self {
            Drv::Epoll => "epoll",
            Drv::Uring => "uring",
        }
    }

    /// Ok, or why this kernel cannot run the driver (ring, FAST_POLL, EXT_ARG).
    pub fn available(self) -> Result<(), String> {
        if self == Drv::Epoll {
            return Ok(());
        }
        let p = probe();
        let has = |name: &str| {
            p["capabilities"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["name"] == name && c["available"] == true)
        };
        match (
            p["io_uring_available"] == true,
            has("FEAT_FAST_POLL"),
            has("FEAT_EXT_ARG"),
        ) {
            (true, true, true) => Ok(()),
            (false, ..) => Err(format!("io_uring unavailable: {}", p["unavailable"])),
            _ => Err(
                "the io_uring driver needs FEAT_FAST_POLL and FEAT_EXT_ARG (Linux 5.11+)".into(),
            ),
        }
    }
}

impl Runnable for Drv {
    fn available(self) -> Result<(), String> {
        Drv::available(self)
    }
}

/// A test module with one #[test] per load driver.
#[macro_export]
macro_rules! driver_test {
    ($name:ident, $body:expr) => {
        $crate::variant_tests!(
            $name,
            $body,
            epoll => $crate::util::echo::Drv::Epoll,
            uring => $crate::util::echo::Drv::Uring,
        );
    };
}

/// `ringmux load --driver D ARGS --json F`; killed past `deadline`.
pub fn load(d: Drv, args: &[&str], deadline: Duration) -> LoadRun {
    let mut cmd = Command::new(BIN);
    cmd.args(["load", "--driver", d.name()]).args(args);
    run_load(cmd, deadline)
}

/// An unsigned number at a dotted path (`latency.p99`) of a result; panics naming it.
pub fn u(v: &Value, path: &str) -> u64 {
    path.split('.')
        .fold(v, |v, k| &v[k])
        .as_u64()
        .unwrap_or_else(|| panic!("{path} missing in {v}"))
}

/// A number at a dotted path of a result; panics naming it.
pub fn f(v: &Value, path: &str) -> f64 {
    path.split('.')
        .fold(v, |v, k| &v[k])
        .as_f64()
        .unwrap_or_else(|| panic!("{path} missing in {v}"))
}
