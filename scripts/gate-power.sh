#!/usr/bin/env bash
# Measure the paired CI gate itself: its false alarms (A/A: the same build as base and
# head) and its power (A/B: the head slowed by a known fault of RINGMUX_FAULTS), by
# running the gate's bench and `compare` many times, interleaved kind by kind.
#
#   scripts/gate-power.sh [--rounds N] [--out DIR] KIND=FAULTS ...
#
#   KIND=FAULTS   a name and the RINGMUX_FAULTS of the head ("" for none), e.g.
#                 aa=  cpu25=input-work-ns=2100  sys=extra-syscalls=4
#   --rounds N    rounds (default 10); each round runs every kind once, in order
#   --out DIR     where the runs go (default bench-out/gate-power)
#
# The base is the same binary behind a wrapper that clears RINGMUX_FAULTS, so only
# the head pays the fault. Environment: RINGMUX_BIN (default: cargo build --release),
# RINGMUX_BENCH_ARGS (default: the paired gate's bench, below), RINGMUX_MAX_REGRESSION
# (default: scripts/ci-bench.sh's paired limits).
#
# Output: DIR/KIND-ROUND/ (the bench folder, compare.txt, exit), DIR/runs.tsv (one line
# per gate run: kind, round, exit code, the metrics that fired) and DIR/summary.md
# (per kind: runs that exited 1, on which metric, and the CPU and syscall change per
# message the fault actually made, per cell).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=10
out=bench-out/gate-power
kinds=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="${2:?--rounds needs a number}"; shift 2 ;;
    --out) out="${2:?--out needs a folder}"; shift 2 ;;
    -*) echo "gate-power.sh: unknown option $1" >&2; exit 2 ;;
    *=*) kinds+=("$1"); shift ;;
    *) echo "gate-power.sh: $1 is not KIND=FAULTS" >&2; exit 2 ;;
  esac
done
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "gate-power.sh: --rounds must be a positive integer" >&2; exit 2; }
[ ${#kinds[@]} -gt 0 ] || { echo "gate-power.sh: no KIND=FAULTS given (e.g. aa= cpu25=input-work-ns=2100)" >&2; exit 2; }

if [[ -n "${RINGMUX_BIN:-}" ]]; then
  src="$RINGMUX_BIN"
else
  cargo build --release --locked --quiet
  src=target/release/ringmux
fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"
# A copy, so that a rebuild during the measurement changes neither side.
bin="$out/ringmux"
cp "$src" "$bin"
cat >"$out/base.sh" <<EOF
#!/bin/sh
exec env -u RINGMUX_FAULTS "$bin" "\$@"
EOF
chmod +x "$out/base.sh"

# The paired gate of scripts/ci-bench.sh --paired, on the cells issue 19 measured.
read -r -a bench_args <<<"${RINGMUX_BENCH_ARGS:---quick --backends uring,epoll --conns 50 --duration 0.5 --repeat 8 --open-rate 20000 --no-peers --quiet-secs 0}"
limits="${RINGMUX_MAX_REGRESSION:-$(sed -n 's/^paired_default="\(.*\)"$/\1/p' scripts/ci-bench.sh)}"
[ -n "$limits" ] || { echo "gate-power.sh: no limits (RINGMUX_MAX_REGRESSION, or paired_default in scripts/ci-bench.sh)" >&2; exit 2; }
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M') UTC; commit $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
  echo "bench: ringmux bench ${bench_args[*]} --versus $out/base.sh --out DIR"
  echo "gate: ringmux compare DIR/results.json --pair @base --max-regression $limits"
  echo "kinds: ${kinds[*]}; rounds: $rounds"
} >"$out/setup.txt"
cat "$out/setup.txt" >&2

touch "$out/runs.tsv"
for ((r = 1; r <= rounds; r++)); do
  for k in "${kinds[@]}"; do
    name="${k%%=*}" faults="${k#*=}"
    dir="$out/$name-$r"
    [ -f "$dir/exit" ] && continue # done in an earlier, interrupted invocation
    rm -rf "$dir"
    t0=$(date +%s)
    if ! env ${faults:+RINGMUX_FAULTS="$faults"} "$bin" bench "${bench_args[@]}" \
      --versus "$out/base.sh" --out "$dir" >"$out/$name-$r.log" 2>&1; then
      echo "gate-power.sh: the bench of $name round $r failed: see $out/$name-$r.log" >&2
      exit 1
    fi
    set +e
    "$bin" compare "$dir/results.json" --pair @base --max-regression "$limits" >"$dir/compare.txt" 2>&1
    code=$?
    set -e
    fired=$(sed -n 's/^regression: \([^ ]*\) \([^:]*\):.*/\1 \2/p' "$dir/compare.txt" | paste -sd, -)
    echo "$code" >"$dir/exit"
    printf '%s\t%s\t%s\t%s\n' "$name" "$r" "$code" "${fired:--}" >>"$out/runs.tsv"
    echo "gate-power.sh: $name round $r: exit $code ${fired:+($fired) }in $(($(date +%s) - t0)) s" >&2
  done
done

python3 - "$out" "${kinds[@]}" >"$out/summary.md" <<'EOF'
import json, statistics, sys, glob, os
out, kinds = sys.argv[1], [k.split("=", 1) for k in sys.argv[2:]]
def pct(v): return f"{v * 100:+.1f}%"
print("| kind | head's RINGMUX_FAULTS | runs | exit 1 | metrics that fired (runs) |")
print("|---|---|--:|--:|---|")
changes = {}
for name, faults in kinds:
    runs = [l.split("\t") for l in open(f"{out}/runs.tsv").read().splitlines() if l.split("\t")[0] == name]
    fired = {}
    for _, _, code, f in runs:
        for m in set(x.split(" ")[1] + " " + x.split(" ")[0].split("/")[0] for x in f.split(",") if x != "-"):
            fired[m] = fired.get(m, 0) + 1
    ones = sum(1 for r in runs if r[2] == "1")
    desc = ", ".join(f"{m} ({n})" for m, n in sorted(fired.items())) or "none"
    print(f"| {name} | `{faults or '(none)'}` | {len(runs)} | {ones} | {desc} |")
    # The change the fault made: per run, the median over pairs of (head-base)/base.
    for d in sorted(glob.glob(f"{out}/{name}-*/results.json")):
        cells = {c["id"]: c for c in json.load(open(d))["cells"]}
        for cid, c in cells.items():
            if "@base" in cid: continue
            srv, rest = cid.split("/", 1)
            b = cells[f"{srv}@base/{rest}"]
            for m in ("cpu_ns_per_msg", "syscalls_per_msg"):
                ch = [(h[m] - x[m]) / x[m] for x, h in zip(b["runs"], c["runs"]) if x.get(m) and h.get(m) is not None]
                if ch:
                    changes.setdefault((name, cid, m), []).append(statistics.median(ch))
print()
print("Change per message the head showed against the base: per gate run the paired")
print("median over its pairs, then the median over the runs [lowest, highest run].")
print()
print("| kind | cell | CPU/msg | syscalls/msg |")
print("|---|---|--:|--:|")
for name, _ in kinds:
    for cid in sorted({c for (n, c, _) in changes if n == name}):
        row = []
        for m in ("cpu_ns_per_msg", "syscalls_per_msg"):
            v = changes.get((name, cid, m), [])
            row.append(f"{pct(statistics.median(v))} [{pct(min(v))}, {pct(max(v))}]" if v else "–")
        print(f"| {name} | {cid} | {row[0]} | {row[1]} |")
EOF
cat "$out/summary.md"
