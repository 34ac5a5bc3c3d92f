#!/usr/bin/env bash
# Run N ringmux load agents in Kubernetes against one server, then merge their results.
#   IMAGE=registry/ringmux:tag AGENTS=3 CONNS=150 RATE=300000 DURATION=30 scripts/k8s/run.sh
# Needs kubectl (a namespace you own) and envsubst. The start time is set here, once,
# LEAD seconds ahead (default 60) so every pod is scheduled and connected before it.
set -euo pipefail
cd "$(dirname "$0")"
export IMAGE="${IMAGE:?set IMAGE to an image with ringmux on its PATH}"
export AGENTS="${AGENTS:-3}" CONNS="${CONNS:-150}" RATE="${RATE:-30000}" DURATION="${DURATION:-30}"
export START_AT=$(( $(date +%s) + ${LEAD:-60} ))
vars='${IMAGE} ${AGENTS} ${START_AT} ${CONNS} ${RATE} ${DURATION}'
kubectl delete job ringmux-load-agents ringmux-merge --ignore-not-found
envsubst "$vars" <ringmux-agents.yaml | kubectl apply -f -
kubectl wait --for=condition=complete job/ringmux-load-agents --timeout="$(( ${LEAD:-60} + DURATION + 300 ))s" ||
  echo "run.sh: some agents failed; the merge names them and fails" >&2
envsubst "$vars" <ringmux-merge.yaml | kubectl apply -f -
kubectl wait --for=condition=complete job/ringmux-merge --timeout=300s
kubectl logs job/ringmux-merge
