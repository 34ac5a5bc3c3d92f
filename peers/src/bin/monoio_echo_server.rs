//! io_uring reference echo peer for the bench: a minimal monoio echo server on
//! monoio's io_uring driver (the runtime a Rust user would pick for io_uring).
//!
//! Usage: `monoio_echo_server [ADDR]` (default 127.0.0.1:0). Prints `listening <addr>`
//! on stdout once bound, then echoes every byte back on every connection until killed.
//! Same protocol and shape as `tokio_echo_server`: one thread, TCP_NODELAY on, one
//! 16 KiB buffer per connection, partial writes handled by `write_all`, errors end only
//! the connection they happen on. It refuses to start (exit 1) when io_uring cannot be
//! set up, instead of silently running on monoio's epoll fallback.

use std::net::SocketAddr;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};

fn main() {
    let addr: SocketAddr = match std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:0")
        .parse()
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("monoio_echo_server: bad address: {e}");
            std::process::exit(2);
        }
    };
    let mut rt = match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("monoio_echo_server: cannot set up monoio's io_uring driver: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(serve(addr));
}

async fn serve(addr: SocketAddr) {
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("monoio_echo_server: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let local = listener
        .local_addr()
        .expect("bound listener has an address");
    println!("listening {local}");
    // The bench waits for this line: make sure it leaves now, not at exit.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                monoio::spawn(echo(s));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("monoio_echo_server: accept: {e}");
                monoio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

async fn echo(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    // monoio's ownership-passing IO: the buffer goes to the kernel with the op and
    // comes back with its result.
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        let (res, b) = s.read(buf).await;
        buf = b;
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let (res, b) = s.write_all(buf).await;
        buf = b;
        if res.is_err() {
            return;
        }
        buf.clear();
    }
}
