//! io_uring's vocabulary, shared by the configuration, the stats, `ringmux probe` and
//! the proactor: the feature levels (one list), `--uring-features`, `--uring-wait`, and
//! what a ring that was set up ended up using ([`RingFeatures`]).
//!
//! Plain data: nothing here sets up a ring.

use std::sync::OnceLock;

use clap::ValueEnum;
use clap::builder::PossibleValue;
use serde::Serialize;

/// An enum whose variants each have one name, written once: the command line's value
/// (clap), the JSON string (serde) and [`name`](FeatureLevel::name) all use it. Doc
/// comments on the variants are their `--help` text.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $E:ident {
            $( $(#[doc = $doc:literal])* $V:ident = $name:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize,
        )]
        pub enum $E {
            $( $(#[doc = $doc])* #[value(name = $name)] #[serde(rename = $name)] $V, )+
        }

        impl $E {
            /// Its name on the command line, in JSON and in what ringmux prints.
            pub fn name(self) -> &'static str {
                match self {
                    $( $E::$V => $name, )+
                }
            }
        }
    };
}

named_enum! {
    /// io_uring feature level. Each level adds to the one before (the order is the
    /// ladder: `Baseline < Fastpoll < Multishot < Full`).
    #[derive(PartialOrd, Ord)]
    pub enum FeatureLevel {
        /// Linux 5.6 set: POLL_ADD for readiness, then RECV; one-shot ACCEPT and SEND.
        Baseline = "baseline",
        /// Linux 5.7+ with FEAT_FAST_POLL: RECV/SEND/ACCEPT submitted directly; RECV picks
        /// a buffer from a PROVIDE_BUFFERS group only when data arrives.
        Fastpoll = "fastpoll",
        /// Linux 6.0+: multishot ACCEPT, multishot RECV into a registered buffer ring,
        /// COOP_TASKRUN.
        Multishot = "multishot",
        /// Linux 6.1+: multishot plus SINGLE_ISSUER + DEFER_TASKRUN and a registered ring fd;
        /// on 6.12+ coalesced waits bounded by min_wait.
        Full = "full",
    }
}

named_enum! {
    /// How the proactor waits for completions at multishot/full.
    pub enum WaitMode {
        /// At full with min_wait (6.12+), coalesce after a busy turn (32 or more
        /// receives); otherwise wait for the sends just submitted plus one, bounded.
        Adaptive = "adaptive",
        /// At full with min_wait, always wait for the queued sends plus some receives,
        /// bounded by min_wait; otherwise as adaptive.
        Coalesce = "coalesce",
        /// Always wait for one completion.
        Single = "single",
    }
}

/// `--uring-features`: `auto` (the best level this kernel supports) or one level,
/// pinned. Its values are `auto` followed by every [`FeatureLevel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeatureChoice(pub Option<FeatureLevel>);

impl FeatureChoice {
    pub const AUTO: FeatureChoice = FeatureChoice(None);

    /// The level pinned, if one is.
    pub fn pinned(self) -> Option<FeatureLevel> {
        self.0
    }
}

impl From<FeatureLevel> for FeatureChoice {
    fn from(l: FeatureLevel) -> FeatureChoice {
        FeatureChoice(Some(l))
    }
}

impl ValueEnum for FeatureChoice {
    fn value_variants<'a>() -> &'a [Self] {
        static ALL: OnceLock<Vec<FeatureChoice>> = OnceLock::new();
        ALL.get_or_init(|| {
            std::iter::once(FeatureChoice::AUTO)
                .chain(FeatureLevel::value_variants().iter().map(|&l| l.into()))
                .collect()
        })
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        match self.0 {
            None => Some(PossibleValue::new("auto").help("The best level this kernel supports")),
            Some(l) => l.to_possible_value(),
        }
    }
}

/// The io_uring features a running proactor uses, as recorded in its stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RingFeatures {
    pub level: FeatureLevel,
    /// "pooled" (baseline: a pooled buffer per RECV after POLL_ADD), "provide_buffers"
    /// (fastpoll), "buf_ring" (multishot/full).
    pub recv_buffers: &'static str,
    pub buf_entries: u16,
    pub multishot_accept: bool,
    pub multishot_recv: bool,
    /// Multishot RECV as a bundle (IORING_RECVSEND_BUNDLE, 6.10; off with
    /// `--no-recv-bundles`): one
    /// completion may carry several consecutive buffers of the buffer ring.
    pub recv_bundles: bool,
    /// IORING_SETUP_NO_SQARRAY (6.6, `--no-sqarray`): no SQ index array.
    pub no_sqarray: bool,
    pub coop_taskrun: bool,
    pub single_issuer: bool,
    pub defer_taskrun: bool,
    pub registered_ring_fd: bool,
    /// Slots in the ring's registered file table, where accepted sockets go so RECV and
    /// SEND skip the descriptor lookup (multishot/full, 5.19+); 0: descriptors.
    pub registered_files: u32,
    /// Coalesced waits are possible: the queued sends plus some receives, bounded by
    /// 6.12 min_wait (FEAT_MIN_TIMEOUT, at full).
    pub min_wait: bool,
    /// At multishot/full (EXT_ARG): a wait asks for the sends just submitted plus one,
    /// bounded by a cap, so a SEND that completes inside the enter that submits it
    /// does not end the wait: one enter per message at one connection.
    pub counted_wait: bool,
    /// How the loop waits: "single", "coalesce" or "adaptive" ("single" without
    /// min_wait or the counted wait).
    pub wait: &'static str,
    pub sqpoll: bool,
    pub sq_entries: u32,
    pub cq_entries: u32,
}

impl RingFeatures {
    /// One line: the level, then each feature on or off.
    pub fn summary(&self) -> String {
        let on = |b: bool| if b { "on" } else { "off" };
        format!(
            "level={} recv_buffers={}{} multishot_accept={} multishot_recv={} recv_bundles={} no_sqarray={} coop_taskrun={} single_issuer={} defer_taskrun={} registered_ring_fd={} registered_files={} min_wait={} counted_wait={} wait={} sqpoll={} sq={} cq={}",
            self.level.name(),
            self.recv_buffers,
            if self.buf_entries > 0 {
                format!("x{}", self.buf_entries)
            } else {
                String::new()
            },
            on(self.multishot_accept),
            on(self.multishot_recv),
            on(self.recv_bundles),
            on(self.no_sqarray),
            on(self.coop_taskrun),
            on(self.single_issuer),
            on(self.defer_taskrun),
            on(self.registered_ring_fd),
            self.registered_files,
            on(self.min_wait),
            on(self.counted_wait),
            self.wait,
            on(self.sqpoll),
            self.sq_entries,
            self.cq_entries,
        )
    }
}

/// The values `--help` offers for `E`, in order; each must be explained there.
#[cfg(test)]
pub(super) fn explained_values<E: ValueEnum>() -> Vec<String> {
    E::value_variants()
        .iter()
        .map(|v| {
            let pv = v.to_possible_value().expect("no hidden values");
            assert!(
                pv.get_help().is_some(),
                "{} is not explained",
                pv.get_name()
            );
            pv.get_name().to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One name per value, the same for clap, serde and `name()`.
    fn same_names<E: ValueEnum + Serialize>(name: fn(&E) -> &'static str) {
        for v in E::value_variants() {
            let pv = v.to_possible_value().unwrap();
            assert_eq!(pv.get_name(), name(v));
            assert_eq!(
                serde_json::to_value(v).unwrap(),
                serde_json::Value::from(name(v))
            );
        }
    }

    #[test]
    fn one_name_per_value() {
        same_names::<FeatureLevel>(|l| l.name());
        same_names::<WaitMode>(|w| w.name());
        assert_eq!(
            explained_values::<WaitMode>(),
            ["adaptive", "coalesce", "single"]
        );
        assert_eq!(
            serde_json::from_value::<FeatureLevel>("fastpoll".into()).unwrap(),
            FeatureLevel::Fastpoll
        );
    }

    #[test]
    fn levels_climb_in_the_order_listed() {
        let all = FeatureLevel::value_variants();
        assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
    }

    #[test]
    fn feature_choice_is_auto_then_every_level() {
        assert_eq!(
            explained_values::<FeatureChoice>(),
            ["auto", "baseline", "fastpoll", "multishot", "full"]
        );
        assert_eq!(
            FeatureChoice::from_str("auto", false).unwrap(),
            FeatureChoice::AUTO
        );
        assert_eq!(
            FeatureChoice::from_str("multishot", false)
                .unwrap()
                .pinned(),
            Some(FeatureLevel::Multishot)
        );
        assert!(FeatureChoice::from_str("fast", false).is_err());
    }
}
