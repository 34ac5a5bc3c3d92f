//! In-process runs against std servers on loopback, on every driver.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

fn std_echo() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut b = [0u8; 4096];
                while let Ok(n @ 1..) = s.read(&mut b) {
                    if s.write_all(&b[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn in_process_run_calls_the_window_hook_in_order() {
    let addr = std_echo();
    let edges = Arc::new(Mutex::new(Vec::new()));
    let e2 = edges.clone();
    let t0 = Instant::now();
    let mut cfg = LoadConfig::closed(addr, 3, 64, Duration::from_millis(400));
    cfg.warmup = Duration::from_millis(200);
    cfg.threads = 2;
    cfg.on_window = Some(Arc::new(move |e| {
        e2.lock().unwrap().push((e, t0.elapsed()))
    }));
    let o = run(&cfg).unwrap();
    let edges = edges.lock().unwrap().clone();
    assert_eq!(
        edges.iter().map(|e| e.0).collect::<Vec<_>>(),
        vec![WindowEdge::Start, WindowEdge::End]
    );
    let window = edges[1].1 - edges[0].1;
    assert!(
        window >= Duration::from_millis(380) && window < Duration::from_millis(1500),
        "{window:?}"
    );
    assert_eq!(o.result.errors.total(), 0);
    assert!(o.result.messages > 0);
    assert_eq!(o.latency.len(), o.result.messages);
    assert!(o.uncorrected.is_none());
    // The interval series adds up to the totals.
    let sum: u64 = o.intervals.iter().map(|i| i.latency.len()).sum();
    assert_eq!(sum, o.result.messages);
    assert!(!o.intervals.is_empty());
}

/// The driver choices every in-process test runs with: epoll, and `auto`, which runs
/// the io_uring driver where this kernel can run it and must otherwise fall back to
/// epoll (the documented behaviour, asserted through the driver the result names;
/// `worker::tests` checks the fallback's warning and `--driver uring`'s error).
/// Nothing is skipped.
fn drivers() -> Vec<DriverChoice> {
    vec![DriverChoice::Epoll, DriverChoice::Auto]
}

/// The driver a run with `choice` must report.
fn expected_driver(choice: DriverChoice) -> &'static str {
    match choice {
        DriverChoice::Epoll => "epoll",
        DriverChoice::Uring => "uring",
        DriverChoice::Auto => match uring::available() {
            Ok(()) => "uring",
            Err(e) => {
                println!("io_uring unavailable ({e}): `auto` must fall back to epoll");
                "epoll"
            }
        },
    }
}

#[test]
fn in_process_open_loop_counts_the_schedule() {
    let addr = std_echo();
    for driver in drivers() {
        let mut cfg = LoadConfig::closed(addr, 4, 100, Duration::from_millis(500));
        cfg.mode = Mode::Open { rate: 400.0 };
        cfg.warmup = Duration::from_millis(100);
        cfg.interval = Duration::from_millis(100);
        cfg.driver = driver;
        let o = run(&cfg).unwrap();
        // Exactly the messages intended in the window: 400/s x 0.5 s.
        assert_eq!(o.result.messages, 200, "{driver:?}: {:?}", o.result);
        assert_eq!(o.result.rate_kept, Some(true));
        assert_eq!(o.result.missing, Some(0));
        assert_eq!(o.uncorrected.as_ref().unwrap().len(), 200);
        // Late replies count in the window's last interval: exactly 5 intervals.
        assert_eq!(o.intervals.len(), 5);
        assert_eq!(o.result.params.driver, expected_driver(driver));
    }
}

/// Run `cfg` and check it ran clean: no error, at least `min` messages, on the driver
/// its choice must give.
fn clean_run(cfg: &LoadConfig, min: u64) -> LoadOutcome {
    let (driver, size) = (cfg.driver, cfg.size);
    let o = run(cfg).unwrap();
    assert_eq!(
        o.result.errors.total(),
        0,
        "{driver:?} size {size}: {:?}",
        o.result.errors
    );
    assert!(
        o.result.messages >= min,
        "{driver:?} size {size}: {}",
        o.result.messages
    );
    assert_eq!(o.result.params.driver, expected_driver(driver));
    o
}

/// A closed-loop run of 0.3 s on every driver: no error, at least `min` messages.
fn clean_run_on_every_driver(conns: u32, size: u32, pipeline: u32, min: u64) {
    let addr = std_echo();
    for driver in drivers() {
        let mut cfg = LoadConfig::closed(addr, conns, size, Duration::from_millis(300));
        cfg.pipeline = pipeline;
        cfg.warmup = Duration::from_millis(50);
        cfg.driver = driver;
        clean_run(&cfg, min);
    }
}

#[test]
fn more_connections_than_ring_entries() {
    // In unit tests the ring has 8 entries: 40 connections queue SQEs in the backlog
    // (and overflow the completion queue, which the kernel keeps).
    clean_run_on_every_driver(40, 64, 1, 40);
}

#[test]
fn pipelined_big_messages_on_every_driver() {
    // Messages larger than a driver's buffers, several in flight: short sends and
    // split receives on both drivers, every byte verified.
    clean_run_on_every_driver(3, 200_000, 3, 3);
}

#[test]
fn refused_connection_error_names_the_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = LoadConfig::closed(
        format!("127.0.0.1:{port}").parse().unwrap(),
        2,
        8,
        Duration::from_millis(100),
    );
    let e = run(&cfg).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("cannot connect to 127.0.0.1:{port}: Connection refused")
    );
}

/// A std server that feeds each connection's bytes to `serve` (bytes in, reply out,
/// unconsumed bytes kept), one thread per connection.
fn std_server<F>(serve: F) -> std::net::SocketAddr
where
    F: Fn() -> Box<dyn FnMut(&[u8], &mut Vec<u8>) -> usize + Send> + Send + 'static,
{
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut f = serve();
            std::thread::spawn(move || {
                let mut s = s;
                let mut b = [0u8; 4096];
                let mut pending = Vec::new();
                while let Ok(n @ 1..) = s.read(&mut b) {
                    pending.extend_from_slice(&b[..n]);
                    let mut out = Vec::new();
                    let used = f(&pending, &mut out);
                    pending.drain(..used);
                    if s.write_all(&out).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// The server's own HTTP core behind a std socket.
fn std_http() -> std::net::SocketAddr {
    std_server(|| {
        let mut st = crate::proto::ProtoState::new(crate::proto::Proto::Http);
        Box::new(move |input, out| {
            let mut bc = Vec::new();
            let mut fx = crate::proto::Effects {
                reply: out,
                broadcast: &mut bc,
                close: false,
            };
            st.handle(input, &mut fx)
        })
    })
}

/// Answer every request head (GET, no body) with `reply`.
fn std_http_fixed(reply: &'static [u8]) -> std::net::SocketAddr {
    std_server(move || {
        Box::new(move |input, out| {
            let mut used = 0;
            while let Some(p) = input[used..].windows(4).position(|w| w == b"\r\n\r\n") {
                used += p + 4;
                out.extend_from_slice(reply);
            }
            used
        })
    })
}

fn http_cfg(addr: std::net::SocketAddr, size: u32, driver: DriverChoice) -> LoadConfig {
    let mut cfg = LoadConfig::closed(addr, 3, size, Duration::from_millis(300));
    cfg.proto = LoadProto::Http;
    cfg.pipeline = 3;
    cfg.warmup = Duration::from_millis(50);
    cfg.driver = driver;
    cfg
}

#[test]
fn http_get_and_post_verified_on_every_driver() {
    let addr = std_http();
    for driver in drivers() {
        // 0: GET /; 5000: a POST /echo body bigger than one read.
        for size in [0, 5000] {
            let o = clean_run(&http_cfg(addr, size, driver), 3);
            assert_eq!(o.result.params.proto.as_deref(), Some("http"));
        }
    }
}

#[test]
fn http_non_2xx_counted_by_status_and_bad_bodies_as_mismatch() {
    let addr = std_http_fixed(b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!");
    let o = run(&http_cfg(addr, 0, DriverChoice::Epoll)).unwrap();
    let n404 = o.result.errors.status.get(&404).copied().unwrap_or(0);
    assert!(n404 >= 3, "{:?}", o.result.errors);
    assert_eq!(o.result.messages, 0);
    assert_eq!(o.result.errors.total(), n404, "{:?}", o.result.errors);
    assert!(output::errors_line(&o.result.errors).contains("status 404 "));
    let addr = std_http_fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World?");
    let o = run(&http_cfg(addr, 0, DriverChoice::Epoll)).unwrap();
    assert!(o.result.errors.mismatch >= 3, "{:?}", o.result.errors);
    assert_eq!(o.result.messages, 0);
    // A reply without a Content-Length cannot be framed: the connection is dropped.
    let addr = std_http_fixed(b"HTTP/1.1 200 OK\r\n\r\nHello, World!");
    let o = run(&http_cfg(addr, 0, DriverChoice::Epoll)).unwrap();
    assert!(o.result.errors.mismatch >= 1, "{:?}", o.result.errors);
    assert_eq!(o.result.messages, 0);
}

#[test]
fn upper_replies_verified_and_echo_is_a_mismatch() {
    let upper = std_server(|| {
        Box::new(|input, out| {
            out.extend(input.iter().map(u8::to_ascii_uppercase));
            input.len()
        })
    });
    for driver in drivers() {
        let mut cfg = LoadConfig::closed(upper, 2, 300, Duration::from_millis(300));
        cfg.proto = LoadProto::Upper;
        cfg.warmup = Duration::from_millis(50);
        cfg.driver = driver;
        clean_run(&cfg, 1);
        // Against a plain echo the upper-cased check fails.
        cfg.addr = std_echo();
        let o = run(&cfg).unwrap();
        assert!(
            o.result.errors.mismatch > 0,
            "{driver:?}: {:?}",
            o.result.errors
        );
    }
}
