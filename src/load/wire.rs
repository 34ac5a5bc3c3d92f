//! What `load` puts on the wire and what it expects back, per protocol: how request
//! `seq` of connection `id` is laid out (regenerated from [`payload`], never stored),
//! how an echo or upper-cased reply is checked, and how HTTP replies are framed and
//! verified. Sans-IO: bytes in, verdicts out; the [`super::engine::Core`] keeps the
//! per-connection cursors and does the counting.

use super::config::LoadProto;
use super::payload;

/// The protocol of a run: how a request is laid out and how its reply is checked.
#[derive(Debug)]
pub(crate) enum Wire {
    /// The reply is the request.
    Echo,
    /// The reply is the request with ASCII letters upper-cased.
    Upper,
    /// HTTP/1.1: each request is `head` then `body` payload bytes; each reply is a status
    /// line, headers with a Content-Length, and a body: `Hello, World!` when `body` is
    /// 0 (`GET /`), else the payload sent (`POST /echo`).
    Http { head: Box<[u8]>, body: usize },
}

/// The body `GET /` answers.
const HELLO: &[u8] = b"Hello, World!";
/// The longest HTTP reply head accepted.
const MAX_REPLY_HEAD: usize = 8 * 1024;

impl Wire {
    pub fn new(proto: LoadProto, size: usize) -> Wire {
        match proto {
            LoadProto::Echo => Wire::Echo,
            LoadProto::Upper => Wire::Upper,
            LoadProto::Http if size == 0 => Wire::Http {
                head: Box::from(&b"GET / HTTP/1.1\r\nHost: ringmux\r\n\r\n"[..]),
                body: 0,
            },
            LoadProto::Http => Wire::Http {
                head: format!(
                    "POST /echo HTTP/1.1\r\nHost: ringmux\r\nContent-Length: {size}\r\n\r\n"
                )
                .into_bytes()
                .into_boxed_slice(),
                body: size,
            },
        }
    }

    /// Bytes of one request on the wire (`size`: the message size asked for).
    pub fn request_len(&self, size: usize) -> usize {
        match self {
            Wire::Echo | Wire::Upper => size,
            Wire::Http { head, body } => head.len() + body,
        }
    }

    /// Bytes `off..off + out.len()` of request `seq` of connection `id`.
    pub fn fill(&self, id: u32, seq: u64, off: usize, out: &mut [u8]) {
        match self {
            Wire::Echo | Wire::Upper => payload::fill(id, seq, off, out),
            Wire::Http { head, .. } => {
                let mut out = out;
                let mut off = off;
                if off < head.len() {
                    let n = (head.len() - off).min(out.len());
                    out[..n].copy_from_slice(&head[off..off + n]);
                    out = &mut out[n..];
                    off += n;
                }
                payload::fill(id, seq, off - head.len(), out);
            }
        }
    }

    /// Echo and upper: true when `data` is bytes `off..` of the reply to request `seq`
    /// of connection `id`. (HTTP replies go through [`HttpRx`].)
    pub fn verify(&self, id: u32, seq: u64, off: usize, data: &[u8]) -> bool {
        match self {
            Wire::Upper => verify_upper(id, seq, off, data),
            Wire::Echo | Wire::Http { .. } => payload::verify(id, seq, off, data),
        }
    }
}

/// How a message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Verified,
    Mismatch,
    /// HTTP: a reply with this status outside 2xx.
    Status(u16),
}

/// An HTTP reply stream that can no longer be framed (a reply nobody asked for, a head
/// that does not parse, is too long or has no valid Content-Length): the connection
/// must be dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unframed;

/// HTTP reply parsing state of one connection.
#[derive(Debug, Default)]
pub(crate) struct HttpRx {
    /// Bytes of the reply head so far (until the blank line).
    head: Vec<u8>,
    /// In the body: bytes still to come.
    body_left: Option<u64>,
    body_off: usize,
    status: u16,
    bad: bool,
}

impl HttpRx {
    /// Take the next bytes of the reply to request `seq` of connection `id` (`req_body`:
    /// the request's body size, 0 for `GET /`; `expecting`: a request is outstanding).
    /// One step: the head up to its blank line, or a part of the body, verified. Returns
    /// the bytes used (at least 1 of a non-empty `data`) and, when the reply is
    /// complete, how it ended.
    pub fn feed(
        &mut self,
        data: &[u8],
        id: u32,
        seq: u64,
        req_body: usize,
        expecting: bool,
    ) -> Result<(usize, Option<Outcome>), Unframed> {
        let used = match self.body_left {
            None => {
                // Head: take bytes up to the blank line.
                let from = self.head.len().saturating_sub(3);
                let take = data.len().min(MAX_REPLY_HEAD + 1 - self.head.len());
                self.head.extend_from_slice(&data[..take]);
                let Some(end) = self.head[from..]
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map(|p| from + p + 4)
                else {
                    if self.head.len() > MAX_REPLY_HEAD {
                        return Err(Unframed);
                    }
                    return Ok((take, None));
                };
                let used = take - (self.head.len() - end);
                self.head.truncate(end);
                if !expecting {
                    return Err(Unframed);
                }
                let (status, len) = parse_reply_head(&self.head).ok_or(Unframed)?;
                let want = if req_body == 0 { HELLO.len() } else { req_body } as u64;
                self.head.clear();
                self.status = status;
                self.bad = (200..300).contains(&status) && len != want;
                self.body_off = 0;
                self.body_left = Some(len);
                used
            }
            Some(left) => {
                let k = left.min(data.len() as u64) as usize;
                let part = &data[..k];
                if (200..300).contains(&self.status) && !self.bad {
                    let ok = if req_body == 0 {
                        HELLO.get(self.body_off..self.body_off + k) == Some(part)
                    } else {
                        payload::verify(id, seq, self.body_off, part)
                    };
                    self.bad = !ok;
                }
                self.body_off += k;
                self.body_left = Some(left - k as u64);
                k
            }
        };
        if self.body_left != Some(0) {
            return Ok((used, None));
        }
        self.body_left = None;
        let outcome = match (self.status, self.bad) {
            (200..=299, false) => Outcome::Verified,
            (200..=299, true) => Outcome::Mismatch,
            (s, _) => Outcome::Status(s),
        };
        Ok((used, Some(outcome)))
    }
}

/// True when `data` is bytes `off..` of message `seq` of `conn`, upper-cased.
fn verify_upper(conn: u32, seq: u64, off: usize, data: &[u8]) -> bool {
    let mut buf = [0u8; 256];
    data.chunks(buf.len()).enumerate().all(|(j, chunk)| {
        let b = &mut buf[..chunk.len()];
        payload::fill(conn, seq, off + j * 256, b);
        b.make_ascii_uppercase();
        b == chunk
    })
}

/// Status and Content-Length of an HTTP reply head (ending in the blank line); None
/// when it does not parse or has no single all-digit Content-Length.
fn parse_reply_head(head: &[u8]) -> Option<(u16, u64)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(_) = r.parse(head).ok()? else {
        return None;
    };
    let status = r.code?;
    let mut len = None;
    for h in r
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        if h.value.is_empty() || !h.value.iter().all(u8::is_ascii_digit) || h.value.len() > 18 {
            return None;
        }
        let v: u64 = std::str::from_utf8(h.value).ok()?.parse().ok()?;
        if len.is_some_and(|l| l != v) {
            return None;
        }
        len = Some(v);
    }
    Some((status, len?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `stream` to a fresh parser in pieces cut at `cuts`, as one connection
    /// whose requests are all outstanding; the outcomes in order.
    fn outcomes(stream: &[u8], cuts: &[usize], req_body: usize) -> Result<Vec<Outcome>, Unframed> {
        let mut rx = HttpRx::default();
        let mut seq = 0;
        let mut out = Vec::new();
        let mut pos = 0;
        for end in cuts.iter().copied().chain([stream.len()]) {
            let mut piece = &stream[pos..end];
            pos = end;
            while !piece.is_empty() {
                let (used, done) = rx.feed(piece, 7, seq, req_body, true)?;
                piece = &piece[used..];
                if let Some(o) = done {
                    out.push(o);
                    seq += 1;
                }
            }
        }
        Ok(out)
    }

    /// Two replies, split at every point and byte by byte: the same outcomes.
    fn same_at_every_split(stream: &[u8], req_body: usize, want: &[Outcome]) {
        assert_eq!(outcomes(stream, &[], req_body).as_deref(), Ok(want));
        for cut in 1..stream.len() {
            assert_eq!(
                outcomes(stream, &[cut], req_body).as_deref(),
                Ok(want),
                "split at {cut}"
            );
        }
        let every: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(outcomes(stream, &every, req_body).as_deref(), Ok(want));
    }

    #[test]
    fn http_replies_framed_at_every_split() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!";
        let missing = b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!";
        let wrong = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World?";
        same_at_every_split(
            &[&ok[..], &missing[..]].concat(),
            0,
            &[Outcome::Verified, Outcome::Status(404)],
        );
        same_at_every_split(
            &[&wrong[..], &ok[..]].concat(),
            0,
            &[Outcome::Mismatch, Outcome::Verified],
        );
        // POST /echo: the body is the payload of request `seq`.
        let mut body = vec![0u8; 40];
        let mut stream = Vec::new();
        for seq in 0..2 {
            payload::fill(7, seq, 0, &mut body);
            stream.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n");
            stream.extend_from_slice(&body);
        }
        same_at_every_split(&stream, 40, &[Outcome::Verified, Outcome::Verified]);
    }

    #[test]
    fn unframed_replies() {
        let no_length = b"HTTP/1.1 200 OK\r\n\r\nHello, World!";
        assert_eq!(outcomes(no_length, &[], 0), Err(Unframed));
        let two_lengths = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(outcomes(two_lengths, &[], 0), Err(Unframed));
        let endless = vec![b'x'; MAX_REPLY_HEAD + 1];
        assert_eq!(outcomes(&endless, &[], 0), Err(Unframed));
        // A reply when no request is outstanding.
        let mut rx = HttpRx::default();
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!";
        assert_eq!(rx.feed(ok, 0, 0, 0, false), Err(Unframed));
    }

    #[test]
    fn requests_and_echo_checks() {
        let w = Wire::new(LoadProto::Http, 0);
        assert_eq!(
            w.request_len(0),
            b"GET / HTTP/1.1\r\nHost: ringmux\r\n\r\n".len()
        );
        let w = Wire::new(LoadProto::Http, 10);
        let mut req = vec![0u8; w.request_len(10)];
        w.fill(3, 5, 0, &mut req);
        assert!(req.starts_with(b"POST /echo HTTP/1.1\r\n"));
        let mut body = [0u8; 10];
        payload::fill(3, 5, 0, &mut body);
        assert!(req.ends_with(&body));
        let mut upper = body;
        upper.make_ascii_uppercase();
        assert!(Wire::Upper.verify(3, 5, 0, &upper));
        assert!(Wire::Echo.verify(3, 5, 0, &body));
        assert_eq!(Wire::Echo.verify(3, 5, 0, &upper), body == upper);
    }
}
