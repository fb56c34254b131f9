#!/usr/bin/env bash
# Installs everything the agent, its tests and its demo need on a fresh
# Debian 12 machine, then builds the native module into the virtualenv.
# (rpm ... debootstrap: make dist and make dist-check.)
#   VENV (default .venv)   the virtualenv to create and install into
#   SKIP_APT=1             do not touch system packages
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
APT_PACKAGES=(fence-agents libxml2-utils xsltproc pacemaker pacemaker-cli-utils corosync
              logrotate hyperfine python3-venv procps faketime spin gcc jq sudo
              golang-go bindfs fuse3 sshfs openssh-sftp-server pcs iproute2
              rpm rpmlint lintian cpio binutils debootstrap)
PY_PACKAGES=(maturin pytest pytest-timeout ruff mypy pexpect pycurl)

log() { printf '[setup] %s\n' "$*"; }

missing=()
if [ "${SKIP_APT:-0}" != 1 ]; then
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    log "missing Debian packages: ${missing[*]} (run as root, or install them yourself)"; exit 1
  fi
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  # The packages start nothing here (no systemd), but make sure no cluster
  # daemon was left running by a package script.
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  python3 -m venv "$VENV"
fi
stamp="$VENV/.deps-installed"
if [ ! -f "$stamp" ]; then
  log "installing Python packages: ${PY_PACKAGES[*]}"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
  touch "$stamp"
fi

log "building the native module (release)"
dist="$VENV/dist"; rm -rf "$dist"
"$VENV/bin/maturin" build --release --quiet -o "$dist" -i "$VENV/bin/python" >/dev/null
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall "$dist"/*.whl
log "ready: $("$VENV/bin/python" -c 'import fence_gfs2_recorder as f; print(f.__version__)')"
