//! The policy layer: every rule the backends share, written once. Backends own their
//! waiting and their kernel interface (readiness calls, blocking calls, ring
//! submissions); what a connection or the loop does about what happened goes
//! through here.
//!
//! - [`accept`]: accept errors and the back-off, `--max-conns`, descriptors a
//!   mechanism cannot watch.
//! - [`drain`]: signals (SIGUSR1 snapshots, SIGINT/SIGTERM) and the drain deadline.
//! - [`io`]: receive and send on a socket, with the fault hooks and the counts.
//! - [`over_cap`]: the outbox cap's backpressure rule.
//! - [`timers`]: the idle and header deadlines, and what a loop does when one is due.
//! - [`fanout`]: broadcasts to the other connections, and the slow-receiver drop.
//! - [`supervisor`]: the models with no readiness call (blocking, threads).

pub mod accept;
pub mod drain;
pub mod fanout;
pub mod io;
pub mod supervisor;
pub mod timers;

use super::conn::Conn;

/// The outbox cap's rule, for every backend: a connection whose queued bytes (its
/// outbox, plus what the kernel owns in an in-flight send) reach `cap` is not read
/// until they drop below it. Echo thus pushes back on a peer that does not read.
pub fn over_cap(conn: &Conn, in_flight: usize, cap: usize) -> bool {
    conn.owed_len() + in_flight >= cap
}
