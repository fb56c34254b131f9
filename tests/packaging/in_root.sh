#!/bin/sh
# The packaged agent inside a Debian root, run the way Pacemaker runs it:
# metadata through stonith_admin as the unprivileged hacluster, validated
# against fence-agents' schema; monitor, reboot, status and on with the
# options on stdin, a bare environment, from /; the packaged responder
# playing nnf-sos; the packaged report reading the records.
# scripts/dist-check.sh runs it inside each root (as /fgr/tests/packaging/in_root.sh).
set -eu
say() { echo "[in-root] $*"; }
fail() { echo "[in-root] FAILED: $*" >&2; exit 1; }
agent=/usr/sbin/fence_gfs2_recorder
sysenv() { env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }

. /etc/os-release
say "$PRETTY_NAME; $(python3 -V); $(pacemakerd --version | head -n1)"
. /usr/lib/fence_gfs2_recorder/python-choice.sh
FGR_BINDIR=/usr/bin
fgr_choose_python
say "the launcher's interpreter: $FGR_PYTHON ($("$FGR_PYTHON" -V))"
for f in /usr/sbin/fence_gfs2_recorder /usr/bin/fence-gfs2-report /usr/bin/fence-gfs2-responder \
         /usr/share/man/man8/fence_gfs2_recorder.8.gz /etc/logrotate.d/fence_gfs2_recorder \
         /usr/share/fence_gfs2_recorder/fence-gfs2-rotate-hold; do
    [ -e "$f" ] || fail "$f missing"
done

# 1. The metadata, as pcs and pacemaker-controld read it.
cd /
setpriv --reuid=hacluster --regid=haclient --clear-groups \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin stonith_admin --metadata --agent fence_gfs2_recorder \
    > /tmp/metadata.xml || fail "stonith_admin --metadata as hacluster"
rng=/usr/share/cluster/relaxng/metadata.rng
[ -r "$rng" ] || fail "$rng missing (fence-agents' schema)"
grep -q '<resource-agent name="fence_gfs2_recorder"' /tmp/metadata.xml || fail "not our metadata"
# Pacemaker adds start and stop actions with a timeout attribute, which
# fence-agents' schema does not know; the rest is the agent's, as it sees it.
sed '/<action name="st\(art\|op\)" timeout="[0-9]*s"\/>/d' /tmp/metadata.xml > /tmp/metadata-agent.xml
xmllint --noout --relaxng "$rng" /tmp/metadata-agent.xml || fail "metadata does not validate against $rng"
setpriv --reuid=hacluster --regid=haclient --clear-groups \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$agent" -o metadata > /tmp/metadata-own.xml \
    || fail "$agent -o metadata as hacluster"
xmllint --noout --relaxng "$rng" /tmp/metadata-own.xml || fail "the agent's own metadata does not validate"
say "stonith_admin --metadata (as hacluster) validates against $rng, but for Pacemaker's start/stop"

# 2. monitor, reboot, status, on: options on stdin as pacemaker-fenced sends them.
d=$(mktemp -d /tmp/fgr-in-root.XXXXXX)
chmod 0755 "$d"
opts="request_dir=$d/requests
response_dir=$d/responses
log_dir=$d/logs
fence_timeout=10
kubectl_path=
"
agent_rc() {  # agent_rc ACTION [PORT]: the agent's exit code
    { printf '%s' "$opts"; printf 'action=%s\n' "$1"; [ $# -lt 2 ] || printf 'port=%s\nnodename=%s\n' "$2" "$2"; } \
        | sysenv "$agent" >>"$d/agent.out" 2>&1 && echo 0 || echo $?
}
[ "$(agent_rc monitor)" = 0 ] || { cat "$d/agent.out"; fail "monitor"; }
say "monitor: 0"
sysenv fence-gfs2-responder --request-dir "$d/requests" --response-dir "$d/responses" \
    --mode success --count 1 >"$d/responder.out" 2>&1 &
responder=$!
i=0
until [ -s "$d/responder.out" ]; do
    i=$((i + 1)); [ $i -lt 100 ] || fail "the responder did not start: $(cat "$d/responder.out")"
    sleep 0.1
done
sleep 0.2
[ "$(agent_rc reboot compute-node-3)" = 0 ] || { cat "$d/agent.out"; fail "reboot"; }
wait "$responder" || fail "the responder: $(cat "$d/responder.out")"
grep -q '"status":"completed"' "$d/logs/fence-events-detailed.jsonl" || fail "no completed record"
say "reboot compute-node-3 against the responder: 0, completed"
[ "$(agent_rc status compute-node-3)" = 2 ] || fail "status after the fence is not off (2)"
[ "$(agent_rc on compute-node-3)" = 0 ] || { cat "$d/agent.out"; fail "on"; }
[ "$(agent_rc status compute-node-3)" = 0 ] || fail "status after on is not on (0)"
say "status off (2), on (0), status on (0)"
sysenv fence-gfs2-report --log-dir "$d/logs" --json > "$d/report.json" || fail "fence-gfs2-report"
python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); assert "compute-node-3" in json.dumps(r)' \
    "$d/report.json" || fail "the report does not name compute-node-3"
say "fence-gfs2-report reads the records"
rm -rf "$d"
say "all passed"
