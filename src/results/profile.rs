//! `bench --profile`: where a server's CPU went, as stored in results.json (a cell's
//! `profile`). The perf output is parsed and grouped in `report::profile`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How [`Profile::scope`] begins for a recording of the server's CPUs (then the list).
pub const SCOPE_CPUS: &str = "server CPUs";

/// CPU shares by group (percent of the recorded samples, summing to about 100), and
/// the heaviest symbols.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Percent of samples per group (the names of `report::profile::GROUPS`).
    pub groups: BTreeMap<String, f64>,
    /// The heaviest symbols: (group, symbol, percent), heaviest first (at most 12).
    pub top: Vec<(String, String, f64)>,
    /// Runs this profile combines (each weighs the same).
    pub runs: u32,
    /// How perf recorded: `server CPUs 0` (every sample on the server's CPUs, kept for
    /// the server's process; costs the server nothing per context switch) or `process`
    /// (`perf record -p`, when the server is not pinned or CPU-wide recording is not
    /// allowed). None in files from before it was recorded (all `process`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}
