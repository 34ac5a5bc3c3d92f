#!/usr/bin/env bash
# Where io_uring's CPU goes against epoll's, symbol by symbol (bench --profile keeps
# only groups and the 12 heaviest symbols): a dated page
# docs/results/<date>-<machine>-uring-perf.md.
#
#   scripts/uring-perf.sh [--rounds N] [--name MACHINE]
#
# perf records CPU 0, the server's CPU, as a whole (`perf record -a -C 0`), and each
# server's samples are kept by pid: attaching to the process (`-p`) costs it at every
# context switch, which at one connection is every message (docs/io_uring-work.md,
# section 13).
# Per round:
# - io_uring full, full --no-register-files and epoll, each alone at 500 connections
#   (`ringmux serve` on CPU 0, `ringmux load`, 128-byte echo, closed loop, on CPU 1;
#   2.5 s recorded in the middle of a 4.5 s load): the file-lookup symbols.
# - full, full --uring-wait single and epoll, each alone at one connection with call
#   graphs (-g): the queued-spinlock slow path and who took the lock.
# - full and epoll together at one connection (both on CPU 0, each with its own load
#   on CPU 1, the whole 5 s recorded): every symbol in samples per 1,000 messages, and
#   the symbols only one of them has (the IO model's own work) side by side.
# Environment: RINGMUX_BIN (default: cargo build --release). Needs perf and python3.
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
  perf record -q $g -F 1999 -a -C 0 -o "$work/$tag.data" -- sleep 2.5 >/dev/null 2>&1 || true
  echo "$sp" >"$work/$tag.pid"
  wait "$lp" || true
  kill -TERM "$sp" 2>/dev/null || true
  wait "$sp" || true
  # pid in the sort key: keyed by symbol alone, a symbol the idle task also sampled is
  # one entry, and --pid keeps or drops it whole.
  perf report -i "$work/$tag.data" --pid "$sp" --percentage relative --stdio --no-children \
    --sort pid,sym -q -g none >"$work/$tag.flat.txt" 2>/dev/null || true
}

# together TAG: full and epoll at once on CPU 0, each with a one-connection load on
# CPU 1, the whole run recorded; writes TAG.data, TAG.{uring,epoll}.{pid,load.json}.
together() {
  local tag=$1 pu pe su se lu le pp
  pu=$(free_port); pe=$(free_port)
  taskset -c 0 "$bin" serve --addr "127.0.0.1:$pu" --quiet --backend uring --uring-features full &
  su=$!
  taskset -c 0 "$bin" serve --addr "127.0.0.1:$pe" --quiet --backend epoll &
  se=$!
  sleep 0.4
  echo "$su" >"$work/$tag.uring.pid"; echo "$se" >"$work/$tag.epoll.pid"
  perf record -q -F 1999 -a -C 0 -o "$work/$tag.data" >/dev/null 2>&1 &
  pp=$!
  sleep 0.3
  taskset -c 1 "$bin" load --addr "127.0.0.1:$pu" --conns 1 --size 128 --duration 5 \
    --warmup 0.3 --quiet --json "$work/$tag.uring.load.json" &
  lu=$!
  taskset -c 1 "$bin" load --addr "127.0.0.1:$pe" --conns 1 --size 128 --duration 5 \
    --warmup 0.3 --quiet --json "$work/$tag.epoll.load.json" &
  le=$!
  wait "$lu" "$le" || true
  kill -INT "$pp" 2>/dev/null || true
  wait "$pp" || true
  kill -TERM "$su" "$se" 2>/dev/null || true
  wait "$su" "$se" || true
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
  together "pair-r$r"
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
  awk -v re="^($2)\$" '$3 == "[k]" && $4 ~ re { s += $1; d = d sprintf("%s %s; ", $4, $1) }
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
      chain=$(perf report -i "$work/$t-c1-r$r.data" --pid "$(cat "$work/$t-c1-r$r.pid")" \
        --percentage relative --stdio --no-children --sort pid,sym -q \
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
  echo
  echo "## io_uring against epoll at one connection, together, per 1,000 messages"
  echo
  echo "Both servers on CPU 0 at once, each with its own one-connection load on CPU 1;"
  echo "perf samples (1999 a second) of each server per 1,000 of its messages (warm-up"
  echo "included, as recorded). A symbol counts as one model's own when the other has"
  echo "under an eighth of its samples of it."
  echo
  python3 - "$work" "$rounds" <<'PY'
import json, re, subprocess, sys
work, rounds = sys.argv[1], int(sys.argv[2])
per = {"uring": {}, "epoll": {}}
msgs = {"uring": 0, "epoll": 0}
print("| round | uring samples / 1k msgs | epoll samples / 1k msgs | ratio |")
print("|--:|--:|--:|--:|")
for r in range(1, rounds + 1):
    tag = f"{work}/pair-r{r}"
    tot = {}
    for side in per:
        pid = open(f"{tag}.{side}.pid").read().strip()
        j = json.load(open(f"{tag}.{side}.load.json"))
        m = j["messages"] + j.get("warmup_messages", 0)
        out = subprocess.run(
            ["perf", "report", "-i", f"{tag}.data", "--pid", pid, "--stdio", "-n",
             "--no-children", "--sort", "pid,sym", "-q", "--percent-limit", "0"],
            capture_output=True, text=True).stdout
        n = 0
        for line in out.splitlines():
            x = re.match(r"\s*[\d.]+%\s+(\d+)\s+\d+:\S*\s+\[.\]\s+(.*)$", line)
            if x:
                per[side][x[2].strip()] = per[side].get(x[2].strip(), 0) + int(x[1])
                n += int(x[1])
        msgs[side] += m
        tot[side] = n / max(m, 1) * 1000
    print(f"| {r} | {tot['uring']:.2f} | {tot['epoll']:.2f} | {tot['uring'] / max(tot['epoll'], 1e-9):.3f} |")
k = {s: 1000 / max(msgs[s], 1) for s in per}
u = {s: v * k["uring"] for s, v in per["uring"].items()}
e = {s: v * k["epoll"] for s, v in per["epoll"].items()}
own_u = {s: v for s, v in u.items() if e.get(s, 0) * 8 < v}
own_e = {s: v for s, v in e.items() if u.get(s, 0) * 8 < v}
shared = set(u) | set(e)
shared -= set(own_u) | set(own_e)
print()
print(f"All rounds: uring {sum(u.values()):.2f}, epoll {sum(e.values()):.2f} samples per 1,000 messages; "
      f"own symbols {sum(own_u.values()):.2f} against {sum(own_e.values()):.2f}; the rest "
      f"{sum(u.get(s, 0) for s in shared):.2f} against {sum(e.get(s, 0) for s in shared):.2f}.")
print()
print("| uring's own symbol | per 1k msgs | epoll's own symbol | per 1k msgs |")
print("|---|--:|---|--:|")
a = sorted(own_u.items(), key=lambda t: -t[1])[:25]
b = sorted(own_e.items(), key=lambda t: -t[1])[:25]
for i in range(max(len(a), len(b))):
    l = f"`{a[i][0]}` | {a[i][1]:.2f}" if i < len(a) else " | "
    rr = f"`{b[i][0]}` | {b[i][1]:.2f}" if i < len(b) else " | "
    print(f"| {l} | {rr} |")
PY
} >"$page"
rm -rf "$work"
echo "$page"
