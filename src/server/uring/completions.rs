//! Completions: what each op's result means for its connection, and re-arming.

use super::*;

impl Proactor<'_> {
    pub(super) fn on_accept_poll(&mut self, res: i32) {
        self.accept_inflight = None;
        if !self.accepting {
            return;
        }
        if res < 0 && errno(res) != libc::EINTR {
            self.st.stats.accept_errors += 1;
        }
        let t = Token::new(Op::Accept, 0, 0);
        self.accept_inflight = Some(t);
        let e = self.accept_sqe().user_data(t.encode());
        self.push(e);
    }

    pub(super) fn on_accept(&mut self, res: i32, flags: u32) {
        if !cqueue::more(flags) {
            self.accept_inflight = None; // a multishot ACCEPT ended, or a one-shot did
        }
        if res >= 0 {
            accept::accepted(res, &mut self.st.stats);
            if accept::refuse_max_conns(self.cfg, self.conns.len(), res, &mut self.st.stats) {
                self.arm_accept();
                return;
            }
            if !self.accepting {
                self.st.close_fd(res);
                return;
            }
            self.add_conn(res);
        } else if accept::failed(errno(res), &mut self.st.stats) == AcceptFailure::BackOff {
            // Out of descriptors or memory (this also ends a multishot ACCEPT): back
            // off instead of spinning; the backlog keeps the clients waiting.
            if self.accept_inflight.is_none() && !self.accept_backoff {
                self.accept_backoff = true;
                self.arm_timer(accept::ACCEPT_BACKOFF, Timer::AcceptBackoff);
            }
            return;
        }
        self.arm_accept();
    }

    pub(super) fn add_conn(&mut self, fd: RawFd) {
        // A leave queued by a closing connection goes out before its key is reused, and
        // what other loops broadcast before this accept reaches only those already in.
        self.st.take_room();
        Fanout::settle(self);
        let generation = self.next_generation;
        self.next_generation = (self.next_generation + 1) & token::GEN_MASK;
        let key = self.conns.vacant_key();
        let fixed = key < self.slot_fds.len();
        if fixed {
            self.update_slot(key, Some(fd));
        }
        let mut conn = Conn::with_guests(self.cfg.proto, &self.cfg.guests);
        let clock = self.st.open(key, &mut conn);
        let key = self.conns.insert(UConn {
            fd,
            fixed,
            generation,
            clock,
            conn,
            recv_buf: None,
            send_buf: Vec::new(),
            send_pos: 0,
            spare: Vec::new(),
            inflight: 0,
            read_paused: false,
            recv_cancelling: false,
            closing: false,
            sends_done: 0,
        });
        self.start_send(key);
        Fanout::settle(self);
        self.arm_read(key);
    }

    pub(super) fn on_poll(&mut self, t: Token, res: i32) {
        let key = t.key as usize;
        let Some(c) = slot(&mut self.conns, t) else {
            return;
        };
        c.inflight &= !IN_POLL;
        if c.closing {
            self.maybe_finalize(key);
        } else if c.conn.read_eof {
            // Draining: the poll was cancelled; close once nothing is owed.
            if c.conn.finished() && c.inflight & IN_SEND == 0 {
                self.begin_close(key);
            }
        } else if res < 0 {
            self.begin_close(key);
        } else {
            // Readable (or hung up: the RECV tells which).
            self.submit_recv(key);
        }
    }

    pub(super) fn on_recv(&mut self, t: Token, mut res: i32, flags: u32) {
        let key = t.key as usize;
        // The buffers this receive filled: the one it names, and with bundles
        // (--recv-bundles) the ones that followed it in the buffer ring.
        let selected = cqueue::buffer_select(flags);
        let (start, nbufs) = match (selected, &self.bufs) {
            (Some(bid), Some(b)) if res > 0 && self.features.recv_bundles => {
                b.bundle(bid, res as usize)
            }
            (Some(bid), _) => (bid, 1),
            (None, _) => (0, 0),
        };
        let Some(c) = slot(&mut self.conns, t) else {
            // Never expected (the slot outlives its ops), but a selected buffer must
            // still go back or the group shrinks for good.
            self.give_back_bundle(selected, start, nbufs);
            return;
        };
        let more = cqueue::more(flags);
        // Whether this completion ends a RECV we had asked to cancel (the cancel may
        // also lose the race to an EOF or error: either way the op is over).
        let mut was_cancelling = false;
        if !more {
            c.inflight &= !IN_RECV;
            was_cancelling = std::mem::take(&mut c.recv_cancelling);
        }
        if res > 0 && self.st.faults.recv_reset.hit() {
            self.st.stats.faults_injected += 1;
            res = -libc::ECONNRESET; // the bytes are dropped, as a reset drops them
        }
        // Hand the bytes to the protocol, then the buffers back to the kernel.
        if res > 0 {
            let n = res as usize;
            match (selected, &self.bufs, &c.recv_buf) {
                (Some(bid), Some(b), _) => {
                    let size = b.size();
                    for i in 0..nbufs {
                        let bid = if i == 0 {
                            bid
                        } else {
                            b.bid_at(start.wrapping_add(i as u16))
                        };
                        if let Some(data) = b.data(bid, (n - i * size).min(size)) {
                            c.conn.on_input(data);
                        }
                    }
                }
                (None, _, Some(b)) => c.conn.on_input(&b[..n]),
                _ => {}
            }
            self.st.stats.bytes_in += n as u64;
        } else if res == 0 {
            c.conn.read_eof = true;
        }
        if let Some(b) = c.recv_buf.take()
            && self.pool.len() < POOL_MAX
        {
            self.pool.push(b);
        }
        if nbufs > 1 {
            self.st.stats.recv_bundled += 1;
        }
        self.give_back_bundle(selected, start, nbufs);
        if res > 0 {
            let c = &mut self.conns[key];
            if self.st.input(key, &mut c.clock, &mut c.conn) {
                Fanout::settle(self);
            }
        }
        let c = &mut self.conns[key];
        if c.closing {
            self.maybe_finalize(key);
            return;
        }
        if res < 0 {
            match errno(res) {
                libc::ENOBUFS => {
                    // The group was empty: the bytes wait in the socket. Re-arm after
                    // this turn, when the buffers it consumed are back.
                    self.st.stats.recv_nobufs += 1;
                    if !more {
                        self.starved.push((key, c.generation));
                    }
                    return;
                }
                libc::ECANCELED if was_cancelling => {}
                libc::ECANCELED if self.st.drain.draining() => {}
                libc::EINTR | libc::EAGAIN => {}
                _ => {
                    self.begin_close(key); // ECONNRESET, ...
                    return;
                }
            }
        }
        self.start_send(key);
        let cap = self.cfg.outbox_cap;
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.conn.finished() && c.inflight & IN_SEND == 0 {
            self.begin_close(key);
            return;
        }
        if c.inflight & IN_RECV != 0 {
            // A multishot RECV is still armed: stop it while the outbox is over its cap.
            let congested = self.cfg.proto == Proto::Chat && self.st.fanout.congested();
            if !c.recv_cancelling && (over_cap(&c.conn, c.in_flight(), cap) || congested) {
                c.recv_cancelling = true;
                c.read_paused = true;
                let t = Token::new(Op::Recv, key, c.generation);
                self.cancel(t);
            }
            return;
        }
        self.arm_read(key);
    }

    /// Give back the `n` buffers of a receive that began in `first` at ring position
    /// `start` (see `ProvidedBufs::bundle`).
    fn give_back_bundle(&mut self, first: Option<u16>, start: u16, n: usize) {
        let Some(first) = first else {
            return;
        };
        for i in 0..n {
            let bid = match (i, &self.bufs) {
                (0, _) | (_, None) => first,
                (_, Some(b)) => b.bid_at(start.wrapping_add(i as u16)),
            };
            self.give_back(bid);
        }
    }

    pub(super) fn give_back(&mut self, bid: u16) {
        if let Some(e) = self.bufs.as_mut().and_then(|b| b.give_back(bid)) {
            self.push(e.user_data(Token::new(Op::Ignored, 0, 0).encode()));
        }
    }

    pub(super) fn rearm_starved(&mut self) {
        if self.starved.is_empty() {
            return;
        }
        // The group ran dry this turn: grow it (up to its maximum) before re-arming.
        let mut sqes = Vec::new();
        if self.bufs.as_mut().is_some_and(|b| b.grow(&mut sqes)) {
            self.st.stats.buf_grows += 1;
        }
        for e in sqes {
            self.push(e.user_data(Token::new(Op::Ignored, 0, 0).encode()));
        }
        let starved = std::mem::take(&mut self.starved);
        for &(key, generation) in &starved {
            if self
                .conns
                .get(key)
                .is_some_and(|c| c.generation == generation)
            {
                self.arm_read(key);
            }
        }
        self.starved = starved;
        self.starved.clear();
    }

    pub(super) fn on_send(&mut self, t: Token, res: i32) {
        let key = t.key as usize;
        let cap = self.cfg.outbox_cap;
        let Some(c) = slot(&mut self.conns, t) else {
            return;
        };
        c.inflight &= !IN_SEND;
        c.sends_done += 1;
        if c.closing {
            self.maybe_finalize(key);
            return;
        }
        if res <= 0 {
            // EPIPE, ECONNRESET, ECANCELED; 0 for a non-empty send would loop forever.
            self.begin_close(key);
            return;
        }
        self.st.stats.bytes_out += res as u64;
        c.send_pos += res as usize;
        if c.send_pos < c.send_buf.len() {
            self.submit_send(key); // short send: the rest, in order
            return;
        }
        c.spare = conn::recycle(std::mem::take(&mut c.send_buf));
        c.send_pos = 0;
        if c.conn.owed_len() > 0 {
            self.start_send(key);
            return;
        }
        if c.conn.finished() {
            self.begin_close(key);
            return;
        }
        if c.read_paused && !over_cap(&c.conn, c.in_flight(), cap) {
            self.arm_read(key);
        }
    }

    pub(super) fn on_signal(&mut self, signals: &Signals, reporter: &Reporter) {
        let stop = self.st.woken(signals, reporter, self.cfg.drain_timeout);
        if stop {
            self.begin_drain();
        }
        self.arm_signal();
    }

    pub(super) fn on_timer(&mut self, key: usize) {
        let Some((_, what)) = self.timers.try_remove(key) else {
            return;
        };
        match what {
            Timer::AcceptBackoff => {
                self.accept_backoff = false;
                self.arm_accept();
            }
            Timer::DrainDeadline => {
                self.st.stats.forced_closed += self.conns.len() as u64;
                let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
                for k in keys {
                    self.begin_close(k);
                    self.cancel_ops(k);
                }
                self.arm_timer(HARD_STOP_GRACE, Timer::HardStop);
            }
            Timer::HardStop => self.hard_stop = true,
            Timer::Congestion => self.congestion_timer = false,
            Timer::Deadline(at) => {
                if self.deadline_armed == Some(at) {
                    self.deadline_armed = None;
                }
                policy::expire_timers(self);
            }
        }
    }
}
