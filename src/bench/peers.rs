//! The reference peers: a tokio and a monoio echo server and the tokio echo client,
//! binaries of the `ringmux-peers` crate (peers/) beside ringmux's, built with it by
//! `cargo build`, or once by the bench when it runs from the source tree.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::spec::{ServerSpec, warn};

/// The reference peers: (name in the matrix, example binary, crate whose version the
/// report prints, what it is).
pub const PEERS: [(&str, &str, &str, &str); 2] = [
    (
        "tokio",
        "tokio_echo_server",
        "tokio",
        "single-threaded tokio echo server on epoll (peers/src/bin/tokio_echo_server.rs)",
    ),
    (
        "monoio",
        "monoio_echo_server",
        "monoio",
        "monoio echo server on its io_uring driver (peers/src/bin/monoio_echo_server.rs)",
    ),
];

/// The version of `krate` in the Cargo.lock this binary was built with.
pub fn locked_version(krate: &str) -> Option<String> {
    const LOCK: &str = include_str!("../../Cargo.lock");
    let mut lines = LOCK.lines();
    while let Some(l) = lines.next() {
        if l.trim() == format!("name = \"{krate}\"") {
            let v = lines
                .next()?
                .trim()
                .strip_prefix("version = \"")?
                .trim_end_matches('"');
            return Some(v.to_string());
        }
    }
    None
}

/// The crate of the reference peers (peers/ in the source tree).
const PEERS_CRATE: &str = "ringmux-peers";

/// The binary of the tokio echo client (`bench --client tokio`).
pub const TOKIO_CLIENT: &str = "tokio_echo_client";

/// Where the peers' binary `bin` is: beside `exe` (target/<profile>/), as `cargo build`
/// puts the workspace's binaries.
pub fn peer_path(exe: &Path, bin: &str) -> Option<PathBuf> {
    Some(exe.parent()?.join(bin))
}

/// Make sure the peers' binaries `bins` are beside `exe`: when one is missing and `exe`
/// was built in this crate's source tree, build the peers' crate once with cargo (same
/// profile; it compiles only tokio and monoio) and say so. What is still missing
/// afterwards is the caller's to report.
pub(super) fn ensure_built(exe: &Path, bins: &[&str]) {
    let Some(dir) = exe.parent() else {
        return;
    };
    let missing: Vec<&str> = bins
        .iter()
        .copied()
        .filter(|b| !dir.join(b).is_file())
        .collect();
    if missing.is_empty() {
        return;
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let target = dir.parent().filter(|t| t.join("CACHEDIR.TAG").is_file());
    let profile = dir.file_name().and_then(|p| p.to_str());
    let (true, Some(target), Some(profile @ ("release" | "debug"))) =
        (manifest.is_file(), target, profile)
    else {
        return;
    };
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["-p", PEERS_CRATE])
        .env("CARGO_TARGET_DIR", target);
    let release = if profile == "release" {
        " --release"
    } else {
        ""
    };
    if profile == "release" {
        c.arg("--release");
    }
    eprintln!(
        "ringmux: building the reference peers once ({}): cargo build{release} -p {PEERS_CRATE}",
        missing.join(", "),
    );
    match c.stdin(Stdio::null()).stdout(Stdio::null()).status() {
        Ok(st) if st.success() => {}
        Ok(st) => eprintln!("ringmux: warning: building the reference peers failed ({st})"),
        Err(e) => eprintln!("ringmux: warning: cannot run cargo to build the reference peers: {e}"),
    }
}

/// The reference servers beside `exe` (built once when missing: [`ensure_built`]); a
/// note for each, or a warning for each that is not there.
pub(super) fn peer_servers(exe: &Path, notes: &mut Vec<String>) -> Vec<ServerSpec> {
    ensure_built(exe, &PEERS.map(|p| p.1));
    let path = |bin: &str| peer_path(exe, bin).unwrap_or_default();
    let mut out = Vec::new();
    for (name, bin, krate, what) in PEERS {
        let p = path(bin);
        if p.is_file() {
            let v = locked_version(krate).unwrap_or_else(|| "?".into());
            notes.push(format!("peer {name}: {krate} {v}, {what}"));
            out.push(ServerSpec::External {
                name: name.into(),
                cmd: format!("{} {{addr}}", p.display()),
            });
        } else {
            warn(
                notes,
                format!(
                    "reference peer {name} not built and no source tree to build it from (cargo build --release -p ringmux-peers adds it)"
                ),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_versions_come_from_the_lock_file() {
        for (_, _, krate, _) in PEERS {
            let v = locked_version(krate).unwrap_or_default();
            assert!(
                v.split('.').count() == 3 && v.chars().next().is_some_and(|c| c.is_ascii_digit()),
                "{krate}: {v:?}"
            );
        }
        assert_eq!(locked_version("no-such-crate-here"), None);
    }
}
