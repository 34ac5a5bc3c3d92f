//! Line-based group chat: a line from one client goes to every connected client.
//!
//! Wire format (server to client, every line ends in `\n`):
//! - on connect: `* you are guest-<n>` to the new client, `* guest-<n> joined` to
//!   everyone (the new client included);
//! - a line `text`: `[name] text` to everyone, the sender included (its copy is its
//!   confirmation);
//! - `/nick NAME` (1 to 32 of `[A-Za-z0-9_-]`): `* OLD is now NAME` to everyone, or
//!   `* bad nick` to the sender alone;
//! - `/quit`: `* bye` to the sender, then the connection closes;
//! - on close: `* name left` to everyone else;
//! - a line over [`MAX_LINE`] bytes (after stripping `\r`): `* line too long` to the
//!   sender; the line is dropped up to its end, and never buffered beyond the limit.
//!
//! Client lines end in `\n`; one trailing `\r` is stripped.
//!
//! Order: the sender's own copy of everything it causes goes into its reply, in input
//! order; the copies for everyone else go into [`Effects::broadcast`], in the same
//! order. So a receiver sees each sender's lines in the order sent, and the sender gets
//! each line exactly once (the fan-out never sends a broadcast back to its source).

use std::sync::atomic::{AtomicU64, Ordering};

use super::Effects;

/// The longest line accepted, bytes (without `\n` and a trailing `\r`).
pub const MAX_LINE: usize = 4096;
/// The longest nick.
pub const MAX_NICK: usize = 32;

/// Guest numbers, shared by every connection of one server (pass the same one to
/// every [`Chat::new`]); starts at 1.
#[derive(Debug, Default)]
pub struct Guests(AtomicU64);

impl Guests {
    /// The next guest number (1, 2, ...), unique across the server's threads.
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// One chat connection's state: its name, and a line in progress.
#[derive(Debug)]
pub struct Chat {
    name: String,
    /// Dropping the rest of a line that was too long.
    discarding: bool,
    /// `/quit` seen: input is ignored.
    quit: bool,
}

impl Chat {
    /// A new connection, named `guest-<n>` from the server's counter.
    pub fn new(guests: &Guests) -> Chat {
        Chat {
            name: format!("guest-{}", guests.next()),
            discarding: false,
            quit: false,
        }
    }

    /// The connection's current nick.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The connection was accepted: welcome it and tell everyone.
    pub fn on_open(&mut self, fx: &mut Effects<'_>) {
        fx.reply
            .extend_from_slice(format!("* you are {}\n", self.name).as_bytes());
        to_all(fx, format!("* {} joined\n", self.name).as_bytes());
    }

    /// The connection is gone: tell everyone else.
    pub fn on_close(&mut self, fx: &mut Effects<'_>) {
        fx.broadcast
            .extend_from_slice(format!("* {} left\n", self.name).as_bytes());
    }

    /// Consume complete lines of `input` into replies and broadcasts in `fx`; returns
    /// the bytes consumed (a partial line is left for the next call).
    pub fn handle(&mut self, input: &[u8], fx: &mut Effects<'_>) -> usize {
        let mut pos = 0;
        while !self.quit {
            let rest = &input[pos..];
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                // No line end yet: keep at most MAX_LINE + 1 bytes (the +1 for a `\r`).
                if self.discarding {
                    return input.len();
                }
                if rest.len() > MAX_LINE + 1
                    || (rest.len() == MAX_LINE + 1 && rest[MAX_LINE] != b'\r')
                {
                    self.too_long(fx);
                    return input.len();
                }
                return pos;
            };
            pos += nl + 1;
            if std::mem::take(&mut self.discarding) {
                continue;
            }
            let line = rest[..nl].strip_suffix(b"\r").unwrap_or(&rest[..nl]);
            if line.len() > MAX_LINE {
                fx.reply.extend_from_slice(b"* line too long\n");
            } else {
                self.line(line, fx);
            }
        }
        input.len()
    }

    fn too_long(&mut self, fx: &mut Effects<'_>) {
        fx.reply.extend_from_slice(b"* line too long\n");
        self.discarding = true;
    }

    /// Unconsumed input grew past the connection layer's cap: drop the line.
    pub fn overflow(&mut self, fx: &mut Effects<'_>) {
        if !self.discarding && !self.quit {
            self.too_long(fx);
        }
    }

    fn line(&mut self, line: &[u8], fx: &mut Effects<'_>) {
        if line == b"/quit" {
            fx.reply.extend_from_slice(b"* bye\n");
            fx.close = true;
            self.quit = true;
        } else if line == b"/nick" || line.starts_with(b"/nick ") {
            let new = line.get(6..).unwrap_or(b"");
            if valid_nick(new) {
                let new = String::from_utf8_lossy(new).into_owned();
                to_all(fx, format!("* {} is now {new}\n", self.name).as_bytes());
                self.name = new;
            } else {
                fx.reply.extend_from_slice(b"* bad nick\n");
            }
        } else {
            let start = fx.reply.len();
            fx.reply
                .extend_from_slice(format!("[{}] ", self.name).as_bytes());
            fx.reply.extend_from_slice(line);
            fx.reply.push(b'\n');
            fx.broadcast.extend_from_slice(&fx.reply[start..]);
        }
    }
}

/// To everyone: the sender's copy in its reply, everyone else's in the broadcast.
fn to_all(fx: &mut Effects<'_>, msg: &[u8]) {
    fx.reply.extend_from_slice(msg);
    fx.broadcast.extend_from_slice(msg);
}

fn valid_nick(n: &[u8]) -> bool {
    (1..=MAX_NICK).contains(&n.len())
        && n.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `input` to a fresh guest-1 in the given chunks; (reply, broadcast, closed).
    fn run(chunks: &[&[u8]]) -> (Vec<u8>, Vec<u8>, bool) {
        let guests = Guests::default();
        let mut c = Chat::new(&guests);
        let (mut reply, mut bcast) = (Vec::new(), Vec::new());
        let mut pending = Vec::new();
        let mut close = false;
        for ch in chunks {
            pending.extend_from_slice(ch);
            let mut fx = Effects {
                reply: &mut reply,
                broadcast: &mut bcast,
                close: false,
            };
            let n = c.handle(&pending, &mut fx);
            close |= fx.close;
            pending.drain(..n);
            assert!(
                pending.len() <= MAX_LINE + 1,
                "buffered {} bytes",
                pending.len()
            );
        }
        (reply, bcast, close)
    }

    /// Same replies and broadcasts at every split point and byte by byte.
    fn check(input: &[u8], reply: &[u8], bcast: &[u8], close: bool) {
        let s = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            let (r, bc, c) = run(&[a, b]);
            assert_eq!(
                (s(&r), s(&bc), c),
                (s(reply), s(bcast), close),
                "split at {i} of {:?}",
                s(input)
            );
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let (r, bc, c) = run(&bytes);
        assert_eq!(
            (s(&r), s(&bc), c),
            (s(reply), s(bcast), close),
            "byte by byte"
        );
    }

    #[test]
    fn lines_nicks_quit_every_split() {
        check(
            b"hi\nthere\r\n",
            b"[guest-1] hi\n[guest-1] there\n",
            b"[guest-1] hi\n[guest-1] there\n",
            false,
        );
        check(b"\n", b"[guest-1] \n", b"[guest-1] \n", false);
        check(b"partial", b"", b"", false);
        check(
            b"/nick bob\nyo\n/nick\n/nick a b\n/nick caf\xc3\xa9\n/nick x\n",
            b"* guest-1 is now bob\n[bob] yo\n* bad nick\n* bad nick\n* bad nick\n* bob is now x\n",
            b"* guest-1 is now bob\n[bob] yo\n* bob is now x\n",
            false,
        );
        let long_nick = format!("/nick {}\n/nick {}\n", "a".repeat(32), "b".repeat(33));
        check(
            long_nick.as_bytes(),
            format!("* guest-1 is now {}\n* bad nick\n", "a".repeat(32)).as_bytes(),
            format!("* guest-1 is now {}\n", "a".repeat(32)).as_bytes(),
            false,
        );
        check(
            b"a\n/quit\nafter\n",
            b"[guest-1] a\n* bye\n",
            b"[guest-1] a\n",
            true,
        );
        check(b"/quit\r\n", b"* bye\n", b"", true);
        check(
            b"/nickname\n",
            b"[guest-1] /nickname\n",
            b"[guest-1] /nickname\n",
            false,
        );
    }

    #[test]
    fn line_limit_every_split() {
        let ok = "x".repeat(MAX_LINE);
        let input = format!("{ok}\r\n{ok}x\nafter\n{ok}x\r\n");
        let mut want = format!("[guest-1] {ok}\n").into_bytes();
        let b = want.clone();
        want.extend_from_slice(b"* line too long\n");
        let mut bcast = b;
        want.extend_from_slice(b"[guest-1] after\n");
        bcast.extend_from_slice(b"[guest-1] after\n");
        want.extend_from_slice(b"* line too long\n");
        // Every split of a 12 KiB input is slow in debug builds: a sample of splits
        // around the boundaries plus byte by byte.
        let input = input.as_bytes();
        for i in
            (0..input.len())
                .step_by(97)
                .chain([4096, 4097, 4098, 8194, 8195, 8196, input.len()])
        {
            let (a, rest) = input.split_at(i.min(input.len()));
            assert_eq!(
                run(&[a, rest]),
                (want.clone(), bcast.clone(), false),
                "split at {i}"
            );
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(&bytes), (want, bcast, false));
        // A line that never ends is dropped without buffering it.
        let big = vec![b'y'; 100_000];
        let chunks: Vec<&[u8]> = big.chunks(1000).collect();
        let (r, bc, _) = run(&chunks);
        assert_eq!(r, b"* line too long\n");
        assert!(bc.is_empty());
    }

    #[test]
    fn join_leave_and_numbering() {
        let guests = Guests::default();
        let mut a = Chat::new(&guests);
        let mut b = Chat::new(&guests);
        assert_eq!((a.name(), b.name()), ("guest-1", "guest-2"));
        let (mut r, mut bc) = (Vec::new(), Vec::new());
        let mut fx = Effects {
            reply: &mut r,
            broadcast: &mut bc,
            close: false,
        };
        b.on_open(&mut fx);
        assert_eq!(
            fx.reply.as_slice(),
            b"* you are guest-2\n* guest-2 joined\n"
        );
        assert_eq!(fx.broadcast.as_slice(), b"* guest-2 joined\n");
        let (mut r, mut bc) = (Vec::new(), Vec::new());
        let mut fx = Effects {
            reply: &mut r,
            broadcast: &mut bc,
            close: false,
        };
        a.handle(b"/nick al\n", &mut fx);
        a.on_close(&mut fx);
        assert_eq!(bc, b"* guest-1 is now al\n* al left\n");
    }

    proptest::proptest! {
        /// Any sequence of lines, cut anywhere: the same output as whole; the broadcast
        /// (everyone else's copy) is exactly the sender's reply minus the lines meant
        /// for the sender alone, in the same order, each once.
        #[test]
        fn broadcast_is_the_reply_minus_private_lines(
            lines in proptest::collection::vec(
                proptest::prop_oneof![
                    "[a-z ]{0,12}",
                    "/nick [A-Za-z0-9_-]{1,34}",
                    "/nick [a-z!]{0,4}",
                ],
                0..12,
            ),
            crlf: bool,
            cut in 0usize..400,
        ) {
            let eol = if crlf { "\r\n" } else { "\n" };
            let input: String = lines.iter().map(|l| format!("{l}{eol}")).collect();
            let input = input.as_bytes();
            let whole = run(&[input]);
            let cut = cut.min(input.len());
            proptest::prop_assert_eq!(&run(&[&input[..cut], &input[cut..]]), &whole);
            let private = |l: &&[u8]| *l == b"* bad nick" || *l == b"* line too long";
            let reply: Vec<&[u8]> = whole.0.split(|&b| b == b'\n').filter(|l| !l.is_empty()).filter(|l| !private(l)).collect();
            let bcast: Vec<&[u8]> = whole.1.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
            proptest::prop_assert_eq!(reply, bcast);
            // One reply line per input line.
            proptest::prop_assert_eq!(whole.0.iter().filter(|&&b| b == b'\n').count(), lines.len());
        }
    }
}
