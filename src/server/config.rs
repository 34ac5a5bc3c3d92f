//! What a server is asked to be: the validated [`ServerConfig`] (resolved types, no
//! clap arguments), the one list of backends ([`BackendChoice`], [`Backend`]), and the
//! CPU plan of `--pin`/`--cpus`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use super::fault;
use super::features::{FeatureChoice, FeatureLevel, WaitMode};
use crate::os::cpus::{format_cpu_list, parse_cpu_list};
use crate::proto::Proto;

/// A validated server configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen (port 0: any free port).
    pub addr: SocketAddr,
    /// The IO model asked for (`auto` and `uring` are resolved by setting up a ring).
    pub backend: BackendChoice,
    /// The io_uring feature level asked for (`--uring-features`).
    pub features: FeatureChoice,
    /// The protocol served.
    pub proto: Proto,
    /// Per-connection outbox cap, bytes: above it the server stops reading that connection
    /// (and chat drops a receiver a broadcast would put over it).
    pub outbox_cap: usize,
    /// Size of one receive buffer, bytes: the reactor's shared scratch buffer, a thread's
    /// own, or each io_uring receive buffer.
    pub recv_buf: usize,
    /// io_uring submission queue entries (halved on ENOMEM).
    pub ring_entries: u32,
    /// Completion queue entries (`--cq-entries`; default 4x ring_entries).
    pub cq_entries: Option<u32>,
    /// listen(2) backlog.
    pub backlog: i32,
    /// On SIGINT/SIGTERM, how long to flush owed bytes before closing anyway.
    pub drain_timeout: Duration,
    /// Where to write the stats JSON on exit and on SIGUSR1 (`--json`); None: no file.
    pub stats_json: Option<PathBuf>,
    /// Print nothing but errors and warnings.
    pub quiet: bool,
    /// At multishot/full: multishot ACCEPT (else one-shot).
    pub multishot_accept: bool,
    /// At full: DEFER_TASKRUN.
    pub defer_taskrun: bool,
    /// At multishot/full: sockets in the ring's registered file table (`--no-register-files`).
    pub register_files: bool,
    /// At multishot/full: IORING_SETUP_NO_SQARRAY, 6.6+ (`--no-sqarray`).
    pub no_sqarray: bool,
    /// At multishot/full: multishot RECV as a bundle, 6.10+ (off: `--no-recv-bundles`).
    pub recv_bundles: bool,
    /// At full with FEAT_MIN_TIMEOUT: how the proactor waits.
    pub uring_wait: WaitMode,
    /// A kernel thread polls the submission queue (IORING_SETUP_SQPOLL).
    pub sqpoll: bool,
    /// Provided receive buffers (a power of two).
    pub buf_entries: u16,
    /// Injected faults (tests only; from RINGMUX_FAULTS).
    pub faults: fault::Faults,
    /// Event loops (threads), at least 1.
    pub threads: usize,
    /// `threads` backend: the most connection threads at once.
    pub max_threads: usize,
    /// `--pin`: the CPU of loop i is `cpus[i]` (exactly `threads` entries).
    pub cpus: Option<Vec<usize>>,
    /// Chat guest numbers, one counter per server.
    pub guests: Arc<crate::proto::Guests>,
    /// Chat: the room across threads (event loops, or the threads model's connections).
    pub room: Arc<super::policy::hub::Hub>,
    /// http: the header deadline (None: no limit).
    pub header_timeout: Option<Duration>,
    /// Close connections silent this long (None: never).
    pub idle_timeout: Option<Duration>,
    /// The most connections at once (None: no limit).
    pub max_conns: Option<usize>,
}

/// The one list of IO models. From it come the `--backend` values and their help
/// ([`BackendChoice`], with `auto` first), the backend actually running ([`Backend`]),
/// [`Backend::NAMES`], [`Backend::name`] and [`Backend::from_choice`]. `Auto` and `Uring`
/// come first: they are decided by setting up a ring; every other entry names a model
/// that needs no probing.
macro_rules! backends {
    (
        $(#[doc = $auto_doc:literal])* Auto = $auto:literal,
        $(#[doc = $uring_doc:literal])* Uring = $uring:literal,
        $( $(#[doc = $doc:literal])* $V:ident = $name:literal, )+
    ) => {
        /// `--backend`: which IO model serves connections (`auto` picks one).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
        pub enum BackendChoice {
            $(#[doc = $auto_doc])* #[value(name = $auto)] Auto,
            $(#[doc = $uring_doc])* #[value(name = $uring)] Uring,
            $( $(#[doc = $doc])* #[value(name = $name)] $V, )+
        }

        /// The backend actually running: every IO model ringmux has. io_uring runs at a
        /// feature level.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Backend {
            $(#[doc = $uring_doc])* Uring(FeatureLevel),
            $( $(#[doc = $doc])* $V, )+
        }

        impl Backend {
            /// Every backend's name, in the order of `--backend`'s values: the list the
            /// CLI, the bench's `--backends`, the stats and the tests check themselves
            /// against.
            pub const NAMES: [&'static str; <[&str]>::len(&[$uring, $($name),+])] =
                [$uring, $($name),+];

            /// The name used on the command line, in stats and in results ("uring", "epoll", ...).
            pub fn name(self) -> &'static str {
                match self {
                    Backend::Uring(_) => $uring,
                    $( Backend::$V => $name, )+
                }
            }

            /// The backend a `--backend` choice names, when it needs no io_uring probing
            /// (`auto` and `uring` are decided by setting up a ring).
            pub fn from_choice(c: BackendChoice) -> Option<Backend> {
                match c {
                    BackendChoice::Auto | BackendChoice::Uring => None,
                    $( BackendChoice::$V => Some(Backend::$V), )+
                }
            }
        }
    };
}

backends! {
    /// io_uring if it can be set up with the ops ringmux needs, else epoll (one warning line).
    Auto = "auto",
    /// The io_uring proactor; exit non-zero if io_uring is unavailable.
    Uring = "uring",
    /// The reactor on epoll (edge-triggered; a wait costs O(ready fds)).
    Epoll = "epoll",
    /// The reactor on poll(2) (level-triggered; a wait costs O(watched fds)).
    Poll = "poll",
    /// The reactor on select(2) (level-triggered; O(highest fd); a connection whose fd
    /// is 1024 or more is closed at once and counted as refused_fd_setsize).
    Select = "select",
    /// The reactor on signal-driven IO (O_ASYNC + F_SETSIG real-time signals routed by
    /// fd; a queue overflow means a rescan of every connection, counted).
    Sigio = "sigio",
    /// A blocking thread per connection (64 KiB stacks); --max-threads caps them, and a
    /// connection above the cap waits in the listen backlog until a thread ends.
    Threads = "threads",
    /// One connection at a time with blocking calls: a second client waits in the
    /// listen backlog until the first leaves.
    Blocking = "blocking",
    /// Non-blocking sockets polled in a loop with no readiness call (burns a core while
    /// any connection is open; counts the EAGAINs).
    Busypoll = "busypoll",
}

impl Backend {
    /// False for the models with no event loop to replicate: `--threads N` > 1 is
    /// refused for them.
    pub fn has_event_loop(self) -> bool {
        !matches!(
            self,
            Backend::Threads | Backend::Blocking | Backend::Busypoll
        )
    }

    /// Whether the listening socket is non-blocking (io_uring polls blocking sockets;
    /// the blocking models block in accept).
    pub fn nonblocking_listener(self) -> bool {
        !matches!(
            self,
            Backend::Uring(_) | Backend::Threads | Backend::Blocking
        )
    }

    /// The io_uring feature level for [`Backend::Uring`], else None.
    pub fn features(self) -> Option<FeatureLevel> {
        match self {
            Backend::Uring(l) => Some(l),
            _ => None,
        }
    }
}

/// The CPU of each loop, or `None` without pinning. `--cpus` implies `--pin`; loop i
/// gets CPU i of the list (or CPU i without a list). `allowed` gives the CPUs this
/// process may run on; it is asked only when pinning.
pub fn plan_cpus(
    threads: usize,
    pin: bool,
    list: Option<&str>,
    allowed: impl FnOnce() -> std::io::Result<Vec<usize>>,
) -> anyhow::Result<Option<Vec<usize>>> {
    let cpus = match list {
        Some(l) => {
            let cpus = parse_cpu_list(l).with_context(|| format!("--cpus '{l}'"))?;
            if cpus.len() < threads {
                bail!(
                    "--cpus '{l}' lists {} CPU(s) for --threads {threads}: give one CPU per event loop",
                    cpus.len()
                );
            }
            cpus[..threads].to_vec()
        }
        None if pin => (0..threads).collect(),
        None => return Ok(None),
    };
    let allowed = allowed().context("--pin: cannot read this process's CPU affinity")?;
    if let Some(&bad) = cpus.iter().find(|c| !allowed.contains(c)) {
        let may = format_cpu_list(&allowed);
        if list.is_some() {
            bail!("--cpus: CPU {bad} is not available to this process (it may run on {may})");
        }
        bail!(
            "--pin: --threads {threads} puts loop i on CPU i, but CPU {bad} is not available to this process \
             (it may run on {may}); use fewer --threads or choose CPUs with --cpus"
        );
    }
    Ok(Some(cpus))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn backends_are_one_list() {
        let mut expect = vec!["auto".to_string()];
        expect.extend(Backend::NAMES.map(String::from));
        assert_eq!(
            crate::server::features::explained_values::<BackendChoice>(),
            expect,
            "--backend offers auto and every backend, each explained"
        );
        for &c in BackendChoice::value_variants() {
            if let Some(b) = Backend::from_choice(c) {
                assert_eq!(b.name(), c.to_possible_value().unwrap().get_name());
            }
        }
        assert_eq!(Backend::Uring(FeatureLevel::Full).name(), "uring");
    }

    #[test]
    fn cpu_plans() {
        let two = || Ok(vec![0, 1]);
        assert_eq!(plan_cpus(2, false, None, two).unwrap(), None);
        assert_eq!(plan_cpus(2, true, None, two).unwrap(), Some(vec![0, 1]));
        assert_eq!(plan_cpus(1, true, None, two).unwrap(), Some(vec![0]));
        assert_eq!(
            plan_cpus(1, false, Some("1"), two).unwrap(),
            Some(vec![1]),
            "--cpus implies --pin"
        );
        assert_eq!(
            plan_cpus(2, true, Some("1,0"), two).unwrap(),
            Some(vec![1, 0])
        );
        assert_eq!(
            plan_cpus(1, true, Some("1,0"), two).unwrap(),
            Some(vec![1]),
            "extra CPUs are unused"
        );
        assert_eq!(
            plan_cpus(3, true, Some("2-5,7"), || Ok((0..8).collect())).unwrap(),
            Some(vec![2, 3, 4])
        );
        let err = |t, pin, l| format!("{:#}", plan_cpus(t, pin, l, two).unwrap_err());
        let e = err(3, true, None);
        assert!(
            e.contains("CPU 2 is not available") && e.contains("0-1") && e.contains("--cpus"),
            "{e}"
        );
        let e = err(2, true, Some("0,5"));
        assert!(e.contains("--cpus: CPU 5 is not available"), "{e}");
        let e = err(3, true, Some("0-1"));
        assert!(e.contains("lists 2 CPU(s) for --threads 3"), "{e}");
        let e = err(1, true, Some("x"));
        assert!(
            e.contains("--cpus 'x'") && e.contains("not a CPU number"),
            "{e}"
        );
        let e = err(1, true, Some("99999"));
        assert!(e.contains("out of range"), "{e}");
        // Not asked for the affinity when nothing is pinned.
        assert_eq!(
            plan_cpus(4, false, None, || Err(std::io::Error::other("unasked"))).unwrap(),
            None
        );
    }
}
