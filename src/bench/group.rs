//! Every server the bench starts runs in a process group of its own, and stopping it
//! stops the whole group: an `--external` command may be a wrapper script that starts
//! the real server without `exec`, or run it under `strace`, and SIGTERM to the direct
//! child alone then leaves the server behind, still listening, skewing every later run.
//!
//! A group of its own also means a Ctrl-C at the terminal (sent to the bench's group)
//! no longer reaches the server, so the bench stops every live group itself on SIGINT,
//! SIGTERM or SIGHUP ([`stop_groups_on_signal`]) before it exits.
//!
//! The bench is also a child subreaper ([`become_subreaper`]): a group member whose
//! parent died is re-parented to the bench rather than to PID 1 (which in a container
//! may never reap it), so [`stop_group`] can reap it and see the group empty.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What runs now, as kill(2) targets: -pgid for a server's group, pid for a load.
static LIVE: Mutex<Vec<i32>> = Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<i32>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Set once a stopping signal arrived: the bench's own errors from then on (a load
/// that failed because its server was stopped) are not the story.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// After a signal, wait for the handler to finish stopping and exit the process (it
/// does within [`GRACE`] and a little); otherwise return at once.
pub fn wait_if_interrupted() {
    while INTERRUPTED.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True when `pid` is alive (a zombie is not: it runs nothing).
fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.split_whitespace().next());
    state.is_some_and(|s| s != "Z")
}

/// Count `pgid` among the live server groups (stopped on a signal to the bench).
pub fn track(pgid: u32) {
    live().push(-(pgid as i32));
}

/// Count a load process (in the bench's own group) until [`untrack_pid`].
pub fn track_pid(pid: u32) {
    live().push(pid as i32);
}

pub fn untrack_pid(pid: u32) {
    live().retain(|&t| t != pid as i32);
}

/// On SIGINT, SIGTERM or SIGHUP: stop every live server group (TERM, KILL after
/// [`GRACE`]), say so on stderr, and exit 128 + the signal. Without the handler (it
/// cannot be installed) the signal's default applies, as before.
pub fn stop_groups_on_signal() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            INTERRUPTED.store(true, Ordering::SeqCst);
            let targets = live().clone();
            let kill = |t: i32, s: i32| {
                // SAFETY: kill(2) on a process or group this bench started; no memory.
                unsafe { libc::kill(t, s) == 0 }
            };
            for &t in &targets {
                kill(t, libc::SIGTERM);
            }
            // Not reaped here (the main thread waits for its own children): a zombie
            // counts as stopped.
            let running = |t: i32| {
                if t < 0 {
                    !members((-t) as u32).is_empty()
                } else {
                    alive(t)
                }
            };
            let t0 = Instant::now();
            while targets.iter().any(|&t| running(t)) && t0.elapsed() < GRACE {
                std::thread::sleep(Duration::from_millis(10));
            }
            for &t in &targets {
                kill(t, libc::SIGKILL);
            }
            eprintln!(
                "ringmux: bench interrupted (signal {sig}): stopped the {} server group(s) and load process(es) it ran",
                targets.len()
            );
            std::process::exit(128 + sig);
        }
    });
}
/// How long the group has after SIGTERM before SIGKILL.
pub const GRACE: Duration = Duration::from_secs(5);

/// Start `cmd` as the leader of a new process group (pgid = its pid).
pub fn own_group(cmd: &mut Command) -> &mut Command {
    cmd.process_group(0)
}

/// Make this process the reaper of its orphaned descendants (Linux 3.4+). Failure only
/// means orphans go to PID 1; the group is still stopped.
pub fn become_subreaper() {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes an integer and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// The pids whose process group is `pgid` (from /proc/PID/stat, field 5).
pub fn members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // After the ")" of the command name: state, ppid, pgrp.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let mut f = rest.split_whitespace();
            // A zombie still holds its pgid until reaped; it runs nothing.
            let state = f.next();
            state != Some("Z") && f.nth(1).and_then(|g| g.parse().ok()) == Some(pgid)
        })
        .collect()
}

/// Send `sig` to every process of group `pgid`; false when the group is empty.
fn signal_group(pgid: u32, sig: i32) -> bool {
    // SAFETY: kill(2) with a negative pid signals the group we created; no memory.
    unsafe { libc::kill(-(pgid as i32), sig) == 0 }
}

/// Reap what has exited: the child, and group members re-parented to us.
fn reap(child: &mut Child, pgid: u32) {
    let _ = child.try_wait();
    reap_group(pgid);
}

/// Reap the exited members of group `pgid` that are our children.
fn reap_group(pgid: u32) {
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own children with a local status word.
        let r = unsafe { libc::waitpid(-(pgid as i32), &mut status, libc::WNOHANG) };
        if r <= 0 {
            break;
        }
    }
}

/// Wait until the child has exited and no live process is left in its group, reaping.
fn wait_empty(child: &mut Child, pgid: u32, limit: Duration) -> bool {
    let t0 = Instant::now();
    loop {
        reap(child, pgid);
        let child_done = !matches!(child.try_wait(), Ok(None));
        if child_done && members(pgid).is_empty() {
            return true;
        }
        if t0.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Stop the group `child` leads: SIGTERM to every member, SIGKILL after `grace` to
/// whatever is left. Returns the pids still alive after that (empty when all is gone).
pub fn stop_group(child: &mut Child, grace: Duration) -> Vec<u32> {
    let pgid = child.id();
    live().retain(|&t| t != -(pgid as i32));
    if !signal_group(pgid, libc::SIGTERM) && !matches!(child.try_wait(), Ok(None)) {
        return Vec::new();
    }
    if wait_empty(child, pgid, grace) {
        return Vec::new();
    }
    signal_group(pgid, libc::SIGKILL);
    wait_empty(child, pgid, Duration::from_secs(2));
    let _ = child.kill();
    let _ = child.wait();
    members(pgid)
}

/// Wait (at most `limit`) until nothing accepts on `addr`; an error naming the port
/// when something still does (a process that left the group, e.g. with setsid).
pub fn wait_port_free(addr: SocketAddr, limit: Duration) -> io::Result<()> {
    let t0 = Instant::now();
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Err(_) => return Ok(()),
            Ok(_) if t0.elapsed() > limit => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "{addr} still accepts connections after its server was stopped: a process outside the server's process group (started with setsid or as a daemon?) is left over"
                    ),
                ));
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    /// A shell that starts a grandchild without exec (and ignores TERM in the shell):
    /// the whole group is gone after stop_group.
    #[test]
    fn stops_a_wrapper_and_its_grandchild() {
        let mut c = Command::new("sh");
        c.args(["-c", "trap '' TERM; sleep 30 & sleep 30; wait"])
            .stdin(Stdio::null());
        own_group(&mut c);
        let mut child = c.spawn().unwrap();
        let pgid = child.id();
        let t0 = Instant::now();
        while members(pgid).len() < 3 && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(members(pgid).len() >= 3, "{:?}", members(pgid));
        let left = stop_group(&mut child, Duration::from_millis(300));
        assert!(left.is_empty(), "left over: {left:?}");
        assert!(members(pgid).is_empty(), "{:?}", members(pgid));
    }
}
