#!/usr/bin/env bash
# Run a bench and write its dated run page: docs/results/<date>-<machine>.md with the
# date, commit, CPU model, kernel, the exact command and the report's tables as the
# bench wrote them. Figures in docs/ quote these pages and link them; none is typed by hand.
#
#   scripts/run-page.sh [--from DIR] [--name MACHINE] [-- BENCH ARGS...]
#   scripts/run-page.sh --gate DIR [--name MACHINE]
#
#   --from DIR     make the page from a finished bench folder (its command.txt or the
#                  command given after --) instead of running a new bench
#   --gate DIR     make docs/results/<date>-<machine>-gate.md from a finished
#                  scripts/gate-power.sh folder (its setup, summary, every gate run)
#   --name MACHINE the <machine> part of the file name (default: the CPU vendor and cores)
#   BENCH ARGS     passed to `ringmux bench` (default: the default matrix)
#
# Environment: RINGMUX_BIN, a built ringmux (default: cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."

from=""
gate=""
name=""
while [ $# -gt 0 ]; do
  case "$1" in
    --from) from="${2:?--from needs a folder}"; shift 2 ;;
    --gate) gate="${2:?--gate needs a folder}"; shift 2 ;;
    --name) name="${2:?--name needs a name}"; shift 2 ;;
    --) shift; break ;;
    *) echo "run-page.sh: unknown option $1 (bench arguments go after --)" >&2; exit 2 ;;
  esac
done

bin="${RINGMUX_BIN:-}"
given=""
if [ -n "$gate" ]; then
  for f in setup.txt summary.md runs.tsv; do
    [ -f "$gate/$f" ] || { echo "run-page.sh: $gate/$f missing (not a finished gate-power.sh folder?)" >&2; exit 2; }
  done
elif [ -n "$bin" ]; then
  given=" (HEAD when the page was written; the binary was given by RINGMUX_BIN)"
else
  cargo build --release --quiet
  bin=target/release/ringmux
fi

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
cores=$(nproc)
kernel=$(uname -r)
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " (with uncommitted changes)" || true)
date=$(date -u +%Y-%m-%d)
if [ -z "$name" ]; then
  vendor=$(echo "$cpu" | awk '{print tolower($1)}' | tr -cd 'a-z0-9')
  name="${vendor:-cpu}-${cores}core"
fi

if [ -n "$gate" ]; then
  page="docs/results/${date}-${name}-gate.md"
  {
    echo "# Gate power ${date}, ${name}"
    echo
    echo "Written by \`scripts/run-page.sh --gate\` from a \`scripts/gate-power.sh\` folder; nothing here is typed by hand."
    echo
    echo "| | |"
    echo "|---|---|"
    measured=$(sed -n '1s/^date: \(.*\) UTC; commit \(.*\)$/\1/p' "$gate/setup.txt")
    built=$(sed -n '1s/^date: \(.*\) UTC; commit \(.*\)$/\2/p' "$gate/setup.txt")
    kinds=$(sed -n 's/^kinds: \(.*\); rounds: \(.*\)$/--rounds \2 \1/p' "$gate/setup.txt")
    echo "| date (UTC) | ${measured} (the measurement's start; page written $(date -u '+%Y-%m-%d %H:%M')) |"
    echo "| commit | \`${built}\` (HEAD when the measurement started; when the page was written: \`${commit}\`${dirty}) |"
    echo "| CPU | ${cpu}, ${cores} cores |"
    echo "| kernel | ${kernel} |"
    echo "| command | \`scripts/gate-power.sh ${kinds}\` (each gate run's bench and compare: Setup) |"
    echo
    echo "## Setup"
    echo
    echo '```text'
    cat "$gate/setup.txt"
    echo '```'
    if [ -f "$gate/loadavg.txt" ]; then
      echo
      echo "Load average (1 min; time, value) sampled once a minute during the measurement: $(awk '{print $1 " " $2}' "$gate/loadavg.txt" | paste -sd';' - | sed 's/;/; /g')."
    fi
    echo
    echo "## Summary"
    echo
    cat "$gate/summary.md"
    echo
    echo "## Every gate run"
    echo
    echo "In the order they ran (each round runs every kind once); \"fired\" lists the cells and"
    echo "metrics \`compare\` called a regression."
    echo
    echo "| kind | round | exit | fired |"
    echo "|---|--:|--:|---|"
    awk -F'\t' '{print "| " $1 " | " $2 " | " $3 " | " $4 " |"}' "$gate/runs.tsv"
  } >"$page"
  echo "$page"
  exit 0
fi

if [ -z "$from" ]; then
  from=$(mktemp -d "${TMPDIR:-/tmp}/ringmux-run-page.XXXXXX")
  cmd="ringmux bench $* --out $from"
  echo "run-page.sh: $cmd" >&2
  "$bin" bench "$@" --out "$from"
else
  cmd="ringmux bench $*"
fi
[ -f "$from/report.md" ] || { echo "run-page.sh: $from/report.md missing (not a bench folder?)" >&2; exit 2; }

page="docs/results/${date}-${name}.md"
{
  echo "# Run ${date}, ${name}"
  echo
  echo "Written by \`scripts/run-page.sh\` from the bench's own report; nothing here is typed by hand."
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| date (UTC) | $(date -u '+%Y-%m-%d %H:%M') |"
  echo "| commit | \`${commit}\`${dirty}${given} |"
  echo "| CPU | ${cpu}, ${cores} cores |"
  echo "| kernel | ${kernel} |"
  echo "| command | \`${cmd}\` |"
  echo
  echo "**Noise.** This machine is a shared virtual machine: other jobs ran on it during the"
  echo "run, and throughput of one cell moves by tens of percent between minutes. Read the"
  echo "ratios within this run, and the spread of the repeats, not the absolute figures."
  echo
  echo "## The report"
  echo
  # The report's headings move one level down; its results.json is kept beside the
  # page (for `ringmux compare`); links into the run folder, which is not kept,
  # become plain text.
  data="${page##*/}"; data="${data%.md}.results.json"
  sed -e 's/^#/##/' -e 's/\[\([^]]*\)\](\(runs\/[^)]*\|report\.html\))/\1/g' \
      -e "s|](results.json)|](${data})|" "$from/report.md"
} >"$page"
cp "$from/results.json" "${page%.md}.results.json"
echo "$page"
