//! user_data encoding: op kind (8 bits) | generation (24 bits) | slab key (32 bits).
//! A completion whose generation differs from its slot's is stale and ignored.

/// What kind of op a completion belongs to: the top 8 bits of its user_data.
/// Zero is no op, so a zeroed user_data never decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// POLL_ADD on the listener (baseline level: accept only when readable).
    AcceptPoll = 1,
    /// ACCEPT on the listener, one-shot or multishot (multishot ends when a
    /// completion lacks the MORE flag). Key and generation are 0.
    Accept = 2,
    /// POLL_ADD on a connection (baseline level: recv only when readable).
    Poll = 3,
    /// RECV on a connection: one-shot into a pooled buffer (baseline) or from the
    /// provided-buffer group, multishot and bundled where the level allows.
    Recv = 4,
    /// SEND of owed bytes on a connection; at most one in flight per connection.
    Send = 5,
    /// POLL_ADD on the signal pipe.
    Signal = 6,
    /// A TIMEOUT; the key indexes the timer table.
    Timer = 7,
    /// An op whose completion needs no action: ASYNC_CANCEL, PROVIDE_BUFFERS.
    Ignored = 8,
}

impl Op {
    fn from_u8(v: u8) -> Option<Op> {
        Some(match v {
            1 => Op::AcceptPoll,
            2 => Op::Accept,
            3 => Op::Poll,
            4 => Op::Recv,
            5 => Op::Send,
            6 => Op::Signal,
            7 => Op::Timer,
            8 => Op::Ignored,
            _ => return None,
        })
    }
}

/// The generation field's 24 bits: generations wrap modulo 2^24.
pub const GEN_MASK: u32 = (1 << 24) - 1;

/// The decoded user_data of one submitted op: which op, on which slot, for which
/// occupant of that slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// The op kind (bits 56..64).
    pub op: Op,
    /// The slot's generation when the op was submitted, masked to [`GEN_MASK`]
    /// (bits 32..56); 0 for ops not tied to a connection.
    pub generation: u32,
    /// The slab key of the connection, or the timer table's key for [`Op::Timer`];
    /// 0 when unused (bits 0..32).
    pub key: u32,
}

impl Token {
    /// A token for `op` on slot `key`; `generation` is masked to 24 bits. `key` must
    /// fit in 32 bits (checked in debug builds).
    pub fn new(op: Op, key: usize, generation: u32) -> Token {
        debug_assert!(key <= u32::MAX as usize);
        Token {
            op,
            generation: generation & GEN_MASK,
            key: key as u32,
        }
    }

    /// The user_data to put on the SQE: op | generation | key.
    pub fn encode(self) -> u64 {
        ((self.op as u64) << 56) | (((self.generation & GEN_MASK) as u64) << 32) | self.key as u64
    }

    /// The token a completion's user_data carries; `None` when the top byte is no
    /// known [`Op`] (e.g. 0).
    pub fn decode(v: u64) -> Option<Token> {
        Some(Token {
            op: Op::from_u8((v >> 56) as u8)?,
            generation: ((v >> 32) as u32) & GEN_MASK,
            key: v as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for op in [
            Op::AcceptPoll,
            Op::Accept,
            Op::Poll,
            Op::Recv,
            Op::Send,
            Op::Signal,
            Op::Timer,
            Op::Ignored,
        ] {
            for (key, g) in [
                (0usize, 0u32),
                (1, 1),
                (u32::MAX as usize, GEN_MASK),
                (12345, 0x00ab_cdef),
            ] {
                let t = Token::new(op, key, g);
                assert_eq!(Token::decode(t.encode()), Some(t));
            }
        }
    }

    #[test]
    fn generation_wraps_into_24_bits() {
        let t = Token::new(Op::Recv, 7, GEN_MASK + 5);
        assert_eq!(t.generation, 4);
        assert_eq!(Token::decode(0), None);
        assert_eq!(Token::decode(0xff << 56), None);
    }
}
