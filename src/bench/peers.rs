//! The reference peers: a tokio and a monoio echo server, the example binaries beside
//! ringmux, built once with cargo when the bench runs from the source tree.

use std::path::Path;
use std::process::{Command, Stdio};

use super::spec::{ServerSpec, warn};

/// The reference peers: (name in the matrix, example binary, crate whose version the
/// report prints, what it is).
pub const PEERS: [(&str, &str, &str, &str); 2] = [
    (
        "tokio",
        "tokio_echo_server",
        "tokio",
        "single-threaded tokio echo server on epoll (examples/tokio_echo_server.rs)",
    ),
    (
        "monoio",
        "monoio_echo_server",
        "monoio",
        "monoio echo server on its io_uring driver (examples/monoio_echo_server.rs)",
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

/// The peers' example binaries beside `exe` (target/<profile>/examples/). When one is
/// missing and `exe` was built in this crate's source tree, build them once with
/// cargo (same profile) and say so; when that is not possible, note what is missing.
pub(super) fn peer_servers(exe: &Path, notes: &mut Vec<String>) -> Vec<ServerSpec> {
    let Some(dir) = exe.parent() else {
        return Vec::new();
    };
    let path = |bin: &str| dir.join("examples").join(bin);
    let missing: Vec<&str> = PEERS
        .iter()
        .map(|p| p.1)
        .filter(|b| !path(b).is_file())
        .collect();
    if !missing.is_empty() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let target = dir.parent().filter(|t| t.join("CACHEDIR.TAG").is_file());
        let profile = dir.file_name().and_then(|p| p.to_str());
        if let (true, Some(target), Some(profile @ ("release" | "debug"))) =
            (manifest.is_file(), target, profile)
        {
            let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
            c.arg("build")
                .arg("--manifest-path")
                .arg(&manifest)
                .env("CARGO_TARGET_DIR", target);
            if profile == "release" {
                c.arg("--release");
            }
            for b in &missing {
                c.args(["--example", b]);
            }
            eprintln!(
                "ringmux: building the reference peers once ({}): cargo build{} --example {}",
                missing.join(", "),
                if profile == "release" {
                    " --release"
                } else {
                    ""
                },
                missing.join(" --example ")
            );
            match c.stdin(Stdio::null()).stdout(Stdio::null()).status() {
                Ok(st) if st.success() => {}
                Ok(st) => eprintln!(
                    "ringmux: warning: building the reference peers failed ({st}); the bench runs without them"
                ),
                Err(e) => eprintln!(
                    "ringmux: warning: cannot run cargo to build the reference peers: {e}"
                ),
            }
        }
    }
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
                    "reference peer {name} not built and no source tree to build it from (cargo build --release --example {bin} adds it)"
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
