//! The CI scripts: scripts/ci-bench.sh's baseline rule (merge-base with the default
//! branch, missing baseline exits 2) without running the bench (RINGMUX_HEAD_RESULTS),
//! and the YAML examples parse (python3's yaml module; skipped by name without it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ringmux::results::schema::BenchResults;

use crate::util::fixtures::{bench, noisy_cell};
use crate::util::{Running, record_skip, scratch_dir};

const LIMIT: Duration = Duration::from_secs(60);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One epoll cell whose runs have throughputs `thr`.
fn results(thr: &[f64]) -> BenchResults {
    bench(vec![noisy_cell(thr)])
}

fn write(path: &Path, r: &BenchResults) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_vec_pretty(r).unwrap()).unwrap();
}

/// Run the script with the base ref at HEAD (so the merge-base is HEAD's commit) and the
/// given baseline folder; the head's results come from `head`.
fn script(dir: &Path, head: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = dir.join("out");
    let o = Running::spawn(
        Command::new("bash")
            .arg(root().join("scripts/ci-bench.sh"))
            .args(args)
            .arg(&out)
            .env("RINGMUX_BASE_REF", "HEAD")
            .env("RINGMUX_BASELINE_DIR", dir.join("baselines"))
            .env("RINGMUX_BIN", env!("CARGO_BIN_EXE_ringmux"))
            .env("RINGMUX_HEAD_RESULTS", head)
            .env("RINGMUX_MAX_REGRESSION", "throughput=5%")
            .env_remove("GITHUB_STEP_SUMMARY"),
    )
    .finish(LIMIT);
    (o.code(), o.explain())
}

/// `git rev-parse HEAD` in the checkout: its output, or None outside a git checkout.
fn head_sha() -> Option<String> {
    let o = Running::try_spawn(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(root()),
    )
    .ok()?
    .finish(LIMIT);
    o.status.success().then(|| o.stdout.trim().to_string())
}

#[test]
fn ci_bench_compares_with_the_merge_base_baseline() {
    let Some(sha) = head_sha() else {
        record_skip(
            "ci_bench_compares_with_the_merge_base_baseline",
            "-",
            "not in a git checkout",
        );
        return;
    };
    let d = scratch_dir("ci-merge-base");
    let head = d.join("head.json");
    write(&head, &results(&[50_000.0, 51_000.0, 52_000.0]));
    // No baseline for the merge-base: exit 2 with one clear line, before any bench.
    let (c, s) = script(&d, &head, &[]);
    assert_eq!(c, Some(2), "{s}");
    assert!(
        s.contains("no baseline for merge-base") && s.contains("--allow-missing-baseline"),
        "{s}"
    );
    assert!(!d.join("out").exists(), "nothing ran\n{s}");
    let (c, s) = script(&d, &head, &["--allow-missing-baseline"]);
    assert_eq!(c, Some(0), "{s}");
    // The baseline stored under the merge-base's sha (here HEAD's) is the one compared.
    write(
        &d.join("baselines").join(&sha).join("results.json"),
        &results(&[100_000.0, 101_000.0, 99_000.0]),
    );
    let (c, s) = script(&d, &head, &[]);
    assert_eq!(c, Some(1), "{s}");
    assert!(
        s.contains("regression: epoll/closed/c50/s128 throughput"),
        "{s}"
    );
    let summary = std::fs::read_to_string(d.join("out/summary.md")).unwrap();
    assert!(
        summary.contains(&format!("merge-base {}", &sha[..12])),
        "{summary}"
    );
    // Same figures: exit 0.
    write(
        &d.join("baselines").join(&sha).join("results.json"),
        &results(&[50_000.0, 51_000.0, 52_000.0]),
    );
    assert_eq!(script(&d, &head, &[]).0, Some(0));
    // --save-baseline stores the head's results under HEAD's sha.
    let _ = std::fs::remove_dir_all(d.join("baselines"));
    let (c, s) = script(&d, &head, &["--save-baseline"]);
    assert_eq!(c, Some(0), "{s}");
    assert!(
        d.join("baselines")
            .join(&sha)
            .join("results.json")
            .is_file(),
        "{s}"
    );
}

/// Every YAML example under scripts/ parses (python3 -c 'import yaml').
#[test]
fn yaml_examples_parse() {
    let ok = Command::new("python3")
        .args(["-c", "import yaml"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3's yaml module is missing in CI: .ci/run must install python3-yaml"
        );
        record_skip(
            "yaml_examples_parse",
            "-",
            "python3 with the yaml module not found",
        );
        return;
    }
    let mut files = Vec::new();
    for sub in ["scripts/github", "scripts/k8s"] {
        let Ok(rd) = std::fs::read_dir(root().join(sub)) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if matches!(p.extension().and_then(|x| x.to_str()), Some("yml" | "yaml")) {
                files.push(p);
            }
        }
    }
    assert!(files.len() >= 4, "{files:?}");
    for f in &files {
        let o = Running::spawn(
            Command::new("python3")
                .args(["-c", "import sys, yaml; docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]; assert docs; print(len(docs))"])
                .arg(f),
        )
        .finish(LIMIT);
        assert!(o.status.success(), "{}: {}", f.display(), o.explain());
    }
    // The agents' Job: Indexed, the index is the agent id, a Service for the server, and
    // the merge Job reads the shared folder.
    const CHECK: &str = r#"
import sys, yaml
docs = list(yaml.safe_load_all(open(sys.argv[1] + "/ringmux-agents.yaml")))
kinds = {d["kind"]: d for d in docs}
assert {"Service", "Job", "PersistentVolumeClaim"} <= set(kinds), kinds.keys()
job = kinds["Job"]["spec"]
assert job["completionMode"] == "Indexed"
cmd = " ".join(job["template"]["spec"]["containers"][0]["command"])
for w in ["--agent-id \"$JOB_COMPLETION_INDEX\"", "--start-at", "--agents", "--hlog", "--json"]:
    assert w in cmd, w
merge = yaml.safe_load(open(sys.argv[1] + "/ringmux-merge.yaml"))
assert merge["spec"]["template"]["spec"]["containers"][0]["command"][:3] == ["ringmux", "merge", "/results"]
m = yaml.safe_load(open(sys.argv[2]))
assert m["jobs"]["agent"]["strategy"]["matrix"]["agent"] == [0, 1, 2]
"#;
    let o = Running::spawn(
        Command::new("python3")
            .args(["-c", CHECK])
            .arg(root().join("scripts/k8s"))
            .arg(root().join("scripts/github/load-agents.yml")),
    )
    .finish(LIMIT);
    assert!(o.status.success(), "{}", o.explain());
}
