//! The broadcast fan-out every backend shares: pure bookkeeping over [`Conn`]s, no
//! sockets.
//!
//! A broadcast from connection `k` ([`Conn::take_broadcast`]) is appended to the outbox
//! of every other live connection, in the order the broadcasts are fanned out, so each
//! receiver sees each sender's lines in the order sent and nobody gets one twice (the
//! sender's own copy is already in its reply, see [`crate::proto::Effects`]).
//!
//! The sender is never blocked. A receiver whose queued bytes would go over the cap is
//! marked for disconnect instead ([`Conn::dropped`]): it gets nothing more, the
//! backend closes it without flushing, and it counts in `slow_receivers_dropped`.
//! Queued bytes are the outbox plus what the backend has handed to the kernel and not
//! yet seen completed, which the backend passes in: an io_uring backend owns an
//! in-flight send buffer it must not append to, so the fan-out only ever appends to the
//! outbox ([`Conn::push_broadcast`]), which [`Conn::take_owed`] swapped away from the
//! kernel's buffer; a readiness backend passes 0.
//!
//! Wiring into a backend (one loop): after handling input or accepting, call
//! [`Fanout::broadcast`] with that connection's broadcast bytes and an iterator over
//! every connection of the loop, then close what [`Fanout::take_dropped`] returns and
//! arm sends for receivers whose outbox grew. On close, fan out [`Conn::on_close`]'s
//! bytes the same way. With several loops each loop also forwards the bytes to the
//! other loops' inboxes (not done here).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Loop, Member};
use crate::server::conn::Conn;

/// One loop's fan-out state.
#[derive(Debug)]
pub struct Fanout {
    cap: usize,
    /// Receivers marked for disconnect since the last [`Fanout::take_dropped`].
    dropped: Vec<usize>,
    /// Receivers that got bytes since the last [`Fanout::take_woken`].
    woken: Vec<usize>,
    /// Broadcasts waiting to be fanned out (sender key, bytes), oldest first.
    queue: VecDeque<(usize, Vec<u8>)>,
    /// io_uring: completions come in bursts (a multishot RECV may bring megabytes in
    /// one turn) and sends run only at the next enter, so a receiver that keeps up is
    /// over the cap within a turn. Lenient: such a receiver still gets the bytes and
    /// is noted in `over` with its send progress; [`Fanout::recheck`] drops it once it
    /// has stayed over the cap with no send completed for [`GRACE`], or at once past
    /// [`HARD_CAPS`] caps.
    lenient: bool,
    over: Vec<(usize, u64, Instant)>,
}

/// The slow-receiver rule: a receiver with `queued` bytes (its outbox plus what the
/// kernel or its writer thread holds in flight) that would go over `cap` with
/// `incoming` more is dropped rather than waited for.
pub fn would_overflow(queued: usize, incoming: usize, cap: usize) -> bool {
    queued + incoming > cap
}

/// Lenient fan-out: how long a receiver may stay over the cap without a completed send.
pub const GRACE: Duration = Duration::from_millis(200);
/// Lenient fan-out: past this many caps queued a receiver is dropped at once.
pub const HARD_CAPS: usize = 8;

/// The lenient rule's verdict on a receiver with `queued` bytes and `incoming` more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lenient {
    /// Under the cap.
    Fine,
    /// Over the cap: it keeps the bytes, and is dropped once its sends made no
    /// progress for [`GRACE`].
    Over,
    /// Past [`HARD_CAPS`] caps: dropped at once.
    Drop,
}

/// The lenient slow-receiver rule, for senders whose receivers' sends complete in
/// bursts (the proactor) or on another thread (the threads model's writers).
pub fn lenient(queued: usize, incoming: usize, cap: usize) -> Lenient {
    let q = queued + incoming;
    if q > HARD_CAPS * cap {
        Lenient::Drop
    } else if q > cap {
        Lenient::Over
    } else {
        Lenient::Fine
    }
}

impl Fanout {
    /// `cap`: the most bytes a receiver may have queued (`--outbox-cap`).
    pub fn new(cap: usize) -> Fanout {
        Fanout {
            cap,
            dropped: Vec::new(),
            woken: Vec::new(),
            queue: VecDeque::new(),
            lenient: false,
            over: Vec::new(),
        }
    }

    /// A fan-out that drops a receiver over the cap only once it made no send progress
    /// for a turn ([`Fanout::recheck`]); for completion-based loops.
    pub fn lenient(cap: usize) -> Fanout {
        Fanout {
            lenient: true,
            ..Fanout::new(cap)
        }
    }

    /// Lenient fan-out: some receiver is over the cap (for at most [`GRACE`] without
    /// progress, then it is dropped). The loop stops reading broadcasting connections
    /// meanwhile, so the fan-out's memory stays near the cap.
    pub fn congested(&self) -> bool {
        !self.over.is_empty()
    }

    /// Lenient fan-out: the receivers noted over the cap so far; taken before a turn's
    /// completions, handed to [`Fanout::recheck`] after them.
    pub fn take_over(&mut self) -> Vec<(usize, u64, Instant)> {
        std::mem::take(&mut self.over)
    }

    /// Lenient fan-out, after a turn's completions, with what [`Fanout::take_over`]
    /// returned before them: drop the receivers still over the cap whose sends made no
    /// progress for [`GRACE`]; keep watching the others still over it.
    pub fn recheck<L: Loop>(room: &mut L, over: Vec<(usize, u64, Instant)>) {
        let now = Instant::now();
        for (k, seen, since) in over {
            let (st, members) = room.parts();
            let f = &mut st.fanout;
            let Some(m) = members.get_mut(k) else {
                continue;
            };
            if !m.live() || m.conn().dropped {
                continue;
            }
            let (inf, progress) = (m.in_flight(), m.progress());
            let c = m.conn();
            if c.owed_len() + inf <= f.cap {
                continue;
            }
            if progress != seen {
                f.over.push((k, progress, now)); // draining: watch it again from now
                continue;
            }
            if now.duration_since(since) < GRACE {
                f.over.push((k, seen, since));
                continue;
            }
            c.dropped = true;
            room.parts().0.stats.slow_receivers_dropped += 1;
            room.close(k);
        }
        Fanout::settle(room);
    }

    /// Queue connection `from`'s broadcast bytes (from [`Conn::take_broadcast`] after
    /// input or accept, [`Conn::on_close`] on close); [`Fanout::settle`] delivers them.
    pub fn queue(&mut self, from: usize, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.queue.push_back((from, bytes));
        }
    }

    /// The one delivery path of every loop backend: fan out every queued broadcast
    /// over the loop's connections, close the receivers it marked dropped (their
    /// leaves are queued and fanned out in turn), then wake the receivers that got
    /// bytes (a wake may close one, queueing its leave: the loop goes round again).
    /// Ends when nothing is queued or woken: each round that goes on has closed a
    /// connection, so there are at most as many rounds as connections.
    /// Call it with the sender still in the slab, or before its key can be reused.
    pub fn settle<L: Loop>(room: &mut L) {
        loop {
            loop {
                let (st, members) = room.parts();
                let f = &mut st.fanout;
                let Some((from, bytes)) = f.queue.pop_front() else {
                    break;
                };
                if f.lenient {
                    for (k, m) in members.iter_mut().filter(|(k, m)| *k != from && m.live()) {
                        let (inf, progress) = (m.in_flight(), m.progress());
                        let c = m.conn();
                        if c.dropped {
                            continue;
                        }
                        match lenient(c.owed_len() + inf, bytes.len(), f.cap) {
                            Lenient::Drop => {
                                c.dropped = true;
                                f.dropped.push(k);
                                continue;
                            }
                            Lenient::Over if !f.over.iter().any(|o| o.0 == k) => {
                                f.over.push((k, progress, Instant::now()));
                            }
                            _ => {}
                        }
                        c.push_broadcast(&bytes);
                        f.woken.push(k);
                    }
                } else {
                    let members = members.iter_mut().filter(|(_, m)| m.live()).map(|(k, m)| {
                        let inf = m.in_flight();
                        (k, m.conn(), inf)
                    });
                    f.broadcast(from, &bytes, members);
                }
                for k in f.take_dropped() {
                    room.parts().0.stats.slow_receivers_dropped += 1;
                    room.close(k);
                }
            }
            let woken = room.parts().0.fanout.take_woken();
            if woken.is_empty() {
                return;
            }
            for k in woken {
                room.wake(k);
            }
        }
    }

    /// Append `bytes` from connection `from` to every other receiver. `receivers`
    /// yields (key, connection, bytes of it the kernel owns in an in-flight send).
    pub fn broadcast<'a, I>(&mut self, from: usize, bytes: &[u8], receivers: I)
    where
        I: IntoIterator<Item = (usize, &'a mut Conn, usize)>,
    {
        if bytes.is_empty() {
            return;
        }
        for (key, c, in_flight) in receivers {
            if key == from || c.dropped {
                continue;
            }
            if would_overflow(c.owed_len() + in_flight, bytes.len(), self.cap) {
                c.dropped = true;
                self.dropped.push(key);
                continue;
            }
            c.push_broadcast(bytes);
            self.woken.push(key);
        }
    }

    /// Receivers to close now, without flushing.
    pub fn take_dropped(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.dropped)
    }

    /// Receivers whose outbox grew: the backend arms their sends.
    pub fn take_woken(&mut self) -> Vec<usize> {
        let mut w = std::mem::take(&mut self.woken);
        w.sort_unstable();
        w.dedup();
        w
    }
}

#[cfg(test)]
mod tests {
    use super::super::LoopState;
    use super::super::timers::{Clock, Timers};
    use super::*;
    use crate::proto::{Guests, Proto};
    use slab::Slab;

    fn chat_room(n: usize, guests: &Guests) -> Vec<Conn> {
        (0..n)
            .map(|_| Conn::with_guests(Proto::Chat, guests))
            .collect()
    }

    /// Fan out whatever connection `k` broadcast.
    fn pump(f: &mut Fanout, conns: &mut [Conn], k: usize, in_flight: &[usize]) {
        let b = conns[k].take_broadcast();
        f.broadcast(
            k,
            &b,
            conns
                .iter_mut()
                .enumerate()
                .map(|(i, c)| (i, c, in_flight[i])),
        );
    }

    #[test]
    fn chat_lines_reach_everyone_once_in_order() {
        let guests = Guests::default();
        let mut conns = chat_room(3, &guests);
        let mut f = Fanout::new(1 << 20);
        let none = [0; 3];
        for k in 0..3 {
            conns[k].on_open();
            pump(&mut f, &mut conns, k, &none);
        }
        conns[0].on_input(b"a1\na2\n");
        conns[1].on_input(b"b1\n");
        pump(&mut f, &mut conns, 1, &none);
        pump(&mut f, &mut conns, 0, &none);
        conns[1].on_input(b"b2\n");
        pump(&mut f, &mut conns, 1, &none);
        let text = |c: &Conn| String::from_utf8(c.owed().to_vec()).unwrap();
        assert_eq!(
            text(&conns[0]),
            "* you are guest-1\n* guest-1 joined\n* guest-2 joined\n* guest-3 joined\n[guest-1] a1\n[guest-1] a2\n[guest-2] b1\n[guest-2] b2\n"
        );
        assert_eq!(
            text(&conns[1]),
            "* guest-1 joined\n* you are guest-2\n* guest-2 joined\n* guest-3 joined\n[guest-2] b1\n[guest-1] a1\n[guest-1] a2\n[guest-2] b2\n"
        );
        assert_eq!(
            text(&conns[2]),
            "* guest-1 joined\n* guest-2 joined\n* you are guest-3\n* guest-3 joined\n[guest-2] b1\n[guest-1] a1\n[guest-1] a2\n[guest-2] b2\n"
        );
        let mut w = f.take_woken();
        w.sort();
        assert_eq!(w, vec![0, 1, 2]);
        // Leaving: everyone else hears it.
        let bye = conns[2].on_close();
        assert_eq!(bye, b"* guest-3 left\n");
        f.broadcast(
            2,
            &bye,
            conns.iter_mut().enumerate().map(|(i, c)| (i, c, 0)),
        );
        assert!(text(&conns[0]).ends_with("* guest-3 left\n"));
        assert!(!text(&conns[2]).ends_with("* guest-3 left\n"));
    }

    #[test]
    fn slow_receiver_is_dropped_sender_never_blocked() {
        let guests = Guests::default();
        let mut conns = chat_room(3, &guests);
        let mut f = Fanout::new(1024);
        // Receiver 2 has 900 bytes in flight in the kernel (io_uring) and reads nothing.
        let in_flight = [0, 0, 900];
        let line = format!("{}\n", "x".repeat(50));
        for _ in 0..40 {
            conns[0].on_input(line.as_bytes());
            pump(&mut f, &mut conns, 0, &in_flight);
            // Receiver 1 keeps reading.
            let n = conns[1].owed_len();
            conns[1].advance(n);
        }
        assert_eq!(f.take_dropped(), vec![2], "dropped once");
        assert!(conns[2].dropped && !conns[1].dropped && !conns[0].dropped);
        // The dropped one got nothing over the cap, and nothing after being dropped.
        assert!(conns[2].owed_len() + 900 <= 1024);
        // The sender's own replies were never held back: all 40 lines are owed to it.
        assert_eq!(
            conns[0]
                .owed()
                .split(|&b| b == b'\n')
                .filter(|l| l.starts_with(b"[guest-1]"))
                .count(),
            40
        );
        // Dropped once, even with more broadcasts.
        conns[0].on_input(line.as_bytes());
        pump(&mut f, &mut conns, 0, &in_flight);
        assert!(f.take_dropped().is_empty());
    }

    #[test]
    fn appends_never_touch_the_kernels_buffer() {
        let guests = Guests::default();
        let mut conns = chat_room(2, &guests);
        let mut f = Fanout::new(1 << 20);
        conns[1].push_broadcast(b"old\n");
        // io_uring: the owed bytes go to the kernel as their own buffer.
        let in_kernel = conns[1].take_owed(Vec::new());
        conns[0].on_input(b"new\n");
        pump(&mut f, &mut conns, 0, &[0, in_kernel.len()]);
        assert_eq!(in_kernel, b"old\n");
        assert_eq!(conns[1].owed(), b"[guest-1] new\n");
    }
    struct M {
        conn: Conn,
        clock: Clock,
        sent: u64,
    }
    impl Member for M {
        fn conn(&mut self) -> &mut Conn {
            &mut self.conn
        }
        fn clock(&mut self) -> (&mut Clock, &mut Conn) {
            (&mut self.clock, &mut self.conn)
        }
        fn progress(&self) -> u64 {
            self.sent
        }
    }
    struct R {
        st: LoopState,
        conns: Slab<M>,
        closed: Vec<usize>,
    }
    impl Loop for R {
        type M = M;
        fn parts(&mut self) -> (&mut LoopState, &mut Slab<M>) {
            (&mut self.st, &mut self.conns)
        }
        fn close(&mut self, key: usize) {
            self.closed.push(key);
            self.conns.remove(key);
        }
        fn wake(&mut self, _key: usize) {}
    }

    #[test]
    fn lenient_drops_only_without_progress_for_the_grace() {
        let guests = Guests::default();
        let mut r = R {
            st: LoopState {
                stats: Default::default(),
                fanout: Fanout::lenient(1000),
                timers: Timers::default(),
                faults: Default::default(),
                drain: Default::default(),
                room: None,
            },
            conns: Slab::new(),
            closed: Vec::new(),
        };
        for k in 0..3 {
            let clock = r.st.timers.open(k);
            r.conns.insert(M {
                conn: Conn::with_guests(Proto::Chat, &guests),
                clock,
                sent: 0,
            });
        }
        let line = vec![b'x'; 600];
        // Over the cap within a turn: everyone still gets the bytes.
        r.st.fanout.queue(0, line.clone());
        r.st.fanout.queue(0, line.clone());
        Fanout::settle(&mut r);
        assert_eq!(r.conns[1].conn.owed_len(), 1200);
        let over = r.st.fanout.take_over();
        assert_eq!(over.len(), 2);
        // Receiver 1 sends it all, receiver 2 nothing; before the grace, nobody goes.
        r.conns[1].sent += 1;
        r.conns[1].conn.advance(1200);
        Fanout::recheck(&mut r, over);
        assert!(r.closed.is_empty());
        std::thread::sleep(GRACE + Duration::from_millis(20));
        let over = r.st.fanout.take_over();
        Fanout::recheck(&mut r, over);
        // 1 drained (no longer watched); 2 stayed over the cap with no send for the grace.
        assert_eq!(r.closed, vec![2]);
        // Past HARD_CAPS caps a receiver goes at once.
        r.st.fanout.queue(0, vec![b'y'; 8 * 1000 + 1]);
        Fanout::settle(&mut r);
        assert_eq!(r.closed, vec![2, 1]);
    }
}
