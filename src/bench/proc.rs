//! The processes of a run: a server started fresh (pinned, on a free port, in its own
//! process group, waited for until it listens, stopped as a group: [`super::group`]), `ringmux load` processes (pinned apart,
//! bounded in time), and the server's counters at an instant: from /proc for any
//! server, from a SIGUSR1 stats snapshot for ringmux.

use std::fs;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::group;
use super::plan::{LEVEL_MODS, Plan, Shape};
use super::spec::ServerSpec;
use crate::results::schema::LoadResult;

/// Pin the child to `cpus` between fork and exec.
pub fn pinned(mut cmd: Command, cpus: Option<Vec<usize>>) -> Command {
    if let Some(cpus) = cpus {
        // SAFETY: the closure runs in the forked child before exec and only calls
        // sched_setaffinity on a stack-local cpu_set_t (it allocates nothing).
        unsafe {
            cmd.pre_exec(move || crate::os::pin_current_thread_to(&cpus));
        }
    }
    cmd
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Raise this process's open-file limit (servers started later inherit it); one clear
/// error if even the hard limit is below `need`.
pub fn ensure_nofile(need: u64) -> anyhow::Result<()> {
    let lim = crate::os::raise_nofile_limit().context("cannot read RLIMIT_NOFILE")?;
    if lim.soft < need {
        bail!(
            "needs about {need} open files in the bench and in each server, but RLIMIT_NOFILE allows {} (hard limit {}); \
             raise it (`ulimit -n {need}` as root, or LimitNOFILE=) or ask for fewer connections",
            lim.soft,
            lim.hard
        );
    }
    Ok(())
}

/// Server-side counters at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub cpu_s: f64,
    pub ctx: u64,
    pub syscalls: Option<u64>,
}

/// CPU seconds (user + system, all threads) of a process; 0 when the process is gone.
///
/// The sum of its live threads' on-CPU time from /proc/PID/task/TID/schedstat, in ns:
/// /proc/PID/stat counts in clock ticks (10 ms), about 7% of a one-second run at 15%
/// busy. A thread that exited is no longer in the sum, so where the whole group's
/// tick count is larger (threads came and went) that count is taken instead.
pub fn proc_cpu_s(pid: u32) -> f64 {
    let ticks = stat_cpu_s(pid);
    match schedstat_cpu_s(pid) {
        Some(ns) if ns + 0.01 >= ticks => ns,
        _ => ticks,
    }
}

/// The sum of the live threads' on-CPU seconds (schedstat's first field, ns); None
/// where the kernel has no schedstat (CONFIG_SCHED_INFO off) or the process is gone.
fn schedstat_cpu_s(pid: u32) -> Option<f64> {
    let mut ns = 0u64;
    let mut any = false;
    for t in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let s = fs::read_to_string(t.path().join("schedstat")).ok()?;
        ns += s.split_whitespace().next()?.parse::<u64>().ok()?;
        any = true;
    }
    any.then_some(ns as f64 / 1e9)
}

/// CPU seconds of the whole thread group from /proc/PID/stat (utime + stime), at the
/// clock-tick resolution (10 ms); 0 when the process is gone.
fn stat_cpu_s(pid: u32) -> f64 {
    let tck = {
        // SAFETY: sysconf has no memory-safety preconditions.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if t > 0 { t as f64 } else { 100.0 }
    };
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" of the command name: state is field 3; utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(14) + ticks(15)) / tck
}

/// CPU seconds and context switches of a process (all threads) from /proc.
pub fn proc_counters(pid: u32) -> Counters {
    let cpu_s = proc_cpu_s(pid);
    let mut ctx = 0;
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let s = fs::read_to_string(t.path().join("status")).unwrap_or_default();
            for l in s.lines() {
                if l.starts_with("voluntary_ctxt_switches")
                    || l.starts_with("nonvoluntary_ctxt_switches")
                {
                    ctx += l
                        .split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
    }
    Counters {
        cpu_s,
        ctx,
        syscalls: None,
    }
}

/// CPU seconds and context switches of every live process in group `pgid` (an external
/// command's wrapper shell and the server it started, strace and its tracee): what a
/// process that exited took is no longer counted, so a wrapper should not do the work.
pub fn group_counters(pgid: u32) -> Counters {
    group::members(pgid)
        .into_iter()
        .map(proc_counters)
        .fold(Counters::default(), |a, c| Counters {
            cpu_s: a.cpu_s + c.cpu_s,
            ctx: a.ctx + c.ctx,
            syscalls: None,
        })
}

/// Resident memory of a process, KiB (/proc/PID/status).
#[derive(Debug, Clone, Copy)]
pub struct Rss {
    pub vm_kib: u64,
    pub anon_kib: u64,
}

impl Rss {
    pub fn of(pid: u32) -> anyhow::Result<Rss> {
        let path = format!("/proc/{pid}/status");
        let s = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            s.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .with_context(|| format!("{path} has no {name} (has the server exited?)"))
        };
        Ok(Rss {
            vm_kib: field("VmRSS:")?,
            anon_kib: field("RssAnon:")?,
        })
    }
}

/// ringmux's own counters via a SIGUSR1 snapshot (µs CPU resolution, syscalls).
fn ringmux_counters(pid: u32, stats: &Path) -> anyhow::Result<Counters> {
    let j = stats_snapshot(pid, stats)?;
    let f = |k: &str| j[k].as_f64().unwrap_or(0.0);
    Ok(Counters {
        cpu_s: f("cpu_user_s") + f("cpu_sys_s"),
        ctx: (f("ctx_voluntary") + f("ctx_involuntary")) as u64,
        syscalls: j["syscalls_total"].as_u64(),
    })
}

/// Ask a ringmux server for a stats snapshot (SIGUSR1) and read it.
pub fn stats_snapshot(pid: u32, stats: &Path) -> anyhow::Result<serde_json::Value> {
    let _ = fs::remove_file(stats);
    // SAFETY: kill(2) on the server process we spawned.
    unsafe { libc::kill(pid as i32, libc::SIGUSR1) };
    let t0 = Instant::now();
    loop {
        if let Ok(b) = fs::read(stats) {
            return Ok(serde_json::from_slice(&b)?);
        }
        if t0.elapsed() > Duration::from_secs(5) {
            bail!("server wrote no stats snapshot within 5 s of SIGUSR1");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A server of the matrix, listening, leader of its own process group; [`stop`] it
/// (the whole group: SIGTERM, then SIGKILL after 5 s; then its port must be free), or
/// dropping it stops the group all the same.
///
/// [`stop`]: RunningServer::stop
pub struct RunningServer {
    pub child: Child,
    pub addr: SocketAddr,
    /// ringmux: its `--json` stats file, rewritten on every SIGUSR1.
    pub stats: Option<PathBuf>,
}

impl RunningServer {
    /// The server's counters now: ringmux's own, else from /proc.
    pub fn counters(&self) -> anyhow::Result<Counters> {
        match &self.stats {
            Some(p) => ringmux_counters(self.child.id(), p),
            None => Ok(group_counters(self.child.id())),
        }
    }

    /// The io_uring features the server runs with, as its last stats snapshot names
    /// them (ringmux's uring backend; None for the others).
    pub fn uring_features(&self, spec: &ServerSpec) -> anyhow::Result<Option<String>> {
        match &self.stats {
            Some(p) if spec.is_uring() => {
                let j: serde_json::Value = serde_json::from_slice(&fs::read(p)?)?;
                Ok(j["features"].as_str().map(str::to_string))
            }
            _ => Ok(None),
        }
    }
}

impl RunningServer {
    /// Stop the server's whole process group (SIGTERM, SIGKILL after [`group::GRACE`])
    /// and check its port is free: an error names what outlived it.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let left = group::stop_group(&mut self.child, group::GRACE);
        anyhow::ensure!(
            left.is_empty(),
            "server on {} left processes {left:?} alive after SIGKILL",
            self.addr
        );
        group::wait_port_free(self.addr, Duration::from_secs(5))?;
        Ok(())
    }
}

impl Drop for RunningServer {
    /// The fallback (an error unwound past it): stop the group, report nothing.
    fn drop(&mut self) {
        group::stop_group(&mut self.child, group::GRACE);
    }
}

/// Start `spec` on a free loopback port, pinned to the plan's server CPUs, and wait
/// (at most 10 s) until it accepts a connection.
pub fn start_server(plan: &Plan, spec: &ServerSpec, stem: &str) -> anyhow::Result<RunningServer> {
    let port = free_port()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let (cmd, stats) = match spec {
        ServerSpec::Ringmux {
            backend,
            level,
            base,
        } => {
            let stats = plan.out.join("runs").join(format!("{stem}.server.json"));
            let mut c = Command::new(base.as_ref().unwrap_or(&plan.exe));
            c.args([
                "serve",
                "--quiet",
                "--addr",
                &addr.to_string(),
                "--backend",
                backend,
                "--proto",
                plan.cfg.proto.name(),
                "--json",
            ])
            .arg(&stats);
            if let Some(l) = level {
                let mut parts = l.split('+');
                c.args(["--uring-features", parts.next().unwrap_or("auto")]);
                for m in parts {
                    if let Some((_, flag)) = LEVEL_MODS.iter().find(|(k, _)| *k == m) {
                        c.arg(flag);
                    }
                }
            }
            if plan.cfg.server_threads > 1 {
                c.args(["--threads", &plan.cfg.server_threads.to_string()]);
                if let Some(cpus) = &plan.server_cpus {
                    c.args(["--cpus", &crate::os::cpus::format_cpu_list(cpus)]);
                }
            }
            (c, Some(stats))
        }
        ServerSpec::External { cmd, .. } => {
            let mut c = Command::new("sh");
            c.args([
                "-c",
                &format!("exec {}", cmd.replace("{addr}", &addr.to_string())),
            ]);
            (c, None)
        }
    };
    let mut cmd = pinned(cmd, plan.server_cpus.clone());
    group::own_group(&mut cmd);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", spec.name()))?;
    group::track(child.id());
    let mut srv = RunningServer { child, addr, stats };
    let t0 = Instant::now();
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(srv);
        }
        if let Ok(Some(st)) = srv.child.try_wait() {
            bail!("{} exited ({st}) before listening on {addr}", spec.name());
        }
        if t0.elapsed() > Duration::from_secs(10) {
            bail!("{} did not listen on {addr} within 10 s", spec.name());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ringmux load` against `addr` in `shape` for `duration` seconds (no warm-up of its
/// own), pinned to the plan's load CPUs with one thread on each (at most one per
/// connection).
pub fn load_cmd(
    plan: &Plan,
    addr: SocketAddr,
    shape: &Shape,
    rate: Option<f64>,
    duration: f64,
) -> Command {
    let mut c = Command::new(&plan.exe);
    let threads = plan
        .load_cpus
        .as_ref()
        .map_or(1, |l| l.len().min(shape.conns as usize).max(1));
    c.args([
        "load",
        "--quiet",
        "--allow-errors",
        "--addr",
        &addr.to_string(),
    ])
    .args([
        "--conns",
        &shape.conns.to_string(),
        "--size",
        &plan.cfg.size.to_string(),
        "--proto",
        plan.cfg.proto.name(),
    ])
    .args([
        "--pipeline",
        &shape.pipeline.to_string(),
        "--duration",
        &duration.to_string(),
        "--warmup",
        "0",
    ])
    .args(["--threads", &threads.to_string()]);
    if let Some(r) = rate {
        c.args(["--rate", &r.to_string()]);
    }
    pinned(c, plan.load_cpus.clone())
}

/// CPU seconds of the children waited for so far (the load processes and servers).
pub fn children_cpu_s() -> f64 {
    let u = crate::os::usage_of(libc::RUSAGE_CHILDREN);
    u.user_s + u.sys_s
}

/// Run a load process to its end, within `limit`; its stderr in the error when it fails.
pub fn wait_load(c: Command, what: &str, limit: Duration) -> anyhow::Result<()> {
    wait_load_watching(c, what, limit, Duration::from_millis(10), || {})
}

/// [`wait_load`], calling `watch` every `every` while the load runs.
pub fn wait_load_watching(
    mut c: Command,
    what: &str,
    limit: Duration,
    every: Duration,
    mut watch: impl FnMut(),
) -> anyhow::Result<()> {
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start ringmux load")?;
    group::track_pid(child.id());
    let r = watch_load(&mut child, what, limit, every, &mut watch);
    group::untrack_pid(child.id());
    r
}

fn watch_load(
    child: &mut Child,
    what: &str,
    limit: Duration,
    every: Duration,
    watch: &mut impl FnMut(),
) -> anyhow::Result<()> {
    let t0 = Instant::now();
    loop {
        watch();
        if let Some(st) = child.try_wait()? {
            if !st.success() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = io::Read::read_to_string(&mut e, &mut err);
                }
                bail!("{what} failed ({st}): {}", err.trim());
            }
            return Ok(());
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(every);
    }
}

/// The result a load process wrote (`load --json`).
pub fn read_load_result(json: &Path) -> anyhow::Result<LoadResult> {
    serde_json::from_slice(
        &fs::read(json).with_context(|| format!("load wrote no {}", json.display()))?,
    )
    .with_context(|| format!("{} is not a load result", json.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_of_self() {
        let r = Rss::of(std::process::id()).unwrap();
        assert!(
            r.vm_kib > 0 && r.anon_kib > 0 && r.anon_kib <= r.vm_kib,
            "{r:?}"
        );
    }

    #[test]
    fn cpu_of_a_process_is_finer_than_a_tick() {
        let pid = std::process::id();
        if schedstat_cpu_s(pid).is_none() {
            return; // no schedstat in this kernel: the tick count is all there is
        }
        // Spin until 3 ms of this thread's CPU have passed (its own clock), then the
        // process's figure must have grown by about that, not by 0 or a 10 ms tick.
        let thread_cpu = || {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `ts` is a valid timespec for the call to fill.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
        };
        let a = proc_cpu_s(pid);
        let t0 = thread_cpu();
        while thread_cpu() - t0 < 0.003 {}
        let d = proc_cpu_s(pid) - a;
        // Other test threads may run meanwhile: only a lower bound and a finite step.
        assert!(d >= 0.0029, "{d} s for 3 ms of CPU");
        // In ns, not whole 10 ms ticks (a tick count always is a multiple).
        let ns = (proc_cpu_s(pid) * 1e9).round() as u64;
        assert_ne!(ns % 10_000_000, 0, "{ns} ns is a whole number of ticks");
        assert_eq!(
            proc_cpu_s(0x7fff_fff0),
            0.0,
            "a process that does not exist"
        );
    }
}
