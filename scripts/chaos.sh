#!/usr/bin/env bash
# Chaos: every `serve --backend` and io_uring level, with RINGMUX_FAULTS at random
# rates (recv-reset, recv-nobufs, send-short), under `ringmux load` that verifies every
# byte. Fails on any mismatch, timeout or failed connect, on a descriptor left open,
# or on accepted != closed. The logic lives in tests/it_chaos.rs (CI runs it for about
# 30 s); this script runs it for as long as you like.
#
#   scripts/chaos.sh [SECONDS_PER_VARIANT] [SEED]     e.g. scripts/chaos.sh 1800  (5.5 h)
#
# Variants run one at a time (--test-threads 1), release build. Each prints one line:
# rounds, connections, messages, bytes verified, resets (expected), faults injected.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
export RINGMUX_CHAOS_SECS=$secs
[ -n "${2:-}" ] && export RINGMUX_CHAOS_SEED=$2
ulimit -n 20000 2>/dev/null || true
echo "chaos: ${secs}s per variant (11 variants), seed ${RINGMUX_CHAOS_SEED:-from the clock, printed per variant}"
set +e
cargo test --release --locked --test tests it_chaos:: -- --test-threads 1 --nocapture 2>&1 | grep --line-buffered -E '^(chaos |test |SKIPPED|thread .* panicked|test result)|mismatch|fds '
exit "${PIPESTATUS[0]}"
