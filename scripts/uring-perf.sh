#!/usr/bin/env bash
# Where io_uring's file lookups and the one-connection spinlock come from, symbol by
# symbol (bench --profile keeps only groups and the 12 heaviest symbols): a dated page
# docs/results/<date>-<machine>-uring-perf.md.
#
#   scripts/uring-perf.sh [--rounds N] [--name MACHINE]
#
# Per round: `ringmux serve` pinned to CPU 0 and `ringmux load` (128-byte echo, closed
# loop) pinned to CPU 1; `perf record -F 1999 -p SERVER` for 2.5 s in the middle of a
# 4.5 s load. At 500 connections: io_uring full, full --no-register-files, epoll (the
# file-lookup symbols). At one connection with call graphs (-g): full, full
# --uring-wait single, epoll (the queued-spinlock slow path and who took the lock).
# Environment: RINGMUX_BIN (default: cargo build --release). Needs perf.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=2
name=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="${2:?--rounds needs a number}"; shift 2 ;;
    --name) name="${2:?--name needs a name}"; shift 2 ;;
    *) echo "uring-perf.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
command -v perf >/dev/null || { echo "uring-perf.sh: perf is not installed" >&2; exit 1; }
bin="${RINGMUX_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin=target/release/ringmux
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/ringmux-uring-perf.XXXXXX")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# record TAG CONNS GRAPH SERVE_ARGS...
record() {
  local tag=$1 conns=$2 graph=$3 port sp lp g=""
  shift 3
  port=$(free_port)
  taskset -c 0 "$bin" serve --addr "127.0.0.1:$port" --quiet "$@" &
  sp=$!
  sleep 0.4
  taskset -c 1 "$bin" load --addr "127.0.0.1:$port" --conns "$conns" --size 128 \
    --duration 4.5 --warmup 0.5 --quiet --json "$work/$tag.load.json" &
  lp=$!
  sleep 1.5
  [ "$graph" = 1 ] && g="-g"
  perf record -q $g -F 1999 -p "$sp" -o "$work/$tag.data" -- sleep 2.5 >/dev/null 2>&1 || true
  wait "$lp" || true
  kill -TERM "$sp" 2>/dev/null || true
  wait "$sp" || true
  perf report -i "$work/$tag.data" --stdio --no-children --sort sym -q -g none \
    >"$work/$tag.flat.txt" 2>/dev/null || true
}

lookups='fget|__fget[a-z_]*|fdget[a-z_]*|__fdget[a-z_]*|fput[a-z_]*|sockfd_lookup[a-z_]*|io_file_get_[a-z_]*|sock_from_file'
started=$(date -u '+%Y-%m-%d %H:%M')
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq 1 "$rounds"); do
  record "full-c500-r$r" 500 0 --backend uring --uring-features full
  record "noreg-c500-r$r" 500 0 --backend uring --uring-features full --no-register-files
  record "epoll-c500-r$r" 500 0 --backend epoll
  record "full-c1-r$r" 1 1 --backend uring --uring-features full
  record "single-c1-r$r" 1 1 --backend uring --uring-features full --uring-wait single
  record "epoll-c1-r$r" 1 1 --backend epoll
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
cores=$(nproc)
if [ -z "$name" ]; then
  vendor=$(echo "$cpu" | awk '{print tolower($1)}' | tr -cd 'a-z0-9')
  name="${vendor:-cpu}-${cores}core"
fi
page="docs/results/$(date -u +%Y-%m-%d)-${name}-uring-perf.md"
share() { # FILE REGEX: the summed share of the matching symbols, and each
  awk -v re="^($2)\$" '$2 == "[k]" && $3 ~ re { s += $1; d = d sprintf("%s %s; ", $3, $1) }
    END { printf "%.2f%% (%s)", s, (d == "" ? "none sampled" : d) }' "$1"
}
rows() { # WHAT CELL REGEX SERVERS...: a table, a row per server and round
  local what=$1 cell=$2 re=$3 t r
  shift 3
  echo "| server | round | ${what} |"
  echo "|---|--:|---|"
  for t in "$@"; do
    for r in $(seq 1 "$rounds"); do
      echo "| $t | $r | $(share "$work/$t-$cell-r$r.flat.txt" "$re") |"
    done
  done
}
{
  echo "# io_uring perf by symbol, $(date -u +%Y-%m-%d), ${name}"
  echo
  echo "Written by \`scripts/uring-perf.sh\`; nothing here is typed by hand."
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| date (UTC) | ${started} |"
  echo "| commit | \`$(git rev-parse --short=12 HEAD)\`$(git status --porcelain --untracked-files=no | grep -q . && echo ' (with uncommitted changes)' || true) |"
  echo "| CPU | ${cpu}, ${cores} cores |"
  echo "| kernel | $(uname -r) |"
  echo "| command | \`scripts/uring-perf.sh --rounds ${rounds}\` (load average ${load_start} at start, ${load_end} at end) |"
  echo
  echo "## File lookups at 500 connections (percent of the server's samples)"
  echo
  rows "file lookup symbols" c500 "$lookups" full noreg epoll
  echo
  echo "(full: io_uring full, sockets in the registered file table; noreg: the same with"
  echo "\`--no-register-files\`.)"
  echo
  echo "## Spinlocks at one connection"
  echo
  rows "spinlock symbols" c1 '_raw_spin_lock[a-z_]*|__pv_queued_spin_lock_slowpath|native_queued_spin_lock_slowpath' \
    full single epoll
  echo
  echo "(single: \`--uring-wait single\`.) Call chains of the queued-spinlock slow path,"
  echo "every round that sampled it (\`perf report -g caller,0\`, the first 80 lines):"
  for t in full single epoll; do
    for r in $(seq 1 "$rounds"); do
      chain=$(perf report -i "$work/$t-c1-r$r.data" --stdio --no-children --sort sym -q \
        -S __pv_queued_spin_lock_slowpath,native_queued_spin_lock_slowpath -g caller,0 \
        2>/dev/null | grep -v '^\s*$' | head -80 || true)
      [ -n "$chain" ] || continue
      echo
      echo "### $t, round $r"
      echo
      echo '```'
      echo "$chain"
      echo '```'
    done
  done
} >"$page"
rm -rf "$work"
echo "$page"
