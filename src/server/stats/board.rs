//! How the loops publish their counts: each loop owns a slot on one [`StatsBoard`] and
//! reports through its [`Reporter`]; the board merges the slots into a [`StatsReport`]
//! for a SIGUSR1 snapshot or the final report.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{LoopStats, StatsReport, ThreadReport};
use crate::os::Usage;
use crate::server::config::{Backend, ServerConfig};
use crate::server::features::RingFeatures;
use crate::server::signals::Signals;

/// Each loop's last published counts, and which snapshot request they answer.
///
/// A SIGUSR1 bumps a request counter; every loop, when woken, publishes its counts
/// tagged with the newest request it saw. A merged snapshot for request g may be
/// written once every loop still running has published for g or later (a loop that
/// ended counts for every request, with its final counts): then the file holds, from
/// each loop, counts taken after request g was made, which is what the bench needs
/// (it removes the file, signals, and takes the next file that appears).
pub struct Board {
    slots: Vec<Slot>,
    /// The newest request a merged snapshot was written for.
    written: usize,
}

#[derive(Debug, Clone, Default)]
struct Slot {
    /// The request these counts answer (0: none yet).
    generation: usize,
    finished: bool,
    stats: LoopStats,
    /// The loop thread's own CPU time when it published.
    cpu: Usage,
}

impl Board {
    /// A board of `loops` slots (at least one), nothing published yet.
    pub fn new(loops: usize) -> Board {
        Board {
            slots: vec![Slot::default(); loops.max(1)],
            written: 0,
        }
    }

    /// Loop `i` publishes: counts for request `generation`, or its end (`None`; counts
    /// `None` keep what it published before). True when this completes a request no
    /// merged snapshot was written for yet: the caller writes one now.
    pub fn publish(
        &mut self,
        i: usize,
        generation: Option<usize>,
        stats: Option<&LoopStats>,
        cpu: Usage,
    ) -> bool {
        let slot = &mut self.slots[i];
        if let Some(s) = stats {
            slot.stats = s.clone();
        }
        slot.cpu = cpu;
        match generation {
            Some(g) => slot.generation = slot.generation.max(g),
            None => slot.finished = true,
        }
        // Every loop ended: the final report follows, no snapshot.
        let Some(complete) = self
            .slots
            .iter()
            .filter(|s| !s.finished)
            .map(|s| s.generation)
            .min()
        else {
            return false;
        };
        if complete > self.written {
            self.written = complete;
            return true;
        }
        false
    }

    /// The newest request a merged snapshot was written for (0: none).
    pub fn written(&self) -> usize {
        self.written
    }

    /// Every loop's counts, summed.
    pub fn merged(&self) -> LoopStats {
        let mut m = LoopStats::default();
        for s in &self.slots {
            m.merge(&s.stats);
        }
        m
    }

    /// Each loop's counts and thread CPU time, in loop order.
    pub fn each(&self) -> impl Iterator<Item = (&LoopStats, &Usage)> {
        self.slots.iter().map(|s| (&s.stats, &s.cpu))
    }
}

/// What every loop reports into: the facts of the run and one slot per loop.
pub struct StatsBoard {
    /// The IO model that runs.
    pub backend: Backend,
    /// Each io_uring feature's state (uring only).
    pub uring: Option<RingFeatures>,
    /// threads: each connection thread's stack size, bytes.
    pub thread_stack_bytes: Option<usize>,
    /// The configuration the server runs with (`cfg.threads` slots).
    pub cfg: ServerConfig,
    /// The bound address.
    pub addr: SocketAddr,
    /// When the server started (the report's `elapsed_s` counts from here).
    pub started: Instant,
    slots: Mutex<Board>,
}

impl StatsBoard {
    /// A board with one slot per event loop (`cfg.threads`), started now.
    pub fn new(
        backend: Backend,
        uring: Option<RingFeatures>,
        thread_stack_bytes: Option<usize>,
        cfg: ServerConfig,
        addr: SocketAddr,
    ) -> StatsBoard {
        let n = cfg.threads;
        StatsBoard {
            backend,
            uring,
            thread_stack_bytes,
            cfg,
            addr,
            started: Instant::now(),
            slots: Mutex::new(Board::new(n)),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Board> {
        // A loop that panicked while holding the lock left whole values behind.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loop `i` publishes its counts: for snapshot request `generation`, or its final
    /// ones (`None`). Called on the loop's own thread (its CPU time is read here). The
    /// publish that completes a request writes the merged snapshot.
    fn publish(&self, i: usize, generation: Option<usize>, s: Option<&LoopStats>) {
        let cpu = crate::os::thread_usage();
        let mut slots = self.slots();
        if slots.publish(i, generation, s, cpu) {
            // Written under the lock: one writer at a time for the temp file.
            let report = self.report_of(&slots, false);
            if let Err(e) = self.write_json(&report) {
                eprintln!("ringmux: warning: cannot write stats snapshot: {e}");
            }
        }
    }

    /// The merged report of what the loops published last.
    pub fn report(&self, is_final: bool) -> StatsReport {
        self.report_of(&self.slots(), is_final)
    }

    fn report_of(&self, slots: &Board, is_final: bool) -> StatsReport {
        let s = slots.merged();
        let u = crate::os::usage();
        let per_thread = slots
            .each()
            .enumerate()
            .map(|(i, (l, cpu))| ThreadReport {
                pinned_cpu: self.cfg.cpus.as_ref().and_then(|c| c.get(i).copied()),
                connections_accepted: l.accepted,
                connections_closed: l.closed,
                bytes_in: l.bytes_in,
                bytes_out: l.bytes_out,
                syscalls_total: l.syscalls.total(),
                cpu_user_s: cpu.user_s,
                cpu_sys_s: cpu.sys_s,
            })
            .collect();
        StatsReport {
            schema: "ringmux.server-stats/1",
            r#final: is_final,
            snapshot_request: (!is_final).then(|| slots.written()),
            backend: self.backend.name(),
            features: self.backend.features(),
            proto: self.cfg.proto,
            threads: self.cfg.threads,
            addr: self.addr.to_string(),
            pid: std::process::id(),
            elapsed_s: self.started.elapsed().as_secs_f64(),
            syscalls: s.syscalls.by_name(),
            syscalls_total: s.syscalls.total(),
            counts: s,
            thread_stack_bytes: self.thread_stack_bytes,
            uring: self.uring,
            cpu_user_s: u.user_s,
            cpu_sys_s: u.sys_s,
            ctx_voluntary: u.voluntary_ctx,
            ctx_involuntary: u.involuntary_ctx,
            max_rss_kib: u.max_rss_kib,
            per_thread,
        }
    }

    /// Write the JSON stats file if asked for (atomically: temp file, then rename, so a
    /// reader never sees half a file).
    pub fn write_json(&self, r: &StatsReport) -> io::Result<()> {
        let Some(path) = &self.cfg.stats_json else {
            return Ok(());
        };
        let tmp = path.with_extension("tmp");
        let body = serde_json::to_vec_pretty(r).map_err(io::Error::other)?;
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, path)
    }
}

/// One loop's handle on the [`StatsBoard`]: its slot. What the backends report through.
pub struct Reporter {
    index: usize,
    /// The newest snapshot request this loop took (shared with its [`Signals`]).
    seen: Arc<AtomicUsize>,
    board: Arc<StatsBoard>,
}

impl Reporter {
    /// Loop `index`'s reporter (below `cfg.threads`); it reads snapshot requests through
    /// `signals`, the loop's own [`Signals`].
    pub fn new(index: usize, signals: &Signals, board: Arc<StatsBoard>) -> Reporter {
        Reporter {
            index,
            seen: signals.seen(),
            board,
        }
    }

    /// SIGUSR1: publish this loop's counts for the request just taken. The file is
    /// written, merged over every loop, once all have published for that request; a
    /// failure to write it is a warning, not the end of the server.
    pub fn snapshot(&self, s: &LoopStats) {
        self.board
            .publish(self.index, Some(self.seen.load(Ordering::Relaxed)), Some(s));
    }

    /// The loop has ended (with its final counts, or `None` after an error): it no
    /// longer holds snapshots up.
    pub fn finish(&self, s: Option<&LoopStats>) {
        self.board.publish(self.index, None, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(accepted: u64) -> LoopStats {
        LoopStats {
            accepted,
            ..Default::default()
        }
    }

    #[test]
    fn snapshot_waits_for_every_loop() {
        let u = Usage::default();
        let mut b = Board::new(3);
        assert!(!b.publish(0, Some(1), Some(&stats(1)), u));
        assert!(!b.publish(1, Some(1), Some(&stats(2)), u));
        assert!(
            b.publish(2, Some(1), Some(&stats(3)), u),
            "the last loop to publish completes request 1"
        );
        assert_eq!(b.written(), 1);
        assert_eq!(b.merged().accepted, 6);
        let per: Vec<u64> = b.each().map(|(s, _)| s.accepted).collect();
        assert_eq!(per, [1, 2, 3]);
        // Publishing request 1 again (a spurious wake) writes nothing new.
        assert!(!b.publish(0, Some(1), Some(&stats(1)), u));
    }

    #[test]
    fn quick_requests_coalesce_without_hanging() {
        // Requests 2 and 3 arrive; loop 0 wakes once and sees 3, loop 1 sees 2 then 3.
        let u = Usage::default();
        let mut b = Board::new(2);
        assert!(!b.publish(1, Some(2), Some(&stats(1)), u));
        assert!(
            b.publish(0, Some(3), Some(&stats(1)), u),
            "every loop answered request 2 or later"
        );
        assert!(
            b.publish(1, Some(3), Some(&stats(2)), u),
            "request 3 complete too"
        );
        assert!(!b.publish(0, Some(3), None, u));
    }

    #[test]
    fn ended_loops_never_hold_snapshots_up() {
        let u = Usage::default();
        let mut b = Board::new(2);
        assert!(
            !b.publish(0, None, Some(&stats(5)), u),
            "an end is no snapshot"
        );
        assert!(
            b.publish(1, Some(1), Some(&stats(1)), u),
            "loop 0 has ended: loop 1 alone completes"
        );
        assert_eq!(
            b.merged().accepted,
            6,
            "the ended loop's final counts are in"
        );
        // A loop that ends before answering a pending request completes it.
        let mut b = Board::new(2);
        assert!(!b.publish(0, Some(1), Some(&stats(1)), u));
        assert!(b.publish(1, None, Some(&stats(2)), u));
        // Once all have ended only the final report is written.
        assert!(!b.publish(0, None, None, u));
        assert_eq!(
            b.merged().accepted,
            3,
            "None keeps the counts published before"
        );
    }

    #[test]
    fn one_loop_writes_every_request() {
        let u = Usage::default();
        let mut b = Board::new(1);
        for g in 1..5 {
            assert!(b.publish(0, Some(g), Some(&stats(g as u64)), u));
        }
    }
}
