//! The listening socket (socket2): SO_REUSEADDR, SO_REUSEPORT when several loops
//! share a port, backlog.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Bind and listen. `reuse_port` only for thread-per-core: with it on, a second
/// server could bind the same port silently instead of failing with "in use".
pub fn bind(addr: SocketAddr, backlog: i32, reuse_port: bool, nonblocking: bool) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())?;
    s.listen(backlog)?;
    s.set_nonblocking(nonblocking)?;
    Ok(s)
}
