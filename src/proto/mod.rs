//! Sans-IO protocol cores: bytes in, effects out. No sockets, no syscalls, no imports
//! from the rest of ringmux, so every backend serves the same core and the core is
//! tested alone at every split point of its input.

pub mod chat;
mod echo;
pub mod http;
mod upper;

pub use chat::Guests;

/// The application protocol served on every connection.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// Send back every byte received.
    Echo,
    /// Send back every byte received, ASCII letters upper-cased.
    Upper,
    /// HTTP/1.1: `GET /` and `GET /plaintext` answer `Hello, World!`, `POST /echo` the body.
    Http,
    /// Line-based group chat (needs the broadcast fan-out in the backend).
    Chat,
}

impl Proto {
    /// The name `--proto` takes and the results record.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Echo => "echo",
            Proto::Upper => "upper",
            Proto::Http => "http",
            Proto::Chat => "chat",
        }
    }
}

/// What handling some input asks the connection to do.
///
/// `reply` is the connection's own outbox: the core appends to it (rustls style), so
/// echo costs one copy. `broadcast` is for every *other* connection of the server (the
/// fan-out appends it to their outboxes, never back to this one); a message meant for
/// everyone goes into both, so the sender's copy keeps its place among its replies.
/// `close` asks for a close once everything owed is flushed.
pub struct Effects<'a> {
    /// Bytes owed to this connection, appended after what it already owes.
    pub reply: &'a mut Vec<u8>,
    /// Bytes for every other connection of the server (chat), never this one.
    pub broadcast: &'a mut Vec<u8>,
    /// Close once everything owed is flushed (HTTP `Connection: close` or a refused request, chat `/quit`).
    pub close: bool,
}

/// Per-connection protocol state.
#[derive(Debug)]
pub enum ProtoState {
    /// Echo: every byte back as it came.
    Echo(echo::Echo),
    /// Upper: every byte back, ASCII letters upper-cased.
    Upper(upper::Upper),
    /// HTTP/1.1: where the request parser is (head, body, done) and whether a head is partial.
    Http(http::Http),
    /// Chat: the member's name, and whether an over-long line is being dropped or it quit.
    Chat(chat::Chat),
}

impl ProtoState {
    /// State for a new connection. Chat names it from a fresh counter (guest-1): a
    /// server must use [`ProtoState::open`] with one [`Guests`] shared by all its
    /// connections.
    pub fn new(p: Proto) -> ProtoState {
        ProtoState::open(p, &Guests::default())
    }

    /// State for a new connection of a server whose guest numbers are `guests`.
    pub fn open(p: Proto, guests: &Guests) -> ProtoState {
        match p {
            Proto::Echo => ProtoState::Echo(echo::Echo),
            Proto::Upper => ProtoState::Upper(upper::Upper),
            Proto::Http => ProtoState::Http(http::Http::default()),
            Proto::Chat => ProtoState::Chat(chat::Chat::new(guests)),
        }
    }

    /// Feed `input`; returns how many bytes were consumed. Bytes not consumed must be
    /// offered again, with more appended, on the next call (framing split across reads).
    pub fn handle(&mut self, input: &[u8], fx: &mut Effects<'_>) -> usize {
        match self {
            ProtoState::Echo(p) => p.handle(input, fx),
            ProtoState::Upper(p) => p.handle(input, fx),
            ProtoState::Http(p) => p.handle(input, fx),
            ProtoState::Chat(p) => p.handle(input, fx),
        }
    }

    /// The connection was accepted (chat: welcome and join broadcast).
    pub fn on_open(&mut self, fx: &mut Effects<'_>) {
        if let ProtoState::Chat(p) = self {
            p.on_open(fx);
        }
    }

    /// The connection is closing, for whatever reason (chat: leave broadcast). Call
    /// once; a reply written here is not delivered.
    pub fn on_close(&mut self, fx: &mut Effects<'_>) {
        if let ProtoState::Chat(p) = self {
            p.on_close(fx);
        }
    }

    /// The most unconsumed input this protocol may leave with the connection layer,
    /// or None when it never leaves any (echo, upper). Beyond it the layer calls
    /// [`ProtoState::overflow`] and drops that input.
    pub fn partial_limit(&self) -> Option<usize> {
        match self {
            ProtoState::Echo(_) | ProtoState::Upper(_) => None,
            ProtoState::Http(_) => Some(http::MAX_HEAD),
            ProtoState::Chat(_) => Some(chat::MAX_LINE + 1),
        }
    }

    /// Unconsumed input went past [`ProtoState::partial_limit`]: http answers 431
    /// (mid-head) or 413 and closes; chat answers `* line too long` and drops the line.
    pub fn overflow(&mut self, fx: &mut Effects<'_>) {
        match self {
            ProtoState::Echo(_) | ProtoState::Upper(_) => {}
            ProtoState::Http(p) => p.overflow(fx),
            ProtoState::Chat(p) => p.overflow(fx),
        }
    }

    /// HTTP: part of a request head is waiting; the backend runs the header deadline
    /// and calls [`ProtoState::header_timeout`] when it passes.
    pub fn wants_header_deadline(&self) -> bool {
        matches!(self, ProtoState::Http(p) if p.wants_header_deadline())
    }

    /// The header deadline passed (HTTP: `408` and close).
    pub fn header_timeout(&mut self, fx: &mut Effects<'_>) {
        if let ProtoState::Http(p) = self {
            p.header_timeout(fx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `input` in these chunks, the way the connection layer does (unconsumed
    /// bytes offered again with more appended); (reply, close asked).
    pub(crate) fn run_chunks(p: Proto, chunks: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut st = ProtoState::new(p);
        let mut out = Vec::new();
        let mut bcast = Vec::new();
        let mut pending = Vec::new();
        let mut close = false;
        for c in chunks {
            pending.extend_from_slice(c);
            let mut fx = Effects {
                reply: &mut out,
                broadcast: &mut bcast,
                close: false,
            };
            let n = st.handle(&pending, &mut fx);
            close |= fx.close;
            pending.drain(..n);
        }
        assert!(
            pending.is_empty() || p == Proto::Http,
            "{p:?} left {} bytes unconsumed",
            pending.len()
        );
        (out, close)
    }

    /// `input` in one piece: (reply, close asked).
    pub(crate) fn run_whole(p: Proto, input: &[u8]) -> (Vec<u8>, bool) {
        run_chunks(p, &[input])
    }

    /// Feed `input` split at every point (and byte by byte); the reply and whether the
    /// connection closes must always be the same as for `input` whole, and the reply
    /// must be `expected`.
    pub(crate) fn check_all_splits(p: Proto, input: &[u8], expected: &[u8]) {
        let whole = run_whole(p, input);
        assert_eq!(whole.0, expected, "{p:?} whole");
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            assert_eq!(run_chunks(p, &[a, b]), whole, "{p:?} split at {i}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run_chunks(p, &bytes), whole, "{p:?} byte by byte");
    }

    #[test]
    fn echo_every_split() {
        let input: Vec<u8> = (0..=255u8).chain(b"hello\r\n".iter().copied()).collect();
        check_all_splits(Proto::Echo, &input, &input);
        check_all_splits(Proto::Echo, b"", b"");
    }

    #[test]
    fn upper_every_split() {
        check_all_splits(
            Proto::Upper,
            b"Hello, World! 123 \xff\x00z",
            b"HELLO, WORLD! 123 \xff\x00Z",
        );
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
            let mut bcast = Vec::new();
            let mut fx = Effects { reply: &mut out, broadcast: &mut bcast, close: false };
            let a = st.handle(&data[..cut], &mut fx);
            let b = st.handle(&data[cut..], &mut fx);
            proptest::prop_assert_eq!(a + b, data.len());
            proptest::prop_assert_eq!(out, data.to_ascii_uppercase());
        }
    }
}
