#!/usr/bin/env bash
# CI use of the bench: compare this commit with the merge-base with the default branch
# (never "the previous commit": a PR is judged against what it branched from), write a
# job summary. Exit codes: 0 ok, 1 regression (named on stderr), 2 bad input, no
# baseline, or (--paired) a merge-base that cannot be built.
#
#   scripts/ci-bench.sh [--paired] [--allow-missing-baseline] [--save-baseline] [OUT_DIR]
#
# --paired (the gate to use on pooled CI runners): build the merge-base in a git
# worktree, run ONE bench in which both builds serve at the same time on the same CPUs,
# each with its own load (bench --versus BASE --versus-mode together), and judge head
# against base inside that run (compare --pair @base). No stored baseline is needed,
# and the runner's speed cancels out: both builds met the same machine and noise, at
# the same moments.
# Run together, a pair of the same build differs by 0.4-2% in syscalls, CPU per message
# and throughput, so the default limits gate those tightly (syscalls/msg 5%, io_uring's
# 15%; CPU/msg 5%; throughput 10%) and context switches and p99 widely (25%, 50%):
# docs/ci-gate.md has the measured spreads and the gate's false alarms and power.
#
# Without --paired: compare with a baseline stored by an earlier run of the merge-base
# (valid only when that ran on the same kind of machine; kept for history charts).
#
# Baselines live in a folder keyed by commit: $RINGMUX_BASELINE_DIR/<sha>/results.json
# (default bench-baselines/). In GitHub Actions (scripts/github/bench.yml) that folder is
# a checkout of the branch `bench-baselines`: every push to the default branch runs
# this script with --save-baseline and commits OUT_DIR/results.json there under its own
# sha; a pull request looks up the merge-base's sha.
#
#   --allow-missing-baseline  no baseline for the merge-base: run, report, exit 0
#                             (default: exit 2 at once, before the bench runs)
#   --save-baseline           copy this run's results to $RINGMUX_BASELINE_DIR/<HEAD sha>/
#   --paired                  see above; --allow-missing-baseline has no meaning with it
#
# Environment:
#   RINGMUX_BASE_REF        the default branch's ref (default: origin/$GITHUB_BASE_REF,
#                           else origin/HEAD, else origin/main, else main)
#   RINGMUX_BASELINE_DIR    baseline folder (default bench-baselines)
#   RINGMUX_MAX_REGRESSION  limits (default "p99=25%,throughput=10%": runners are noisy;
#                           --paired: see paired_default below and docs/ci-gate.md)
#   RINGMUX_REPEAT          bench --repeat (default 3: compare needs 3 for a verdict;
#                           --paired: 8, see docs/ci-gate.md for the power it buys)
#   RINGMUX_DURATION        --paired: bench --duration, seconds per run (default 0.5;
#                           a --duration in RINGMUX_BENCH_ARGS wins, as does a
#                           --versus-mode there)
#   RINGMUX_BASE_BIN        --paired: a ringmux built from the merge-base (skips the build)
#   RINGMUX_BENCH_ARGS      extra bench arguments, word-split (e.g. "--backends epoll")
#   RINGMUX_OPEN_RATE       bench --open-rate (default 20000: open loop at a fixed rate)
#   RINGMUX_STRICT=1        fail on inconclusive verdicts too (compare --strict)
#   RINGMUX_BIN             a built ringmux to use (default: cargo build --release)
#   RINGMUX_HEAD_RESULTS    use this results.json instead of running the bench
set -euo pipefail
cd "$(dirname "$0")/.."

paired_default="syscalls=5%,syscalls@uring=15%,cpu=5%,ctx=25%,p99=50%,throughput=10%"
allow_missing=0
save=0
paired=0
out=""
for a in "$@"; do
  case "$a" in
    --allow-missing-baseline) allow_missing=1 ;;
    --save-baseline) save=1 ;;
    --paired) paired=1 ;;
    -*) echo "ci-bench.sh: unknown option $a" >&2; exit 2 ;;
    *) out="$a" ;;
  esac
done
out="${out:-bench-out/ci}"
if [[ $paired -eq 1 ]]; then
  limits="${RINGMUX_MAX_REGRESSION:-$paired_default}"
else
  limits="${RINGMUX_MAX_REGRESSION:-p99=25%,throughput=10%}"
fi
read -r -a extra <<<"${RINGMUX_BENCH_ARGS:-}"
dir="${RINGMUX_BASELINE_DIR:-bench-baselines}"

base_ref="${RINGMUX_BASE_REF:-}"
if [[ -z "$base_ref" ]]; then
  for r in ${GITHUB_BASE_REF:+origin/$GITHUB_BASE_REF} origin/HEAD origin/main main; do
    if git rev-parse --verify --quiet "$r^{commit}" >/dev/null; then base_ref="$r"; break; fi
  done
fi
if [[ -z "$base_ref" ]] || ! git rev-parse --verify --quiet "$base_ref^{commit}" >/dev/null; then
  echo "ci-bench.sh: cannot find the default branch (set RINGMUX_BASE_REF; fetch it with enough history)" >&2
  exit 2
fi
head_sha="$(git rev-parse HEAD)"
if ! base_sha="$(git merge-base HEAD "$base_ref")"; then
  echo "ci-bench.sh: no merge-base between HEAD and $base_ref (shallow clone? use fetch-depth: 0)" >&2
  exit 2
fi
baseline="$dir/$base_sha/results.json"
have_baseline=1
if [[ $paired -eq 1 ]]; then
  : # the base is measured in this run
elif [[ "$base_sha" == "$head_sha" && $save -eq 1 ]]; then
  # A push to the default branch: this run becomes the baseline; nothing to compare.
  have_baseline=0
elif [[ ! -f "$baseline" ]]; then
  have_baseline=0
  if [[ $allow_missing -eq 0 ]]; then
    echo "ringmux: error: no baseline for merge-base ${base_sha:0:12} ($base_ref) at $baseline (run the default branch's bench first, or pass --allow-missing-baseline)" >&2
    exit 2
  fi
  echo "ringmux: warning: no baseline for merge-base ${base_sha:0:12} at $baseline: not compared (--allow-missing-baseline)" >&2
fi

if [[ -n "${RINGMUX_BIN:-}" ]]; then
  bin="$RINGMUX_BIN"
else
  cargo build --release --locked
  bin=./target/release/ringmux
fi
if [[ $paired -eq 1 ]]; then
  # The merge-base, built in a worktree of its own (its target/ kept apart so head's
  # build is not invalidated); any failure is exit 2 with one line.
  if [[ -n "${RINGMUX_BASE_BIN:-}" ]]; then
    base_bin="$RINGMUX_BASE_BIN"
  else
    base_tree="$(mktemp -d "${TMPDIR:-/tmp}/ringmux-base-XXXXXX")"
    base_log="$base_tree.log"
    base_target="${RINGMUX_BASE_TARGET:-$PWD/target/ci-base}"
    cleanup() { git worktree remove --force "$base_tree" >/dev/null 2>&1 || rm -rf "$base_tree"; }
    trap cleanup EXIT
    if ! git worktree add --detach "$base_tree" "$base_sha" >"$base_log" 2>&1 ||
      ! (cd "$base_tree" && CARGO_TARGET_DIR="$base_target" cargo build --release --locked) >>"$base_log" 2>&1; then
      echo "ci-bench.sh: cannot build the merge-base ${base_sha:0:12} ($base_ref): see $base_log" >&2
      exit 2
    fi
    base_bin="$base_target/release/ringmux"
  fi
  if [[ ! -x "$base_bin" ]]; then
    echo "ci-bench.sh: no base binary at $base_bin" >&2
    exit 2
  fi
fi
if [[ -n "${RINGMUX_HEAD_RESULTS:-}" ]]; then
  mkdir -p "$out"
  cp "$RINGMUX_HEAD_RESULTS" "$out/results.json"
  : >"$out/report.md"
elif [[ $paired -eq 1 ]]; then
  rm -rf "$out"
  # RINGMUX_BENCH_ARGS may give its own --duration (bench takes it once).
  duration=(--duration "${RINGMUX_DURATION:-0.5}")
  [[ " ${extra[*]} " == *" --duration"* ]] && duration=()
  mode=(--versus-mode together)
  [[ " ${extra[*]} " == *" --versus-mode"* ]] && mode=()
  "$bin" bench --quick --repeat "${RINGMUX_REPEAT:-8}" "${duration[@]}" \
    --open-rate "${RINGMUX_OPEN_RATE:-20000}" --no-peers --quiet-secs 0 --versus "$base_bin" "${mode[@]}" "${extra[@]}" --out "$out"
else
  rm -rf "$out"
  "$bin" bench --quick --repeat "${RINGMUX_REPEAT:-3}" --open-rate "${RINGMUX_OPEN_RATE:-20000}" "${extra[@]}" --out "$out"
fi

summary="${GITHUB_STEP_SUMMARY:-$out/summary.md}"
{
  echo "## ringmux bench (quick) at ${head_sha:0:12}"
  echo
  cat "$out/report.md"
} >>"$summary"

if [[ $save -eq 1 ]]; then
  mkdir -p "$dir/$head_sha"
  cp "$out/results.json" "$dir/$head_sha/results.json"
  echo "saved the baseline for ${head_sha:0:12} at $dir/$head_sha/results.json" >&2
fi
if [[ $have_baseline -eq 0 ]]; then
  exit 0
fi

strict=()
[[ "${RINGMUX_STRICT:-0}" == 1 ]] && strict=(--strict)
set +e
if [[ $paired -eq 1 ]]; then
  how="paired in this run with"
  "$bin" compare "$out/results.json" --pair @base --max-regression "$limits" "${strict[@]}" 2>&1 | tee "$out/compare.txt"
  code=${PIPESTATUS[0]}
else
  how="compared with the stored baseline of"
  "$bin" compare "$baseline" "$out/results.json" --max-regression "$limits" "${strict[@]}" 2>&1 | tee "$out/compare.txt"
  code=${PIPESTATUS[0]}
fi
set -e
{
  echo
  echo "### $how the merge-base ${base_sha:0:12} ($base_ref; limits: $limits)"
  echo
  echo '```'
  cat "$out/compare.txt"
  echo '```'
} >>"$summary"
exit "$code"
