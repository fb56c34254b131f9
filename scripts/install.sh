#!/usr/bin/env bash
# Installs the agent where Pacemaker finds and can run it (as root):
#   /opt/fence_gfs2_recorder/venv            virtualenv from /usr/bin/python3 with the
#                                            wheel, pexpect and pycurl (world-readable:
#                                            pacemaker-controld runs metadata as hacluster)
#   /usr/sbin/fence_gfs2_recorder            the agent, shebang = that venv's python
#   /usr/share/man/man8/fence_gfs2_recorder.8.gz
#   /usr/share/fence_gfs2_recorder/fence-gfs2-rotate-hold  (for copytruncate rotation)
# Safe to run again: it refreshes the wheel, the script and the man page.
#   VENV (default .venv)        build virtualenv that has maturin (see scripts/setup.sh)
#   INSTALL_VENV, SBINDIR, MAN8DIR, SHAREDIR, BASE_PYTHON   override the locations above
#                               (BASE_PYTHON: 3.9 or newer, else it refuses, naming the version)
set -euo pipefail
cd "$(dirname "$0")/.."
umask 022

VENV=${VENV:-.venv}
BASE_PYTHON=${BASE_PYTHON:-/usr/bin/python3}
INSTALL_VENV=${INSTALL_VENV:-/opt/fence_gfs2_recorder/venv}
SBINDIR=${SBINDIR:-/usr/sbin}
MAN8DIR=${MAN8DIR:-/usr/share/man/man8}
SHAREDIR=${SHAREDIR:-/usr/share/fence_gfs2_recorder}
RELAXNG=${RELAXNG:-/usr/share/cluster/relaxng}
AGENT=fence_gfs2_recorder

log() { printf '[install] %s\n' "$*"; }
die() { printf '[install] error: %s\n' "$*" >&2; exit 1; }

for tool in xsltproc xmllint gzip; do
  command -v "$tool" >/dev/null || die "$tool not found (run scripts/setup.sh as root)"
done
[ -x "$BASE_PYTHON" ] || die "$BASE_PYTHON not found"
# The native module is built with PyO3 for the stable ABI of 3.9; RHEL 8's
# /usr/bin/python3 is 3.6, which PyO3 cannot run under at all.
base_version=$("$BASE_PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])') \
  || die "$BASE_PYTHON does not run"
"$BASE_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' \
  || die "$BASE_PYTHON is Python $base_version; the agent needs Python 3.9 or newer" \
         "(PyO3). On RHEL 8: dnf install python39, then BASE_PYTHON=/usr/bin/python3.9"
[ -r "$RELAXNG/fence2man.xsl" ] || die "$RELAXNG/fence2man.xsl not found (install fence-agents)"
maturin=$VENV/bin/maturin
[ -x "$maturin" ] || die "$maturin not found: run scripts/setup.sh (or make setup) first"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. The wheel (abi3: one build serves every Python >= 3.9). scripts/setup.sh
# has just built one for $VENV; build only when it is missing.
wheels=("$VENV"/dist/*.whl)
if [ ! -f "${wheels[0]}" ]; then
  log "building the wheel"
  "$maturin" build --release --quiet -o "$work/wheel" -i "$BASE_PYTHON" >"$work/build.log" 2>&1 \
    || { cat "$work/build.log" >&2; die "maturin build failed"; }
  wheels=("$work"/wheel/*.whl)
fi
[ -f "${wheels[0]}" ] || die "no wheel to install"

# 2. The virtualenv. A venv made by another interpreter is rebuilt.
base_real=$(readlink -f "$BASE_PYTHON")
if [ -x "$INSTALL_VENV/bin/python" ] \
   && [ "$(readlink -f "$INSTALL_VENV/bin/python")" != "$base_real" ]; then
  log "virtualenv $INSTALL_VENV uses another interpreter: recreating it"
  rm -rf "$INSTALL_VENV"
fi
if [ ! -x "$INSTALL_VENV/bin/python" ]; then
  log "creating virtualenv $INSTALL_VENV from $BASE_PYTHON"
  mkdir -p "$(dirname "$INSTALL_VENV")"
  "$BASE_PYTHON" -m venv "$INSTALL_VENV"
fi
pip=("$INSTALL_VENV/bin/python" -m pip install -q --disable-pip-version-check)
if ! "$INSTALL_VENV/bin/python" -c 'import pexpect, pycurl' 2>/dev/null; then
  log "installing pexpect and pycurl (fencing.py imports them)"
  "${pip[@]}" pexpect pycurl
fi
log "installing $(basename "${wheels[0]}")"
"${pip[@]}" --no-deps --force-reinstall "${wheels[0]}"
chmod -R a+rX "$(dirname "$INSTALL_VENV")"

# 3. The agent. -I: no PYTHON* variables, no user site, no script directory on sys.path.
mkdir -p "$SBINDIR"
cat > "$work/$AGENT" <<EOF
#!$INSTALL_VENV/bin/python -I
# $AGENT: Pacemaker fence agent for GFS2 on NearNodeFlash storage.
import sys

from fence_gfs2_recorder.agent import main

sys.exit(main())
EOF
install -m 0755 "$work/$AGENT" "$SBINDIR/$AGENT"
log "installed $SBINDIR/$AGENT"

# 4. The man page, from the agent's own manpage XML (the same format as its metadata).
"$SBINDIR/$AGENT" -o manpage > "$work/$AGENT.xml"
xmllint --noout --relaxng "$RELAXNG/metadata.rng" "$work/$AGENT.xml" 2>"$work/xmllint.err" \
  || { cat "$work/xmllint.err" >&2; die "manpage XML does not validate against metadata.rng"; }
xsltproc "$RELAXNG/fence2man.xsl" "$work/$AGENT.xml" > "$work/$AGENT.8"
[ -s "$work/$AGENT.8" ] || die "fence2man.xsl produced an empty man page"
gzip -9n < "$work/$AGENT.8" > "$work/$AGENT.8.gz"
mkdir -p "$MAN8DIR"
install -m 0644 "$work/$AGENT.8.gz" "$MAN8DIR/$AGENT.8.gz"
log "installed $MAN8DIR/$AGENT.8.gz"

# The helper a copytruncate logrotate config runs (contrib/logrotate-copytruncate.conf).
install -D -m 0755 contrib/fence-gfs2-rotate-hold "$SHAREDIR/fence-gfs2-rotate-hold"
log "installed $SHAREDIR/fence-gfs2-rotate-hold"

# 5. What Pacemaker will do first: read the metadata as an unprivileged user.
if [ "$(id -u)" = 0 ] && id hacluster >/dev/null 2>&1 && command -v setpriv >/dev/null; then
  (cd / && setpriv --reuid=hacluster --regid=haclient --clear-groups \
     env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$SBINDIR/$AGENT" -o metadata >/dev/null) \
    || die "$SBINDIR/$AGENT -o metadata fails as user hacluster"
  log "metadata readable as user hacluster"
fi
log "done"
