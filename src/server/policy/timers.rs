//! Deadlines: --idle-timeout and --header-timeout for every connection of a loop.

use std::time::{Duration, Instant};

use crate::server::config::ServerConfig;
use crate::server::conn::Conn;

// ---------------------------------------------------------------------------------
// Timers: every connection's deadlines (--idle-timeout, --header-timeout) in one
// min-heap per loop, so an idle connection costs no timer syscall of its own; the
// loop's wait ends at the nearest deadline ([`Timers::next`]).

/// A connection's clock: when it last sent something, when its pending head began.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Unique per loop: a heap entry for a closed connection whose slot was reused is
    /// recognised as stale.
    id: u64,
    last_input: Instant,
    head_since: Option<Instant>,
    /// The deadline of this connection's one current heap entry; other entries for it
    /// are stale and dropped when they come up.
    armed: Option<Instant>,
}

/// What a deadline that came up asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// http: the head did not complete in time: 408 and close.
    Header,
    /// Nothing received for --idle-timeout: close.
    Idle,
}

/// One loop's deadlines.
#[derive(Debug, Default)]
pub struct Timers {
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(Instant, usize, u64)>>,
    next_id: u64,
    idle: Option<Duration>,
    header: Option<Duration>,
}

impl Timers {
    /// No deadline yet; the durations are `--idle-timeout` and `--header-timeout`.
    pub fn new(cfg: &ServerConfig) -> Timers {
        Timers {
            idle: cfg.idle_timeout,
            header: cfg.header_timeout,
            ..Timers::default()
        }
    }

    /// A clock for the new connection in slot `key`.
    pub fn open(&mut self, key: usize) -> Clock {
        self.next_id += 1;
        let now = Instant::now();
        let mut c = Clock {
            id: self.next_id,
            last_input: now,
            head_since: None,
            armed: None,
        };
        self.rearm(key, &mut c);
        c
    }

    /// Input arrived on `conn` (call after the protocol saw it).
    pub fn on_input(&mut self, key: usize, clock: &mut Clock, conn: &Conn) {
        if self.idle.is_none() && self.header.is_none() {
            return;
        }
        let now = Instant::now();
        clock.last_input = now;
        if conn.wants_header_deadline() {
            if clock.head_since.is_none() {
                clock.head_since = Some(now);
                self.rearm(key, clock);
            }
        } else {
            clock.head_since = None;
        }
    }

    fn deadline(&self, c: &Clock) -> Option<Instant> {
        let idle = self.idle.map(|d| c.last_input + d);
        let head = self.header.zip(c.head_since).map(|(d, t)| t + d);
        idle.into_iter().chain(head).min()
    }

    /// Push an entry for the clock's deadline unless one as early is already armed.
    fn rearm(&mut self, key: usize, c: &mut Clock) {
        let Some(d) = self.deadline(c) else { return };
        if c.armed.is_some_and(|a| a <= d) {
            return;
        }
        c.armed = Some(d);
        self.heap.push(std::cmp::Reverse((d, key, c.id)));
    }

    /// The nearest deadline (possibly a stale one: waking for it costs one turn).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.0.0)
    }

    /// Take the next entry due at `now`: (slot key, connection id, its deadline).
    pub fn pop_due(&mut self, now: Instant) -> Option<(usize, u64, Instant)> {
        if self.next()? > now {
            return None;
        }
        self.heap.pop().map(|e| (e.0.1, e.0.2, e.0.0))
    }

    /// A loop of one connection (slot 0: the blocking models): what is due for it at
    /// `now`, if anything.
    pub fn due(&mut self, clock: &mut Clock, conn: &Conn, now: Instant) -> Option<Due> {
        while let Some((key, id, at)) = self.pop_due(now) {
            if let Some(d) = self.check(key, id, at, clock, conn, now) {
                return Some(d);
            }
        }
        None
    }

    /// An entry popped by [`Timers::pop_due`] for the connection in `key` now: what is
    /// due, or None (a stale entry, or the deadline moved: re-armed).
    pub fn check(
        &mut self,
        key: usize,
        id: u64,
        at: Instant,
        clock: &mut Clock,
        conn: &Conn,
        now: Instant,
    ) -> Option<Due> {
        if clock.id != id || clock.armed != Some(at) {
            return None;
        }
        clock.armed = None;
        if let (Some(h), Some(t)) = (self.header, clock.head_since)
            && conn.wants_header_deadline()
            && t + h <= now
        {
            clock.head_since = None;
            return Some(Due::Header);
        }
        if self.idle.is_some_and(|d| clock.last_input + d <= now) {
            return Some(Due::Idle);
        }
        self.rearm(key, clock);
        None
    }
}
