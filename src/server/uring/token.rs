//! user_data encoding: op kind (8 bits) | generation (24 bits) | slab key (32 bits).
//! A completion whose generation differs from its slot's is stale and ignored.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// POLL_ADD on the listener (baseline level: accept only when readable).
    AcceptPoll = 1,
    Accept = 2,
    /// POLL_ADD on a connection (baseline level: recv only when readable).
    Poll = 3,
    Recv = 4,
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

pub const GEN_MASK: u32 = (1 << 24) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub op: Op,
    pub generation: u32,
    pub key: u32,
}

impl Token {
    pub fn new(op: Op, key: usize, generation: u32) -> Token {
        debug_assert!(key <= u32::MAX as usize);
        Token {
            op,
            generation: generation & GEN_MASK,
            key: key as u32,
        }
    }

    pub fn encode(self) -> u64 {
        ((self.op as u64) << 56) | (((self.generation & GEN_MASK) as u64) << 32) | self.key as u64
    }

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
