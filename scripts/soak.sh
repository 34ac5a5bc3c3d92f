#!/usr/bin/env bash
# Soak: connection churn (connect, echo a random size verified byte for byte, close;
# one close in four a reset by SO_LINGER 0, one in eight before the reply) on every
# backend and io_uring level. Fails when RSS after the run exceeds RSS after the
# first fifth (the warm-up) by more than 5%, when a descriptor is left open, or when
# accepted != closed. The logic lives in tests/it_soak.rs (CI: about 60 s in all).
#
#   scripts/soak.sh [MINUTES_PER_VARIANT]      default 10 (11 variants: about 2 hours)
set -euo pipefail
cd "$(dirname "$0")/.."
min=${1:-10}
export RINGMUX_SOAK_SECS=$(python3 -c "print(float('$min') * 60)")
ulimit -n 20000 2>/dev/null || true
echo "soak: ${min} min per variant (11 variants), warm-up the first fifth"
set +e
cargo test --release --locked --test tests it_soak:: -- --test-threads 1 --nocapture 2>&1 | grep --line-buffered -E '^(soak |test |SKIPPED|thread .* panicked|test result)'
exit "${PIPESTATUS[0]}"
