//! `load --idle-conns N`: silent connections, opened before the active ones and held
//! for the whole run, then checked: still open, or closed by the server (a select
//! server refuses fds >= 1024; a server may also time idle clients out).

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::Context;

/// Open `n` connections to `addr`, one after another (each connect waits at most
/// `timeout`). They never send.
pub fn open(addr: SocketAddr, n: u32, timeout: Duration) -> anyhow::Result<Vec<TcpStream>> {
    (0..n)
        .map(|i| {
            TcpStream::connect_timeout(&addr, timeout)
                .with_context(|| format!("--idle-conns: connection {} of {n} to {addr}", i + 1))
        })
        .collect()
}

/// Still open: nothing to read yet (EAGAIN), or bytes the server sent unasked.
/// Closed: EOF or an error such as ECONNRESET.
fn is_open(s: &TcpStream) -> bool {
    let mut b = 0u8;
    // SAFETY: `b` is a live byte for the duration of the call; MSG_PEEK leaves the
    // socket's data in place and MSG_DONTWAIT never blocks.
    let r = unsafe {
        libc::recv(
            s.as_raw_fd(),
            (&mut b as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match r {
        0 => false,
        n if n > 0 => true,
        _ => io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock,
    }
}

/// How many of `conns` the server has closed.
pub fn closed(conns: &[TcpStream]) -> u32 {
    conns.iter().filter(|s| !is_open(s)).count() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn tells_open_from_closed() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let conns = open(l.local_addr().unwrap(), 3, Duration::from_secs(5)).unwrap();
        let mut accepted: Vec<TcpStream> = (0..3).map(|_| l.accept().unwrap().0).collect();
        assert_eq!(closed(&conns), 0);
        drop(accepted.remove(0)); // the server closes one (FIN)
        std::thread::sleep(Duration::from_millis(50));
        // The accept order matches the connect order on loopback; count, not which.
        assert_eq!(closed(&conns), 1);
    }
}
