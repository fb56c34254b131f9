#!/usr/bin/env bash
# Heavier runs of tests/test_load.py: the same checks (every agent gets its
# own answer, no torn or lost journal line, no dot-temp left) at larger sizes.
# Not part of CI; prints the measured figures. Sizes can be overridden:
#   LOAD_AGENTS (256)  LOAD_SAME_TARGET_AGENTS (32)
#   LOAD_JOURNAL_PROCS (64)  LOAD_JOURNAL_PER_PROC (1000)
#   LOAD_OLD_RESPONSES (300000)  LOAD_STALE_REQUESTS (30000)
#   VENV (.venv)  the virtualenv with the agent installed (scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
export LOAD_AGENTS=${LOAD_AGENTS:-256}
export LOAD_SAME_TARGET_AGENTS=${LOAD_SAME_TARGET_AGENTS:-32}
export LOAD_JOURNAL_PROCS=${LOAD_JOURNAL_PROCS:-64}
export LOAD_JOURNAL_PER_PROC=${LOAD_JOURNAL_PER_PROC:-1000}
export LOAD_OLD_RESPONSES=${LOAD_OLD_RESPONSES:-300000}
export LOAD_STALE_REQUESTS=${LOAD_STALE_REQUESTS:-30000}
echo "[load] $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) CPUs: agents=$LOAD_AGENTS" \
  "same-target=$LOAD_SAME_TARGET_AGENTS journal=${LOAD_JOURNAL_PROCS}x$LOAD_JOURNAL_PER_PROC" \
  "responses=$LOAD_OLD_RESPONSES stale=$LOAD_STALE_REQUESTS"
exec "$VENV/bin/python" -m pytest tests/test_load.py -s -q -p no:cacheprovider \
  --timeout=1800 "$@"
