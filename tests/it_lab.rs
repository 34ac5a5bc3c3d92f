//! `bench --preset models --quick --repeat 2` end to end: every sweep has figures, the
//! Claims section is there in results.json, report.md, report.html and the terminal,
//! each verdict computed (none "no data"), each claim judged on both repeats ("holds in
//! k of 2 repeats", the spread of its key figure), and `ringmux report DIR` re-renders
//! it.

use std::time::Duration;

use ringmux::report::models::Verdict;

use crate::util::{run_bounded, scratch_dir};

#[test]
fn models_preset_quick_judges_every_claim() {
    let dir = scratch_dir("lab");
    let d = dir.to_str().unwrap();
    // About 30 s per repeat on an idle machine; generous here, the machine is shared.
    let bench = run_bounded(
        &[
            "bench", "--preset", "models", "--quick", "--repeat", "2", "--out", d,
        ],
        Duration::from_secs(300),
    );
    assert_eq!(
        bench.code(),
        Some(0),
        "bench --preset models --quick failed\n{}",
        bench.explain()
    );
    assert!(
        bench.stdout.contains("## IO models: Claims")
            && bench.stdout.contains("Slope per watched fd"),
        "terminal has no Claims table:\n{}",
        bench.stdout
    );

    let r: ringmux::results::schema::BenchResults =
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap())
            .expect("results.json parses");
    let m = r
        .models
        .as_ref()
        .expect("results.json has a models section");
    assert!(m.quick);
    // Every sweep has figures.
    for sweep in ["A", "B", "C", "D-select", "D-quiet", "D-sigio"] {
        let pts: Vec<_> = m.points.iter().filter(|p| p.sweep == sweep).collect();
        assert!(!pts.is_empty(), "sweep {sweep} has no points");
        for p in pts {
            assert!(!p.runs.is_empty(), "{sweep}/{}: no runs", p.backend);
            let f = &p.median;
            match sweep {
                "D-quiet" => assert!(f.cpu_share.is_some(), "{sweep}/{}: no CPU share", p.backend),
                "D-select" => assert!(f.msgs > 0, "select served nobody after its refusals: {f:?}"),
                _ => assert!(
                    f.msgs > 0
                        && f.p50_ns > 0.0
                        && f.cpu_ns_per_msg > 0.0
                        && f.syscalls_per_msg.is_some_and(|s| s > 0.0),
                    "{sweep}/{}/c{}+{}: missing figures {f:?}",
                    p.backend,
                    p.conns,
                    p.idle
                ),
            }
        }
    }
    for b in [
        "blocking", "threads", "busypoll", "select", "poll", "epoll", "sigio", "uring",
    ] {
        assert!(
            m.points.iter().any(|p| p.sweep == "B" && p.backend == b),
            "sweep B lacks {b}"
        );
    }
    let sloped: Vec<&str> = m.slopes.iter().map(|s| s.backend.as_str()).collect();
    assert_eq!(
        sloped,
        ["select", "poll", "epoll", "sigio", "uring"],
        "slopes per watched fd"
    );
    assert!(
        m.slopes
            .iter()
            .all(|s| s.cpu_ns_per_fd.is_finite() && s.points >= 2),
        "{:?}",
        m.slopes
    );
    // The select case really went past 1024 fds: refusals were counted.
    let dsel = m.points.iter().find(|p| p.sweep == "D-select").unwrap();
    assert!(
        dsel.median.refused_fd_setsize > 0,
        "select refused nothing past 1024 fds: {:?}",
        dsel.median
    );

    // Eight claims, each with figures and a computed verdict, re-judged the same.
    assert_eq!(
        m.claims.iter().map(|c| c.n).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<u32>>()
    );
    for c in &m.claims {
        assert_ne!(
            c.verdict,
            Verdict::NotMeasured,
            "claim {} not judged: {}",
            c.n,
            c.figures
        );
        assert!(!c.figures.is_empty() && !c.rule.is_empty(), "claim {}", c.n);
        // Judged on each repeat alone: k of 2, and the key figure's spread.
        assert_eq!(c.repeats.len(), 2, "claim {}: {:?}", c.n, c.repeats);
        let k = c
            .repeats
            .iter()
            .filter(|r| r.verdict == Verdict::Holds)
            .count() as u32;
        assert_eq!(c.holds_in, k, "claim {}", c.n);
        assert_eq!(
            c.verdict,
            ringmux::report::models::overall(
                &c.repeats
                    .iter()
                    .map(|r| r.verdict.clone())
                    .collect::<Vec<_>>()
            ),
            "claim {}: the verdict over the repeats",
            c.n
        );
        let row = format!("| **{}** | holds in {k} of 2 repeats", c.verdict.text());
        assert!(
            bench.stdout.contains(&row),
            "terminal lacks claim {}'s {row:?}:\n{}",
            c.n,
            bench.stdout
        );
        if let Some(s) = c.spread {
            assert!(s.min <= s.median && s.median <= s.max && s.of >= 1, "{s:?}");
        }
        assert!(
            bench.stdout.contains(&format!("| {}: ", c.figure)),
            "terminal lacks claim {}'s spread",
            c.n
        );
    }
    // Re-judged from the stored figures, exactly (results.json keeps every f64).
    for (again, c) in ringmux::report::models::judge(m).iter().zip(&m.claims) {
        assert_eq!(
            again, c,
            "claim {}: the verdict is not a function of the stored figures",
            c.n
        );
    }

    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.contains("## IO models: Claims"),
        "report.md has no Claims section"
    );
    for c in &m.claims {
        assert!(
            md.contains(&format!("**{}**", c.verdict.text())),
            "report.md lacks claim {}'s verdict",
            c.n
        );
    }
    assert!(
        md.contains("holds in ") && md.contains("### Claims per repeat"),
        "report.md lacks k of n or the claims per repeat"
    );
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(
        html.contains("IO models: Claims")
            && html.contains("server CPU per message")
            && html.contains("log scale"),
        "report.html lacks the Claims section or the chart"
    );
    assert!(
        html.contains(" of 2 repeats")
            && html.contains("min / median / max")
            && html.contains("Claims per repeat"),
        "report.html lacks k of n or the spread"
    );

    // `ringmux report DIR` re-renders it from results.json.
    std::fs::remove_file(dir.join("report.md")).unwrap();
    let report = run_bounded(&["report", d], Duration::from_secs(30));
    assert_eq!(
        report.code(),
        Some(0),
        "report failed\n{}",
        report.explain()
    );
    assert!(
        std::fs::read_to_string(dir.join("report.md"))
            .unwrap()
            .contains("## IO models: Claims")
    );

    // The preset picks its own servers: a conflicting option is bad usage.
    let bad = run_bounded(
        &[
            "bench",
            "--preset",
            "models",
            "--idle-conns",
            "5",
            "--out",
            d,
        ],
        Duration::from_secs(30),
    );
    assert_eq!(bad.code(), Some(2), "{}", bad.explain());
    assert_eq!(bad.stderr.lines().count(), 1, "one line\n{}", bad.explain());
    assert!(
        bad.stderr.starts_with("ringmux: ") && bad.stderr.contains("--idle-conns"),
        "{}",
        bad.explain()
    );
}
