//! Sans-IO protocol cores: bytes in, effects out. No sockets, no syscalls, no imports
//! from the rest of ringmux, so every backend serves the same core and the core is
//! tested alone at every split point of its input.

mod echo;
mod upper;

/// The application protocol served on every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// Send back every byte received.
    Echo,
    /// Send back every byte received, ASCII letters upper-cased.
    Upper,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Echo => "echo",
            Proto::Upper => "upper",
        }
    }
}

/// What handling some input asks the connection to do.
///
/// `reply` is the connection's own outbox: the core appends to it (rustls style), so
/// echo costs one copy. `close` asks for a close once everything owed is flushed.
pub struct Effects<'a> {
    pub reply: &'a mut Vec<u8>,
    pub close: bool,
}

/// Per-connection protocol state.
#[derive(Debug)]
pub enum ProtoState {
    Echo(echo::Echo),
    Upper(upper::Upper),
}

impl ProtoState {
    pub fn new(p: Proto) -> ProtoState {
        match p {
            Proto::Echo => ProtoState::Echo(echo::Echo),
            Proto::Upper => ProtoState::Upper(upper::Upper),
        }
    }

    /// Feed `input`; returns how many bytes were consumed. Bytes not consumed must be
    /// offered again, with more appended, on the next call (framing split across reads).
    pub fn handle(&mut self, input: &[u8], fx: &mut Effects<'_>) -> usize {
        match self {
            ProtoState::Echo(p) => p.handle(input, fx),
            ProtoState::Upper(p) => p.handle(input, fx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `input` split at every point (and byte by byte); the reply must always be
    /// `expected`.
    pub(crate) fn check_all_splits(p: Proto, input: &[u8], expected: &[u8]) {
        let run = |chunks: &[&[u8]]| {
            let mut st = ProtoState::new(p);
            let mut out = Vec::new();
            let mut pending = Vec::new();
            for c in chunks {
                pending.extend_from_slice(c);
                let mut fx = Effects { reply: &mut out, close: false };
                let n = st.handle(&pending, &mut fx);
                pending.drain(..n);
            }
            assert!(pending.is_empty(), "{p:?} left {} bytes unconsumed", pending.len());
            out
        };
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            assert_eq!(run(&[a, b]), expected, "{p:?} split at {i}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(&bytes), expected, "{p:?} byte by byte");
    }

    #[test]
    fn echo_every_split() {
        let input: Vec<u8> = (0..=255u8).chain(b"hello\r\n".iter().copied()).collect();
        check_all_splits(Proto::Echo, &input, &input);
        check_all_splits(Proto::Echo, b"", b"");
    }

    #[test]
    fn upper_every_split() {
        check_all_splits(Proto::Upper, b"Hello, World! 123 \xff\x00z", b"HELLO, WORLD! 123 \xff\x00Z");
        let all: Vec<u8> = (0..=255u8).collect();
        let up: Vec<u8> = all.iter().map(|b| b.to_ascii_uppercase()).collect();
        check_all_splits(Proto::Upper, &all, &up);
    }

    proptest::proptest! {
        #[test]
        fn upper_matches_std(data: Vec<u8>, cut in 0usize..64) {
            let cut = cut.min(data.len());
            let mut st = ProtoState::new(Proto::Upper);
            let mut out = Vec::new();
            let mut fx = Effects { reply: &mut out, close: false };
            let a = st.handle(&data[..cut], &mut fx);
            let b = st.handle(&data[cut..], &mut fx);
            proptest::prop_assert_eq!(a + b, data.len());
            proptest::prop_assert_eq!(out, data.to_ascii_uppercase());
        }
    }
}
