//! Reference echo peer for the bench: a minimal single-threaded tokio echo server.
//!
//! Usage: `tokio_echo_server [ADDR]` (default 127.0.0.1:0). Prints `listening <addr>`
//! on stdout once bound, then echoes every byte back on every connection until killed.
//! TCP_NODELAY on, one 16 KiB buffer per connection, partial writes handled by
//! `write_all`, errors end only the connection they happen on.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr: SocketAddr = match std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:0")
        .parse()
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tokio_echo_server: bad address: {e}");
            std::process::exit(2);
        }
    };
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tokio_echo_server: cannot listen on {addr}: {e}");
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
                tokio::spawn(echo(s));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("tokio_echo_server: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

async fn echo(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if s.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
