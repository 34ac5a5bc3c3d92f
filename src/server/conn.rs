//! Per-connection state every backend shares: the protocol state and a bounded
//! outbox. Backends ask it what the connection wants next; they own the IO.

use crate::proto::{Effects, Guests, Proto, ProtoState};

/// Outbox buffers larger than this are freed once drained, so a connection that
/// once echoed a burst does not keep the memory while idle.
const KEEP_CAPACITY: usize = 64 * 1024;

/// One connection: its protocol state and its bounded outbox (what is owed to the
/// peer), shared by every backend.
#[derive(Debug)]
pub struct Conn {
    proto: ProtoState,
    /// Bytes owed to the peer; `out[out_pos..]` not yet handed to the kernel.
    out: Vec<u8>,
    out_pos: usize,
    /// Input the protocol has not consumed yet (a frame split across reads).
    partial: Vec<u8>,
    /// The peer sent FIN (or the protocol wants no more input).
    pub read_eof: bool,
    /// The protocol asked to close once everything owed is flushed.
    pub close_after_flush: bool,
    /// Bytes the protocol broadcast to every other connection, not yet fanned out
    /// (see [`super::fanout`]); taken with [`Conn::take_broadcast`].
    bcast: Vec<u8>,
    /// The fan-out marked this connection for disconnect (its outbox stayed over the
    /// cap): it gets no more broadcasts and should be closed without flushing.
    pub dropped: bool,
}

impl Conn {
    /// A fresh connection speaking `p`, nothing owed; a chat guest is numbered by a
    /// counter of its own (tests, scratch outboxes): a server uses [`Conn::with_guests`].
    pub fn new(p: Proto) -> Conn {
        Conn::with_state(ProtoState::new(p))
    }

    /// A connection of a server whose chat guest numbers are `guests` (one per server).
    pub fn with_guests(p: Proto, guests: &Guests) -> Conn {
        Conn::with_state(ProtoState::open(p, guests))
    }

    fn with_state(proto: ProtoState) -> Conn {
        Conn {
            proto,
            out: Vec::new(),
            out_pos: 0,
            partial: Vec::new(),
            read_eof: false,
            close_after_flush: false,
            bcast: Vec::new(),
            dropped: false,
        }
    }

    /// The connection was accepted: the protocol's greeting lands in the outbox, its
    /// join broadcast in [`Conn::take_broadcast`].
    pub fn on_open(&mut self) {
        let mut fx = Effects {
            reply: &mut self.out,
            broadcast: &mut self.bcast,
            close: false,
        };
        self.proto.on_open(&mut fx);
        if fx.close {
            self.close_after_flush = true;
        }
    }

    /// The connection is closing: the protocol's leave broadcast, if any (anything it
    /// would reply is not delivered).
    pub fn on_close(&mut self) -> Vec<u8> {
        let mut reply = Vec::new();
        let mut fx = Effects {
            reply: &mut reply,
            broadcast: &mut self.bcast,
            close: false,
        };
        self.proto.on_close(&mut fx);
        std::mem::take(&mut self.bcast)
    }

    /// Broadcast bytes produced since the last call, for the fan-out.
    pub fn take_broadcast(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bcast)
    }

    /// Append bytes another connection broadcast. Never touches a buffer handed to the
    /// kernel: [`Conn::take_owed`] swaps the outbox out before a send owns it.
    pub fn push_broadcast(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// HTTP: part of a request head is waiting, so the header deadline applies.
    pub fn wants_header_deadline(&self) -> bool {
        !self.close_after_flush && self.proto.wants_header_deadline()
    }

    /// The header deadline passed: the protocol's reply (HTTP 408) and a close.
    pub fn header_timeout(&mut self) {
        let mut fx = Effects {
            reply: &mut self.out,
            broadcast: &mut self.bcast,
            close: false,
        };
        self.proto.header_timeout(&mut fx);
        self.partial.clear();
        if fx.close {
            self.close_after_flush = true;
        }
    }

    /// Feed received bytes to the protocol; replies land in the outbox.
    pub fn on_input(&mut self, data: &[u8]) {
        super::fault::on_input(data.len());
        if self.close_after_flush {
            return; // the protocol is done with this connection: discard
        }
        let mut fx = Effects {
            reply: &mut self.out,
            broadcast: &mut self.bcast,
            close: false,
        };
        if self.partial.is_empty() {
            let n = self.proto.handle(data, &mut fx);
            if n < data.len() {
                self.partial.extend_from_slice(&data[n..]);
            }
        } else {
            self.partial.extend_from_slice(data);
            let n = self.proto.handle(&self.partial, &mut fx);
            self.partial.drain(..n);
        }
        // Unconsumed input is capped: past the protocol's limit it decides what
        // happens (HTTP 431/413 and close, chat drops the line) and the bytes go.
        if let Some(limit) = self.proto.partial_limit()
            && self.partial.len() > limit
        {
            self.proto.overflow(&mut fx);
            self.partial = Vec::new();
        }
        if fx.close {
            self.close_after_flush = true;
        }
    }

    /// Owed bytes not yet handed to the kernel.
    pub fn owed(&self) -> &[u8] {
        &self.out[self.out_pos..]
    }

    /// How many bytes are owed: `owed().len()`.
    pub fn owed_len(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// `n` owed bytes were written (epoll: copied into the socket).
    pub fn advance(&mut self, n: usize) {
        self.out_pos += n;
        debug_assert!(self.out_pos <= self.out.len());
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            if self.out.capacity() > KEEP_CAPACITY {
                self.out = Vec::new();
            }
        }
    }

    /// Hand every owed byte over as one buffer (io_uring: the kernel owns it until the
    /// send completes, so it must not be the outbox the protocol appends to). `spare`
    /// becomes the new, empty outbox.
    pub fn take_owed(&mut self, mut spare: Vec<u8>) -> Vec<u8> {
        spare.clear();
        let mut taken = std::mem::replace(&mut self.out, spare);
        if self.out_pos > 0 {
            taken.drain(..self.out_pos);
            self.out_pos = 0;
        }
        taken
    }

    /// True when nothing more will be read and nothing is owed: time to close.
    pub fn finished(&self) -> bool {
        (self.read_eof || self.close_after_flush) && self.owed_len() == 0
    }
}

/// Give back a drained send buffer for reuse, unless it grew big.
pub fn recycle(mut buf: Vec<u8>) -> Vec<u8> {
    if buf.capacity() > KEEP_CAPACITY {
        Vec::new()
    } else {
        buf.clear();
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_advance_and_take() {
        let mut c = Conn::new(Proto::Upper);
        c.on_input(b"abc");
        c.on_input(b"def");
        assert_eq!(c.owed(), b"ABCDEF");
        c.advance(2);
        assert_eq!(c.owed(), b"CDEF");
        let taken = c.take_owed(Vec::new());
        assert_eq!(taken, b"CDEF");
        assert_eq!(c.owed_len(), 0);
        c.on_input(b"x");
        assert_eq!(c.owed(), b"X");
        c.advance(1);
        assert_eq!(c.owed_len(), 0);
        assert!(!c.finished());
        c.read_eof = true;
        assert!(c.finished());
    }

    #[test]
    fn big_outbox_is_freed_when_drained() {
        let mut c = Conn::new(Proto::Echo);
        c.on_input(&vec![7u8; 1 << 20]);
        c.advance(1 << 20);
        assert_eq!(c.out.capacity(), 0);
    }

    #[test]
    fn unconsumed_input_is_capped_by_the_protocol() {
        // Chat: a line that never ends is dropped with one notice; nothing piles up.
        let mut c = Conn::new(Proto::Chat);
        for _ in 0..100 {
            c.on_input(&[b'z'; 1000]);
            assert!(c.partial.len() <= crate::proto::chat::MAX_LINE + 1);
        }
        c.on_input(
            b"
ok
",
        );
        assert_eq!(c.owed(), b"* line too long\n[guest-1] ok\n");
        assert!(!c.close_after_flush);
        // HTTP: an endless head is 431 and a close, and later input is ignored.
        let mut c = Conn::new(Proto::Http);
        c.on_input(b"GET / HTTP/1.1\r\nX: ");
        assert!(c.wants_header_deadline());
        for _ in 0..20 {
            c.on_input(&[b'a'; 1000]);
            assert!(c.partial.len() <= crate::proto::http::MAX_HEAD);
        }
        assert!(c.close_after_flush);
        assert!(c.owed().starts_with(b"HTTP/1.1 431 "));
        assert!(!c.wants_header_deadline());
        // The reaction itself, as the layer calls it.
        let mut out = Vec::new();
        let mut bc = Vec::new();
        let mut fx = Effects {
            reply: &mut out,
            broadcast: &mut bc,
            close: false,
        };
        let mut p = ProtoState::new(Proto::Http);
        p.handle(
            b"POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\n",
            &mut fx,
        );
        p.overflow(&mut fx);
        assert!(fx.close);
        assert!(String::from_utf8_lossy(&out).contains("HTTP/1.1 413 "));
        assert_eq!(ProtoState::new(Proto::Echo).partial_limit(), None);
    }

    #[test]
    fn header_timeout_answers_408() {
        let mut c = Conn::new(Proto::Http);
        c.on_input(b"GET / HTTP/1.1\r\n");
        assert!(c.wants_header_deadline());
        c.header_timeout();
        assert!(c.close_after_flush);
        assert!(c.owed().starts_with(b"HTTP/1.1 408 Request Timeout\r\n"));
    }
}
