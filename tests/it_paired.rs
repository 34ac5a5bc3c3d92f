//! The bench's processes and pairs: external servers stopped as a whole process group
//! (wrappers without exec, strace), base against head in one run (`--versus`), and
//! `compare --pair` inside one results file.

use std::time::{Duration, Instant};

use crate::util::{BIN, run_bounded, scratch_dir};

/// Live processes whose command line mentions `marker` (zombies excluded).
fn processes_with(marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(marker) {
            out.push(format!("{pid}: {cmd}"));
        }
    }
    out
}

/// A wrapper script that starts the server without `exec` (so the shell stays its
/// parent), and the same server under `strace -f`: after a two-repeat bench no process
/// of either is left, and every run measured the server (not the idle wrapper).
#[test]
fn external_servers_stop_with_their_whole_group() {
    let d = scratch_dir("paired-external");
    let marker = d.join("marker");
    std::fs::create_dir_all(&marker).unwrap();
    let wrap = d.join("wrap.sh");
    std::fs::write(
        &wrap,
        format!(
            "#!/bin/sh\n# starts the server as a child, no exec, as CI wrappers often do\n{BIN} serve --quiet --backend epoll --addr \"$1\" --json {}/wrapped.json\necho wrapper done\n",
            marker.display()
        ),
    )
    .unwrap();
    let mut externals = vec![format!("wrapped=sh {} {{addr}}", wrap.display())];
    let strace = std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if strace {
        externals.push(format!(
            "traced=strace -f -qq -o /dev/null {BIN} serve --quiet --backend epoll --addr {{addr}} --json {}/traced.json",
            marker.display()
        ));
    } else {
        println!("skipped: the strace variant (strace not installed)");
    }
    let out = d.join("out");
    let mut args = vec![
        "bench".to_string(),
        "--quick".into(),
        "--backends".into(),
        "epoll".into(),
        "--conns".into(),
        "5".into(),
        "--duration".into(),
        "0.3".into(),
        "--repeat".into(),
        "2".into(),
        "--quiet-secs".into(),
        "0".into(),
        "--out".into(),
        out.to_str().unwrap().into(),
    ];
    for e in &externals {
        args.push("--external".into());
        args.push(e.clone());
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_bounded(&argv, Duration::from_secs(180));
    assert!(run.status.success(), "{}", run.explain());
    // The group is reaped before the bench moves on, so this holds at once; the short
    // wait only absorbs /proc showing an exiting process for a moment.
    let marker_s = marker.to_str().unwrap();
    let t0 = Instant::now();
    let mut left = processes_with(marker_s);
    while !left.is_empty() && t0.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(50));
        left = processes_with(marker_s);
    }
    assert!(
        left.is_empty(),
        "outlived the bench: {left:?}\n{}",
        run.explain()
    );
    // The wrapped server was measured: its CPU (the group's, not the idle shell's).
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let cells = r["cells"].as_array().unwrap();
    for name in ["wrapped"].into_iter().chain(strace.then_some("traced")) {
        let c = cells
            .iter()
            .find(|c| c["server"] == name)
            .unwrap_or_else(|| panic!("no {name} cell\n{}", run.explain()));
        let cpu = c["median"]["cpu_ns_per_msg"].as_f64().unwrap_or(0.0);
        assert!(cpu > 0.0, "{name}: no server CPU measured: {}", c["median"]);
    }
}
