//! `ringmux probe`: kernel, io_uring availability and each feature, with reasons; and
//! the same probe as the bench plans with it ([`uring_levels`]).

use std::process::ExitCode;

use crate::server::uring::probe::probe;

/// io_uring on this machine as a bench plan needs it (`--backends uring:LEVEL`).
#[derive(Debug, Clone)]
pub struct UringLevels {
    /// Every feature level by name (`serve --uring-features`), in order, and whether
    /// this kernel runs it.
    pub levels: Vec<(&'static str, bool)>,
    /// Why io_uring cannot run here at all, in one line; None: it can.
    pub unavailable: Option<String>,
}

/// Probe io_uring (a trial ring, its opcodes and setup flags) for a bench plan.
pub fn uring_levels() -> UringLevels {
    let r = probe();
    UringLevels {
        levels: r.levels.iter().map(|&(l, ok)| (l.name(), ok)).collect(),
        unavailable: r.unavailable.map(|u| u.to_string()),
    }
}

/// `ringmux probe` (`--json`: the whole report as JSON).
pub fn probe_cmd(json: bool) -> anyhow::Result<ExitCode> {
    let r = probe();
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("kernel:           {}", r.kernel);
    println!(
        "io_uring:         {}",
        match &r.unavailable {
            None => "available".to_string(),
            Some(u) => format!("NOT available: {u}"),
        }
    );
    if let Some(s) = &r.io_uring_disabled_sysctl {
        println!(
            "io_uring_disabled sysctl: {s} (0 = enabled for all, 1 = root/group only, 2 = off)"
        );
    }
    if let Some(m) = &r.memlock_limit {
        println!("RLIMIT_MEMLOCK:   {m}");
    }
    println!();
    println!("{:<20} {:<5} {:<10} detail", "capability", "yes", "level");
    for c in &r.capabilities {
        println!(
            "{:<20} {:<5} {:<10} {}",
            c.name,
            if c.available { "yes" } else { "no" },
            c.level,
            c.detail
        );
    }
    println!();
    for (l, ok) in &r.levels {
        println!(
            "level {:<10} {}",
            l.name(),
            if *ok { "usable" } else { "not usable" }
        );
    }
    println!(
        "--uring-features auto picks: {}",
        r.best_level.map_or(
            "none (serve --backend auto runs on epoll)".to_string(),
            |l| l.name().to_string()
        )
    );
    Ok(ExitCode::SUCCESS)
}
