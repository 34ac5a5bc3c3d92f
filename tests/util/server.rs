//! A running `ringmux serve`: start it (its start line gives the address and pid),
//! connect, signal, read its /proc and stats snapshots, stop it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use super::{
    BIN, Finished, Running, Variant, payload, read_json, read_varied, run_bounded, status_kib,
    steady, wait_until,
};

pub struct Server {
    /// The process started (strace, when the server runs under it).
    pub proc: Running,
    pub addr: SocketAddr,
    /// The server's pid (differs from the child's under strace).
    pub pid: i32,
    pub start_line: String,
    pub cmdline: String,
}

impl Server {
    /// `ringmux serve --addr 127.0.0.1:0 <variant args> <extra>`.
    pub fn start(v: Variant, extra: &[&str]) -> Server {
        Server::start_env(v, extra, &[])
    }

    /// [`Server::start`] with environment variables set (RINGMUX_FAULTS only as given).
    pub fn start_env(v: Variant, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(serve_args(v, extra))
            .env_remove("RINGMUX_FAULTS")
            .envs(env.iter().copied());
        let s = Server::spawn(&mut cmd);
        assert!(
            s.start_line.contains(&v.expect()),
            "start line {:?} should say {:?}",
            s.start_line,
            v.expect()
        );
        s
    }

    /// Spawn any command that ends up running `ringmux serve` and wait for its start line.
    pub fn spawn(cmd: &mut Command) -> Server {
        let mut proc = Running::spawn(cmd);
        let cmdline = proc.cmd.clone();
        let Some(line) = proc.wait_line(Duration::from_secs(20), |l| l.contains("serving")) else {
            proc.kill();
            let out = proc.wait(Duration::from_secs(10));
            panic!("{cmdline}: no start line within 20 s\n{}", out.explain());
        };
        let addr: SocketAddr = line
            .split_whitespace()
            .skip_while(|w| *w != "on")
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let pid: i32 = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("pid="))
            .unwrap()
            .parse()
            .unwrap();
        Server {
            proc,
            addr,
            pid,
            start_line: line,
            cmdline,
        }
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.addr));
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    /// `n` connections, each having echoed `payload(i, len)` once, byte-exact.
    pub fn connect_echoed(&self, n: usize, len: usize) -> Vec<TcpStream> {
        (0..n)
            .map(|i| {
                let mut c = self.connect();
                c.write_all(&payload(i as u64, len)).unwrap();
                assert_eq!(
                    read_varied(&mut c, len),
                    payload(i as u64, len),
                    "{}: conn {i}",
                    self.cmdline
                );
                c
            })
            .collect()
    }

    pub fn stderr(&self) -> String {
        self.proc.stderr()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with a pid we spawned and a valid signal number.
        unsafe { libc::kill(self.pid, sig) };
    }

    /// Open file descriptors of the server process.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Resident memory of the server process in KiB (0 once it has gone).
    pub fn rss_kib(&self) -> u64 {
        status_kib(self.pid, "VmRSS").unwrap_or(0)
    }

    /// A fresh SIGUSR1 snapshot (the server runs with `--stats-json json`): the file is
    /// removed first, so the one read is new; at most 10 s.
    pub fn snapshot(&self, json: &Path) -> serde_json::Value {
        let _ = std::fs::remove_file(json);
        self.signal(libc::SIGUSR1);
        assert!(
            wait_until(Duration::from_secs(10), || json.exists()),
            "{}: no SIGUSR1 snapshot within 10 s; stderr: {}",
            self.cmdline,
            self.stderr()
        );
        read_json(json)
    }

    /// Wait for exit (no signal sent), at most `within`; kill and panic past it.
    pub fn wait(mut self, within: Duration) -> Finished {
        self.proc.wait(within)
    }

    /// SIGTERM, then wait (at most `within`).
    pub fn stop(self, within: Duration) -> Finished {
        self.signal(libc::SIGTERM);
        self.wait(within)
    }

    /// [`Server::stop`], and it must have exited 0.
    pub fn stop_ok(self, within: Duration) -> Finished {
        let st = self.stop(within);
        assert!(
            st.status.success(),
            "exit {:?}\n{}",
            st.status,
            st.explain()
        );
        st
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.proc.child.try_wait() {
            // SAFETY: kill(2) on our own child (and the traced server under strace).
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
        // `proc` kills and reaps the child it started.
    }
}

/// SIGTERM with `conns` still open: the server exits 0 well inside its drain timeout
/// (4 s), having accepted and closed `accepted` connections, and every one of `conns`
/// is closed with no stray byte. What it printed.
pub fn assert_drains(srv: Server, conns: &mut [TcpStream], accepted: usize) -> Finished {
    let cmdline = srv.cmdline.clone();
    let t0 = std::time::Instant::now();
    let st = srv.stop_ok(Duration::from_secs(10));
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "{cmdline}: the drain took {:?}",
        t0.elapsed()
    );
    assert!(
        st.stdout
            .contains(&format!("accepted={accepted} closed={accepted}")),
        "{cmdline}: {}",
        st.stdout
    );
    for (i, c) in conns.iter_mut().enumerate() {
        // Closed: EOF (or a reset for connections never accepted), no stray bytes.
        assert_closed(c, &format!("{cmdline}: conn {i}"));
    }
    st
}

/// `serve --addr 127.0.0.1:0 <variant args> <extra>`.
pub fn serve_args<'a>(v: Variant, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["serve", "--addr", "127.0.0.1:0"];
    args.extend(v.args());
    args.extend(extra);
    args
}

/// `c` (all its echo read) was closed by a server that has exited: the next read is
/// end of file or a reset, at once. Stray bytes after the echo, or a read that times
/// out (the connection still open), fail with `what` in the message.
pub fn assert_closed(c: &mut TcpStream, what: &str) {
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 64];
    match c.read(&mut b) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("{what}: {n} stray bytes after the echo: {:?}", &b[..n]),
        Err(e) => panic!("{what}: the connection is still open ({e})"),
    }
}

/// Ask for stats snapshots (SIGUSR1; the server runs with `--stats-json json`) until
/// one satisfies `f`, at most `within`; that snapshot, or None past the deadline.
pub fn snapshot_until(
    srv: &Server,
    json: &Path,
    within: Duration,
    mut f: impl FnMut(&serde_json::Value) -> bool,
) -> Option<serde_json::Value> {
    let mut hit = None;
    wait_until(within, || {
        srv.signal(libc::SIGUSR1);
        // The file is replaced whole; a read between two writes just tries again.
        let j = std::fs::read(json)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        hit = j.filter(|j| j["final"] == false && f(j));
        hit.is_some()
    });
    hit
}

/// The server's descriptor count once it has not changed for 200 ms (polled, at most
/// 10 s): start-up finishes after the start line (a reserve fd, a ring), and closes
/// of connections a client dropped land a little later.
pub fn fds_settled(srv: &Server) -> usize {
    steady(Duration::from_secs(10), Duration::from_millis(200), || {
        srv.fd_count()
    })
    .unwrap_or_else(|| {
        panic!(
            "{}: the descriptor count kept changing: {}",
            srv.cmdline,
            srv.fd_count()
        )
    })
}

/// The server's descriptors once it has served one connection and closed it (some
/// backends finish setting up after the start line: a reserve fd, a ring), stable
/// over 200 ms.
pub fn fd_baseline(srv: &Server) -> usize {
    let mut c = srv.connect();
    c.write_all(b"?").unwrap();
    assert_eq!(
        read_varied(&mut c, 1),
        b"?",
        "{}: the first echo",
        srv.cmdline
    );
    drop(c);
    fds_settled(srv)
}

/// `conns` connections at once, each writing `size` verified bytes (`payload(seed + i)`)
/// from one thread while reading the echo on another; fails naming every connection
/// whose echo was cut, lost or reordered.
pub fn echo_burst(srv: &Server, what: impl std::fmt::Debug, conns: usize, size: usize, seed: u64) {
    let handles: Vec<_> = (0..conns)
        .map(|i| {
            let s = srv.connect();
            thread::spawn(move || {
                let msg = payload(seed + i as u64, size);
                let mut w = s.try_clone().unwrap();
                let m = msg.clone();
                let writer = thread::spawn(move || w.write_all(&m));
                let mut got = vec![0u8; size];
                let mut r = s;
                r.read_exact(&mut got)
                    .map_err(|e| format!("conn {i}: read: {e}"))?;
                writer
                    .join()
                    .unwrap()
                    .map_err(|e| format!("conn {i}: write: {e}"))?;
                if got != msg {
                    let at = got.iter().zip(&msg).position(|(a, b)| a != b).unwrap_or(0);
                    return Err(format!("conn {i}: echo differs at byte {at} of {size}"));
                }
                Ok(())
            })
        })
        .collect();
    let errs: Vec<String> = handles
        .into_iter()
        .filter_map(|h| h.join().unwrap().err())
        .collect();
    assert!(
        errs.is_empty(),
        "{what:?}: {} of {conns} connections failed: {:?}; server stderr: {}",
        errs.len(),
        &errs[..errs.len().min(5)],
        srv.stderr()
    );
}

/// The `blocking` model's queueing, asserted: while `first` stays open, a second
/// client's bytes get no reply (it waits in the backlog); once `first` closes, the
/// second is served. Returns the second connection, still open.
pub fn assert_second_client_waits(srv: &Server, first: TcpStream) -> TcpStream {
    let mut second = srv.connect();
    second.write_all(b"queued").unwrap();
    second
        .set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let mut b = [0u8; 6];
    let early = second.read(&mut b);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "{}: a second client was served while the first was still connected: {early:?}",
        srv.cmdline
    );
    drop(first);
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    second.read_exact(&mut b).unwrap_or_else(|e| {
        panic!(
            "{}: the waiting client was not served after the first left: {e}",
            srv.cmdline
        )
    });
    assert_eq!(&b, b"queued");
    second
}

/// `ringmux ARGS` is refused as bad usage: exit 2, one line on stderr containing every
/// one of `want`, no panic, nothing on stdout (nothing started).
pub fn assert_usage_error(args: &[&str], want: &[&str]) {
    let r = run_bounded(args, Duration::from_secs(20));
    assert_eq!(r.code(), Some(2), "bad usage exits 2\n{}", r.explain());
    assert_eq!(
        r.stderr.lines().count(),
        1,
        "one line expected\n{}",
        r.explain()
    );
    assert!(
        want.iter().all(|w| r.stderr.contains(w)) && !r.stderr.contains("panicked"),
        "want {want:?} in stderr\n{}",
        r.explain()
    );
    assert!(r.stdout.is_empty(), "nothing may start\n{}", r.explain());
}

/// `--threads 2` with a backend that has no event loop: one line, exit 2, nothing served.
pub fn assert_threads_refused(v: Variant, extra: &[&str]) {
    assert_usage_error(&serve_args(v, extra), &["--threads", v.backend()]);
}
