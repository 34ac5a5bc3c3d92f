//! `ringmux load` in open loop (`--rate`) against echo servers of the tests' own:
//! coordinated omission corrected (a stalled server shows in the corrected latency,
//! not in the uncorrected), a rate not kept said so, SIGINT still reports, histogram
//! files. Each run-time test runs per driver, one
//! load at a time (`serial`).

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use crate::driver_test;
use crate::util::echo::{Behaviour, echo_server, f, load, serial, u};
use crate::util::{
    BIN, LoadRun, Running, read_json, record_skip, scratch_dir, wait_line, wait_until,
};

driver_test!(slow_server_rate_not_kept, |d| {
    let _g = serial();
    let addr = echo_server(Behaviour {
        delay: Some(Duration::from_millis(10)),
        ..Default::default()
    })
    .to_string();
    let r = load(
        d,
        &[
            "--addr",
            &addr,
            "--conns",
            "2",
            "--rate",
            "1000",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--timeout",
            "1",
        ],
        Duration::from_secs(15),
    );
    assert_eq!(r.code(), Some(0), "{}", r.explain());
    let j = r.json();
    assert_eq!(j["rate_kept"], false, "{}", r.explain());
    assert!(f(j, "msgs_per_s") < 500.0, "{}", r.explain());
    assert!(r.stdout.contains("RATE NOT KEPT"), "{}", r.explain());
    assert!(r.elapsed < Duration::from_secs(5), "{}", r.explain());
});

/// The stall test's assertions: corrected latency shows the stall, uncorrected hides it,
/// and every intended message was sent and recorded.
fn check_stall(r: &LoadRun, rate: f64, duration: f64) {
    assert_eq!(r.code(), Some(0), "{}", r.explain());
    let j = r.json();
    let expected = rate * duration;
    let n = u(j, "messages") as f64;
    assert!(
        (n - expected).abs() <= 0.05 * expected,
        "recorded {n}, expected {expected} ±5%\n{}",
        r.explain()
    );
    assert_eq!(u(j, "latency.count"), u(j, "latency_uncorrected.count"));
    let c999 = u(j, "latency.p99_9");
    let c90 = u(j, "latency.p90");
    let u99 = u(j, "latency_uncorrected.p99");
    // A 1 s stall at 2000/s: about 2000 of 6000 samples spread over 0..1 s.
    assert!(
        c999 >= 500_000_000,
        "corrected p99.9 {c999} ns should show the 1 s stall\n{}",
        r.explain()
    );
    assert!(
        c90 >= 100_000_000,
        "corrected p90 {c90} ns should show the stall\n{}",
        r.explain()
    );
    // Uncorrected: about one slow sample per connection (10 of 6000): p99 stays small.
    assert!(
        u99 < 50_000_000 && u99 * 10 < u(j, "latency.p99"),
        "uncorrected p99 {u99} ns should hide the stall\n{}",
        r.explain()
    );
    // Every message was answered, but the schedule fell behind by about the stall: that
    // is not a kept rate, and the summary says so with the lag.
    assert!(f(j, "max_lag_s") > 0.5, "{}", r.explain());
    assert_eq!(j["rate_kept"], false, "{}", r.explain());
    assert!(
        r.stdout.contains("RATE NOT KEPT: achieved"),
        "{}",
        r.explain()
    );
}

const STALL_ARGS: [&str; 12] = [
    "--conns",
    "10",
    "--rate",
    "2000",
    "--size",
    "128",
    "--duration",
    "3",
    "--warmup",
    "0.5",
    "--timeout",
    "5",
];

/// The server has received this many bytes of `STALL_ARGS` messages when the run is
/// 1.5 s from its start (the window is [0.5 s, 3.5 s)): the stall starts there, mid-window.
const STALL_AT_BYTES: u64 = 3000 * 128;

/// On its own thread: once `reached()` says the run is mid-window, `stop` the server,
/// hold it for 1 s, `resume` it. Joins to whether the stall happened (`reached()`
/// waits with a deadline of its own).
fn stall_once(
    reached: impl FnOnce() -> bool + Send + 'static,
    stop: impl FnOnce() + Send + 'static,
    resume: impl FnOnce() + Send + 'static,
) -> thread::JoinHandle<bool> {
    thread::spawn(move || {
        if !reached() {
            return false;
        }
        stop();
        thread::sleep(Duration::from_secs(1)); // the stall itself
        resume();
        true
    })
}

driver_test!(open_loop_corrects_for_a_one_second_stall, |d| {
    let _g = serial();
    let paused = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let addr = echo_server(Behaviour {
        paused: Some(paused.clone()),
        received: Some(received.clone()),
        ..Default::default()
    })
    .to_string();
    let (p, q) = (paused.clone(), paused.clone());
    let staller = stall_once(
        move || {
            wait_until(Duration::from_secs(20), || {
                received.load(Ordering::SeqCst) >= STALL_AT_BYTES
            })
        },
        move || p.store(true, Ordering::SeqCst),
        move || q.store(false, Ordering::SeqCst),
    );
    let mut args = vec!["--addr", &addr];
    args.extend_from_slice(&STALL_ARGS);
    let r = load(d, &args, Duration::from_secs(30));
    assert!(
        staller.join().unwrap(),
        "the run never got mid-window\n{}",
        r.explain()
    );
    check_stall(&r, 2000.0, 3.0);
    // Same run without the stall would fail these checks: the test can fail.
    let addr = echo_server(Behaviour::default()).to_string();
    let mut args = vec!["--addr", &addr];
    args.extend_from_slice(&STALL_ARGS);
    let r = load(d, &args, Duration::from_secs(30));
    let c999 = u(r.json(), "latency.p99_9");
    assert!(
        c999 < 500_000_000,
        "no stall, yet corrected p99.9 is {c999} ns\n{}",
        r.explain()
    );
});

// The realistic version: a separate server process stopped with SIGSTOP for 1 s.
driver_test!(open_loop_corrects_for_sigstop_of_the_server_process, |d| {
    let _g = serial();
    // Prints "reached" once it has received `sys.argv[1]` bytes in all.
    const PY: &str = r#"
import socket, threading, sys
at = int(sys.argv[1]); lock = threading.Lock(); total = [0]
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", 0)); l.listen(128)
print("listening 127.0.0.1:%d" % l.getsockname()[1], flush=True)
def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        d = c.recv(65536)
        if not d: return
        with lock:
            before = total[0]; total[0] += len(d)
            if before < at <= total[0]: print("reached", flush=True)
        c.sendall(d)
while True:
    c, _ = l.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;
    let Ok(mut py) =
        Running::try_spawn(Command::new("python3").args(["-c", PY, &STALL_AT_BYTES.to_string()]))
    else {
        record_skip(
            "open_loop_corrects_for_sigstop_of_the_server_process",
            "-",
            "python3 not found",
        );
        return;
    };
    let line = py
        .wait_line(Duration::from_secs(20), |l| l.starts_with("listening "))
        .unwrap_or_else(|| panic!("the python server did not start: {}", py.stderr()));
    let addr = line.trim().strip_prefix("listening ").unwrap().to_string();
    let pid = py.child.id() as libc::pid_t;
    let lines = py.take_lines();
    let staller = stall_once(
        move || wait_line(&lines, Duration::from_secs(20), |l| l.trim() == "reached").is_some(),
        // SAFETY: signalling our own child process.
        move || unsafe {
            libc::kill(pid, libc::SIGSTOP);
        },
        // SAFETY: as above.
        move || unsafe {
            libc::kill(pid, libc::SIGCONT);
        },
    );
    let mut args = vec!["--addr", &addr];
    args.extend_from_slice(&STALL_ARGS);
    let r = load(d, &args, Duration::from_secs(30));
    assert!(
        staller.join().unwrap(),
        "the run never got mid-window\n{}\npython: {}",
        r.explain(),
        py.stderr()
    );
    check_stall(&r, 2000.0, 3.0);
    // Touch the server once more: it survived.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"x").unwrap();
});

driver_test!(sigint_stops_early_and_still_reports, |d| {
    let _g = serial();
    let received = Arc::new(AtomicU64::new(0));
    let addr = echo_server(Behaviour {
        received: Some(received.clone()),
        ..Default::default()
    })
    .to_string();
    let json = scratch_dir("load-int").join("int.json");
    let mut run = Running::spawn(
        Command::new(BIN)
            .args([
                "load",
                "--driver",
                d.name(),
                "--addr",
                &addr,
                "--conns",
                "2",
                "--rate",
                "500",
                "--size",
                "128",
                "--duration",
                "60",
                "--warmup",
                "0.2",
                "--quiet",
                "--json",
            ])
            .arg(&json),
    );
    // SIGINT about 1 s into the window: the warm-up's 0.2 s and 1 s more at 500/s.
    let reached = wait_until(Duration::from_secs(20), || {
        received.load(Ordering::SeqCst) >= 600 * 128
    });
    assert!(
        reached,
        "the run never got 1 s in; stderr: {}",
        run.stderr()
    );
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(run.child.id() as libc::pid_t, libc::SIGINT) };
    let done = run.wait(Duration::from_secs(10));
    assert_eq!(done.code(), Some(130), "{}", done.explain());
    assert!(done.elapsed < Duration::from_secs(10), "{}", done.explain());
    let j = read_json(&json);
    assert_eq!(j["interrupted"], true);
    assert_eq!(j["params"]["driver"], d.name());
    let secs = f(&j, "elapsed_s");
    assert!(secs > 0.5 && secs < 5.0, "{j}");
    // About 500/s over what ran.
    let n = u(&j, "messages") as f64;
    assert!(
        (n - 500.0 * secs).abs() < 0.1 * 500.0 * secs + 5.0,
        "{n} messages in {secs} s"
    );
});

// Overload: a rate far above what a thread-per-connection echo server on loopback can
// answer. The achieved rate is messages over the real time from the first intended
// send to the last reply, so it falls far short of the asked one; `rate_kept` is false,
// the summary says so in one line, and `--require-rate` exits 1. A rate the server can
// keep passes the same checks.
driver_test!(overload_is_reported_and_require_rate_fails, |d| {
    let _g = serial();
    let addr = echo_server(Behaviour::default()).to_string();
    let rate = 5_000_000.0;
    let r = load(
        d,
        &[
            "--addr",
            &addr,
            "--conns",
            "20",
            "--rate",
            "5000000",
            "--duration",
            "0.5",
            "--warmup",
            "0",
            "--timeout",
            "2",
            "--require-rate",
        ],
        Duration::from_secs(30),
    );
    println!("{}", r.stdout);
    assert_eq!(r.code(), Some(1), "{}", r.explain());
    let j = r.json();
    assert_eq!(j["rate_kept"], false, "{}", r.explain());
    let achieved = f(j, "msgs_per_s");
    assert!(
        achieved < 0.5 * rate,
        "achieved {achieved} of {rate}\n{}",
        r.explain()
    );
    // The rate is the messages over the real time, which is longer than the schedule.
    let (n, secs) = (u(j, "messages") as f64, f(j, "elapsed_s"));
    assert!(
        (achieved - n / secs).abs() <= 1e-6 * achieved,
        "{}",
        r.explain()
    );
    assert!(
        f(j, "max_lag_s") > f(j, "max_lag_limit_s"),
        "{}",
        r.explain()
    );
    let line: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.contains("RATE NOT KEPT"))
        .collect();
    assert_eq!(line.len(), 1, "{}", r.explain());
    assert!(
        line[0].contains("msgs/s of 5000000 asked") && line[0].contains("max schedule lag"),
        "{}",
        r.explain()
    );
    assert!(r.stderr.contains("RATE NOT KEPT"), "{}", r.explain());

    // The control: a rate the server keeps (a generous lag for this noisy machine).
    let r = load(
        d,
        &[
            "--addr",
            &addr,
            "--conns",
            "10",
            "--rate",
            "1000",
            "--duration",
            "2",
            "--warmup",
            "0.2",
            "--max-lag",
            "0.5",
            "--require-rate",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r.code(), Some(0), "{}", r.explain());
    let j = r.json();
    assert_eq!(j["rate_kept"], true, "{}", r.explain());
    assert!(f(j, "msgs_per_s") >= 990.0, "{}", r.explain());
    assert!(r.stdout.contains("rate kept: achieved"), "{}", r.explain());
});

driver_test!(histogram_files_are_written, |d| {
    let _g = serial();
    let addr = echo_server(Behaviour::default()).to_string();
    let dir = scratch_dir("load-files");
    let hgrm = dir.join("run.hgrm");
    let hlog = dir.join("run.hlog");
    let r = load(
        d,
        &[
            "--addr",
            &addr,
            "--conns",
            "2",
            "--rate",
            "400",
            "--duration",
            "1",
            "--interval",
            "0.5",
            "--warmup",
            "0.2",
            "--quiet",
            "--hgrm",
            hgrm.to_str().unwrap(),
            "--hlog",
            hlog.to_str().unwrap(),
        ],
        Duration::from_secs(15),
    );
    assert_eq!(r.code(), Some(0), "{}", r.explain());
    let c = std::fs::read_to_string(&hgrm).unwrap();
    let un = std::fs::read_to_string(dir.join("run.uncorrected.hgrm")).unwrap();
    for h in [&c, &un] {
        assert!(h.contains("Percentile") && h.contains("#[Max"), "{h}");
        // The 100% line closes the distribution with the total count.
        assert!(
            h.lines()
                .any(|l| l.split_whitespace().nth(1) == Some("1.000000000000")),
            "{h}"
        );
    }
    let log = std::fs::read_to_string(&hlog).unwrap();
    // Java's writer (and ours) may put "#[Logged with ...]" first; the version line follows.
    assert!(
        log.lines()
            .take(3)
            .any(|l| l == "#[Histogram log format version 1.3]"),
        "{log}"
    );
    let corrected = log
        .lines()
        .filter(|l| l.starts_with("Tag=corrected,"))
        .count();
    let uncorrected = log
        .lines()
        .filter(|l| l.starts_with("Tag=uncorrected,"))
        .count();
    assert_eq!((corrected, uncorrected), (2, 2), "{log}");
    let j = r.json();
    let start = f(j, "start_unix_s");
    // Timestamps in the file are relative to its StartTime; read back, they are absolute.
    let parsed =
        ringmux::results::hlog::read_hlog(&mut std::io::BufReader::new(log.as_bytes())).unwrap();
    let first = parsed
        .intervals
        .iter()
        .find(|i| i.tag.as_deref() == Some("corrected"))
        .unwrap()
        .start_unix_s;
    assert!(
        (first - start).abs() < 0.01,
        "interval starts must be absolute once read: {first} vs {start}"
    );
});
