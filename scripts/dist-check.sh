#!/usr/bin/env bash
# make dist-check: the proofs that make dist's artefacts install and run where
# NNF sites run them, without a RHEL machine (README, "Platforms"):
#   1. the artefacts read from the files: glibc and rpm levels at most RHEL 8's,
#      dependencies, the same files in the .deb and the RPM's payload, lintian,
#      rpmlint; the interpreter choice and the refusals (tests/packaging);
#   2. the agent's Python tests under the oldest and newest CPython the wheel
#      claims (3.9 and 3.13, pyenv), with the wheel installed;
#   3, 4. Debian 12, then Debian 13 roots (debootstrap, build/roots/): the .deb
#      by dpkg -i plus apt-get -f install, then tests/packaging/in_root.sh and
#      the one-node cluster test (tests/test_cluster.py) with the packaged
#      agent; on Debian 13 (Pacemaker 3.0) also the README deployment as
#      written (tests/test_field_cluster.py: pcs, four namespaced nodes);
#   5. the RPM's payload (rpm2cpio) unpacked into the Debian 13 root
#      (Python 3.13, not the build's 3.11) beside fence-agents-common, then
#      tests/packaging/in_root.sh.
# Needs root and the network to deb.debian.org (roots, apt-get -f). Run it
# The root steps (3, 4, 5) take flock /tmp/fgr-cluster.lock themselves: they run
# debootstrap and clusters.
#   VENV (default .venv)   DIST (default dist)   DEBIAN_MIRROR
#   DIST_CHECK_STEPS       the steps to run (default "1 2 3 4 5")
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
VENV=${VENV:-.venv}
DIST=${DIST:-dist}
PYENV=${PYENV_VERSIONS:-/root/.pyenv/versions}
STEPS=${DIST_CHECK_STEPS:-1 2 3 4 5}
# The wheel's bounds: Requires-Python >= 3.9 (PyO3's abi3-py39) and the newest here.
OLDEST_PY=3.9.18
NEWEST_PY=3.13.0
# Each root's packages before the agent: what runs a cluster and the tests.
ROOT_PACKAGES=(pacemaker pacemaker-cli-utils corosync libxml2-utils python3-pytest
               python3-pytest-timeout procps)
# The agent's Python tests that need no cluster, for step 2.
PY_TESTS=(tests/test_agent.py tests/test_conformance.py tests/test_journal.py
          tests/test_report.py tests/test_nnf_config.py tests/test_discovery.py)

log() { printf '[dist-check] %s\n' "$*"; }
die() { printf '[dist-check] error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, clusters)"
for tool in debootstrap unshare chroot rpm2cpio cpio dpkg-deb lintian rpmlint; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/setup.sh installs it)"
done
ls "$DIST"/*.deb "$DIST"/*.rpm "$DIST"/*.whl >/dev/null 2>&1 || die "no artefacts in $DIST: make dist"
deb=$(readlink -f "$DIST"/*.deb)
rpm=$(readlink -f "$DIST"/*.rpm)
wheel=$(readlink -f "$DIST"/*.whl)

work=$(mktemp -d /tmp/fgr-dist-check.XXXXXX)
trap 'rm -rf "$work"' EXIT
timings=()
t_all=$SECONDS
lock_wait=0
step() {  # step NAME COMMAND...: runs it, notes its time (without waiting for the lock)
  local name=$1 t=$SECONDS
  shift
  lock_wait=0
  log "=== $name"
  "$@" || die "$name failed"
  timings+=("$(printf '%-60s %4d s' "$name" $((SECONDS - t - lock_wait)))")
}

# session ROOT WORK NET COMMAND...: COMMAND inside an overlay of ROOT (its
# changes kept in WORK) in its own mount, PID and UTS namespaces, as root with
# a bare environment. NET=host keeps the network (apt); NET=private gives a
# namespace with loopback only (clusters). The host name is rabbit-node-1.
# Everything mounted and started dies with the namespaces.
session() {
  local lower=$1 state=$2 net=$3
  shift 3
  local flags=(--mount --pid --uts --fork)
  [ "$net" = private ] && flags+=(--net)
  mkdir -p "$state/upper" "$state/work" "$state/root"
  unshare "${flags[@]}" bash -c '
    set -e
    lower=$1 state=$2 net=$3 repo=$4
    shift 4
    r=$state/root
    mount --make-rprivate /
    mount -t overlay overlay -o "lowerdir=$lower,upperdir=$state/upper,workdir=$state/work" "$r"
    mount -t proc proc "$r/proc"
    mount -t sysfs sys "$r/sys"
    mount --rbind /dev "$r/dev"
    mount -t tmpfs -o mode=1777 tmpfs "$r/dev/shm"
    mount -t tmpfs -o mode=0755 tmpfs "$r/run"
    mount -t tmpfs -o mode=1777 tmpfs "$r/tmp"
    mkdir -p "$r/fgr"
    mount --bind "$repo" "$r/fgr"
    mount -o remount,bind,ro "$r/fgr"
    if [ "$net" = host ]; then cp /etc/resolv.conf "$r/etc/resolv.conf"; else ip link set lo up; fi
    hostname rabbit-node-1
    echo "127.0.1.1 rabbit-node-1" >> "$r/etc/hosts"
    chroot "$r" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive "$@"
  ' bash "$lower" "$state" "$net" "$REPO" "$@"
}

# The tests inside a root: the installed agent (FGR_INSTALLED), the package's
# Python on the path for the tests' own imports, nothing written into /fgr.
root_pytest() {  # root_pytest ROOT STATE PYTEST-ARGS...
  local lower=$1 state=$2
  shift 2
  session "$lower" "$state" private sh -c 'cd /fgr && FGR_INSTALLED=1 PYTHONDONTWRITEBYTECODE=1 \
      PYTHONPATH=/usr/lib/fence_gfs2_recorder/site python3 -m pytest -p no:cacheprovider -ra "$@"' \
      sh "$@"
}

deb_in_root() {  # deb_in_root SUITE [PACKAGE...]: the .deb into a clean root, and its tests
  local suite=$1 root state
  shift
  root=$(bash scripts/roots.sh "$suite" "${ROOT_PACKAGES[@]}" "$@")
  state=$work/$suite-deb
  mkdir -p "$state/upper/tmp-deb"
  cp "$deb" "$state/upper/tmp-deb/"
  log "$suite: dpkg -i $(basename "$deb"), then apt-get -f install"
  session "$root" "$state" host sh -c '
    dpkg -i /tmp-deb/*.deb || true
    apt-get update -q >/dev/null && apt-get -f install -y -q >/tmp-deb/apt.log 2>&1 \
      || { tail -n 20 /tmp-deb/apt.log; exit 1; }
    dpkg-query -W -f="\${Status} \${Version}\n" fence-agents-gfs2-recorder | grep -q "install ok installed" \
      || { echo "the package is not configured"; exit 1; }
    apt-get install -y -q iproute2 >>/tmp-deb/apt.log 2>&1 || { tail -n 20 /tmp-deb/apt.log; exit 1; }
    echo "installed: $(dpkg-query -W -f="\${Package} \${Version}" fence-agents-gfs2-recorder);" \
         "fencing library: $(dpkg -S /usr/share/fence/fencing.py | cut -d: -f1)"
  ' || return 1
  session "$root" "$state" private sh /fgr/tests/packaging/in_root.sh || return 1
  root_pytest "$root" "$state" "${ROOT_TESTS[@]}"
}

rpm_in_root() {  # the RPM's payload into the Debian 13 root, beside fence-agents-common
  local root state
  root=$(bash scripts/roots.sh trixie "${ROOT_PACKAGES[@]}" pcs)
  state=$work/trixie-rpm
  mkdir -p "$state/upper"
  session "$root" "$state" host sh -c 'apt-get update -q >/dev/null &&
      apt-get install -y -q fence-agents-common >/dev/null' || return 1
  # cpio writes the payload into the overlay's upper layer: the root's files
  # plus the RPM's, nothing of dpkg's.
  mkdir -p "$state/payload"
  (cd "$state/payload" && rpm2cpio "$rpm" | cpio -idm --quiet --no-absolute-filenames)
  cp -a "$state/payload/." "$state/upper/"
  session "$root" "$state" private sh -c '! dpkg -S /usr/sbin/fence_gfs2_recorder 2>/dev/null &&
      sh /fgr/tests/packaging/in_root.sh'
}

python_versions() {  # the agent's Python tests in a venv of each bound, the wheel installed
  local v py venv
  for v in "$OLDEST_PY" "$NEWEST_PY"; do
    py=$PYENV/$v/bin/python3
    [ -x "$py" ] || die "$py not found: pyenv's CPython $v"
    venv=$work/venv-$v
    "$py" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check pytest pytest-timeout pexpect pycurl "$wheel"
    log "CPython $v: $(${venv}/bin/python -c 'import fence_gfs2_recorder as f; print(f.__file__)')"
    # Not the three tests of make install's result: the roots run them on the packages.
    PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" -m pytest -p no:cacheprovider -q -ra "${PY_TESTS[@]}" \
      -k "not installed_metadata and not installed_man_page and not metadata_as_nobody" || return 1
  done
}

# lock COMMAND...: COMMAND under the shared cluster lock. Taken once, before
# the first root step, and kept until the end: the root steps follow each
# other, and the lock is not left to be waited for three times.
lockfd=
lock() {
  local t=$SECONDS
  if [ -z "$lockfd" ]; then
    exec {lockfd}>/tmp/fgr-cluster.lock
    flock "$lockfd"
    lock_wait=$((SECONDS - t))
    [ "$lock_wait" -lt 2 ] || log "waited $lock_wait s for /tmp/fgr-cluster.lock (not counted)"
  fi
  "$@"
}

for s in $STEPS; do
  case $s in
  1) step "1. artefacts and interpreters (tests/packaging)" \
       env PYTHONDONTWRITEBYTECODE=1 "$VENV/bin/python" -m pytest -p no:cacheprovider -ra \
       tests/packaging/test_artefacts.py tests/packaging/test_interpreters.py ;;
  2) step "2. agent tests under CPython $OLDEST_PY and $NEWEST_PY" python_versions ;;
  3) ROOT_TESTS=(tests/test_conformance.py tests/test_agent.py tests/test_cluster.py
                tests/packaging/test_pacemaker_version.py)
     step "3. Debian 12 root: .deb, in-root checks, cluster test" lock deb_in_root bookworm ;;
  4) ROOT_TESTS=(tests/test_conformance.py tests/test_agent.py tests/test_cluster.py
                tests/packaging/test_pacemaker_version.py tests/test_field_cluster.py)
     step "4. Debian 13 root: .deb, in-root checks, cluster test, README" lock deb_in_root trixie pcs ;;
  5) step "5. RPM payload in the Debian 13 root (Python 3.13)" lock rpm_in_root ;;
  *) die "unknown step $s" ;;
  esac
done

log "DIST-CHECK PASSED in $((SECONDS - t_all)) s"
for t in "${timings[@]}"; do log "  TIMING $t"; done
