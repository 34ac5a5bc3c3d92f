#!/usr/bin/env bash
# The io_uring counts per message of a finished bench folder, from each server's own
# stats (runs/*.server.json, written on exit: the whole server life, warm-up included),
# as a markdown page beside the run page made by scripts/run-page.sh:
#
#   scripts/uring-counts.sh BENCH_DIR RUN_PAGE
#
# Writes RUN_PAGE with its .md replaced by .counts.md and prints its path. One row per
# server and cell, each repeat's figure in order: syscalls (all kinds), io_uring_enter,
# completions (cqes), context switches, each per echoed message (bytes_in / size), and
# the receive completions that carried more than one buffer (recv_bundled); with
# --profile, the profile groups per cell to two decimals.
set -euo pipefail
dir="${1:?usage: uring-counts.sh BENCH_DIR RUN_PAGE}"
page="${2:?usage: uring-counts.sh BENCH_DIR RUN_PAGE}"
[ -d "$dir/runs" ] || { echo "uring-counts.sh: $dir/runs missing (not a bench folder?)" >&2; exit 2; }
[ -f "$dir/results.json" ] || { echo "uring-counts.sh: $dir/results.json missing" >&2; exit 2; }
size=$(jq -r '.cells[0].size' "$dir/results.json")
out="${page%.md}.counts.md"
{
  echo "# Counts per message, ${page##*/}"
  echo
  echo "Written by \`scripts/uring-counts.sh\` from the servers' own stats of the run on"
  echo "[${page##*/}](${page##*/}) (\`runs/*.server.json\`, the whole server life: warm-up"
  echo "and connects included). Each cell lists its repeats in run order. Message size ${size} B."
  echo
  # The run's when, what, where and how, as its run page says them.
  if [ -f "$page" ]; then
    echo "| | |"
    echo "|---|---|"
    awk -F' [|] ' '/^[|] (date [(]UTC[)]|commit|CPU|kernel|command) [|]/ && !seen[$1]++' "$page"
    echo
  fi
  echo "| server, cell | syscalls/msg | io_uring_enter/msg | completions/msg | ctx/msg | bundled completions |"
  echo "|---|---|---|---|---|---|"
  for f in "$dir"/runs/*-r1.server.json; do
    base=$(basename "$f" -r1.server.json)
    row=""
    for r in "$dir"/runs/"$base"-r*.server.json; do
      row+=$(jq -r --argjson size "$size" '
        . as $s | (.bytes_in / $size) as $m
        | if $m < 1 then "-\t-\t-\t-\t-" else
          [ ((.syscalls | add) / $m),
            (if .uring then (.syscalls.io_uring_enter // 0) / $m else null end),
            (if .uring then (.cqes // 0) / $m else null end),
            ((.ctx_voluntary + .ctx_involuntary) / $m) ]
          | map(if . == null then "-"
                elif . >= 1 then (. * 100 | round / 100 | tostring)
                else (. * 10000 | round / 10000 | tostring) end)
          + [ if $s.uring then ($s.recv_bundled // 0 | tostring) else "-" end ]
          | join("\t") end' "$r")
      row+=$'\n'
    done
    # Columns: each metric's repeats joined by ", ".
    cols=$(printf '%s' "$row" | awk -F'\t' '
      { for (i = 1; i <= NF; i++) v[i] = (NR == 1 ? $i : v[i] ", " $i); n = NF }
      END { s = ""; for (i = 1; i <= n; i++) s = s " | " v[i]; print s }')
    echo "| ${base}${cols} |"
  done
} >"$out"
echo "$out"
# With --profile: the groups the io_uring work moves, to two decimals (the report
# rounds to one), from results.json (each the mean over the cell's runs).
if jq -e 'any(.cells[]; .profile != null)' "$dir/results.json" >/dev/null; then
  {
    echo
    echo "## Profile shares (percent of the server's samples, mean over the runs)"
    echo
    echo "| cell | file lookup | io_uring | readiness | syscall entry | scheduler and timers | network stack |"
    echo "|---|--:|--:|--:|--:|--:|--:|"
    jq -r '.cells[] | select(.profile != null) | .profile.groups as $g
      | "| \(.id) | " + ([ "file lookup", "io_uring", "readiness", "syscall entry",
          "scheduler and timers", "network stack" ]
          | map(($g[.] // 0) * 100 | round / 100 | tostring) | join(" | ")) + " |"' \
      "$dir/results.json"
  } >>"$out"
fi
