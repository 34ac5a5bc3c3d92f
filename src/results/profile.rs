//! `bench --profile`: where a server's CPU went, as stored in results.json (a cell's
//! `profile`). The perf output is parsed and grouped in `report::profile`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
}
