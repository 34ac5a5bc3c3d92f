//! Receive and send on a connection's socket, with the fault hooks and the counts: what
//! every model but the proactor does once a socket is ready (or a blocking call
//! returned).

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use crate::server::conn::Conn;
use crate::server::fault::Faults;
use crate::server::stats::LoopStats;
use crate::server::sys::syscall;

/// Sends per flush before giving the others a turn.
const SENDS_PER_FLUSH: usize = 1024;

/// The outcome of one receive on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recv {
    /// `n` bytes went to the protocol.
    Data(usize),
    /// The peer sent FIN (`conn.read_eof` is set).
    Eof,
    /// Nothing there (non-blocking socket).
    WouldBlock,
    /// Interrupted by a signal: try again.
    Interrupted,
    /// An error, or an injected reset: close the connection.
    Failed,
}

/// One recv into `scratch`, fed to the connection's protocol; faults and counts here.
pub fn recv(
    fd: RawFd,
    scratch: &mut [u8],
    conn: &mut Conn,
    faults: &mut Faults,
    stats: &mut LoopStats,
) -> Recv {
    // SAFETY: `scratch` is borrowed mutably for the call and is `scratch.len()` bytes long.
    match syscall!(
        Recv,
        recv(
            fd,
            scratch.as_mut_ptr() as *mut libc::c_void,
            scratch.len(),
            0
        )
    ) {
        Ok(0) => {
            conn.read_eof = true;
            Recv::Eof
        }
        Ok(_) if faults.recv_reset.hit() => {
            // Injected: as if the peer had reset (the bytes are dropped).
            stats.faults_injected += 1;
            Recv::Failed
        }
        Ok(n) => {
            let n = n as usize;
            stats.bytes_in += n as u64;
            conn.on_input(&scratch[..n]);
            Recv::Data(n)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Recv::WouldBlock,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Recv::Interrupted,
        Err(_) => Recv::Failed,
    }
}

/// The outcome of a flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Nothing owed any more.
    Done,
    /// The socket took what it could (EAGAIN, or the per-flush bound): bytes still owed.
    Owes,
    /// A send failed: close the connection.
    Failed,
}

/// Send owed bytes until none are owed, the socket would block, or the bound.
/// On a blocking socket this blocks until everything is sent (or it fails).
pub fn flush(fd: RawFd, conn: &mut Conn, faults: &mut Faults, stats: &mut LoopStats) -> Flush {
    let mut bound = 0;
    while conn.owed_len() > 0 && bound < SENDS_PER_FLUSH {
        bound += 1;
        let owed = conn.owed();
        let mut len = owed.len();
        if len > 1 && faults.send_short.hit() {
            stats.faults_injected += 1;
            len /= 2; // injected short send
        }
        // SAFETY: `owed` is borrowed for the call and `len` <= `owed.len()`; the kernel copies the bytes.
        match syscall!(
            Send,
            send(
                fd,
                owed.as_ptr() as *const libc::c_void,
                len,
                libc::MSG_NOSIGNAL
            )
        ) {
            Ok(n) => {
                stats.bytes_out += n as u64;
                conn.advance(n as usize);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Flush::Failed,
        }
    }
    if conn.owed_len() > 0 {
        Flush::Owes
    } else {
        Flush::Done
    }
}

/// A counted sleep (accept back-off, busy polling with nothing to poll).
pub fn sleep(d: Duration) {
    let ts = libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `ts` lives on this stack frame for the call; no remainder is asked for (null).
    let _ = syscall!(Nanosleep, nanosleep(&ts, std::ptr::null_mut()));
}
