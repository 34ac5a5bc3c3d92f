//! The listening socket (socket2): SO_REUSEADDR, SO_REUSEPORT when several loops
//! share a port, backlog.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Bind and listen. `reuse_port` only for thread-per-core: with it on, a second
/// server could bind the same port silently instead of failing with "in use".
pub fn bind(
    addr: SocketAddr,
    backlog: i32,
    reuse_port: bool,
    nonblocking: bool,
) -> io::Result<Socket> {
    let s = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
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

/// Bind `n` listeners to one address, one per event loop (thread-per-core).
///
/// n == 1 is a plain [`bind`]. Otherwise every listener has SO_REUSEPORT (the first
/// too: the kernel only groups sockets that all set it) and the kernel spreads new
/// connections over the group by a hash of the connection's addresses and ports. With
/// port 0 the first listener gets a free port and the others bind to that port.
///
/// SO_REUSEPORT would also let a second server of the same user join the group
/// silently, so a fixed port is first checked with a plain bind: a port already
/// listened on fails with "in use", as with one loop.
pub fn bind_group(
    addr: SocketAddr,
    n: usize,
    backlog: i32,
    nonblocking: bool,
) -> io::Result<Vec<Socket>> {
    if n <= 1 {
        return Ok(vec![bind(addr, backlog, false, nonblocking)?]);
    }
    if addr.port() != 0 {
        let probe = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.cloexec(),
            Some(Protocol::TCP),
        )?;
        probe.set_reuse_address(true)?;
        if addr.is_ipv6() {
            probe.set_only_v6(true)?;
        }
        probe.bind(&addr.into())?;
    }
    let first = bind(addr, backlog, true, nonblocking)?;
    let bound = first
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("listener has no inet address"))?;
    let mut all = Vec::with_capacity(n);
    all.push(first);
    for _ in 1..n {
        all.push(bind(bound, backlog, true, nonblocking)?);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_shares_one_port() {
        let g = bind_group("127.0.0.1:0".parse().unwrap(), 3, 16, true).unwrap();
        let ports: Vec<u16> = g
            .iter()
            .map(|s| s.local_addr().unwrap().as_socket().unwrap().port())
            .collect();
        assert!(
            ports[0] != 0 && ports.iter().all(|&p| p == ports[0]),
            "{ports:?}"
        );
        assert!(g.iter().all(|s| s.reuse_port().unwrap()));
        // A second group on the same port is refused, not merged in.
        let addr: SocketAddr = format!("127.0.0.1:{}", ports[0]).parse().unwrap();
        let e = bind_group(addr, 2, 16, true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        // One loop: no SO_REUSEPORT, as before.
        let one = bind_group("127.0.0.1:0".parse().unwrap(), 1, 16, true).unwrap();
        assert!(!one[0].reuse_port().unwrap());
    }
}
