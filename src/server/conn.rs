//! Per-connection state every backend shares: the protocol state and a bounded
//! outbox. Backends ask it what the connection wants next; they own the IO.

use crate::proto::{Effects, Proto, ProtoState};

/// Outbox buffers larger than this are freed once drained, so a connection that
/// once echoed a burst does not keep the memory while idle.
const KEEP_CAPACITY: usize = 64 * 1024;

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
}

impl Conn {
    pub fn new(p: Proto) -> Conn {
        Conn { proto: ProtoState::new(p), out: Vec::new(), out_pos: 0, partial: Vec::new(), read_eof: false, close_after_flush: false }
    }

    /// Feed received bytes to the protocol; replies land in the outbox.
    pub fn on_input(&mut self, data: &[u8]) {
        if self.close_after_flush {
            return; // the protocol is done with this connection: discard
        }
        let mut fx = Effects { reply: &mut self.out, close: false };
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
        if fx.close {
            self.close_after_flush = true;
        }
    }

    /// Owed bytes not yet handed to the kernel.
    pub fn owed(&self) -> &[u8] {
        &self.out[self.out_pos..]
    }

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
}
