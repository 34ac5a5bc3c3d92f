#!/usr/bin/env bash
# How long the README's main command takes on a fresh clone: clone HEAD into a
# temporary folder (an empty target/), time `cargo build --release --locked` (ringmux
# and the reference peers' crate, peers/, in one build), then
# `cargo run --release --locked -- bench` (the default matrix), and write the dated page
# docs/results/<date>-<machine>-first-run.md. Crates must already be in cargo's
# download cache (the build is timed, not the download).
#
#   scripts/first-run.sh [--name MACHINE] [--measured CLONE BUILD_S BENCH_S]
#
# --measured: write the page for a clone already timed by these same steps (its
# bench-out/ report, the two durations in seconds) instead of running them again.
set -euo pipefail
cd "$(dirname "$0")/.."
name=""
measured=()
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name="${2:?--name needs a name}"; shift 2 ;;
    --measured) measured=("${2:?}" "${3:?}" "${4:?}"); shift 4 ;;
    *) echo "first-run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
cores=$(nproc)
[ -n "$name" ] || name="$(echo "$cpu" | awk '{print tolower($1)}' | tr -cd 'a-z0-9')-${cores}core"
if [ ${#measured[@]} -eq 0 ]; then
  clone=$(mktemp -d "${TMPDIR:-/tmp}/ringmux-first-run.XXXXXX")
  git clone -q . "$clone"
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  t0=$(date +%s)
  (cd "$clone" && cargo build --release --locked --quiet)
  t1=$(date +%s)
  (cd "$clone" && cargo run --release --locked --quiet -- bench >"$clone/bench.out" 2>"$clone/bench.err")
  t2=$(date +%s)
  load_after=$(cut -d' ' -f1-3 /proc/loadavg)
else
  clone=${measured[0]}
  t0=0; t1=${measured[1]}; t2=$((measured[1] + measured[2]))
  load_before="not recorded"; load_after="$(cut -d' ' -f1-3 /proc/loadavg) (when the page was written)"
fi
commit=$(git -C "$clone" rev-parse --short=12 HEAD)
# The bench's own clock at the start of its last measured run ("[60/60] ... (129s)").
matrix_s=$(grep -o '([0-9]*s)$' "$clone/bench.err" | tail -1 | tr -d '()s' || true)

page="docs/results/$(date -u +%Y-%m-%d)-${name}-first-run.md"
{
  echo "# First run, $(date -u +%Y-%m-%d), ${name}"
  echo
  echo "Written by \`scripts/first-run.sh\`: a fresh clone, then the README's main command."
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| date (UTC) | $(date -u '+%Y-%m-%d %H:%M') |"
  echo "| commit | \`${commit}\` |"
  echo "| CPU | ${cpu}, ${cores} cores |"
  echo "| kernel | $(uname -r) |"
  echo "| command | \`cargo build --release --locked\`, then \`cargo run --release --locked -- bench\` |"
  echo "| load average before / after | ${load_before} / ${load_after} |"
  echo
  echo "| step | seconds |"
  echo "|---|--:|"
  echo "| build ringmux and the peers (release, empty target/) | $((t1 - t0)) |"
  echo "| bench: the default matrix (and any peer still to build) | $((t2 - t1)) |"
  echo "| of which the matrix, to the start of its last run (the bench's own clock) | ${matrix_s:-?} |"
  echo "| total | $((t2 - t0)) |"
  echo
  echo "The machine was shared with other work during the run (see the load average):"
  echo "these are the times it took here then, not what the build costs on a quiet machine."
  echo
  echo "## The bench's report"
  echo
  # The report's headings move one level down; its results.json is kept beside the
  # page (for `ringmux compare`); links into the run folder, which is not kept,
  # become plain text.
  data="${page##*/}"; data="${data%.md}.results.json"
  sed -e 's/^#/##/' -e 's/\[\([^]]*\)\](\(runs\/[^)]*\|report\.html\))/\1/g' \
      -e "s|](results.json)|](${data})|" "$(ls -d "$clone"/bench-out/*/ | tail -1)report.md"
} >"$page"
cp "$(ls -d "$clone"/bench-out/*/ | tail -1)/results.json" "${page%.md}.results.json"
echo "$page"
