//! Kernel feature detection and the feature ladder. Opcodes come from
//! REGISTER_PROBE; setup-time features from the ring's parameters.

use io_uring::{IoUring, Probe, opcode};
use serde::Serialize;

use crate::server::features::FeatureLevel;
use crate::server::sys::{self, Sys};

// The error type and its hints are shared with the load generator's driver.
pub use crate::os::uring::{Unavailable, setup_hint};
// What a ring set up with: plain data the stats record (it lives beside the levels).
pub use crate::server::features::RingFeatures;

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

/// Setup flags a level asks for; each is tried and, on EINVAL, reported missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetupFlags {
    pub coop_taskrun: bool,
    pub single_issuer: bool,
    pub defer_taskrun: bool,
    /// SQPOLL with this idle time in milliseconds.
    pub sqpoll_idle_ms: Option<u32>,
    /// Completion queue entries (default: 4x the submission queue).
    pub cq_entries: Option<u32>,
    /// IORING_SETUP_NO_SQARRAY (6.6): SQEs taken in ring order, no index array.
    pub no_sqarray: bool,
}

/// Build a ring, halving the size on ENOMEM (a low RLIMIT_MEMLOCK) down to 8 entries.
pub fn build_ring(entries: u32) -> Result<IoUring, Unavailable> {
    build_ring_with(entries, SetupFlags::default())
}

/// [`build_ring`] with setup flags; every io_uring_setup attempt is counted.
pub fn build_ring_with(entries: u32, f: SetupFlags) -> Result<IoUring, Unavailable> {
    crate::os::uring::build_ring_configured(
        entries,
        |b, n| {
            b.setup_cqsize(f.cq_entries.unwrap_or(n.saturating_mul(4)));
            if f.coop_taskrun {
                b.setup_coop_taskrun().setup_taskrun_flag();
            }
            if f.single_issuer {
                b.setup_single_issuer();
            }
            if f.defer_taskrun {
                b.setup_defer_taskrun();
            }
            if let Some(idle) = f.sqpoll_idle_ms {
                b.setup_sqpoll(idle);
            }
            if f.no_sqarray {
                b.setup_no_sqarray();
            }
        },
        || sys::count(Sys::IoUringSetup),
        || {
            if f == SetupFlags::default() {
                "io_uring_setup".to_string()
            } else {
                format!("io_uring_setup with {f:?}")
            }
        },
    )
}

/// What the multishot trial found: `Ok` or why not.
#[derive(Debug, Clone)]
pub struct MultishotTrial {
    pub buf_ring: Result<(), String>,
    pub accept: Result<(), String>,
    pub recv: Result<(), String>,
}

impl MultishotTrial {
    pub fn ok(&self) -> bool {
        self.buf_ring.is_ok() && self.accept.is_ok() && self.recv.is_ok()
    }
}

/// Multishot flags ride on existing opcodes, so REGISTER_PROBE cannot see them: try
/// them once on loopback (a listener on 127.0.0.1:0, one client, one byte) on a small
/// ring of their own. Cached for the process.
pub fn multishot_trial() -> MultishotTrial {
    static TRIAL: std::sync::OnceLock<MultishotTrial> = std::sync::OnceLock::new();
    TRIAL.get_or_init(run_multishot_trial).clone()
}

fn run_multishot_trial() -> MultishotTrial {
    use io_uring::{cqueue, types};
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let no = |why: &str| MultishotTrial {
        buf_ring: Err(why.into()),
        accept: Err(why.into()),
        recv: Err(why.into()),
    };
    let ring = match build_ring(8) {
        Ok(r) => r,
        Err(e) => return no(&e.to_string()),
    };
    if !ring.params().is_feature_ext_arg() {
        return no("kernel older than 5.11 (no FEAT_EXT_ARG), so older than multishot's 5.19/6.0");
    }
    let mut ring = ring;
    let mut out = MultishotTrial {
        buf_ring: Ok(()),
        accept: Err("not tried".into()),
        recv: Err("not tried".into()),
    };
    let bufs = match super::bufs::ProvidedBufs::ring(&ring, 2, 64) {
        Ok(b) => Some(b),
        Err(e) => {
            out.buf_ring = Err(format!(
                "IORING_REGISTER_PBUF_RING failed: {e} (needs Linux 5.19+)"
            ));
            None
        }
    };
    let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:0") else {
        out.accept = Err("cannot bind a loopback listener for the trial".into());
        return out;
    };
    let Ok(addr) = listener.local_addr() else {
        return out;
    };
    // Wait (bounded: 1 s) for one completion with the given user_data.
    let wait_for = |ring: &mut IoUring, ud: u64| -> Option<(i32, u32)> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while std::time::Instant::now() < deadline {
            let ts = types::Timespec::new().nsec(50_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            sys::count(Sys::IoUringEnter);
            let _ = ring.submitter().submit_with_args(1, &args);
            for c in ring.completion() {
                if c.user_data() == ud {
                    return Some((c.result(), c.flags()));
                }
            }
        }
        None
    };
    let accept = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
        .flags(libc::SOCK_CLOEXEC)
        .build()
        .user_data(1);
    // SAFETY: the SQE references only the listener's fd, open until the ring is dropped.
    if unsafe { ring.submission().push(&accept) }.is_err() {
        return out;
    }
    let Ok(mut client) = std::net::TcpStream::connect(addr) else {
        out.accept = Err("loopback connect failed during the trial".into());
        return out;
    };
    let accepted = match wait_for(&mut ring, 1) {
        Some((fd, flags)) if fd >= 0 => {
            out.accept = if cqueue::more(flags) {
                Ok(())
            } else {
                Err("ACCEPT completed without IORING_CQE_F_MORE".into())
            };
            Some(fd)
        }
        Some((e, _)) => {
            out.accept = Err(format!(
                "multishot ACCEPT failed with {} (needs Linux 5.19+)",
                sys::errno_name(-e)
            ));
            None
        }
        None => {
            out.accept = Err("multishot ACCEPT gave no completion within 1 s".into());
            None
        }
    };
    if let (Some(fd), Some(_)) = (accepted, &bufs) {
        let recv = opcode::RecvMulti::new(types::Fd(fd), super::bufs::BGID)
            .build()
            .user_data(2);
        // SAFETY: buffers come from the registered ring `bufs`, dropped after `ring`.
        let pushed = unsafe { ring.submission().push(&recv) }.is_ok();
        if pushed && client.write_all(b"x").is_ok() {
            out.recv = match wait_for(&mut ring, 2) {
                Some((1, flags)) if cqueue::more(flags) => Ok(()),
                Some((1, _)) => Err("RECV completed without IORING_CQE_F_MORE".into()),
                Some((e, _)) if e < 0 => Err(format!(
                    "multishot RECV failed with {} (needs Linux 6.0+)",
                    sys::errno_name(-e)
                )),
                Some((n, _)) => Err(format!("multishot RECV returned {n} bytes for 1")),
                None => Err("multishot RECV gave no completion within 1 s".into()),
            };
        }
    } else if bufs.is_none() {
        out.recv = Err("no buffer ring".into());
    }
    // End both multishot ops before the ring, the socket and the buffers go: shut the
    // accepted socket down (its RECV completes) and cancel the ACCEPT.
    if let Some(fd) = accepted {
        sys::shutdown_rdwr(fd);
    }
    let cancel = opcode::AsyncCancel::new(1).build().user_data(3);
    // SAFETY: a cancel references no memory.
    if unsafe { ring.submission().push(&cancel) }.is_ok() {
        let _ = wait_for(&mut ring, 3);
    }
    drop(ring);
    drop(bufs);
    if let Some(fd) = accepted {
        sys::close(fd);
    }
    drop(client);
    out
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
    let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .map(|s| s.trim().to_string());
    let memlock = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max locked memory"))
                .map(|l| {
                    l.split_whitespace()
                        .skip(3)
                        .take(2)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
        });
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
            detail: if available {
                "REGISTER_PROBE".into()
            } else {
                "not in REGISTER_PROBE".into()
            },
            level: "baseline",
        });
    }
    for (name, code, level) in [
        ("PROVIDE_BUFFERS", opcode::ProvideBuffers::CODE, "fastpoll"),
        ("SHUTDOWN", opcode::Shutdown::CODE, "unused"),
        ("CLOSE", opcode::Close::CODE, "unused"),
        ("SEND_ZC", opcode::SendZc::CODE, "unused"),
    ] {
        let available = probe.as_ref().is_some_and(|p| p.is_supported(code));
        caps.push(Capability {
            name,
            available,
            detail: if available {
                "REGISTER_PROBE".into()
            } else {
                "not in REGISTER_PROBE".into()
            },
            level,
        });
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
    feat(
        "FEAT_NODROP",
        params.map(|p| p.is_feature_nodrop()),
        "baseline",
        "needs Linux 5.5+: CQ overflow may drop completions",
    );
    feat(
        "FEAT_FAST_POLL",
        params.map(|p| p.is_feature_fast_poll()),
        "fastpoll",
        "needs Linux 5.7+",
    );
    feat(
        "FEAT_EXT_ARG",
        params.map(|p| p.is_feature_ext_arg()),
        "multishot",
        "needs Linux 5.11+ (multishot/full then wait for one completion at a time)",
    );
    feat(
        "FEAT_CQE_SKIP",
        params.map(|p| p.is_feature_skip_cqe_on_success()),
        "unused",
        "needs Linux 5.17+",
    );
    feat(
        "FEAT_RECVSEND_BUNDLE",
        params.map(|p| p.is_feature_recvsend_bundle()),
        "multishot",
        "needs Linux 6.10+ (multishot/full then receive one buffer per completion)",
    );
    feat(
        "FEAT_MIN_TIMEOUT",
        params.map(|p| p.is_feature_min_timeout()),
        "full",
        "needs Linux 6.12+ (full then waits for 1 completion at a time)",
    );
    // Multishot flags: a loopback trial. Setup flags: try each, EINVAL means no.
    let have_ring = unavailable.is_none();
    let trial = if have_ring {
        Some(multishot_trial())
    } else {
        None
    };
    let mut tried = |name, r: Option<&Result<(), String>>, level, how: &str| {
        caps.push(Capability {
            name,
            available: matches!(r, Some(Ok(()))),
            detail: match r {
                Some(Ok(())) => how.into(),
                Some(Err(e)) => e.clone(),
                None => "no ring".into(),
            },
            level,
        })
    };
    tried(
        "BUF_RING",
        trial.as_ref().map(|t| &t.buf_ring),
        "multishot",
        "registered on a trial ring",
    );
    tried(
        "MULTISHOT_ACCEPT",
        trial.as_ref().map(|t| &t.accept),
        "multishot",
        "loopback trial",
    );
    tried(
        "MULTISHOT_RECV",
        trial.as_ref().map(|t| &t.recv),
        "multishot",
        "loopback trial",
    );
    let flag_trial = |f: SetupFlags| -> Option<Result<(), String>> {
        have_ring.then(|| build_ring_with(8, f).map(drop).map_err(|e| e.to_string()))
    };
    let coop = flag_trial(SetupFlags {
        coop_taskrun: true,
        ..Default::default()
    });
    let single = flag_trial(SetupFlags {
        single_issuer: true,
        ..Default::default()
    });
    let defer = flag_trial(SetupFlags {
        single_issuer: true,
        defer_taskrun: true,
        ..Default::default()
    });
    let sqpoll = flag_trial(SetupFlags {
        sqpoll_idle_ms: Some(10),
        ..Default::default()
    });
    let no_sqarray = flag_trial(SetupFlags {
        no_sqarray: true,
        ..Default::default()
    });
    let ring_fd = have_ring.then(|| {
        build_ring(8).map_err(|e| e.to_string()).and_then(|r| {
            sys::count(Sys::IoUringRegister);
            r.submitter()
                .register_ring_fd()
                .map(drop)
                .map_err(|e| format!("IORING_REGISTER_RING_FDS failed: {e} (needs Linux 5.18+)"))
        })
    });
    tried(
        "COOP_TASKRUN",
        coop.as_ref(),
        "multishot",
        "setup flag accepted",
    );
    tried(
        "SINGLE_ISSUER",
        single.as_ref(),
        "full",
        "setup flag accepted",
    );
    tried(
        "DEFER_TASKRUN",
        defer.as_ref(),
        "full",
        "setup flag accepted",
    );
    tried("REGISTERED_RING_FD", ring_fd.as_ref(), "full", "registered");
    let files = have_ring.then(|| {
        build_ring(8).map_err(|e| e.to_string()).and_then(|r| {
            sys::count(Sys::IoUringRegister);
            r.submitter().register_files_sparse(8).map_err(|e| {
                format!("sparse IORING_REGISTER_FILES2 failed: {e} (needs Linux 5.19+)")
            })
        })
    });
    tried(
        "REGISTERED_FILES",
        files.as_ref(),
        "multishot",
        "sparse table registered (RECV/SEND by slot)",
    );
    tried(
        "NO_SQARRAY",
        no_sqarray.as_ref(),
        "opt-in",
        "setup flag accepted (serve --no-sqarray, at multishot/full; 6.6+)",
    );
    tried(
        "SQPOLL",
        sqpoll.as_ref(),
        "opt-in",
        "setup flag accepted (serve --sqpoll)",
    );
    let ok = |name: &str| caps.iter().any(|c| c.name == name && c.available);
    let baseline = have_ring && BASELINE_OPS.iter().all(|(n, _)| ok(n));
    let fastpoll = baseline && ok("FEAT_FAST_POLL") && ok("PROVIDE_BUFFERS");
    let multishot = fastpoll
        && ok("BUF_RING")
        && ok("MULTISHOT_ACCEPT")
        && ok("MULTISHOT_RECV")
        && ok("COOP_TASKRUN");
    let full = multishot && ok("SINGLE_ISSUER") && ok("DEFER_TASKRUN");
    let levels = vec![
        (FeatureLevel::Baseline, baseline),
        (FeatureLevel::Fastpoll, fastpoll),
        (FeatureLevel::Multishot, multishot),
        (FeatureLevel::Full, full),
    ];
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
