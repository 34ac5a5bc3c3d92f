//! Load generator: drives any TCP echo server and records latency in HdrHistograms.
//! Never imports `server`.
//!
//! # Modes
//! - **Closed loop** (default): each connection keeps `pipeline` messages in flight and
//!   sends the next one when a reply is complete. Latency = reply fully received − actual
//!   send. Measures service time under a concurrency; hides stalls (coordinated omission).
//! - **Open loop** (`rate`): wrk2's method. Connection `i` of `N` sends message `k` at its
//!   intended time `(i/N + k) · N/rate` seconds after the start, with at most `pipeline`
//!   messages outstanding; it sends at `max(intended, a slot frees)`, so after a stall it
//!   catches up at once. Latency is recorded twice: from the intended time (corrected,
//!   what users of the server would see) and from the actual send (uncorrected).
//!
//! # Verification and errors
//! Every payload byte is a function of (connection, message, offset) ([`payload`]), so
//! every echoed byte is checked without storing what was sent. Mismatches, resets,
//! timeouts and connect failures are counted by kind; a reset or timed-out connection is
//! dropped, never reconnected, and the run stops early when none is left.
//!
//! # Time bounds
//! The run ends by `warmup + duration` (closed loop) or `warmup + duration + timeout`
//! (open loop: replies to messages intended inside the window are awaited that long),
//! whatever the server does. Connecting is bounded by `timeout` as a whole.
//!
//! # Threads and drivers
//! Connections are spread over `threads` workers (connection `i` on worker `i % T`), each
//! with its own io_uring or epoll, buffers and histograms. Workers hand over one
//! histogram pair per interval; the coordinator merges them (`Histogram::add`) into the
//! interval series and the totals. The driver ([`DriverKind`]) is chosen once before the
//! workers start ([`DriverKind::choose`]); both run the same protocol core (`engine`),
//! so schedules, verification and error counting do not depend on it.
//!
//! # Layout
//! [`config`](LoadConfig) what to run; [`run`] the steps of one test; `command` the
//! `ringmux load` command around a run; `coordinator` the coordinating thread; `worker`
//! a worker thread and the one choice of driver; `engine` the protocol core both drivers share (`wire` the wire
//! formats, [`payload`] the bytes, [`schedule`] open-loop times); `epoll` and `uring`
//! the drivers; `plan` what the coordinator and workers share; `tally` the figures;
//! `output` what the terminal shows. Result files are written by [`crate::results`].
//!
//! # In-process use (the bench)
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use ringmux::load::{self, LoadConfig, Mode, WindowEdge};
//!
//! let addr = "127.0.0.1:7878".parse().unwrap();
//! let mut cfg = LoadConfig::closed(addr, 50, 128, Duration::from_secs(5));
//! cfg.mode = Mode::Open { rate: 50_000.0 };
//! cfg.pin = vec![1];
//! // Called from the coordinating thread when the measured window opens and closes:
//! // sample the server's CPU time here.
//! cfg.on_window = Some(Arc::new(|edge| match edge {
//!     WindowEdge::Start => { /* read /proc/<server>/stat */ }
//!     WindowEdge::End => { /* read it again */ }
//! }));
//! let out = load::run(&cfg)?;
//! println!("{} msgs/s, p99 {} ns", out.result.msgs_per_s, out.result.latency.p99);
//! # anyhow::Ok(())
//! ```
//!
//! # Cost
//! Per message in closed loop at 50 connections: with io_uring a SEND and a RECV SQE and
//! a tenth of one `io_uring_enter`; with epoll one `send`, one `recv` and a share of one
//! `epoll_pwait2` (about 2.1 system calls). perf puts about 95% of the load generator's
//! CPU in the kernel's TCP path on loopback, so it costs about what a minimal echo server
//! costs per message (measured: 4.6 µs each, `benches/load_client.rs`); its own code is a
//! few percent. Open loop wakes the thread about once per message, which costs more.

mod command;
mod config;
mod coordinator;
mod engine;
mod epoll;
mod idle;
mod output;
pub mod payload;
mod plan;
mod run;
pub mod schedule;
mod sys;
mod tally;
mod uring;
mod wire;
mod worker;

/// What a run produces lives with the result files it is written to.
pub use crate::results::outcome::{IntervalHists, LoadOutcome};
pub use command::{LoadCommand, OutputFiles, load_cmd};
pub use config::{
    DriverChoice, LoadConfig, LoadProto, Mode, WindowEdge, WindowHook, check_rate, parse_cpu_list,
};
pub use output::rate_line;
pub use run::run;
pub use worker::DriverKind;

#[cfg(test)]
mod tests;
