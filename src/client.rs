//! `ringmux client --addr A`: the select client of the material, on poll(2).
//!
//! stdin and the socket are watched at once, so what the server sends (chat lines from
//! others, say) is printed as it arrives even while the user is typing, and a server
//! that closes is noticed at once, not at the next line typed.
//!
//! - Each complete stdin line is sent as soon as it is read (an unterminated last line
//!   at stdin EOF too).
//! - Server bytes are written to stdout unchanged and flushed.
//! - stdin EOF: once everything read is sent, the write side is shut down (FIN); the
//!   client keeps printing until the server closes, then exits 0.
//! - The server closes (or resets) before that: `ringmux: server closed the connection`
//!   on stderr at once, exit 1.
//!
//! Works in a pipe: `printf 'hi\n' | ringmux client --addr 127.0.0.1:7878`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

/// Stop reading stdin while this much is waiting to be sent (a server that does not
/// read cannot make the client buffer without bound).
const MAX_PENDING: usize = 1 << 20;
const CHUNK: usize = 64 * 1024;

/// Connect to `addr` (waiting at most `connect_timeout`) and run a session on stdin
/// and stdout.
pub fn client_cmd(addr: SocketAddr, connect_timeout: Duration) -> anyhow::Result<ExitCode> {
    let sock = TcpStream::connect_timeout(&addr, connect_timeout)
        .with_context(|| format!("cannot connect to {addr}"))?;
    let _ = sock.set_nodelay(true);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match run(sock, io::stdin().as_raw_fd(), &mut out)? {
        End::Done => Ok(ExitCode::SUCCESS),
        End::ServerClosed => {
            let _ = out.flush();
            eprintln!("ringmux: server closed the connection");
            Ok(ExitCode::from(1))
        }
    }
}

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// stdin ended, everything was sent, and the server then closed.
    Done,
    /// The server closed (or reset) while the client still had input to send.
    ServerClosed,
}

/// Run a session: `input` (a readable fd, e.g. stdin) to `sock`, `sock` to `out`.
pub fn run(mut sock: TcpStream, input: RawFd, out: &mut impl Write) -> anyhow::Result<End> {
    sock.set_nonblocking(true)
        .context("socket: set non-blocking")?;
    let mut input_open = true;
    let mut shut = false;
    // Bytes read from input: `pending[..line_end]` may be sent (whole lines).
    let mut pending: Vec<u8> = Vec::new();
    let mut sendable = 0;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let want_input = input_open && pending.len() < MAX_PENDING;
        let mut fds = [
            libc::pollfd {
                fd: if want_input { input } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sock.as_raw_fd(),
                events: libc::POLLIN | if sendable > 0 { libc::POLLOUT } else { 0 },
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a live array of two pollfd owned by this frame for the call.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e).context("poll");
        }
        // The server first: what it sent is printed before anything else happens.
        if fds[1].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            match sock.read(&mut buf) {
                Ok(0) => return Ok(if shut { End::Done } else { End::ServerClosed }),
                Ok(n) => {
                    out.write_all(&buf[..n]).context("write to stdout")?;
                    out.flush().context("write to stdout")?;
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_reset(&e) => return Ok(End::ServerClosed),
                Err(e) => return Err(e).context("read from the server"),
            }
        }
        if fds[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            // SAFETY: `buf` is owned by this frame and CHUNK bytes long; read(2) writes at
            // most that many into it.
            let n = unsafe { libc::read(input, buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted && e.kind() != io::ErrorKind::WouldBlock {
                    return Err(e).context("read from stdin");
                }
            } else if n == 0 {
                input_open = false;
                sendable = pending.len();
            } else {
                let n = n as usize;
                pending.extend_from_slice(&buf[..n]);
                if let Some(p) = pending.iter().rposition(|&b| b == b'\n') {
                    sendable = p + 1;
                }
            }
        }
        if sendable > 0 {
            match sock.write(&pending[..sendable]) {
                Ok(n) => {
                    pending.drain(..n);
                    sendable -= n;
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_reset(&e) => return Ok(End::ServerClosed),
                Err(e) => return Err(e).context("send to the server"),
            }
        }
        if !input_open && pending.is_empty() && !shut {
            match sock.shutdown(Shutdown::Write) {
                Ok(()) => shut = true,
                Err(e) if is_reset(&e) => return Ok(End::ServerClosed),
                Err(e) => return Err(e).context("shut down the write side"),
            }
        }
    }
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNRESET | libc::EPIPE | libc::ENOTCONN | libc::ECONNABORTED)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::fd::{FromRawFd, OwnedFd};

    /// `run` on a thread, with a deadline: (end, what it printed).
    fn run_within(addr: std::net::SocketAddr, input: OwnedFd) -> (End, Vec<u8>) {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let end = run(
                TcpStream::connect(addr).unwrap(),
                input.as_raw_fd(),
                &mut out,
            )
            .unwrap();
            let _ = tx.send((end, out));
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("client session ended within 20 s")
    }

    fn pipe() -> (OwnedFd, std::fs::File) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both descriptors were just created and are owned by nobody else.
        unsafe {
            (
                OwnedFd::from_raw_fd(fds[0]),
                std::fs::File::from_raw_fd(fds[1]),
            )
        }
    }

    #[test]
    fn lines_go_out_replies_come_back_eof_half_closes() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let srv = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut got = Vec::new();
            s.write_all(b"welcome\n").unwrap();
            s.read_to_end(&mut got).unwrap(); // until the client's FIN
            s.write_all(&got.to_ascii_uppercase()).unwrap();
            got
        });
        let (r, mut w) = pipe();
        w.write_all(b"one\ntwo\nthree").unwrap();
        drop(w);
        let (end, out) = run_within(addr, r);
        assert_eq!(end, End::Done);
        assert_eq!(out, b"welcome\nONE\nTWO\nTHREE");
        assert_eq!(srv.join().unwrap(), b"one\ntwo\nthree");
    }

    #[test]
    fn server_close_while_input_open_is_noticed_at_once() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"bye\n").unwrap();
        });
        let (r, _w) = pipe(); // the write end stays open: stdin never ends
        let (end, out) = run_within(addr, r);
        assert_eq!(end, End::ServerClosed);
        assert_eq!(out, b"bye\n");
    }
}
