//! Reading result files, and the error for bad input (exit 2), written once for
//! `report`, `compare` and `merge`.

use std::path::Path;

use anyhow::Context;

/// Bad input: exit code 2 (a missing or malformed file, a bad limit), as clap answers
/// a malformed command line.
pub(crate) fn bad_input(msg: impl Into<String>) -> anyhow::Error {
    crate::error::ExitError {
        code: 2,
        msg: msg.into(),
    }
    .into()
}

/// Read a results file as JSON, with its `schema` field ("" when it has none).
pub(crate) fn read_json(path: &Path) -> anyhow::Result<(serde_json::Value, String)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let schema = v
        .get("schema")
        .and_then(|s| s.as_str())
        .unwrap_or("")
        .to_string();
    Ok((v, schema))
}
