#!/usr/bin/env bash
# CI use of the bench: run the quick matrix, compare with a stored baseline, write a
# job summary. Exit codes: 0 ok, 1 regression (named on stderr), 2 bad input.
#
#   scripts/ci-bench.sh [BASELINE.json] [OUT_DIR]
#
# BASELINE.json defaults to bench-baseline/results.json; without one, the run becomes
# the baseline candidate (copy OUT_DIR/results.json there and commit or cache it).
# Limits: override with RINGMUX_MAX_REGRESSION (default "p99=25%,throughput=10%": CI
# runners are noisy; compare ratios within a run for finer claims).
set -euo pipefail
cd "$(dirname "$0")/.."

baseline="${1:-bench-baseline/results.json}"
out="${2:-bench-out/ci}"
limits="${RINGMUX_MAX_REGRESSION:-p99=25%,throughput=10%}"

cargo build --release --locked
cargo build --release --locked --example tokio_echo_server
rm -rf "$out"
./target/release/ringmux bench --quick --out "$out"

summary="${GITHUB_STEP_SUMMARY:-$out/summary.md}"
{
  echo "## ringmux bench (quick)"
  echo
  cat "$out/report.md"
} >>"$summary"

if [[ ! -f "$baseline" ]]; then
  echo "no baseline at $baseline: this run ($out/results.json) can become one" >&2
  exit 0
fi

set +e
./target/release/ringmux compare "$baseline" "$out/results.json" --max-regression "$limits" | tee "$out/compare.txt"
code=${PIPESTATUS[0]}
set -e
{
  echo
  echo "### compared with the baseline (limits: $limits)"
  echo
  echo '```'
  cat "$out/compare.txt"
  echo '```'
} >>"$summary"
exit "$code"
