//! Protocols beyond echo through the real binary: HTTP on every backend variant (the
//! core runs through the connection layer's reply/close effects, no backend code of
//! its own), `load --proto http|upper`, `ringmux client` (chat: it_chat.rs).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::backend_test;
use crate::util::{self, BIN, Finished, Running, Server, Variant, run_bounded};

/// Read until EOF (or 20 s, then panic).
fn read_to_eof(s: &mut std::net::TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("read after {} bytes: {e}", out.len()));
    out
}

const HELLO_REPLY: &str = "HTTP/1.1 200 OK\r\nServer: ringmux\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";

backend_test!(http_pipelined_in_order_then_error_closes, |v| {
    let srv = Server::start(v, &["--proto", "http"]);
    let mut s = srv.connect();
    // Pipelined in one write: answered in order; the bad Content-Length is answered
    // with 400 and a close, and the GET after it is not served.
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /missing HTTP/1.1\r\n\r\n\
          POST /echo HTTP/1.1\r\nContent-Length: +3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n",
    )
    .unwrap();
    let got = String::from_utf8_lossy(&read_to_eof(&mut s)).into_owned();
    let want = format!(
        "{HELLO_REPLY}HTTP/1.1 200 OK\r\nServer: ringmux\r\nContent-Type: application/octet-stream\r\nContent-Length: 5\r\n\r\nhello\
         HTTP/1.1 404 Not Found\r\nServer: ringmux\r\nContent-Length: 0\r\n\r\n\
         HTTP/1.1 400 Bad Request\r\nServer: ringmux\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(got, want, "{v:?}");
    // HTTP/1.0 closes after the response; a head over 8 KiB is 431.
    let mut s = srv.connect();
    s.write_all(b"GET /plaintext HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(
        String::from_utf8_lossy(&read_to_eof(&mut s)),
        HELLO_REPLY.replace("\r\n\r\nHello", "\r\nConnection: close\r\n\r\nHello")
    );
    let mut s = srv.connect();
    let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 9000));
    let _ = s.write_all(&big);
    assert!(read_to_eof(&mut s).starts_with(b"HTTP/1.1 431 "), "{v:?}");
    srv.stop_ok(Duration::from_secs(10));
});

/// `ringmux load <args>` with a deadline: (exit code, its --json or Null, stderr).
fn load(args: &[&str]) -> (Option<i32>, Value, String) {
    let r = util::load(args, Duration::from_secs(60));
    (
        r.code(),
        r.json.clone().unwrap_or(Value::Null),
        r.stderr.clone(),
    )
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ringmux-it-proto-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

backend_test!(load_http_get_post_pipelined_and_open_loop, |v| {
    let srv = Server::start(v, &["--proto", "http"]);
    let addr = srv.addr.to_string();
    // blocking serves one connection at a time: the others would only time out.
    let conns = if v.concurrent() { "4" } else { "1" };
    let base = [
        "--addr",
        &addr,
        "--proto",
        "http",
        "--conns",
        conns,
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
        "--quiet",
    ];
    let name = format!("{v:?}");
    let hgrm = tmp(&format!("{name}.hgrm"));
    let hlog = tmp(&format!("{name}.hlog"));
    let cases: Vec<Vec<&str>> = vec![
        vec!["--size", "0"],
        vec!["--size", "3000", "--pipeline", "4"],
        vec![
            "--size",
            "100",
            "--rate",
            "400",
            "--hgrm",
            hgrm.to_str().unwrap(),
            "--hlog",
            hlog.to_str().unwrap(),
        ],
    ];
    for extra in cases {
        let mut args = base.to_vec();
        args.extend(&extra);
        let (code, j, err) = load(&args);
        assert_eq!(code, Some(0), "{v:?} {extra:?}: {err}");
        assert_eq!(j["params"]["proto"], "http", "{v:?} {extra:?}");
        assert_eq!(
            j["errors"],
            serde_json::json!({"mismatch": 0, "reset": 0, "timeout": 0, "connect": 0, "other": 0}),
            "{v:?} {extra:?}"
        );
        assert!(j["messages"].as_u64().unwrap() > 0, "{v:?} {extra:?}: {j}");
        if extra.contains(&"--rate") {
            // Open loop at 400/s for 0.5 s: exactly the 200 intended messages.
            assert_eq!(j["messages"], 200, "{v:?}: {j}");
        }
    }
    assert!(
        std::fs::read_to_string(&hgrm)
            .unwrap()
            .contains("Percentile")
    );
    assert!(
        std::fs::read_to_string(&hlog)
            .unwrap()
            .contains("#[Histogram log format version 1.3]")
    );
});

#[test]
fn load_http_counts_404_by_status() {
    // load only sends routes ringmux serves with 200, so a tiny server of ours
    // answers 404 to every request head.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 4096];
                let mut pending = Vec::new();
                while let Ok(n @ 1..) = s.read(&mut buf) {
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(p) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..p + 4);
                        if s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    let (code, j, err) = load(&[
        "--addr",
        &addr,
        "--proto",
        "http",
        "--size",
        "0",
        "--conns",
        "2",
        "--duration",
        "0.3",
        "--warmup",
        "0",
        "--quiet",
    ]);
    assert_eq!(code, Some(1), "errors make load exit 1: {err}");
    assert!(j["errors"]["status"]["404"].as_u64().unwrap() > 0, "{j}");
    assert_eq!(j["messages"], 0);
}

backend_test!(load_upper_verified, |v| {
    let srv = Server::start(v, &["--proto", "upper"]);
    let addr = srv.addr.to_string();
    let (code, j, err) = load(&[
        "--addr",
        &addr,
        "--proto",
        "upper",
        "--size",
        "500",
        "--conns",
        if v.concurrent() { "3" } else { "1" },
        "--pipeline",
        "2",
        "--duration",
        "0.3",
        "--warmup",
        "0",
        "--quiet",
    ]);
    assert_eq!(code, Some(0), "{v:?}: {err}");
    assert!(j["messages"].as_u64().unwrap() > 0);
    // The same load against echo is all mismatches.
    let echo = Server::start(v, &[]);
    let addr = echo.addr.to_string();
    let (code, j, _) = load(&[
        "--addr",
        &addr,
        "--proto",
        "upper",
        "--size",
        "500",
        "--conns",
        "1",
        "--duration",
        "0.2",
        "--warmup",
        "0",
        "--quiet",
    ]);
    assert_eq!(code, Some(1));
    assert!(j["errors"]["mismatch"].as_u64().unwrap() > 0, "{j}");
});

/// A running `ringmux client` with piped stdin, stdout and stderr.
struct Client {
    run: Running,
    out: std::sync::mpsc::Receiver<Vec<u8>>,
}

impl Client {
    fn start(addr: &str) -> Client {
        let mut child = Command::new(BIN)
            .args(["client", "--addr", addr])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Stdout as it arrives, in whatever pieces (a line may lack its newline).
        let (tx, out) = std::sync::mpsc::channel();
        let mut so = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut b = [0u8; 4096];
            while let Ok(n @ 1..) = so.read(&mut b) {
                if tx.send(b[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        // Stderr is read as it comes.
        let run = Running::adopt(child, format!("ringmux client --addr {addr}"));
        Client { run, out }
    }

    fn stdin(&mut self) -> std::process::ChildStdin {
        self.run.child.stdin.take().unwrap()
    }

    /// Stdout until it holds `want` (at most 20 s).
    fn expect(&self, got: &mut Vec<u8>, want: &[u8]) {
        let t0 = Instant::now();
        while !got.windows(want.len()).any(|w| w == want) {
            let left = Duration::from_secs(20).saturating_sub(t0.elapsed());
            match self.out.recv_timeout(left) {
                Ok(b) => got.extend(b),
                Err(_) => panic!(
                    "client stdout {:?} never showed {:?}",
                    String::from_utf8_lossy(got),
                    String::from_utf8_lossy(want)
                ),
            }
        }
    }

    /// Wait for exit (at most `within`): (code, stderr, how long it took).
    fn wait(mut self, within: Duration) -> (Option<i32>, String, Duration) {
        let t0 = Instant::now();
        let done = self.run.wait(within);
        (done.code(), done.stderr, t0.elapsed())
    }
}

#[test]
fn client_stdin_eof_half_closes_prints_the_rest_exits_0() {
    let srv = Server::start(Variant::Epoll, &["--proto", "upper"]);
    let mut c = Client::start(&srv.addr.to_string());
    let mut stdin = c.stdin();
    let mut got = Vec::new();
    stdin.write_all(b"hello\n").unwrap();
    c.expect(&mut got, b"HELLO\n"); // printed as it arrives, stdin still open
    stdin.write_all(b"last line, no newline").unwrap();
    drop(stdin); // EOF: the client sends the rest, shuts down write, the server closes
    c.expect(&mut got, b"LAST LINE, NO NEWLINE");
    let (code, err, _) = c.wait(Duration::from_secs(20));
    assert_eq!(code, Some(0), "stderr: {err}");
    assert!(err.is_empty(), "{err}");
    // In a plain pipe too.
    let out = Running::spawn(Command::new("sh").arg("-c").arg(format!(
        "printf 'hi\\nthere\\n' | {BIN} client --addr {}",
        srv.addr
    )))
    .finish(Duration::from_secs(20));
    assert_eq!(out.code(), Some(0), "{}", out.explain());
    assert_eq!(out.stdout, "HI\nTHERE\n");
}

#[test]
fn client_notices_the_server_gone_while_stdin_stays_open() {
    let srv = Server::start(Variant::Epoll, &["--proto", "upper"]);
    let mut c = Client::start(&srv.addr.to_string());
    let mut stdin = c.stdin();
    let mut got = Vec::new();
    stdin.write_all(b"ping\n").unwrap();
    c.expect(&mut got, b"PING\n");
    // Kill the server; stdin stays open and silent.
    drop(srv);
    let (code, err, took) = c.wait(Duration::from_secs(10));
    assert_eq!(code, Some(1), "stderr: {err}");
    assert_eq!(err, "ringmux: server closed the connection\n");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    drop(stdin);
}

#[test]
fn client_bad_address_is_one_line() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run_bounded(
        &["client", "--addr", &format!("127.0.0.1:{port}")],
        Duration::from_secs(20),
    );
    assert_eq!(out.code(), Some(1), "{}", out.explain());
    let err = &out.stderr;
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("ringmux: error: cannot connect to"),
        "{err}"
    );
}

#[test]
fn bench_proto_http_runs_every_ringmux_server_and_leaves_out_externals() {
    let out = std::env::temp_dir().join(format!("ringmux-bench-http-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let Finished {
        status,
        stderr: err,
        ..
    } = run_bounded(
        &[
            "bench",
            "--quick",
            "--proto",
            "http",
            "--size",
            "0",
            "--backends",
            "uring,epoll",
            "--conns",
            "10",
            "--duration",
            "0.3",
            "--external",
            "someecho=sleep 100 {addr}",
            "--out",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    assert!(status.success(), "{status}: {err}");
    let left: Vec<&str> = err.lines().filter(|l| l.contains("left out")).collect();
    assert_eq!(
        left,
        [
            "ringmux: warning: someecho left out: external servers are taken to speak echo only, not http"
        ],
        "{err}"
    );
    let r: Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(r["args"]["proto"], "http");
    let cells = r["cells"].as_array().unwrap();
    let servers: std::collections::BTreeSet<&str> = cells
        .iter()
        .map(|c| c["server"].as_str().unwrap())
        .collect();
    assert!(
        servers.contains("epoll") && !servers.contains("someecho"),
        "{servers:?}"
    );
    for c in cells {
        assert_eq!(c["median"]["errors"], 0, "{}", c["id"]);
        assert!(
            c["median"]["msgs_per_s"].as_f64().unwrap() > 0.0,
            "{}",
            c["id"]
        );
    }
    // Every run's load file says it spoke http.
    let runs: Vec<_> = std::fs::read_dir(out.join("runs"))
        .unwrap()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.ends_with(".json") && !n.ends_with(".server.json")
        })
        .collect();
    assert!(!runs.is_empty());
    for e in runs {
        let j: Value = serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
        assert_eq!(j["params"]["proto"], "http", "{:?}", e.path());
    }
    let _ = std::fs::remove_dir_all(&out);
}
