//! Several `ringmux load` agents (processes) against one server at once, sharing one
//! schedule and one wall-clock start, then `ringmux merge` makes one run of them (the
//! many-machines case: histograms are the unit of exchange).

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::util::echo::{Behaviour, echo_server, f, serial, u};
use crate::util::{BIN, Running, read_json, run_bounded, scratch_dir};

/// Three agents (processes) against one server at once, sharing --conns and --rate and
/// starting at one wall-clock time, then `ringmux merge DIR`: the merged count is the
/// sum and exactly the single-agent schedule's count, the merged p99 (from the merged
/// histograms) lies between the agents' p99s, and the merged rate is the asked one.
#[test]
fn three_agents_merge_into_one_run() {
    let _g = serial();
    let addr = echo_server(Behaviour::default()).to_string();
    let dir = scratch_dir("load-agents");
    let (rate, conns, warmup, duration) = (3000.0, 6u32, 0.3, 2.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let start_at = format!("{:.6}", now + 1.5);
    let mut kids = Vec::new();
    for i in 0..3 {
        let (json, hlog) = (
            dir.join(format!("agent-{i}.json")),
            dir.join(format!("agent-{i}.hlog")),
        );
        let mut cmd = Command::new(BIN);
        cmd.args([
            "load",
            "--driver",
            "epoll",
            "--addr",
            &addr,
            "--conns",
            &conns.to_string(),
            "--rate",
            &rate.to_string(),
        ])
        .args([
            "--duration",
            &duration.to_string(),
            "--warmup",
            &warmup.to_string(),
            "--max-lag",
            "0.5",
            "--quiet",
        ])
        .args([
            "--agents",
            "3",
            "--agent-id",
            &i.to_string(),
            "--start-at",
            &start_at,
            "--json",
        ])
        .arg(&json)
        .arg("--hlog")
        .arg(&hlog);
        kids.push(Running::spawn(&mut cmd));
    }
    for (i, k) in kids.into_iter().enumerate() {
        let done = k.finish(Duration::from_secs(30));
        assert_eq!(done.code(), Some(0), "agent {i}\n{}", done.explain());
    }
    let agents: Vec<Value> = (0..3)
        .map(|i| read_json(&dir.join(format!("agent-{i}.json"))))
        .collect();
    let at: f64 = start_at.parse().unwrap();
    for (i, a) in agents.iter().enumerate() {
        assert_eq!(u(a, "params.conns"), 2, "agent {i}: {a}");
        assert!(
            (f(a, "params.rate") - 1000.0).abs() < 1e-9,
            "agent {i}: {a}"
        );
        assert!(
            (f(a, "start_unix_s") - (at + warmup)).abs() < 1e-6,
            "agent {i} starts at the wall-clock time: {a}"
        );
    }
    let merged_path = dir.join("merged.json");
    let ringmux = |args: &[&std::ffi::OsStr]| run_bounded(args, Duration::from_secs(20));
    let o = ringmux(&[
        "merge".as_ref(),
        dir.as_ref(),
        "-o".as_ref(),
        merged_path.as_ref(),
    ]);
    println!("{}{}", o.stdout, o.stderr);
    assert_eq!(o.code(), Some(0), "{}", o.explain());
    let m = read_json(&merged_path);
    let sum: u64 = agents.iter().map(|a| u(a, "messages")).sum();
    assert_eq!(u(&m, "messages"), sum, "{m}");
    assert_eq!(
        u(&m, "latency.count"),
        sum,
        "percentiles from the merged histograms: {m}"
    );
    // The union of the three schedules is the single-agent schedule: its count exactly.
    let s = ringmux::load::schedule::Schedule::new(rate, conns);
    let (w0, w1) = ((warmup * 1e9) as u64, ((warmup + duration) * 1e9) as u64);
    let single: u64 = (0..conns)
        .map(|c| s.count_before(c, w1) - s.count_before(c, w0))
        .sum();
    assert_eq!(sum, single, "{m}");
    let p99s: Vec<u64> = agents.iter().map(|a| u(a, "latency.p99")).collect();
    for (i, a) in agents.iter().enumerate() {
        println!(
            "agent {i}: {} messages, {:.1} msgs/s, p99 {} ns, rate_kept {}",
            u(a, "messages"),
            f(a, "msgs_per_s"),
            p99s[i],
            a["rate_kept"]
        );
    }
    let mp99 = u(&m, "latency.p99");
    assert!(
        mp99 >= *p99s.iter().min().unwrap() && mp99 <= *p99s.iter().max().unwrap(),
        "merged p99 {mp99} outside the agents' {p99s:?}"
    );
    assert!((f(&m, "params.rate") - rate).abs() < 1e-6, "{m}");
    assert_eq!(u(&m, "params.conns"), u64::from(conns));
    // The merged rate is messages over the union of the agents' real windows (first
    // intended send to last reply): the count is exact (above), the window is the 2 s
    // schedule plus the last reply's latency and the agents' start skew (same clock:
    // well under a ms). 3% allows a 60 ms tail on this shared machine.
    let achieved = f(&m, "msgs_per_s");
    assert!(
        (achieved - rate).abs() <= 0.03 * rate,
        "merged rate {achieved} vs asked {rate}\n{m}"
    );
    assert_eq!(
        m["rate_kept"],
        agents.iter().all(|a| a["rate_kept"] == true),
        "{m}"
    );
    // The output kind follows the name: `-o X.hlog` is the log (never JSON over it),
    // the result goes to X.json beside it; and both equal the `-o X.json` run's.
    let as_log = dir.join("merged2.hlog");
    let o = ringmux(&[
        "merge".as_ref(),
        dir.as_ref(),
        "-o".as_ref(),
        as_log.as_ref(),
    ]);
    assert_eq!(o.code(), Some(0), "{}", o.explain());
    let log_text = std::fs::read_to_string(&as_log).unwrap();
    assert!(
        log_text.contains("#[Histogram log format") && !log_text.trim_start().starts_with('{'),
        "{} holds no interval log: {}",
        as_log.display(),
        &log_text[..log_text.len().min(200)]
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("merged.hlog")).unwrap(),
        log_text
    );
    let m2 = read_json(&dir.join("merged2.json"));
    assert_eq!(u(&m2, "messages"), sum, "{m2}");
    // An output naming an agent's file is refused with one line, the file untouched.
    let before = std::fs::read(dir.join("agent-0.hlog")).unwrap();
    for name in ["agent-0.json", "agent-0.hlog"] {
        let clash = dir.join(name);
        let o = ringmux(&[
            "merge".as_ref(),
            dir.as_ref(),
            "-o".as_ref(),
            clash.as_ref(),
        ]);
        assert_eq!(o.code(), Some(2), "{}", o.explain());
        assert_eq!(o.stderr.trim_end().lines().count(), 1, "{}", o.explain());
        assert!(o.stderr.contains("would overwrite"), "{}", o.explain());
    }
    assert_eq!(std::fs::read(dir.join("agent-0.hlog")).unwrap(), before);
    assert_eq!(u(&read_json(&dir.join("agent-0.json")), "params.conns"), 2);
    // `report` renders the merged result: its figures in the table, its page beside it.
    let o = ringmux(&["report".as_ref(), merged_path.as_ref()]);
    assert_eq!(o.code(), Some(0), "{}", o.explain());
    assert!(
        o.stdout.contains("| merged | 3 merged |") && o.stdout.contains(&format!("| {sum} |")),
        "{}",
        o.explain()
    );
    let page = std::fs::read_to_string(dir.join("merged.html")).unwrap();
    assert!(
        page.contains("Load results") && page.contains("<svg"),
        "no table or chart in merged.html"
    );
    // And the folder: every agent and the merged result in one table.
    let o = ringmux(&["report".as_ref(), dir.as_ref()]);
    assert_eq!(o.code(), Some(0), "{}", o.explain());
    assert!(
        o.stdout.contains("agent 2 of 3") && o.stdout.contains("3 merged"),
        "{}",
        o.explain()
    );
    // A missing agent is named and fails the merge unless --allow-partial.
    std::fs::remove_file(dir.join("agent-1.json")).unwrap();
    let partial = dir.join("partial.json");
    let merge_partial = [
        "merge".as_ref(),
        dir.as_ref(),
        "-o".as_ref(),
        partial.as_os_str(),
    ];
    let o = ringmux(&merge_partial);
    assert_eq!(o.code(), Some(1), "{}", o.explain());
    assert!(
        o.stderr.contains("agent 1 of 3 is missing"),
        "{}",
        o.explain()
    );
    let o = ringmux(&[&merge_partial[..], &["--allow-partial".as_ref()]].concat());
    assert_eq!(o.code(), Some(0), "{}", o.explain());
    let p = read_json(&partial);
    assert_eq!(p["rate_kept"], false, "{p}");
    // compare reads the merged result.
    let o = ringmux(&[
        "compare".as_ref(),
        merged_path.as_ref(),
        merged_path.as_ref(),
    ]);
    assert_eq!(o.code(), Some(0), "{}", o.explain());
}
