//! Thread-per-core: `serve --threads N [--pin] [--cpus LIST]`.
//!
//! N independent event loops, each on its own thread with its own listening socket
//! (SO_REUSEPORT on one address, see [`super::listener::bind_group`]) and its own
//! io_uring ring or epoll instance. They share no lock while serving: the kernel
//! picks the loop of each new connection when it lands in one listener's backlog,
//! and that loop owns the connection to the end. What they do share is off the hot
//! path: the stop flag and snapshot counter (atomics, [`super::SignalHub`]), and the
//! [`Board`] each loop writes its counts to on SIGUSR1 and once at its end.
//!
//! Loop 0 runs on the calling (main) thread with the ring that decided the backend,
//! so `--threads 1` starts no thread at all. Loops 1..N set up their own ring and pin
//! themselves on their own thread, and report ready before any loop serves: a ring
//! that cannot be set up fails the whole server before the start line. A loop that
//! fails or panics later stops the others, and the server exits with its error.
//!
//! (Named `percore`, not `threads`: DESIGN.md keeps `threads.rs` for a future
//! thread-per-connection IO model.)

use std::sync::Arc;
use std::sync::mpsc;
use std::thread;

use anyhow::{Context, anyhow, bail};
use socket2::Socket;

use super::sys::{self, Usage};
use super::uring::Ring;
use super::{
    Backend, LoopStats, Reporter, ServerConfig, SignalHub, Signals, StatsBoard, blocking, busypoll,
    reactor, threads, uring,
};
use crate::os::cpus::{format_cpu_list, parse_cpu_list};

/// The CPU of each loop, or `None` without pinning. `--cpus` implies `--pin`; loop i
/// gets CPU i of the list (or CPU i without a list). `allowed` gives the CPUs this
/// process may run on; it is asked only when pinning.
pub fn plan_cpus(
    threads: usize,
    pin: bool,
    list: Option<&str>,
    allowed: impl FnOnce() -> std::io::Result<Vec<usize>>,
) -> anyhow::Result<Option<Vec<usize>>> {
    let cpus = match list {
        Some(l) => {
            let cpus = parse_cpu_list(l).with_context(|| format!("--cpus '{l}'"))?;
            if cpus.len() < threads {
                bail!(
                    "--cpus '{l}' lists {} CPU(s) for --threads {threads}: give one CPU per event loop",
                    cpus.len()
                );
            }
            cpus[..threads].to_vec()
        }
        None if pin => (0..threads).collect(),
        None => return Ok(None),
    };
    let allowed = allowed().context("--pin: cannot read this process's CPU affinity")?;
    if let Some(&bad) = cpus.iter().find(|c| !allowed.contains(c)) {
        let may = format_cpu_list(&allowed);
        if list.is_some() {
            bail!("--cpus: CPU {bad} is not available to this process (it may run on {may})");
        }
        bail!(
            "--pin: --threads {threads} puts loop i on CPU i, but CPU {bad} is not available to this process \
             (it may run on {may}); use fewer --threads or choose CPUs with --cpus"
        );
    }
    Ok(Some(cpus))
}

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

/// Run every loop until a stop signal (or a loop's failure); `announce` is called once
/// all of them are ready, before any serves. Their counts end up on `board`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    cfg: &ServerConfig,
    backend: Backend,
    ring: Option<Ring>,
    listeners: Vec<Socket>,
    signals: Vec<Signals>,
    hub: Arc<SignalHub>,
    board: &Arc<StatsBoard>,
    announce: impl FnOnce(),
) -> anyhow::Result<()> {
    let n = listeners.len();
    assert_eq!(n, signals.len(), "one wake pipe per listener");
    let mut loops = listeners.into_iter().zip(signals).enumerate();
    let (_, (listener0, signals0)) = loops.next().expect("at least one loop");
    let reporter0 = Reporter::new(0, &signals0, board.clone());

    // Loops 1..n: pin, set up the ring, say ready, wait for the word to go.
    let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<()>>();
    let mut workers = Vec::with_capacity(n.saturating_sub(1));
    for (i, (listener, signals)) in loops {
        let (go_tx, go_rx) = mpsc::channel::<bool>();
        let (cfg, hub, ready) = (cfg.clone(), hub.clone(), ready_tx.clone());
        let reporter = Reporter::new(i, &signals, board.clone());
        let body = move || -> anyhow::Result<()> {
            let ring = match prepare(i, n, &cfg, backend) {
                Ok(r) => {
                    let _ = ready.send(Ok(()));
                    r
                }
                Err(e) => {
                    reporter.finish(None);
                    let _ = ready.send(Err(e));
                    return Ok(());
                }
            };
            drop(ready);
            if go_rx.recv() != Ok(true) {
                reporter.finish(None);
                return Ok(()); // another loop could not start
            }
            run_loop(
                i, n, backend, ring, listener, &cfg, &signals, &reporter, &hub,
            )
        };
        let handle = thread::Builder::new()
            .name(format!("ringmux-loop-{i}"))
            .spawn(body)
            .with_context(|| format!("cannot start the thread of event loop {i}"))?;
        workers.push((handle, go_tx));
    }
    drop(ready_tx);
    let mut failure: Option<anyhow::Error> = None;
    for _ in 1..n {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(_) => {
                failure.get_or_insert(anyhow!("an event-loop thread ended while starting"));
                break;
            }
        }
    }
    // Pin loop 0 (this thread) after spawning, so no loop inherits its CPU by accident.
    if failure.is_none()
        && let Some(cpu) = cfg.cpus.as_ref().map(|c| c[0])
        && let Err(e) = sys::pin_current_thread(cpu)
    {
        failure = Some(anyhow!("event loop 0: cannot pin to CPU {cpu}: {e}"));
    }
    if let Some(e) = failure {
        for (handle, go) in workers {
            let _ = go.send(false);
            let _ = handle.join();
        }
        return Err(e);
    }

    announce();
    for (_, go) in &workers {
        let _ = go.send(true);
    }
    let first = run_loop(
        0, n, backend, ring, listener0, cfg, &signals0, &reporter0, &hub,
    );
    let mut result = first;
    for (i, (handle, _)) in workers.into_iter().enumerate() {
        let r = handle
            .join()
            .unwrap_or_else(|_| Err(anyhow!("event loop {} panicked", i + 1)));
        if result.is_ok() {
            result = r;
        }
    }
    result
}

/// On a loop's own thread, before it serves: pin it, set up its ring.
fn prepare(
    i: usize,
    n: usize,
    cfg: &ServerConfig,
    backend: Backend,
) -> anyhow::Result<Option<Ring>> {
    if let Some(cpu) = cfg.cpus.as_ref().map(|c| c[i]) {
        sys::pin_current_thread(cpu)
            .map_err(|e| anyhow!("event loop {i}: cannot pin to CPU {cpu}: {e}"))?;
    }
    let Backend::Uring(level) = backend else {
        return Ok(None);
    };
    // The level loop 0 got, pinned: every loop serves the same way.
    let mut pinned = cfg.clone();
    pinned.features = crate::cli::FeatureChoice::from(level);
    let ring = Ring::setup(&pinned).map_err(|e| {
        anyhow!("event loop {i} of {n}: {e} (each loop sets up its own ring: fewer --threads or a smaller --ring-entries may fit)")
    })?;
    if ring.features.level != level {
        bail!(
            "event loop {i} of {n}: io_uring gave feature level {:?}, loop 0 got {level:?}",
            ring.features.level
        );
    }
    Ok(Some(ring))
}

/// If a loop ends in error or panics, it publishes its end (so snapshots are not held
/// up) and stops the others: the server fails as a whole.
struct StopOthersUnlessDisarmed<'a> {
    hub: &'a SignalHub,
    reporter: &'a Reporter,
    armed: bool,
}

impl Drop for StopOthersUnlessDisarmed<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.reporter.finish(None);
            self.hub.stop_all();
        }
    }
}

/// Run loop `i` on this thread to its end; its final counts go to the board.
#[allow(clippy::too_many_arguments)]
fn run_loop(
    i: usize,
    n: usize,
    backend: Backend,
    ring: Option<Ring>,
    listener: Socket,
    cfg: &ServerConfig,
    signals: &Signals,
    reporter: &Reporter,
    hub: &SignalHub,
) -> anyhow::Result<()> {
    let mut guard = StopOthersUnlessDisarmed {
        hub,
        reporter,
        armed: true,
    };
    let res = match (backend, ring) {
        (Backend::Uring(_), Some(ring)) => uring::run(ring, listener, cfg, signals, reporter),
        (Backend::Uring(_), None) => unreachable!("a uring loop always has its ring"),
        (Backend::Epoll, _) => {
            reactor::run::<reactor::epoll::Epoll>(listener, cfg, signals, reporter)
        }
        (Backend::Poll, _) => reactor::run::<reactor::poll::Poll>(listener, cfg, signals, reporter),
        (Backend::Select, _) => {
            reactor::run::<reactor::select::Select>(listener, cfg, signals, reporter)
        }
        (Backend::Sigio, _) => {
            reactor::run::<reactor::sigio::Sigio>(listener, cfg, signals, reporter)
        }
        (Backend::Threads, _) => threads::run(listener, cfg, signals, reporter),
        (Backend::Blocking, _) => blocking::run(listener, cfg, signals, reporter),
        (Backend::Busypoll, _) => busypoll::run(listener, cfg, signals, reporter),
    };
    let stats = match res {
        Ok(s) => s,
        Err(e) if n == 1 => return Err(anyhow::Error::new(e).context("event loop failed")),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("event loop {i} of {n} failed")));
        }
    };
    guard.armed = false;
    reporter.finish(Some(&stats));
    Ok(())
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

    #[test]
    fn cpu_plans() {
        let two = || Ok(vec![0, 1]);
        assert_eq!(plan_cpus(2, false, None, two).unwrap(), None);
        assert_eq!(plan_cpus(2, true, None, two).unwrap(), Some(vec![0, 1]));
        assert_eq!(plan_cpus(1, true, None, two).unwrap(), Some(vec![0]));
        assert_eq!(
            plan_cpus(1, false, Some("1"), two).unwrap(),
            Some(vec![1]),
            "--cpus implies --pin"
        );
        assert_eq!(
            plan_cpus(2, true, Some("1,0"), two).unwrap(),
            Some(vec![1, 0])
        );
        assert_eq!(
            plan_cpus(1, true, Some("1,0"), two).unwrap(),
            Some(vec![1]),
            "extra CPUs are unused"
        );
        assert_eq!(
            plan_cpus(3, true, Some("2-5,7"), || Ok((0..8).collect())).unwrap(),
            Some(vec![2, 3, 4])
        );
        let err = |t, pin, l| format!("{:#}", plan_cpus(t, pin, l, two).unwrap_err());
        let e = err(3, true, None);
        assert!(
            e.contains("CPU 2 is not available") && e.contains("0-1") && e.contains("--cpus"),
            "{e}"
        );
        let e = err(2, true, Some("0,5"));
        assert!(e.contains("--cpus: CPU 5 is not available"), "{e}");
        let e = err(3, true, Some("0-1"));
        assert!(e.contains("lists 2 CPU(s) for --threads 3"), "{e}");
        let e = err(1, true, Some("x"));
        assert!(
            e.contains("--cpus 'x'") && e.contains("not a CPU number"),
            "{e}"
        );
        let e = err(1, true, Some("99999"));
        assert!(e.contains("out of range"), "{e}");
        // Not asked for the affinity when nothing is pinned.
        assert_eq!(
            plan_cpus(4, false, None, || Err(std::io::Error::other("unasked"))).unwrap(),
            None
        );
    }
}
