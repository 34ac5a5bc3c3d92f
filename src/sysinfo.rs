//! Facts about the machine recorded with every result: kernel, CPU model, cores.

use serde::{Deserialize, Serialize};

/// The machine a result was measured on, recorded with every result (`sys`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SysInfo {
    /// The ringmux version that measured (Cargo.toml's).
    pub ringmux_version: String,
    /// The kernel release (`uname -r`).
    pub kernel: String,
    /// The CPU model from /proc/cpuinfo ("model name").
    pub cpu_model: String,
    /// CPUs this process may run on.
    pub cores: usize,
    /// The machine's host name.
    pub hostname: String,
}

impl SysInfo {
    /// This machine, now.
    pub fn collect() -> SysInfo {
        SysInfo {
            ringmux_version: env!("CARGO_PKG_VERSION").to_string(),
            kernel: kernel_release(),
            cpu_model: cpu_model(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
        }
    }
}

/// `uname -r`, e.g. "6.18.44-fc".
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// (major, minor) of the running kernel, (0, 0) when unreadable.
pub fn kernel_version() -> (u32, u32) {
    parse_kernel_version(&kernel_release())
}

/// (major, minor) of a kernel release string such as `6.18.44-foo`.
pub fn parse_kernel_version(release: &str) -> (u32, u32) {
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    let major = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let minor = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (major, minor)
}

/// The CPU model name from /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn kernel_version_parses() {
        assert_eq!(super::parse_kernel_version("6.18.44-fc-v782"), (6, 18));
        assert_eq!(super::parse_kernel_version("5.6.0"), (5, 6));
        assert_eq!(super::parse_kernel_version("garbage"), (0, 0));
    }
}
