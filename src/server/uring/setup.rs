//! Setting up a ring at a feature level: the one pinned, or with `auto` the best that
//! sets up here, stepping down a level whenever a flag or registration is refused.

use super::*;

/// A ring that was set up with what the chosen level needs.
pub struct Ring {
    // Field order is drop order: the ring goes before the buffers it may write into.
    pub(super) ring: IoUring,
    pub(super) bufs: Option<ProvidedBufs>,
    /// The PROVIDE_BUFFERS SQEs that hand a legacy group to the kernel (fastpoll).
    pub(super) provide: Vec<squeue::Entry>,
    pub features: RingFeatures,
}

/// The most slots the registered file table gets.
const FILE_TABLE_MAX: u64 = 1 << 16;

/// A sparse registered file table for the connections (IORING_RSRC_REGISTER_SPARSE,
/// 5.19): as many slots as connections may be open (`--max-conns`, RLIMIT_NOFILE), up
/// to `FILE_TABLE_MAX`. Returns its size, 0 when the kernel refused it.
fn register_file_table(ring: &IoUring, cfg: &ServerConfig) -> u32 {
    let nofile = crate::os::nofile_limit().map_or(1024, |l| l.soft);
    let want = cfg
        .max_conns
        .map_or(FILE_TABLE_MAX, |m| m as u64)
        .min(nofile)
        .min(FILE_TABLE_MAX) as u32;
    sys::count(Sys::IoUringRegister);
    match ring.submitter().register_files_sparse(want) {
        Ok(()) => want,
        Err(_) => 0,
    }
}

fn unavailable(what: impl Into<String>, hint: impl Into<String>) -> Unavailable {
    Unavailable {
        errno: None,
        what: what.into(),
        hint: hint.into(),
    }
}

impl Ring {
    /// Set up the ring, check the opcodes, pick the feature level: the one pinned by
    /// `--uring-features`, or with `auto` the best that sets up here, stepping down a
    /// level whenever a flag or registration is refused.
    pub fn setup(cfg: &ServerConfig) -> Result<Ring, Unavailable> {
        let basic = probe::build_ring_with(
            cfg.ring_entries,
            SetupFlags {
                cq_entries: cfg.cq_entries,
                ..SetupFlags::default()
            },
        )?;
        let p = probe::probe_ops(&basic)?;
        if let Some((name, _)) = probe::BASELINE_OPS
            .iter()
            .find(|(_, code)| !p.is_supported(*code))
        {
            return Err(unavailable(
                format!("opcode {name} is missing"),
                "ringmux needs Linux 5.6+ (ACCEPT, RECV, SEND, POLL_ADD, ASYNC_CANCEL, TIMEOUT); fix: upgrade the kernel",
            ));
        }
        let fast_poll =
            basic.params().is_feature_fast_poll() && p.is_supported(opcode::ProvideBuffers::CODE);
        let pinned = cfg.features.pinned();
        let top = pinned.unwrap_or(FeatureLevel::Full);
        let mut basic = Some(basic);
        let mut last_err = None;
        let mut passed_over: Vec<&str> = Vec::new();
        let mut first_reason = None;
        for level in [
            FeatureLevel::Full,
            FeatureLevel::Multishot,
            FeatureLevel::Fastpoll,
            FeatureLevel::Baseline,
        ] {
            if level > top || (pinned.is_some() && Some(level) != pinned) {
                continue;
            }
            match Ring::try_level(cfg, level, fast_poll, &mut basic) {
                Ok(r) => {
                    if !passed_over.is_empty() && !cfg.quiet {
                        // `auto` stepped down: say from where and why, once.
                        eprintln!(
                            "ringmux: note: io_uring level {} not used ({}); running at {}",
                            passed_over.join(", "),
                            first_reason.unwrap_or_default(),
                            level.name()
                        );
                    }
                    return Ok(r);
                }
                Err(e) => {
                    passed_over.push(level.name());
                    first_reason.get_or_insert_with(|| e.to_string());
                    last_err = Some(e)
                }
            }
        }
        Err(last_err.unwrap_or_else(|| unavailable("io_uring setup", "no level could be set up")))
    }

    fn try_level(
        cfg: &ServerConfig,
        level: FeatureLevel,
        fast_poll: bool,
        basic: &mut Option<IoUring>,
    ) -> Result<Ring, Unavailable> {
        let name = level.name();
        if level >= FeatureLevel::Fastpoll && !fast_poll {
            return Err(unavailable(
                format!("--uring-features {name} needs IORING_FEAT_FAST_POLL and PROVIDE_BUFFERS"),
                "this kernel lacks them (needs Linux 5.7+); use --uring-features baseline",
            ));
        }
        if level >= FeatureLevel::Multishot {
            let t = probe::multishot_trial();
            if let Some(why) = [&t.buf_ring, &t.accept, &t.recv]
                .into_iter()
                .find_map(|r| r.as_ref().err())
            {
                return Err(unavailable(
                    format!("--uring-features {name} needs multishot ACCEPT/RECV and buffer rings"),
                    format!("{why}; use --uring-features fastpoll"),
                ));
            }
        }
        let sqpoll_idle_ms = cfg.sqpoll.then_some(SQPOLL_IDLE_MS);
        let multishot = level >= FeatureLevel::Multishot;
        let mut flags = SetupFlags {
            coop_taskrun: level == FeatureLevel::Multishot,
            single_issuer: level == FeatureLevel::Full,
            // DEFER_TASKRUN and SQPOLL exclude each other (the SQ thread is the issuer).
            defer_taskrun: level == FeatureLevel::Full && cfg.defer_taskrun && !cfg.sqpoll,
            sqpoll_idle_ms,
            cq_entries: cfg.cq_entries,
            no_sqarray: multishot && cfg.no_sqarray,
        };
        let plain = SetupFlags {
            cq_entries: cfg.cq_entries,
            ..SetupFlags::default()
        };
        let ring = match (flags == plain, basic.take()) {
            (true, Some(r)) => r,
            (_, b) => {
                *basic = b;
                // NO_SQARRAY is an option, not a level's need: a kernel before 6.6
                // refuses it (EINVAL), and the ring is set up without it.
                let first = probe::build_ring_with(cfg.ring_entries, flags);
                let retry = first.is_err() && flags.no_sqarray;
                if retry {
                    flags.no_sqarray = false;
                }
                let built = if retry {
                    probe::build_ring_with(cfg.ring_entries, flags)
                } else {
                    first
                };
                built.map_err(|mut e| {
                    e.hint = format!(
                        "{}; the kernel refused the setup flags for --uring-features {name}",
                        e.hint
                    );
                    e
                })?
            }
        };
        // The ring fd is registered by the loop's own thread (the table is per thread):
        // see `run`.
        let registered_ring_fd = false;
        let mut provide = Vec::new();
        let bufs = match level {
            FeatureLevel::Baseline => None,
            FeatureLevel::Fastpoll => {
                let (b, e) = ProvidedBufs::legacy(cfg.buf_entries, cfg.recv_buf);
                provide = e;
                Some(b)
            }
            FeatureLevel::Multishot | FeatureLevel::Full => Some(
                ProvidedBufs::ring(&ring, cfg.buf_entries, cfg.recv_buf).map_err(|e| {
                    Unavailable {
                        errno: e.raw_os_error(),
                        what: "IORING_REGISTER_PBUF_RING".into(),
                        hint: format!(
                            "cannot register {} buffers of {} bytes; use --uring-features fastpoll",
                            cfg.buf_entries, cfg.recv_buf
                        ),
                    }
                })?,
            ),
        };
        let min_wait = level == FeatureLevel::Full && ring.params().is_feature_min_timeout();
        // A wait for the queued sends plus one needs a bound (EXT_ARG, 5.11): a SEND that
        // does not complete inside the enter must not hold the loop. Not with SQPOLL,
        // whose kernel thread submits: its sends never complete inside our enter.
        let counted_wait = multishot
            && !cfg.sqpoll
            && cfg.uring_wait != WaitMode::Single
            && ring.params().is_feature_ext_arg();
        let registered_files = if multishot && cfg.register_files {
            register_file_table(&ring, cfg)
        } else {
            0
        };
        let features = RingFeatures {
            level,
            registered_files,
            min_wait,
            counted_wait,
            wait: if min_wait || counted_wait {
                cfg.uring_wait.name()
            } else {
                WaitMode::Single.name()
            },
            recv_buffers: match level {
                FeatureLevel::Baseline => "pooled",
                FeatureLevel::Fastpoll => "provide_buffers",
                _ => "buf_ring",
            },
            buf_entries: if level == FeatureLevel::Baseline {
                0
            } else {
                cfg.buf_entries
            },
            multishot_accept: multishot && cfg.multishot_accept,
            // Chat: a multishot RECV brings a whole burst per turn, and each byte of it is
            // multiplied by the number of receivers before any send runs (1 GB of outboxes
            // at 100 clients); one-shot RECVs let the fan-out pace the senders.
            multishot_recv: multishot && cfg.proto != Proto::Chat,
            recv_bundles: multishot
                && cfg.proto != Proto::Chat
                && cfg.recv_bundles
                && ring.params().is_feature_recvsend_bundle(),
            no_sqarray: flags.no_sqarray,
            coop_taskrun: flags.coop_taskrun,
            single_issuer: flags.single_issuer,
            defer_taskrun: flags.defer_taskrun,
            registered_ring_fd,
            sqpoll: cfg.sqpoll,
            sq_entries: ring.params().sq_entries(),
            cq_entries: ring.params().cq_entries(),
        };
        Ok(Ring {
            ring,
            bufs,
            provide,
            features,
        })
    }
}
