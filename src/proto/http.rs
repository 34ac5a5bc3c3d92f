//! HTTP/1.1 plaintext with httparse: the TechEmpower plaintext shape plus an echo route.
//!
//! - `GET /` and `GET /plaintext`: `200`, `Hello, World!` as text/plain.
//! - `POST /echo`: `200` with the request body (streamed: the reply head goes out as soon
//!   as the request head is parsed, body bytes are copied as they arrive, so no body is
//!   ever buffered).
//! - Anything else: `404` (its body, if any, is read and dropped).
//!
//! Keep-alive by default on HTTP/1.1; `Connection: close`, and HTTP/1.0 without
//! `Connection: keep-alive`, close after the response. Pipelined requests are answered
//! in order (one request at a time, in the order received).
//!
//! Errors are answered, then the connection is closed and nothing after the bad request
//! is served: a head over [`MAX_HEAD`] bytes (or over [`MAX_HEADERS`] headers) `431`,
//! malformed request line or headers `400`, a body over [`MAX_BODY`] `413`, any
//! `Transfer-Encoding` `501` (chunked is not implemented), both Content-Length and
//! Transfer-Encoding or two different Content-Lengths `400`, a Content-Length that is
//! not all ASCII digits (`+3`, `3 4`, `-1`, `0x3`) `400` (Rust's `"+3".parse::<u64>()`
//! accepts `+3`: hyper's CVE-2021-32715). httparse trims the optional whitespace around
//! a header value, as RFC 9110 allows, so `Content-Length:  3` is 3.
//!
//! Slowloris: a head not complete within the server's header timeout gets `408` and a
//! close. Timers belong to the backend, so the core only says when a deadline applies
//! ([`Http::wants_header_deadline`]: part of a head has arrived and not all of it) and
//! writes the reply ([`Http::header_timeout`]); arming the timer in each backend's loop
//! is the backend's job.

use super::Effects;

/// The longest request head (request line + headers + blank line), bytes.
pub const MAX_HEAD: usize = 8 * 1024;
/// The most headers in one request.
pub const MAX_HEADERS: usize = 64;
/// The longest request body, bytes.
pub const MAX_BODY: u64 = 1 << 20;

const HELLO: &[u8] = b"Hello, World!";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for (the rest of) a request head.
    Head,
    /// Reading `left` more body bytes; copied to the reply when `echo`.
    Body { left: u64, echo: bool, close: bool },
    /// The connection is done (error reply or close after response): input is dropped.
    Done,
}

/// One HTTP/1.1 connection's parser state (httparse), between calls.
#[derive(Debug)]
pub struct Http {
    state: State,
    /// Bytes of an incomplete head were left unconsumed by the last call.
    mid_head: bool,
}

impl Default for Http {
    fn default() -> Http {
        Http {
            state: State::Head,
            mid_head: false,
        }
    }
}

/// A request the core refuses: status and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal(pub u16, pub &'static str);

const BAD_REQUEST: Refusal = Refusal(400, "Bad Request");
const TOO_LARGE: Refusal = Refusal(413, "Payload Too Large");
const HEAD_TOO_LARGE: Refusal = Refusal(431, "Request Header Fields Too Large");
const NOT_IMPLEMENTED: Refusal = Refusal(501, "Not Implemented");
const TIMEOUT: Refusal = Refusal(408, "Request Timeout");

/// What a parsed head asks for.
struct Request {
    /// Bytes of the head.
    len: usize,
    body: u64,
    route: Route,
    keep_alive: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Hello,
    Echo,
    NotFound,
}

impl Http {
    /// Answer every complete request in `input` into `fx` (in order); returns the bytes
    /// consumed (an incomplete head or body is left for the next call).
    pub fn handle(&mut self, input: &[u8], fx: &mut Effects<'_>) -> usize {
        let mut pos = 0;
        self.mid_head = false;
        loop {
            match self.state {
                State::Done => return input.len(),
                State::Body { left, echo, close } => {
                    let n = left.min((input.len() - pos) as u64) as usize;
                    if echo {
                        fx.reply.extend_from_slice(&input[pos..pos + n]);
                    }
                    pos += n;
                    let left = left - n as u64;
                    if left > 0 {
                        self.state = State::Body { left, echo, close };
                        return pos;
                    }
                    self.end_request(close, fx);
                }
                State::Head => {
                    if pos == input.len() {
                        return pos;
                    }
                    match parse_head(&input[pos..]) {
                        Ok(None) => {
                            self.mid_head = true;
                            return pos;
                        }
                        Ok(Some(req)) => {
                            pos += req.len;
                            respond_head(req.route, req.body, req.keep_alive, fx.reply);
                            self.state = State::Body {
                                left: req.body,
                                echo: req.route == Route::Echo,
                                close: !req.keep_alive,
                            };
                        }
                        Err(r) => {
                            self.refuse(r, fx);
                            return input.len();
                        }
                    }
                }
            }
        }
    }

    /// A request is fully read and answered: next head, or done.
    fn end_request(&mut self, close: bool, fx: &mut Effects<'_>) {
        if close {
            self.state = State::Done;
            fx.close = true;
        } else {
            self.state = State::Head;
        }
    }

    /// Answer with an error status and close; nothing after it is served.
    fn refuse(&mut self, r: Refusal, fx: &mut Effects<'_>) {
        error_reply(r, fx.reply);
        self.state = State::Done;
        self.mid_head = false;
        fx.close = true;
    }

    /// True while part of a request head has arrived and not all of it: the backend
    /// should run the header deadline (and call [`Http::header_timeout`] when it passes).
    pub fn wants_header_deadline(&self) -> bool {
        self.mid_head && self.state == State::Head
    }

    /// The header deadline passed: answer `408` and close.
    pub fn header_timeout(&mut self, fx: &mut Effects<'_>) {
        if self.state != State::Done {
            self.refuse(TIMEOUT, fx);
        }
    }

    /// Unconsumed input grew past what the core allows (the connection layer's cap):
    /// `431` mid-head, `413` otherwise; then close.
    pub fn overflow(&mut self, fx: &mut Effects<'_>) {
        match self.state {
            State::Done => {}
            State::Head => self.refuse(HEAD_TOO_LARGE, fx),
            State::Body { .. } => self.refuse(TOO_LARGE, fx),
        }
    }
}

/// Parse the head at the start of `buf`. `Ok(None)`: incomplete (and still within the
/// limits), `Err`: the refusal to send.
fn parse_head(buf: &[u8]) -> Result<Option<Request>, Refusal> {
    // Parse at most MAX_HEAD bytes: a head that is not complete by then is too large,
    // and the outcome does not depend on how the bytes were split across reads.
    let window = &buf[..buf.len().min(MAX_HEAD)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(HEAD_TOO_LARGE),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HEAD_TOO_LARGE),
        Err(_) => return Err(BAD_REQUEST),
    };
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Err(BAD_REQUEST);
    };
    let mut body: Option<u64> = None;
    let mut chunked = false;
    let mut close = false;
    let mut keep = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = content_length(h.value)?;
            if body.is_some_and(|b| b != n) {
                return Err(BAD_REQUEST);
            }
            body = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("connection") {
            for t in h.value.split(|&b| b == b',') {
                let t = t.trim_ascii();
                close |= t.eq_ignore_ascii_case(b"close");
                keep |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    if chunked {
        return Err(if body.is_some() {
            BAD_REQUEST
        } else {
            NOT_IMPLEMENTED
        });
    }
    let body = body.unwrap_or(0);
    if body > MAX_BODY {
        return Err(TOO_LARGE);
    }
    let keep_alive = !close && (version == 1 || keep);
    let route = match (method, path) {
        ("GET", "/" | "/plaintext") => Route::Hello,
        ("POST", "/echo") => Route::Echo,
        _ => Route::NotFound,
    };
    Ok(Some(Request {
        len,
        body,
        route,
        keep_alive,
    }))
}

/// A Content-Length value: ASCII digits only, at least one. Values too big for a u64
/// are over any body limit, so they come back as `413`.
fn content_length(v: &[u8]) -> Result<u64, Refusal> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(BAD_REQUEST);
    }
    let mut n: u64 = 0;
    for &d in v {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(TOO_LARGE)?;
    }
    Ok(n)
}

/// Write the status line and headers of a successful route (the body follows: the
/// greeting here, the echoed bytes as they arrive).
fn respond_head(route: Route, body: u64, keep_alive: bool, out: &mut Vec<u8>) {
    let conn = if keep_alive {
        ""
    } else {
        "Connection: close\r\n"
    };
    match route {
        Route::Hello => {
            out.extend_from_slice(
                format!("HTTP/1.1 200 OK\r\nServer: ringmux\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{conn}\r\n", HELLO.len())
                    .as_bytes(),
            );
            out.extend_from_slice(HELLO);
        }
        Route::Echo => out.extend_from_slice(
            format!("HTTP/1.1 200 OK\r\nServer: ringmux\r\nContent-Type: application/octet-stream\r\nContent-Length: {body}\r\n{conn}\r\n")
                .as_bytes(),
        ),
        Route::NotFound => {
            out.extend_from_slice(format!("HTTP/1.1 404 Not Found\r\nServer: ringmux\r\nContent-Length: 0\r\n{conn}\r\n").as_bytes())
        }
    }
}

fn error_reply(Refusal(code, reason): Refusal, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("HTTP/1.1 {code} {reason}\r\nServer: ringmux\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Proto;
    use crate::proto::tests::{check_all_splits, run_whole};

    fn ok_hello(close: bool) -> Vec<u8> {
        let c = if close { "Connection: close\r\n" } else { "" };
        format!("HTTP/1.1 200 OK\r\nServer: ringmux\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n{c}\r\nHello, World!").into_bytes()
    }

    fn ok_echo(body: &[u8], close: bool) -> Vec<u8> {
        let c = if close { "Connection: close\r\n" } else { "" };
        let mut v = format!(
            "HTTP/1.1 200 OK\r\nServer: ringmux\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n{c}\r\n",
            body.len()
        )
        .into_bytes();
        v.extend_from_slice(body);
        v
    }

    fn not_found(close: bool) -> Vec<u8> {
        let c = if close { "Connection: close\r\n" } else { "" };
        format!("HTTP/1.1 404 Not Found\r\nServer: ringmux\r\nContent-Length: 0\r\n{c}\r\n")
            .into_bytes()
    }

    fn err(code: u16) -> Vec<u8> {
        let mut v = Vec::new();
        let r = [
            BAD_REQUEST,
            TOO_LARGE,
            HEAD_TOO_LARGE,
            NOT_IMPLEMENTED,
            TIMEOUT,
        ]
        .into_iter()
        .find(|r| r.0 == code)
        .unwrap();
        error_reply(r, &mut v);
        v
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// (request bytes, expected reply, whether the connection closes). Every one is
    /// also checked at every split point.
    fn table() -> Vec<(Vec<u8>, Vec<u8>, bool)> {
        let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        vec![
            (get.clone(), ok_hello(false), false),
            (b"GET /plaintext HTTP/1.1\r\n\r\n".to_vec(), ok_hello(false), false),
            (b"GET /nope HTTP/1.1\r\n\r\n".to_vec(), not_found(false), false),
            (b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET / HTTP/1.1\r\n\r\n".to_vec(), cat(&[&not_found(false), &ok_hello(false)]), false),
            (b"POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello".to_vec(), ok_echo(b"hello", false), false),
            (b"POST /echo HTTP/1.1\r\n\r\n".to_vec(), ok_echo(b"", false), false),
            (b"POST /echo HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc".to_vec(), ok_echo(b"abc", false), false),
            // Pipelined: answered in order.
            (cat(&[&get, b"POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz", &get]), cat(&[&ok_hello(false), &ok_echo(b"xyz", false), &ok_hello(false)]), false),
            // Keep-alive rules.
            (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n".to_vec(), ok_hello(true), true),
            (b"GET / HTTP/1.1\r\nConnection: Keep-Alive, Close\r\n\r\n".to_vec(), ok_hello(true), true),
            (b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n".to_vec(), ok_hello(true), true),
            (cat(&[b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &get]), cat(&[&ok_hello(false), &ok_hello(false)]), false),
            // Errors: answered, closed, nothing after served.
            (cat(&[b"GET / HTTP/1.1\r\nX: y\r\n\r\n", b"GARBAGE\r\n\r\n", &get]), cat(&[&ok_hello(false), &err(400)]), true),
            (cat(&[b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", &get]), err(400), true),
            (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(), err(501), true),
            (b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc".to_vec(), err(400), true),
            (b"POST /echo HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".to_vec(), err(400), true),
            (b"POST /echo HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc".to_vec(), err(400), true),
            (b"POST /echo HTTP/1.1\r\nContent-Length: 3 4\r\n\r\nabc".to_vec(), err(400), true),
            (b"POST /echo HTTP/1.1\r\nContent-Length: -1\r\n\r\n".to_vec(), err(400), true),
            (b"POST /echo HTTP/1.1\r\nContent-Length: 0x3\r\n\r\nabc".to_vec(), err(400), true),
            (b"POST /echo HTTP/1.1\r\nContent-Length:\r\n\r\n".to_vec(), err(400), true),
            (b"POST /echo HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n".to_vec(), err(413), true),
            (b"POST /echo HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n".to_vec(), err(413), true),
        ]
    }

    #[test]
    fn table_every_split() {
        for (req, want, close) in table() {
            let (got, closed) = run_whole(Proto::Http, &req);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "request {:?}",
                String::from_utf8_lossy(&req)
            );
            assert_eq!(
                closed,
                close,
                "close for {:?}",
                String::from_utf8_lossy(&req)
            );
            check_all_splits(Proto::Http, &req, &want);
        }
    }

    #[test]
    fn head_limit() {
        // A head of exactly MAX_HEAD bytes is served; one byte more is 431.
        let fill = |n: usize| {
            let base = b"GET / HTTP/1.1\r\nX: \r\n\r\n".len();
            let mut v = b"GET / HTTP/1.1\r\nX: ".to_vec();
            v.extend(std::iter::repeat_n(b'a', n - base));
            v.extend_from_slice(b"\r\n\r\n");
            v
        };
        let (got, closed) = run_whole(Proto::Http, &fill(MAX_HEAD));
        assert_eq!(got, ok_hello(false));
        assert!(!closed);
        let big = fill(MAX_HEAD + 1);
        assert_eq!(run_whole(Proto::Http, &big), (err(431), true));
        // An endless head is refused once MAX_HEAD bytes are in, not buffered further.
        let mut h = Http::default();
        let mut out = Vec::new();
        let mut bc = Vec::new();
        let mut fx = Effects {
            reply: &mut out,
            broadcast: &mut bc,
            close: false,
        };
        let endless = vec![b'a'; MAX_HEAD - 1];
        let mut start = b"GET / HTTP/1.1\r\nX: ".to_vec();
        start.extend_from_slice(&endless);
        assert_eq!(h.handle(&start[..MAX_HEAD - 1], &mut fx), 0);
        assert!(h.wants_header_deadline());
        assert_eq!(h.handle(&start, &mut fx), start.len());
        assert!(fx.close);
        assert_eq!(out, err(431));
        // Too many headers is 431 as well.
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(run_whole(Proto::Http, &many), (err(431), true));
    }

    #[test]
    fn header_deadline_and_408() {
        let mut h = Http::default();
        let mut out = Vec::new();
        let mut bc = Vec::new();
        let mut fx = Effects {
            reply: &mut out,
            broadcast: &mut bc,
            close: false,
        };
        assert!(
            !h.wants_header_deadline(),
            "idle keep-alive connection: no deadline"
        );
        assert_eq!(h.handle(b"GET / HT", &mut fx), 0);
        assert!(h.wants_header_deadline());
        let n = h.handle(b"GET / HTTP/1.1\r\n\r\n", &mut fx);
        assert_eq!(n, 18);
        assert!(!h.wants_header_deadline());
        assert_eq!(h.handle(b"GET /", &mut fx), 0);
        assert!(h.wants_header_deadline());
        h.header_timeout(&mut fx);
        assert!(fx.close);
        assert!(!h.wants_header_deadline());
        let mut want = ok_hello(false);
        want.extend_from_slice(&err(408));
        assert_eq!(out, want);
    }

    #[test]
    fn body_is_streamed_not_buffered() {
        let mut h = Http::default();
        let mut out = Vec::new();
        let mut bc = Vec::new();
        let mut fx = Effects {
            reply: &mut out,
            broadcast: &mut bc,
            close: false,
        };
        let head = b"POST /echo HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n";
        assert_eq!(h.handle(head, &mut fx), head.len());
        let chunk = vec![7u8; 4096];
        for _ in 0..256 {
            assert_eq!(h.handle(&chunk, &mut fx), chunk.len());
        }
        assert!(!fx.close);
        assert!(out == ok_echo(&[7u8; 1 << 20], false));
    }

    proptest::proptest! {
        /// Any sequence of valid requests, byte-split at any point, gets the same
        /// replies as when sent whole.
        #[test]
        fn pipelined_any_split(reqs in proptest::collection::vec((0u8..4, proptest::collection::vec(proptest::num::u8::ANY, 0..40)), 1..6), cut in 0usize..400) {
            let mut input = Vec::new();
            let mut want = Vec::new();
            for (kind, body) in &reqs {
                match kind {
                    0 => { input.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n"); want.extend(ok_hello(false)); }
                    1 => {
                        input.extend_from_slice(format!("POST /echo HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
                        input.extend_from_slice(body);
                        want.extend(ok_echo(body, false));
                    }
                    2 => { input.extend_from_slice(b"GET /x HTTP/1.1\r\n\r\n"); want.extend(not_found(false)); }
                    _ => { input.extend_from_slice(b"GET /plaintext HTTP/1.1\r\nAccept: */*\r\n\r\n"); want.extend(ok_hello(false)); }
                }
            }
            let cut = cut.min(input.len());
            let (a, b) = input.split_at(cut);
            let mut h = crate::proto::ProtoState::new(Proto::Http);
            let mut out = Vec::new();
            let mut pending = a.to_vec();
            let mut bc = Vec::new();
        let mut fx = Effects { reply: &mut out, broadcast: &mut bc, close: false };
            let n = h.handle(&pending, &mut fx);
            pending.drain(..n);
            pending.extend_from_slice(b);
            let n = h.handle(&pending, &mut fx);
            proptest::prop_assert_eq!(n, pending.len());
            proptest::prop_assert_eq!(out, want);
        }

        /// Arbitrary bytes never panic, and the reply does not depend on the split.
        #[test]
        fn garbage_split_invariant(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200), cut in 0usize..200) {
            let mut prefixed = b"GET / HTTP/1.1\r\n".to_vec();
            prefixed.extend_from_slice(&data);
            for input in [&data, &prefixed] {
                let (whole, _) = run_whole(Proto::Http, input);
                let cut = cut.min(input.len());
                let mut h = crate::proto::ProtoState::new(Proto::Http);
                let mut out = Vec::new();
                let mut bc = Vec::new();
        let mut fx = Effects { reply: &mut out, broadcast: &mut bc, close: false };
                let mut pending = input[..cut].to_vec();
                let n = h.handle(&pending, &mut fx);
                pending.drain(..n);
                pending.extend_from_slice(&input[cut..]);
                h.handle(&pending, &mut fx);
                proptest::prop_assert_eq!(out, whole);
            }
        }
    }
}
