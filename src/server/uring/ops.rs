//! Submission: what a connection wants next, turned into SQEs (accept, POLL_ADD or
//! RECV, SEND, TIMEOUT, cancels), and the backlog that never drops one.

use super::*;

/// Build an SQE on a connection's socket: by its registered slot (the key) when it has
/// one, else by its descriptor.
macro_rules! on_socket {
    ($c:expr, $key:expr, |$f:ident| $build:expr) => {
        if $c.fixed {
            let $f = types::Fixed($key as u32);
            $build
        } else {
            let $f = types::Fd($c.fd);
            $build
        }
    };
}

impl Proactor<'_> {
    pub(super) fn push(&mut self, e: squeue::Entry) {
        if self.backlog.is_empty() {
            // SAFETY: every SQE built here references only memory that outlives its
            // completion: recv/send buffers live in the connection slot, which is freed
            // only once no op is in flight; provided buffers live in `self.bufs`, which
            // outlives the ring; timespecs live in `self.timers` until their
            // completion; FILES_UPDATE reads `self.slot_fds` (never moved, dropped
            // after the ring) or a static; fds stay open until their ops complete.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return;
            }
            self.st.stats.sq_full += 1;
        }
        self.backlog.push_back(e);
    }

    /// Move backlogged SQEs into the SQ, submitting when it is full. Never drops one.
    pub(super) fn flush_backlog(&mut self) {
        for _ in 0..64 {
            while let Some(e) = self.backlog.front() {
                // SAFETY: as in `push`: the entry's memory outlives its completion.
                if unsafe { self.ring.submission().push(e) }.is_err() {
                    break;
                }
                self.backlog.pop_front();
            }
            if self.backlog.is_empty() {
                return;
            }
            sys::count(Sys::IoUringEnter);
            let res = match self.ring_index {
                Some(idx) => enter_registered(&mut self.ring, idx, 0, None, 0),
                None => self.ring.submit(),
            };
            if res.is_err() {
                return; // EBUSY/EAGAIN: the main loop reaps, then tries again
            }
        }
    }

    /// Put `fd` in registered-file slot `key` (None: empty it) with a FILES_UPDATE
    /// that posts a completion only if it fails. It runs in order before any later SQE
    /// of the same submission (a RECV on the slot); a slot emptied and refilled before
    /// they run ends with the newer descriptor, since both read `slot_fds` when issued.
    pub(super) fn update_slot(&mut self, key: usize, fd: Option<RawFd>) {
        static NO_FD: [RawFd; 1] = [-1];
        let ptr: *const RawFd = match fd {
            Some(fd) => {
                self.slot_fds[key] = fd;
                &self.slot_fds[key]
            }
            None => NO_FD.as_ptr(),
        };
        let e = opcode::FilesUpdate::new(ptr, 1)
            .offset(key as i32)
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(Token::new(Op::Ignored, 0, 0).encode());
        self.push(e);
    }

    pub(super) fn arm_signal(&mut self) {
        let e = opcode::PollAdd::new(types::Fd(self.signal_fd), libc::POLLIN as u32)
            .build()
            .user_data(Token::new(Op::Signal, 0, 0).encode());
        self.push(e);
    }

    pub(super) fn arm_accept(&mut self) {
        if !self.accepting || self.accept_inflight.is_some() || self.accept_backoff {
            return;
        }
        let fd = types::Fd(self.listen_fd);
        let (t, e) = match self.features.level {
            FeatureLevel::Baseline => {
                let t = Token::new(Op::AcceptPoll, 0, 0);
                (t, opcode::PollAdd::new(fd, libc::POLLIN as u32).build())
            }
            _ if self.features.multishot_accept => (
                Token::new(Op::Accept, 0, 0),
                opcode::AcceptMulti::new(fd)
                    .flags(libc::SOCK_CLOEXEC)
                    .build(),
            ),
            _ => (Token::new(Op::Accept, 0, 0), self.accept_sqe()),
        };
        self.accept_inflight = Some(t);
        self.push(e.user_data(t.encode()));
    }

    /// ACCEPT on the listener; the new socket stays blocking (the ring polls it).
    pub(super) fn accept_sqe(&self) -> squeue::Entry {
        opcode::Accept::new(
            types::Fd(self.listen_fd),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
        .flags(libc::SOCK_CLOEXEC)
        .build()
    }

    pub(super) fn arm_timer(&mut self, after: Duration, what: Timer) {
        let ts = Box::new(
            types::Timespec::new()
                .sec(after.as_secs())
                .nsec(after.subsec_nanos()),
        );
        let ptr: *const types::Timespec = &*ts;
        let key = self.timers.insert((ts, what));
        let e = opcode::Timeout::new(ptr)
            .build()
            .user_data(Token::new(Op::Timer, key, 0).encode());
        self.push(e);
    }

    /// One TIMEOUT for the nearest connection deadline, re-armed only when a nearer one
    /// appears (a later one is found when this fires).
    pub(super) fn arm_deadline(&mut self) {
        let Some(next) = self.st.timers.next() else {
            return;
        };
        if self.st.drain.draining() || self.deadline_armed.is_some_and(|a| a <= next) {
            return;
        }
        self.deadline_armed = Some(next);
        let after = next.saturating_duration_since(Instant::now());
        self.arm_timer(after, Timer::Deadline(next));
    }

    pub(super) fn cancel(&mut self, t: Token) {
        let e = opcode::AsyncCancel::new(t.encode())
            .build()
            .user_data(Token::new(Op::Ignored, 0, 0).encode());
        self.push(e);
    }

    /// Ask for input: POLL_ADD at baseline, RECV (multishot from `multishot` up)
    /// otherwise. Not while the outbox is over its cap (backpressure), after EOF, or
    /// while closing.
    pub(super) fn arm_read(&mut self, key: usize) {
        let cap = self.cfg.outbox_cap;
        let level = self.features.level;
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.closing
            || c.conn.read_eof
            || c.conn.close_after_flush
            || c.inflight & (IN_POLL | IN_RECV) != 0
        {
            return;
        }
        if over_cap(&c.conn, c.in_flight(), cap)
            || (self.cfg.proto == Proto::Chat && self.st.fanout.congested())
        {
            c.read_paused = true;
            return;
        }
        c.read_paused = false;
        if level == FeatureLevel::Baseline {
            c.inflight |= IN_POLL;
            let e = opcode::PollAdd::new(types::Fd(c.fd), (libc::POLLIN | libc::POLLRDHUP) as u32)
                .build()
                .user_data(Token::new(Op::Poll, key, c.generation).encode());
            self.push(e);
            return;
        }
        c.inflight |= IN_RECV;
        let t = Token::new(Op::Recv, key, c.generation);
        if self.st.faults.recv_nobufs.hit() {
            // As if the group were empty: the op "ran" and found no buffer.
            self.st.stats.faults_injected += 1;
            self.synthetic.push((t.encode(), -libc::ENOBUFS, 0));
            return;
        }
        let e = if self.features.recv_bundles {
            on_socket!(c, key, |fd| opcode::RecvMultiBundle::new(fd, bufs::BGID)
                .build())
        } else if self.features.multishot_recv {
            on_socket!(c, key, |fd| opcode::RecvMulti::new(fd, bufs::BGID).build())
        } else {
            let len = self.cfg.recv_buf as u32;
            on_socket!(c, key, |fd| opcode::Recv::new(
                fd,
                std::ptr::null_mut(),
                len
            )
            .buf_group(bufs::BGID)
            .build())
            .flags(squeue::Flags::BUFFER_SELECT)
        };
        self.push(e.user_data(t.encode()));
    }

    /// Baseline: the socket is readable; RECV into a pooled buffer.
    pub(super) fn submit_recv(&mut self, key: usize) {
        let size = self.cfg.recv_buf;
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let mut buf = c
            .recv_buf
            .take()
            .or_else(|| self.pool.pop())
            .unwrap_or_else(|| vec![0u8; size].into_boxed_slice());
        let (ptr, len) = (buf.as_mut_ptr(), buf.len() as u32);
        c.recv_buf = Some(buf); // kernel-owned from here until the RECV completion
        c.inflight |= IN_RECV;
        let e = opcode::Recv::new(types::Fd(c.fd), ptr, len)
            .build()
            .user_data(Token::new(Op::Recv, key, c.generation).encode());
        self.push(e);
    }

    /// Hand owed bytes to the kernel: one SEND in flight per connection keeps order.
    pub(super) fn start_send(&mut self, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.inflight & IN_SEND != 0 && c.conn.owed_len() > 0 {
            // The SEND in flight has more behind it: the next wait must not ask for
            // one completion beyond the sends (see `wait_for`).
            self.owed_behind = true;
        }
        if c.closing || c.inflight & IN_SEND != 0 || c.conn.owed_len() == 0 {
            return;
        }
        let spare = std::mem::take(&mut c.spare);
        c.send_buf = c.conn.take_owed(spare);
        c.send_pos = 0;
        self.submit_send(key);
    }

    pub(super) fn submit_send(&mut self, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let rest = &c.send_buf[c.send_pos..];
        let mut len = rest.len().min(MAX_SEND);
        if len > 1 && self.st.faults.send_short.hit() {
            self.st.stats.faults_injected += 1;
            len /= 2;
        }
        let ptr = rest.as_ptr();
        c.inflight |= IN_SEND; // send_buf is kernel-owned until the SEND completion
        self.sends_queued += 1;
        let t = Token::new(Op::Send, key, c.generation);
        let e = on_socket!(c, key, |fd| opcode::Send::new(fd, ptr, len as u32).build());
        self.push(e.user_data(t.encode()));
    }
}
