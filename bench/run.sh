#!/usr/bin/env bash
# Runs the benchmark suite: prints a table and writes bench/results/latest.json.
#   VENV (default .venv)  virtualenv with the agent installed (make setup)
#   FENCE_DUMMY           fence_dummy.py with recorder mode (fence-agents'
#                         agents/dummy/fence_dummy.py, from a checkout that has
#                         it): measured side by side; skipped when unset
#   extra arguments go to bench/harness.py (e.g. --only latency,burst --runs 50;
#   the sections live in bench/fgr_bench/, one module each)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
if [ ! -x "$PY" ] || ! "$PY" -c 'import fence_gfs2_recorder._native' 2>/dev/null; then
  echo "bench: no agent in $VENV; run 'make setup' (or VENV=$VENV bash scripts/setup.sh)" >&2
  exit 1
fi
for tool in hyperfine /usr/sbin/fence_dummy; do
  command -v "$tool" >/dev/null || { echo "bench: $tool missing (make setup installs it)" >&2; exit 1; }
done

# Nothing the agent reads leaks in from the caller's environment: the harness
# removes every variable the agent's options name (bench/fgr_bench/common.py).

# Measure the agent as Pacemaker runs it: the installed one, whose interpreter
# is the system Python, like fence_dummy's (root only; else the virtualenv's).
agent_args=()
if [ "$(id -u)" = 0 ]; then
  VENV=$VENV bash scripts/install.sh >/dev/null
  agent_args=(--agent /usr/sbin/fence_gfs2_recorder)
fi

work=$(mktemp -d /tmp/fgr-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p bench/results
dummy_args=()
if [ -n "${FENCE_DUMMY:-}" ]; then
  dummy_args=(--fence-dummy "$(realpath "$FENCE_DUMMY")")
fi
"$PY" bench/harness.py --work "$work" --out bench/results/latest.json "${agent_args[@]}" \
  "${dummy_args[@]}" "$@"
