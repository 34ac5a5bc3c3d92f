//! One chat room across threads: the part of the fan-out that crosses from one thread
//! to another. A member is either an event loop (`--threads N` with a loop backend),
//! whose connections get the bytes from its own [`super::fanout::Fanout`] when it
//! takes its inbox, or one connection of the `threads` model, whose writer thread
//! sends them.
//!
//! The rules are the fan-out's: a broadcast reaches every other member, in the order
//! posted; the sender never waits; a connection whose queued bytes stay over the cap
//! is dropped ([`super::fanout::lenient`]: its writer made no progress for the grace,
//! or it is past [`super::fanout::HARD_CAPS`] caps), not waited for. A loop member
//! applies that rule per connection when it takes its inbox, so a slow connection of
//! one loop never holds up the others. A loop's inbox holds each broadcast once, for
//! all its connections, and is emptied whenever the loop wakes.

use std::os::fd::RawFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use slab::Slab;

use std::time::Instant;

use super::fanout::{GRACE, Lenient, lenient};
use crate::server::signals::Waker;
use crate::server::sys;

/// Every member's inbox, one room per server.
#[derive(Debug, Default)]
pub struct Hub {
    members: Mutex<Slab<Inbox>>,
}

#[derive(Debug)]
struct Inbox {
    bytes: Vec<u8>,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// An event loop: woken through its wake pipe when its inbox stops being empty.
    Loop(Waker),
    /// One connection with a writer thread.
    Conn(ConnSide),
}

#[derive(Debug)]
struct ConnSide {
    fd: RawFd,
    /// Bytes the writer took and is sending: they count against the cap.
    in_flight: usize,
    /// Sends the writer completed so far, and since when (at which count) the queued
    /// bytes are over the cap.
    progress: u64,
    over: Option<(u64, Instant)>,
    cap: usize,
    dropped: bool,
    /// The reader is done: the writer sends what is left, then ends.
    closed: bool,
    /// The writer waits here for bytes, the reader for room under the cap.
    changed: Arc<Condvar>,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, Slab<Inbox>> {
        // The inboxes hold plain bytes: a thread that panicked left whole values.
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An event loop joins; `waker` wakes it.
    pub fn join_loop(&self, waker: Waker) -> usize {
        self.lock().insert(Inbox {
            bytes: Vec::new(),
            kind: Kind::Loop(waker),
        })
    }

    /// A connection served by blocking calls joins (socket `fd`, outbox cap `cap`).
    pub fn join_conn(&self, fd: RawFd, cap: usize) -> usize {
        let side = ConnSide {
            fd,
            in_flight: 0,
            progress: 0,
            over: None,
            cap,
            dropped: false,
            closed: false,
            changed: Arc::default(),
        };
        self.lock().insert(Inbox {
            bytes: Vec::new(),
            kind: Kind::Conn(side),
        })
    }

    /// Member `id` leaves: nothing more is posted to it, and what its inbox held is dropped.
    pub fn leave(&self, id: usize) {
        self.lock().try_remove(id);
    }

    /// Post `bytes` from member `from` to every other member. Returns how many
    /// connections were dropped for a full outbox (counted by the sender, as a loop's
    /// fan-out counts them).
    pub fn post(&self, from: usize, bytes: &[u8]) -> u64 {
        if bytes.is_empty() {
            return 0;
        }
        let mut dropped = 0;
        for (id, ib) in self.lock().iter_mut() {
            if id == from {
                continue;
            }
            match &mut ib.kind {
                Kind::Loop(w) => {
                    if ib.bytes.is_empty() {
                        w.wake(); // a non-empty inbox has a wake pending already
                    }
                    ib.bytes.extend_from_slice(bytes);
                }
                Kind::Conn(c) => {
                    if c.dropped || c.closed {
                        continue;
                    }
                    // The proactor's lenient rule: a writer blocked in a send to a
                    // peer that reads is only late; one that made no progress for
                    // the grace has a peer that does not read.
                    let drop = match lenient(ib.bytes.len() + c.in_flight, bytes.len(), c.cap) {
                        Lenient::Fine => {
                            c.over = None;
                            false
                        }
                        Lenient::Drop => true,
                        Lenient::Over => match c.over {
                            Some((seen, since)) if seen == c.progress => since.elapsed() >= GRACE,
                            _ => {
                                c.over = Some((c.progress, Instant::now()));
                                false
                            }
                        },
                    };
                    if drop {
                        c.dropped = true;
                        ib.bytes = Vec::new();
                        dropped += 1;
                        // Both of its threads return: the reader from recv, the
                        // writer from a blocked send.
                        sys::shutdown_rdwr(c.fd);
                    } else {
                        ib.bytes.extend_from_slice(bytes);
                    }
                    c.changed.notify_all();
                }
            }
        }
        dropped
    }

    /// An event loop takes what was posted to it since it last looked.
    pub fn take(&self, id: usize) -> Vec<u8> {
        self.lock()
            .get_mut(id)
            .map(|ib| std::mem::take(&mut ib.bytes))
            .unwrap_or_default()
    }

    /// A connection's own replies go out in order with what others posted to it.
    pub fn push_own(&self, id: usize, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut m = self.lock();
        if let Some(Inbox {
            bytes: b,
            kind: Kind::Conn(c),
        }) = m.get_mut(id)
            && !c.dropped
        {
            b.extend_from_slice(bytes);
            c.changed.notify_all();
        }
    }

    /// The connection's reader: wait while its queued bytes are at the cap (the
    /// backpressure of `--outbox-cap`). False once it was dropped.
    pub fn wait_below(&self, id: usize) -> bool {
        let mut m = self.lock();
        loop {
            let Some(Inbox {
                bytes,
                kind: Kind::Conn(c),
            }) = m.get(id)
            else {
                return false;
            };
            if c.dropped {
                return false;
            }
            if bytes.len() + c.in_flight < c.cap {
                return true;
            }
            let cv = c.changed.clone();
            m = cv.wait(m).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The connection's reader is done: the writer sends what is queued, then ends.
    pub fn close(&self, id: usize) {
        if let Some(Inbox {
            kind: Kind::Conn(c),
            ..
        }) = self.lock().get_mut(id)
        {
            c.closed = true;
            c.changed.notify_all();
        }
    }

    /// The writer could not send (the peer is gone): nothing more is queued, and the
    /// reader no longer waits for room.
    pub fn abandon(&self, id: usize) {
        if let Some(Inbox {
            bytes,
            kind: Kind::Conn(c),
        }) = self.lock().get_mut(id)
        {
            c.dropped = true;
            *bytes = Vec::new();
            c.changed.notify_all();
        }
    }

    /// True once the connection was dropped for a full outbox (the tests look).
    #[cfg(test)]
    pub fn dropped(&self, id: usize) -> bool {
        matches!(
            self.lock().get(id),
            Some(Inbox {
                kind: Kind::Conn(ConnSide { dropped: true, .. }),
                ..
            })
        )
    }

    /// The writer: the next bytes to send (the previous ones were sent), waiting for
    /// some; None when there is nothing more to send (dropped, or closed and empty).
    pub fn next_send(&self, id: usize) -> Option<Vec<u8>> {
        let mut m = self.lock();
        loop {
            let Some(Inbox {
                bytes,
                kind: Kind::Conn(c),
            }) = m.get_mut(id)
            else {
                return None;
            };
            if c.in_flight > 0 {
                c.in_flight = 0;
                c.progress += 1;
                c.changed.notify_all();
            }
            if c.dropped {
                return None;
            }
            if !bytes.is_empty() {
                let out = std::mem::take(bytes);
                c.in_flight = out.len();
                return Some(out);
            }
            if c.closed {
                return None;
            }
            let cv = c.changed.clone();
            m = cv.wait(m).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_over_the_cap_without_progress_is_dropped_the_others_get_everything_in_order() {
        use super::super::fanout::{GRACE, HARD_CAPS};
        let hub = Hub::default();
        // Socket fds that no test owns: shutdown(2) on them fails harmlessly.
        let a = hub.join_conn(-1, 10);
        let b = hub.join_conn(-1, 10);
        let c = hub.join_conn(-1, 10);
        let d = hub.join_conn(-1, 10);
        assert_eq!(hub.post(a, b"1234"), 0);
        hub.push_own(b, b"me");
        // b's writer takes what is queued: it is in flight, still counted.
        assert_eq!(hub.next_send(b).as_deref(), Some(&b"1234me"[..]));
        // b goes over the cap (6 in flight + 5): it keeps the bytes while its writer
        // may still be making progress...
        assert_eq!(hub.post(a, b"56789"), 0);
        assert!(!hub.dropped(b));
        // ...and is dropped once a post finds it with no send done for the grace.
        std::thread::sleep(GRACE + std::time::Duration::from_millis(20));
        assert_eq!(hub.post(a, b"!"), 1);
        assert!(hub.dropped(b) && !hub.dropped(c));
        assert_eq!(hub.next_send(b), None);
        assert_eq!(hub.next_send(c).as_deref(), Some(&b"123456789!"[..]));
        hub.close(c);
        assert_eq!(hub.next_send(c), None, "closed and sent: the writer ends");
        // Past HARD_CAPS caps, at once (d holds 10 bytes, in flight for none).
        assert_eq!(hub.post(a, &[b'x'; HARD_CAPS * 10]), 1);
        assert!(hub.dropped(d));
        assert!(hub.wait_below(a));
        assert!(!hub.wait_below(b));
    }
}
