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
# message the fault actually made, per cell; the first kind's run-to-run spread of
# every metric). Runs already done in DIR are kept: run it again to resume, or to
# rewrite the summary. `scripts/run-page.sh --gate DIR` makes the dated run page.
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
[ "$src" -ef "$bin" ] || cp "$src" "$bin"
cat >"$out/base.sh" <<EOF
#!/bin/sh
exec env -u RINGMUX_FAULTS "$bin" "\$@"
EOF
chmod +x "$out/base.sh"

# The paired gate of scripts/ci-bench.sh --paired, on the cells issue 19 measured.
read -r -a bench_args <<<"${RINGMUX_BENCH_ARGS:---quick --backends uring,epoll --conns 50 --duration 0.5 --repeat 8 --open-rate 20000 --no-peers --quiet-secs 0 --versus-mode together}"
limits="${RINGMUX_MAX_REGRESSION:-$(sed -n 's/^paired_default="\(.*\)"$/\1/p' scripts/ci-bench.sh)}"
[ -n "$limits" ] || { echo "gate-power.sh: no limits (RINGMUX_MAX_REGRESSION, or paired_default in scripts/ci-bench.sh)" >&2; exit 2; }
# The first invocation's setup stands: a resumed or re-summarised folder keeps it.
[ -f "$out/setup.txt" ] || {
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

# The same runs judged again with other CPU limits (the rest as given): what the
# choice of the cpu limit trades between false alarms and catches.
alt_cpu="0% 2% 3% 5% 8%"
: >"$out/alt.tsv"
for k in "${kinds[@]}"; do
  name="${k%%=*}"
  for c in $alt_cpu; do
    ones=0 n=0
    for d in "$out/$name"-*/; do
      [ -f "$d/exit" ] || continue
      n=$((n + 1))
      alt="$(echo ",$limits," | sed -E "s/,cpu=[^,]*,/,/; s/^,//; s/,$//"),cpu=$c"
      set +e
      "$bin" compare "$d/results.json" --pair @base --max-regression "$alt" >/dev/null 2>&1
      [ $? -eq 1 ] && ones=$((ones + 1))
      set -e
    done
    printf '%s\t%s\t%s\t%s\n' "$name" "$c" "$ones" "$n" >>"$out/alt.tsv"
  done
done

GATE_OTHER_LIMITS="$(echo ",$limits," | sed -E "s/,cpu=[^,]*,/,/; s/^,//; s/,$//")" \
  python3 - "$out" "${kinds[@]}" >"$out/summary.md" <<'EOF'
import json, os, statistics as st, sys, glob
out, kinds = sys.argv[1], [k.split("=", 1) for k in sys.argv[2:]]
METRICS = [("CPU/msg", "cpu_ns_per_msg"), ("syscalls/msg", "syscalls_per_msg"),
           ("ctx/msg", "ctx_switches_per_msg"), ("p99", "p99_ns"), ("msgs/s", "msgs_per_s")]
def pct(v): return f"{v * 100:+.1f}%"
def spread(v): return f"{pct(st.median(v))} [{pct(min(v))}, {pct(max(v))}]"
def rows(name):
    """Per gate run of `name`: {(cell, metric): (base runs, head runs)}."""
    for d in sorted(glob.glob(f"{out}/{name}-*/results.json")):
        cells = {c["id"]: c for c in json.load(open(d))["cells"]}
        res = {}
        for cid, c in cells.items():
            if "@base" in cid: continue
            srv, rest = cid.split("/", 1)
            b = cells[f"{srv}@base/{rest}"]
            for label, m in METRICS:
                if m == "msgs_per_s" and c.get("rate"): continue  # an input in open loop
                bv = [r.get(m) for r in b["runs"]]; hv = [r.get(m) for r in c["runs"]]
                if all(x for x in bv) and all(x is not None for x in hv):
                    res[(cid, label)] = (bv, hv)
        yield res
def pair_changes(bv, hv): return [(h - x) / x for x, h in zip(bv, hv)]
def seconds(name):
    """Each gate run's length: from the bench's start to the verdict written."""
    import os
    for d in sorted(glob.glob(f"{out}/{name}-*/exit")):
        start = json.load(open(d[:-4] + "results.json"))["start_unix_s"]
        yield os.path.getmtime(d) - start
print("| kind | head's RINGMUX_FAULTS | gate runs | exit 1 | metrics that fired (runs) | seconds per gate run |")
print("|---|---|--:|--:|---|--:|")
for name, faults in kinds:
    runs = [l.split("\t") for l in open(f"{out}/runs.tsv").read().splitlines() if l.split("\t")[0] == name]
    fired = {}
    for _, _, code, f in runs:
        for m in {x.split(" ")[1] + " of " + x.split(" ")[0].split("/")[0] for x in f.split(",") if x != "-"}:
            fired[m] = fired.get(m, 0) + 1
    ones = sum(1 for r in runs if r[2] == "1")
    desc = ", ".join(f"{m} ({n})" for m, n in sorted(fired.items())) or "none"
    secs = list(seconds(name))
    took = f"{st.median(secs):.0f} [{min(secs):.0f}, {max(secs):.0f}]" if secs else "–"
    print(f"| {name} | `{faults or '(none)'}` | {len(runs)} | {ones} | {desc} | {took} |")
print()
print("The change the head showed against the base, per message: per gate run the paired")
print("median over its pairs, then the median over the gate runs [lowest, highest run].")
print()
print("Nominal: the `input-work-ns` asked, as a share of the base's CPU/msg (median of")
print("its repeats), median over the gate runs [lowest, highest].")
print()
print("| kind | cell | CPU/msg | syscalls/msg | nominal |")
print("|---|---|--:|--:|--:|")
for name, faults in kinds:
    work = [int(f.split("=")[1]) for f in faults.split(",") if f.startswith("input-work-ns=")]
    ch, nom = {}, {}
    for res in rows(name):
        for (cid, label), (bv, hv) in res.items():
            ch.setdefault((cid, label), []).append(st.median(pair_changes(bv, hv)))
            if label == "CPU/msg" and work:
                nom.setdefault(cid, []).append(work[0] / st.median(bv))
    for cid in sorted({c for c, _ in ch}):
        cells = [spread(ch[(cid, l)]) if (cid, l) in ch else "–" for l in ("CPU/msg", "syscalls/msg")]
        n = spread(nom[cid]) if cid in nom else "–"
        print(f"| {name} | {cid} | {cells[0]} | {cells[1]} | {n} |")
alt = [l.split("\t") for l in open(f"{out}/alt.tsv").read().splitlines()]
limits_seen = list(dict.fromkeys(a[1] for a in alt))
print()
print("The same gate runs judged with another cpu limit, every other limit as in")
print(f"`{os.environ['GATE_OTHER_LIMITS']}`: gate runs that exit 1. Chosen after seeing")
print("the runs, so optimistic.")
print()
print("| kind | " + " | ".join(f"cpu={c}" for c in limits_seen) + " |")
print("|---|" + "--:|" * len(limits_seen))
for name, _ in kinds:
    cells = {a[1]: f"{a[2]} of {a[3]}" for a in alt if a[0] == name}
    print(f"| {name} | " + " | ".join(cells.get(c, "–") for c in limits_seen) + " |")
name = kinds[0][0]
print()
print(f"Run-to-run spread, from the `{name}` runs: CV of one side's repeats (what an")
print("unpaired gate sees), sd of the per-pair change (what the paired gate sees), and the")
print("paired median change; each the median over the gate runs, the worst in brackets")
print("(for the change: the lowest and highest run).")
print()
print("| metric | cell | CV of one side's repeats | sd of per-pair change | paired median change |")
print("|---|---|--:|--:|--:|")
acc = {}
for res in rows(name):
    for key, (bv, hv) in res.items():
        a = acc.setdefault(key, ([], [], []))
        a[0].append(st.stdev(bv) / st.mean(bv))
        a[1].append(st.stdev(pair_changes(bv, hv)))
        a[2].append(st.median(pair_changes(bv, hv)))
p = lambda v: f"{v * 100:.1f}%"
for label, _ in METRICS:
    for (cid, l), (cv, sd, med) in sorted(acc.items()):
        if l == label:
            print(f"| {label} | {cid} | {p(st.median(cv))} [{p(max(cv))}] | {p(st.median(sd))} [{p(max(sd))}] | {spread(med)} |")
EOF
cat "$out/summary.md"
