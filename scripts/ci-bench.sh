#!/usr/bin/env bash
# CI use of the bench: compare this commit with the baseline of the merge-base with the
# default branch (never "the previous commit": a PR is judged against what it branched
# from), write a job summary. Exit codes: 0 ok, 1 regression (named on stderr),
# 2 bad input or no baseline.
#
#   scripts/ci-bench.sh [--allow-missing-baseline] [--save-baseline] [OUT_DIR]
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
#
# Environment:
#   RINGMUX_BASE_REF        the default branch's ref (default: origin/$GITHUB_BASE_REF,
#                           else origin/HEAD, else origin/main, else main)
#   RINGMUX_BASELINE_DIR    baseline folder (default bench-baselines)
#   RINGMUX_MAX_REGRESSION  limits (default "p99=25%,throughput=10%": runners are noisy)
#   RINGMUX_REPEAT          bench --repeat (default 3: compare needs 3 for a verdict)
#   RINGMUX_OPEN_RATE       bench --open-rate (default 20000: open loop at a fixed rate)
#   RINGMUX_STRICT=1        fail on inconclusive verdicts too (compare --strict)
#   RINGMUX_BIN             a built ringmux to use (default: cargo build --release)
#   RINGMUX_HEAD_RESULTS    use this results.json instead of running the bench
set -euo pipefail
cd "$(dirname "$0")/.."

allow_missing=0
save=0
out=""
for a in "$@"; do
  case "$a" in
    --allow-missing-baseline) allow_missing=1 ;;
    --save-baseline) save=1 ;;
    -*) echo "ci-bench.sh: unknown option $a" >&2; exit 2 ;;
    *) out="$a" ;;
  esac
done
out="${out:-bench-out/ci}"
limits="${RINGMUX_MAX_REGRESSION:-p99=25%,throughput=10%}"
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
if [[ "$base_sha" == "$head_sha" && $save -eq 1 ]]; then
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
  cargo build --release --locked --example tokio_echo_server
  bin=./target/release/ringmux
fi
if [[ -n "${RINGMUX_HEAD_RESULTS:-}" ]]; then
  mkdir -p "$out"
  cp "$RINGMUX_HEAD_RESULTS" "$out/results.json"
  : >"$out/report.md"
else
  rm -rf "$out"
  "$bin" bench --quick --repeat "${RINGMUX_REPEAT:-3}" --open-rate "${RINGMUX_OPEN_RATE:-20000}" --out "$out"
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
"$bin" compare "$baseline" "$out/results.json" --max-regression "$limits" "${strict[@]}" 2>&1 | tee "$out/compare.txt"
code=${PIPESTATUS[0]}
set -e
{
  echo
  echo "### compared with the merge-base ${base_sha:0:12} ($base_ref; limits: $limits)"
  echo
  echo '```'
  cat "$out/compare.txt"
  echo '```'
} >>"$summary"
exit "$code"
