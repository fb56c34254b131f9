#!/usr/bin/env bash
# A real fence exchange on temporary directories: the bundled responder plays
# the NNF reconciler, the agent fences compute-node-3 as Pacemaker would
# (options on stdin), then the outcome, the kept response and the three logs
# are shown. The directories are kept for inspection; their path is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
BIN="$(cd "$VENV/bin" && pwd)"
DEMO=$(mktemp -d /tmp/fence-gfs2-demo.XXXXXX)
REQ=$DEMO/requests RESP=$DEMO/responses LOGS=$DEMO/logs
mkdir -p "$REQ" "$RESP"
# A stand-in kubectl printing sample NnfNodeBlockStorage objects, so the
# records show GFS2 discovery at work (no Kubernetes here).
KUBECTL=$DEMO/kubectl-sample
printf '#!/bin/sh\nexec cat %q\n' "$PWD/tests/data/nnfnodeblockstorages.json" >"$KUBECTL"
chmod 0755 "$KUBECTL"
# The agent always names a kubeconfig to kubectl; the stand-in reads none,
# but the agent checks that the file is there.
KUBECONFIG_FILE=$DEMO/kubeconfig
printf 'apiVersion: v1\nkind: Config\n' >"$KUBECONFIG_FILE"

# The responder answers after 0.3 s, roughly what a real detach takes.
"$BIN/fence-gfs2-responder" --request-dir "$REQ" --response-dir "$RESP" --delay 0.3 >"$DEMO/responder.out" 2>&1 &
RESPONDER=$!
trap 'kill "$RESPONDER" 2>/dev/null || true' EXIT
sleep 0.3

section() { printf '\n=== %s\n' "$*"; }
run_agent() { # stdin lines as Pacemaker sends them
  printf '%s\n' "$@" "request_dir=$REQ" "response_dir=$RESP" "log_dir=$LOGS" "fence_timeout=10" \
    "kubeconfig=$KUBECONFIG_FILE" \
    | env -u FENCE_TIMEOUT FENCE_KUBECTL="$KUBECTL" "$BIN/fence_gfs2_recorder"
}

section "fence: action=reboot port=compute-node-3 (options on stdin, as Pacemaker sends them)"
set +e
run_agent action=reboot nodename=compute-node-3 port=compute-node-3
rc=$?
set -e
echo "exit code: $rc (0 = fenced)"

section "status while the response is kept (2 = off)"
set +e; run_agent action=status port=compute-node-3; echo "exit code: $?"; set -e

section "response kept in $RESP (NNF's record that the node is fenced)"
for f in "$RESP"/*.json; do echo "$f"; cat "$f"; done

for f in fence-events.log fence-events-readable.log fence-events-detailed.jsonl; do
  section "$LOGS/$f"
  cat "$LOGS/$f"
done

section "responder output"
cat "$DEMO/responder.out"
echo
echo "demo directories kept in $DEMO"
exit "$rc"
