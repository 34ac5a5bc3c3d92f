//! The server's figures: what each event loop counts ([`LoopStats`], every counter
//! listed once), the report printed on exit and written by `--json`
//! ([`StatsReport`]), and how the loops publish into it ([`StatsBoard`], [`Reporter`]).

mod board;

pub use board::{Board, Reporter, StatsBoard};

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;

use super::features::{FeatureLevel, RingFeatures};
use super::sys::SyscallCounts;
use crate::proto::Proto;

/// The one list of counters. From it come [`LoopStats`]'s fields, its
/// [`merge`](LoopStats::merge), and the counters' keys in the stats JSON: the field's
/// name, or the one after `=>`.
macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $field:ident $(=> $json:literal)?, )+) => {
        /// What one event loop counted. With several loops the server's figures are
        /// the sums; in the stats JSON each counter is a key of its own.
        #[derive(Debug, Clone, Default, Serialize)]
        pub struct LoopStats {
            $( $(#[doc = $doc])* $(#[serde(rename = $json)])? pub $field: u64, )+
            /// Syscalls by kind: reported as `syscalls` (by name) and `syscalls_total`.
            #[serde(skip)]
            pub syscalls: SyscallCounts,
        }

        impl LoopStats {
            /// Add another loop's counts.
            pub fn merge(&mut self, o: &LoopStats) {
                $( self.$field += o.$field; )+
                self.syscalls.add(&o.syscalls);
            }

            /// Every counter but the syscalls, in the order listed.
            #[cfg(test)]
            fn counters_mut(&mut self) -> Vec<&mut u64> {
                vec![$( &mut self.$field, )+]
            }
        }
    };
}

counters! {
    /// Connections accepted (refused ones included: they are closed at once).
    accepted => "connections_accepted",
    /// Connections closed; equal to `accepted` after a clean drain.
    closed => "connections_closed",
    /// Accept calls that failed (EMFILE, ENFILE, ECONNABORTED, ...).
    accept_errors,
    /// Times accepting paused after such an error.
    accept_backoffs,
    /// Bytes received from connections.
    bytes_in,
    /// Bytes sent to connections.
    bytes_out,
    /// io_uring: loop turns that found the CQ overflow flag set.
    cq_overflow,
    /// io_uring: times the submission queue was full (the SQE waited in a userspace
    /// backlog).
    sq_full,
    /// io_uring: `io_uring_enter` calls that returned EAGAIN or EBUSY.
    enter_busy,
    /// io_uring: completions reaped (made-up ones from RINGMUX_FAULTS included).
    cqes,
    /// io_uring: waits for the queued sends' completions plus one whose sends did not
    /// all complete inside the enter that submitted them (the next wait is for one).
    sends_parked,
    /// io_uring: waits for the queued sends plus one that the cap ended short (the
    /// next event came later than the cap, or a send was parked).
    wait_cap_hits,
    /// io_uring: receive completions that carried more than one provided buffer
    /// (bundles, 6.10+).
    recv_bundled,
    /// Connections still open (or owing bytes) when the drain timeout ran out.
    forced_closed,
    /// Receives that found no provided buffer (ENOBUFS) and were re-armed.
    recv_nobufs,
    /// Times the provided-buffer group doubled after running dry.
    buf_grows,
    /// Results rewritten by RINGMUX_FAULTS.
    faults_injected,
    /// select: connections closed at once because their fd was >= FD_SETSIZE (1024).
    refused_fd_setsize,
    /// sigio: real-time signals (and SIGIOs) taken.
    sigio_signals,
    /// sigio: plain SIGIOs, i.e. the signal queue overflowed and every connection was
    /// rescanned.
    sigio_overflows,
    /// busypoll: recv/accept calls that found nothing (EAGAIN): the waste of polling
    /// without waiting.
    busypoll_eagain,
    /// threads: connection threads started.
    threads_started,
    /// threads: the most connection threads alive at once (merged as a sum over loops).
    threads_peak,
    /// chat: receivers closed because a broadcast would have put them over --outbox-cap.
    slow_receivers_dropped,
    /// Connections closed for sending nothing for --idle-timeout.
    idle_timeouts,
    /// http: heads not complete within --header-timeout (answered 408).
    header_timeouts,
    /// Connections accepted and closed at once for --max-conns.
    refused_max_conns,
}

/// Server stats as printed on exit and written by `--json` (`--stats-json`).
#[derive(Debug, Clone, Serialize)]
pub struct StatsReport {
    /// `ringmux.server-stats/1`.
    pub schema: &'static str,
    /// false for a SIGUSR1 snapshot, true for the report written on exit.
    pub r#final: bool,
    /// A snapshot: the SIGUSR1 it answers (1 for the first; signals sent in quick
    /// succession may be answered by one snapshot, for the last of them). Every loop's
    /// counts in it were taken after that signal. None in the final report.
    pub snapshot_request: Option<usize>,
    /// The IO model that ran (`uring`, `epoll`, ...).
    pub backend: &'static str,
    /// The io_uring level; None on other backends.
    pub features: Option<FeatureLevel>,
    /// The protocol served.
    pub proto: Proto,
    /// Event loops (`--threads`); every count below is their sum.
    pub threads: usize,
    /// The bound address (`host:port`).
    pub addr: String,
    /// The server's process id.
    pub pid: u32,
    /// Seconds since the server started.
    pub elapsed_s: f64,
    /// Every counter, each a key of its own.
    #[serde(flatten)]
    pub counts: LoopStats,
    /// Syscalls made, by name; only kinds made at least once.
    pub syscalls: BTreeMap<String, u64>,
    /// The sum of `syscalls`.
    pub syscalls_total: u64,
    /// threads: each connection thread's stack size in bytes.
    pub thread_stack_bytes: Option<usize>,
    /// Each io_uring feature's state (uring only).
    pub uring: Option<RingFeatures>,
    /// The process's user CPU seconds (all threads, getrusage).
    pub cpu_user_s: f64,
    /// The process's system CPU seconds (all threads).
    pub cpu_sys_s: f64,
    /// Voluntary context switches of the process.
    pub ctx_voluntary: u64,
    /// Involuntary context switches of the process.
    pub ctx_involuntary: u64,
    /// Peak resident memory of the process, KiB.
    pub max_rss_kib: u64,
    /// Each loop's share, in loop order: how SO_REUSEPORT spread the connections.
    pub per_thread: Vec<ThreadReport>,
}

/// One event loop's counts in [`StatsReport`].
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ThreadReport {
    /// The CPU it is pinned to (`--pin`), if any.
    pub pinned_cpu: Option<usize>,
    /// The loop's connections accepted.
    pub connections_accepted: u64,
    /// The loop's connections closed.
    pub connections_closed: u64,
    /// The loop's bytes received.
    pub bytes_in: u64,
    /// The loop's bytes sent.
    pub bytes_out: u64,
    /// The loop's syscalls, every kind.
    pub syscalls_total: u64,
    /// This loop thread's user CPU seconds (io_uring's kernel workers are counted only
    /// process-wide).
    pub cpu_user_s: f64,
    /// This thread's system CPU seconds.
    pub cpu_sys_s: f64,
}

/// The summary printed on exit (unless `--quiet`).
pub fn print_summary(r: &StatsReport, out: &mut impl Write) -> io::Result<()> {
    let c = &r.counts;
    writeln!(
        out,
        "stats: backend={} features={} proto={} elapsed={:.3}s",
        r.backend,
        r.features.map_or("-", |f| f.name()),
        r.proto.name(),
        r.elapsed_s
    )?;
    writeln!(
        out,
        "  connections: accepted={} closed={} accept_errors={} accept_backoffs={} forced_closed={}",
        c.accepted, c.closed, c.accept_errors, c.accept_backoffs, c.forced_closed
    )?;
    writeln!(out, "  bytes: in={} out={}", c.bytes_in, c.bytes_out)?;
    writeln!(
        out,
        "  limits: idle_timeouts={} header_timeouts={} refused_max_conns={} slow_receivers_dropped={}",
        c.idle_timeouts, c.header_timeouts, c.refused_max_conns, c.slow_receivers_dropped
    )?;
    let calls: Vec<String> = r.syscalls.iter().map(|(k, v)| format!("{k}={v}")).collect();
    writeln!(
        out,
        "  syscalls: total={} {}",
        r.syscalls_total,
        calls.join(" ")
    )?;
    if r.backend == "uring" {
        writeln!(
            out,
            "  io_uring: cqes={} sends_parked={} wait_cap_hits={} cq_overflow={} sq_full={} enter_busy={} recv_nobufs={} buf_grows={} recv_bundled={}",
            c.cqes,
            c.sends_parked,
            c.wait_cap_hits,
            c.cq_overflow,
            c.sq_full,
            c.enter_busy,
            c.recv_nobufs,
            c.buf_grows,
            c.recv_bundled
        )?;
        if let Some(f) = &r.uring {
            writeln!(out, "  io_uring features: {}", f.summary())?;
        }
    }
    match r.backend {
        "select" => writeln!(out, "  select: refused_fd_setsize={}", c.refused_fd_setsize)?,
        "sigio" => writeln!(
            out,
            "  sigio: signals={} overflows={}",
            c.sigio_signals, c.sigio_overflows
        )?,
        "busypoll" => writeln!(out, "  busypoll: eagain={}", c.busypoll_eagain)?,
        "threads" => writeln!(
            out,
            "  threads: started={} peak={} stack={}KiB",
            c.threads_started,
            c.threads_peak,
            r.thread_stack_bytes.unwrap_or(0) / 1024
        )?,
        _ => {}
    }
    writeln!(
        out,
        "  cpu: user={:.3}s sys={:.3}s ctx_switches: voluntary={} involuntary={} max_rss={}KiB",
        r.cpu_user_s, r.cpu_sys_s, r.ctx_voluntary, r.ctx_involuntary, r.max_rss_kib
    )?;
    // The server sees bytes, not the client's messages: cost per KiB received is what it
    // can state without knowing the framing (for N-byte messages, x N/1024 per message).
    if c.bytes_in > 0 {
        let kib = c.bytes_in as f64 / 1024.0;
        writeln!(
            out,
            "  per KiB received: syscalls={:.3} cpu={:.2}us (for N-byte messages, x N/1024 per message)",
            r.syscalls_total as f64 / kib,
            (r.cpu_user_s + r.cpu_sys_s) * 1e6 / kib
        )?;
    }
    if r.threads > 1 {
        let each = |f: fn(&ThreadReport) -> String| {
            r.per_thread.iter().map(f).collect::<Vec<_>>().join("/")
        };
        writeln!(
            out,
            "  per thread: connections {} bytes_in {} cpu {}",
            each(|t| t.connections_accepted.to_string()),
            each(|t| t.bytes_in.to_string()),
            each(|t| format!("{:.3}s", t.cpu_user_s + t.cpu_sys_s)),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::sys::Sys;

    /// A counter added to the list is merged and reported without another line of
    /// code; this checks that every one is, under a name of its own.
    #[test]
    fn every_counter_merges_and_is_reported() {
        let mut a = LoopStats::default();
        let n = a.counters_mut().len();
        for (i, c) in a.counters_mut().into_iter().enumerate() {
            *c = i as u64 + 1;
        }
        a.syscalls.0[Sys::Recv as usize] = 5;
        let mut m = LoopStats::default();
        m.merge(&a);
        m.merge(&a);
        for (i, c) in m.counters_mut().into_iter().enumerate() {
            assert_eq!(*c, 2 * (i as u64 + 1), "counter {i} not summed");
        }
        assert_eq!(m.syscalls.0[Sys::Recv as usize], 10);
        assert_eq!(m.syscalls.total(), 10);

        let json = serde_json::to_value(&m).unwrap();
        let keys = json.as_object().unwrap();
        assert_eq!(keys.len(), n, "one JSON key per counter: {keys:?}");
        let mut values: Vec<u64> = keys.values().map(|v| v.as_u64().unwrap()).collect();
        values.sort();
        assert_eq!(values, (1..=n as u64).map(|v| 2 * v).collect::<Vec<_>>());
        assert_eq!(keys["connections_accepted"], 2);
        assert_eq!(keys["connections_closed"], 4);
        assert!(!keys.contains_key("accepted") && !keys.contains_key("syscalls"));
    }
}
