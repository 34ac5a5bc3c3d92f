//! `ringmux probe`: kernel, io_uring availability and each feature, with reasons.

use std::process::ExitCode;

use crate::server::uring::probe::probe;

/// Print the probe: a table, or JSON with `json`.
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
    println!("{:<18} {:<5} {:<10} detail", "capability", "yes", "level");
    for c in &r.capabilities {
        println!(
            "{:<18} {:<5} {:<10} {}",
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
