//! The one place that knows both drivers: which one a run uses ([`DriverKind`], decided
//! once before the workers start), and a worker thread from start to end: pinning, the
//! connect phase, setting up its driver, then the shared loop ([`engine::drive`]).
//! The engine below knows no driver; the drivers know only the engine.

use std::io;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};
use std::time::Instant;

use super::config::DriverChoice;
use super::engine::{self, Core, Driver};
use super::epoll::EpollDriver;
use super::plan::{ErrKind, Plan, Report, Shared, WorkerResult};
use super::sys;
use super::uring::{self, UringDriver};
use crate::os::uring::Unavailable;

/// The IO driver a run actually uses (see [`super::LoadConfig::driver`] for the choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    /// SEND/RECV submitted to an io_uring per worker (Linux 5.11+).
    Uring,
    /// Non-blocking send/recv on edge-triggered epoll readiness.
    Epoll,
}

impl DriverKind {
    /// The name recorded in results (`params.driver`): "uring" or "epoll".
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::Uring => "uring",
            DriverKind::Epoll => "epoll",
        }
    }

    /// Decide once, before any worker starts. `auto`: io_uring when a ring with what the
    /// driver needs can be set up, else epoll after one warning line on stderr naming
    /// the reason and the fix. `uring` without it: that reason as the error.
    pub fn choose(choice: DriverChoice) -> anyhow::Result<DriverKind> {
        let (kind, warning) = Self::resolve(choice, uring::available)?;
        if let Some(w) = warning {
            eprintln!("{w}");
        }
        Ok(kind)
    }

    /// [`DriverKind::choose`] given how to learn whether io_uring can run (asked only
    /// when the choice depends on it): the driver, and the warning line to print.
    fn resolve(
        choice: DriverChoice,
        uring_available: impl FnOnce() -> Result<(), Unavailable>,
    ) -> anyhow::Result<(DriverKind, Option<String>)> {
        match choice {
            DriverChoice::Epoll => Ok((DriverKind::Epoll, None)),
            DriverChoice::Uring => match uring_available() {
                Ok(()) => Ok((DriverKind::Uring, None)),
                Err(e) => Err(anyhow::Error::new(e).context("--driver uring")),
            },
            DriverChoice::Auto => match uring_available() {
                Ok(()) => Ok((DriverKind::Uring, None)),
                Err(e) => Ok((
                    DriverKind::Epoll,
                    Some(format!(
                        "ringmux: warning: {e}; falling back to epoll for load"
                    )),
                )),
            },
        }
    }
}

/// Run one worker to its end. Sends `Ready` once connected, waits for the base instant
/// (None: abort), then drives its connections with `driver`.
pub(crate) fn worker(
    conn_ids: Vec<u32>,
    cpu: Option<usize>,
    driver: DriverKind,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    out: Sender<Report>,
    start: Receiver<Option<Instant>>,
) -> WorkerResult {
    if let Some(cpu) = cpu
        && let Err(e) = sys::pin_current_thread(cpu)
    {
        let why = if e.raw_os_error() == Some(libc::EINVAL) {
            "no such CPU, or not allowed to this process".to_string()
        } else {
            e.to_string()
        };
        let _ = out.send(Report::Ready {
            connected: 0,
            first_connect_error: None,
            fatal: Some(format!("--pin: cannot pin load thread to CPU {cpu}: {why}")),
        });
        return WorkerResult::default();
    }
    sys::tighten_timer_slack();

    let (streams, ids, res, first_err) = connect(&conn_ids, &plan, &shared);
    // The IO side is set up before `Ready`, so a failure is reported as fatal.
    let go = Go {
        plan: &plan,
        shared: &shared,
        ids,
        res,
        first_err,
        out,
        start,
    };
    match driver {
        DriverKind::Epoll => go.run(EpollDriver::new(streams, plan.size)),
        DriverKind::Uring => go.run(UringDriver::new(streams, plan.size, plan.pipeline)),
    }
}

/// The connect phase, bounded as a whole by the connect timeout: the streams made, the
/// ids of their connections, the connect errors counted, and the first error. Sockets
/// stay blocking here; the epoll driver makes them non-blocking, io_uring polls them as
/// they are.
fn connect(
    conn_ids: &[u32],
    plan: &Plan,
    shared: &Shared,
) -> (Vec<TcpStream>, Vec<u32>, WorkerResult, Option<io::Error>) {
    let mut res = WorkerResult::default();
    let mut first_err = None;
    let mut streams = Vec::with_capacity(conn_ids.len());
    let mut ids = Vec::with_capacity(conn_ids.len());
    let deadline = Instant::now() + plan.connect_timeout;
    for &id in conn_ids {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = if left.is_zero() {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connect phase timed out",
            ))
        } else {
            TcpStream::connect_timeout(&plan.addr, left).and_then(|s| {
                s.set_nodelay(true)?;
                Ok(s)
            })
        };
        match r {
            Ok(s) => {
                streams.push(s);
                ids.push(id);
            }
            Err(e) => {
                res.errors.connect += 1;
                if e.raw_os_error() == Some(libc::ECONNREFUSED) {
                    res.connect_refused += 1;
                }
                shared.count(ErrKind::Connect, 1);
                first_err.get_or_insert(e);
            }
        }
    }
    (streams, ids, res, first_err)
}

/// A connected worker, ready to report and run once its driver is set up.
struct Go<'a> {
    plan: &'a Plan,
    shared: &'a Shared,
    ids: Vec<u32>,
    res: WorkerResult,
    first_err: Option<io::Error>,
    out: Sender<Report>,
    start: Receiver<Option<Instant>>,
}

impl Go<'_> {
    fn run<D: Driver>(self, io: Result<D, String>) -> WorkerResult {
        let mut io = match io {
            Ok(io) => io,
            Err(e) => {
                let _ = self.out.send(Report::Ready {
                    connected: 0,
                    first_connect_error: None,
                    fatal: Some(e),
                });
                return WorkerResult::default();
            }
        };
        let connected = self.ids.len() as u32;
        if self
            .out
            .send(Report::Ready {
                connected,
                first_connect_error: self.first_err,
                fatal: None,
            })
            .is_err()
        {
            return self.res;
        }
        let base = match self.start.recv() {
            Ok(Some(b)) => b,
            _ => return self.res,
        };
        let core = Core::new(self.plan, self.shared, base, &self.ids, self.res, self.out);
        engine::drive(core, &mut io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> Result<(), Unavailable> {
        Err(Unavailable {
            errno: Some(libc::EPERM),
            what: "io_uring_setup failed".into(),
            hint: "fix: sysctl kernel.io_uring_disabled=0".into(),
        })
    }

    /// The documented choice, on any kernel: `auto` falls back to epoll with one
    /// warning naming the reason; `uring` fails with that reason; `epoll` never asks.
    #[test]
    fn auto_falls_back_to_epoll_and_uring_fails_without_io_uring() {
        let (kind, warning) = DriverKind::resolve(DriverChoice::Auto, unavailable).unwrap();
        assert_eq!(kind, DriverKind::Epoll);
        let warning = warning.expect("a warning line");
        assert!(
            warning.starts_with("ringmux: warning: ")
                && warning.contains("io_uring_setup failed")
                && warning.ends_with("; falling back to epoll for load"),
            "{warning}"
        );
        let e = DriverKind::resolve(DriverChoice::Uring, unavailable).unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.starts_with("--driver uring: ") && e.contains("io_uring_setup failed"),
            "{e}"
        );
        let asked = || -> Result<(), Unavailable> { panic!("epoll needs no io_uring probe") };
        assert_eq!(
            DriverKind::resolve(DriverChoice::Epoll, asked).unwrap(),
            (DriverKind::Epoll, None)
        );
        for choice in [DriverChoice::Auto, DriverChoice::Uring] {
            assert_eq!(
                DriverKind::resolve(choice, || Ok(())).unwrap(),
                (DriverKind::Uring, None)
            );
        }
    }
}
