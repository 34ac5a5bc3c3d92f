//! Kernel feature detection and the feature ladder. Opcodes come from
//! REGISTER_PROBE; setup-time features from the ring's parameters.

use std::fmt;
use std::io;

use io_uring::{IoUring, Probe, opcode};
use serde::Serialize;

use crate::cli::FeatureLevel;
use crate::server::sys::{self, Sys};

/// Why io_uring cannot be used here, with the fix to print.
#[derive(Debug, Clone, Serialize)]
pub struct Unavailable {
    /// errno of the failing call, when one failed.
    pub errno: Option<i32>,
    pub what: String,
    pub hint: String,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errno {
            Some(e) => write!(
                f,
                "io_uring unavailable: {} failed with {} ({}): {}",
                self.what,
                sys::errno_name(e),
                io::Error::from_raw_os_error(e).to_string().split(" (os error").next().unwrap_or(""),
                self.hint
            ),
            None => write!(f, "io_uring unavailable: {}: {}", self.what, self.hint),
        }
    }
}

impl std::error::Error for Unavailable {}

/// The hint for an io_uring_setup errno (REFERENCE.md section 2).
pub fn setup_hint(errno: i32) -> String {
    match errno {
        libc::ENOSYS => "this kernel has no io_uring; ringmux needs Linux 5.6+ built with CONFIG_IO_URING".into(),
        libc::EPERM => "io_uring is disabled by sysctl kernel.io_uring_disabled (1 or 2) or blocked by a seccomp profile \
                        (Docker's default blocks it); fix: `sysctl -w kernel.io_uring_disabled=0`, or run with a seccomp \
                        profile that allows io_uring_setup/io_uring_enter/io_uring_register"
            .into(),
        libc::ENOMEM => "RLIMIT_MEMLOCK is too low for the ring even at 8 entries; fix: raise it (`ulimit -l 65536`, \
                         or LimitMEMLOCK= in a systemd unit)"
            .into(),
        libc::EINVAL => "the kernel rejected the ring parameters (kernel older than 5.6?); fix: upgrade the kernel".into(),
        _ => "unexpected error from io_uring_setup".into(),
    }
}

/// One capability ringmux may use, and whether this kernel has it.
#[derive(Debug, Clone, Serialize)]
pub struct Capability {
    pub name: &'static str,
    pub available: bool,
    /// Why not (or how it was detected).
    pub detail: String,
    /// The feature level that needs it.
    pub level: &'static str,
}

/// Opcodes every level needs (the 5.6 floor).
pub const BASELINE_OPS: [(&str, u8); 6] = [
    ("ACCEPT", opcode::Accept::CODE),
    ("RECV", opcode::Recv::CODE),
    ("SEND", opcode::Send::CODE),
    ("POLL_ADD", opcode::PollAdd::CODE),
    ("ASYNC_CANCEL", opcode::AsyncCancel::CODE),
    ("TIMEOUT", opcode::Timeout::CODE),
];

/// Build a ring, halving the size on ENOMEM (a low RLIMIT_MEMLOCK) down to 8 entries.
pub fn build_ring(entries: u32) -> Result<IoUring, Unavailable> {
    let mut n = entries.max(8);
    loop {
        sys::count(Sys::IoUringSetup);
        match IoUring::builder().setup_cqsize(n.saturating_mul(4)).build(n) {
            Ok(r) => return Ok(r),
            Err(e) => {
                let code = e.raw_os_error().unwrap_or(0);
                if code == libc::ENOMEM && n > 8 {
                    n /= 2;
                    continue;
                }
                return Err(Unavailable { errno: Some(code), what: "io_uring_setup".into(), hint: setup_hint(code) });
            }
        }
    }
}

/// Opcode support via REGISTER_PROBE (Linux 5.6+).
pub fn probe_ops(ring: &IoUring) -> Result<Probe, Unavailable> {
    let mut p = Probe::new();
    sys::count(Sys::IoUringRegister);
    ring.submitter().register_probe(&mut p).map_err(|e| {
        let code = e.raw_os_error().unwrap_or(0);
        Unavailable {
            errno: Some(code),
            what: "io_uring_register(REGISTER_PROBE)".into(),
            hint: "the kernel is older than 5.6, ringmux's floor; fix: upgrade the kernel".into(),
        }
    })?;
    Ok(p)
}

/// Everything `ringmux probe` reports.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub kernel: String,
    pub io_uring_available: bool,
    pub unavailable: Option<Unavailable>,
    pub io_uring_disabled_sysctl: Option<String>,
    pub memlock_limit: Option<String>,
    pub capabilities: Vec<Capability>,
    /// The level `--uring-features auto` picks.
    pub best_level: Option<FeatureLevel>,
    pub levels: Vec<(FeatureLevel, bool)>,
}

pub fn probe() -> ProbeReport {
    let kernel = crate::sysinfo::kernel_release();
    let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok().map(|s| s.trim().to_string());
    let memlock = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Max locked memory")).map(|l| l.split_whitespace().skip(3).take(2).collect::<Vec<_>>().join(" ")));
    let mut caps = Vec::new();
    let ring = build_ring(64);
    let (probe, unavailable) = match &ring {
        Ok(r) => match probe_ops(r) {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e)),
        },
        Err(e) => (None, Some(e.clone())),
    };
    for (name, code) in BASELINE_OPS {
        let available = probe.as_ref().is_some_and(|p| p.is_supported(code));
        caps.push(Capability {
            name,
            available,
            detail: if available { "REGISTER_PROBE".into() } else { "not in REGISTER_PROBE".into() },
            level: "baseline",
        });
    }
    for (name, code, level) in [
        ("SHUTDOWN", opcode::Shutdown::CODE, "later"),
        ("CLOSE", opcode::Close::CODE, "later"),
        ("PROVIDE_BUFFERS", opcode::ProvideBuffers::CODE, "later"),
        ("SEND_ZC", opcode::SendZc::CODE, "later"),
    ] {
        let available = probe.as_ref().is_some_and(|p| p.is_supported(code));
        caps.push(Capability { name, available, detail: if available { "REGISTER_PROBE".into() } else { "not in REGISTER_PROBE".into() }, level });
    }
    let params = ring.as_ref().ok().map(|r| r.params());
    let mut feat = |name, yes: Option<bool>, level, why_not: &str| {
        caps.push(Capability {
            name,
            available: yes.unwrap_or(false),
            detail: match yes {
                Some(true) => "ring features".into(),
                Some(false) => why_not.into(),
                None => "no ring".into(),
            },
            level,
        })
    };
    feat("FEAT_NODROP", params.map(|p| p.is_feature_nodrop()), "baseline", "needs Linux 5.5+: CQ overflow may drop completions");
    feat("FEAT_FAST_POLL", params.map(|p| p.is_feature_fast_poll()), "fastpoll", "needs Linux 5.7+");
    feat("FEAT_EXT_ARG", params.map(|p| p.is_feature_ext_arg()), "later", "needs Linux 5.11+");
    feat("FEAT_CQE_SKIP", params.map(|p| p.is_feature_skip_cqe_on_success()), "later", "needs Linux 5.17+");
    let ok = |name: &str| caps.iter().any(|c| c.name == name && c.available);
    let baseline = unavailable.is_none() && BASELINE_OPS.iter().all(|(n, _)| ok(n));
    let fastpoll = baseline && ok("FEAT_FAST_POLL");
    let levels = vec![(FeatureLevel::Baseline, baseline), (FeatureLevel::Fastpoll, fastpoll)];
    let best_level = levels.iter().rev().find(|(_, y)| *y).map(|(l, _)| *l);
    ProbeReport {
        kernel,
        io_uring_available: unavailable.is_none(),
        unavailable,
        io_uring_disabled_sysctl: sysctl,
        memlock_limit: memlock,
        capabilities: caps,
        best_level,
        levels,
    }
}
