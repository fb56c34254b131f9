#!/usr/bin/env bash
# roots.sh SUITE [PACKAGE...]: prints the path of a Debian root of SUITE
# (debootstrap, minbase) with PACKAGE... installed (apt, no recommends).
# Roots are kept under build/roots/, one per suite, mirror and package list,
# and are only ever read afterwards (the checks mount them as the lower layer
# of an overlay), so a second run costs nothing; a fresh clone builds them.
# Run it under flock /tmp/fgr-cluster.lock (make dist-check does).
#   DEBIAN_MIRROR (default http://deb.debian.org/debian)
set -euo pipefail
cd "$(dirname "$0")/.."
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
[ $# -ge 1 ] || { echo "usage: $0 SUITE [PACKAGE...]" >&2; exit 2; }
suite=$1
shift
log() { printf '[roots] %s\n' "$*" >&2; }
die() { printf '[roots] error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "debootstrap needs root"
command -v debootstrap >/dev/null || die "debootstrap not found (scripts/setup.sh installs it)"

mapfile -t packages < <(printf '%s\n' "$@" | LC_ALL=C sort -u)
key=$(printf '%s\n' "$suite" "$MIRROR" "${packages[@]}" | sha256sum | cut -c1-12)
root=$(pwd)/build/roots/$suite-$key
if [ -f "$root.ready" ]; then
  echo "$root"
  exit 0
fi

t0=$SECONDS
tmp=$root.tmp
rm -rf "$tmp"
mkdir -p "$(dirname "$root")"
log "debootstrap $suite from $MIRROR into $tmp"
debootstrap --variant=minbase "$suite" "$tmp" "$MIRROR" >"$tmp.log" 2>&1 \
  || { tail -n 30 "$tmp.log" >&2; die "debootstrap $suite failed (log: $tmp.log)"; }
# No daemon may start from a package script inside the root.
printf '#!/bin/sh\nexit 101\n' > "$tmp/usr/sbin/policy-rc.d"
chmod 0755 "$tmp/usr/sbin/policy-rc.d"
printf 'APT::Install-Recommends "false";\n' > "$tmp/etc/apt/apt.conf.d/90fgr-no-recommends"
if [ ${#packages[@]} -gt 0 ]; then
  log "installing into the $suite root: ${packages[*]}"
  unshare --mount --fork sh -c '
    set -e
    mount --make-rprivate /
    mount -t proc proc "$1/proc"
    mount --rbind /dev "$1/dev"
    mount -t sysfs sys "$1/sys"
    root=$1; shift
    chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        sh -c "apt-get update -q && apt-get install -y -q \"\$@\" && apt-get clean" sh "$@"
  ' sh "$tmp" "${packages[@]}" >>"$tmp.log" 2>&1 \
    || { tail -n 30 "$tmp.log" >&2; die "apt-get install in the $suite root failed (log: $tmp.log)"; }
fi
rm -rf "$root"
mv "$tmp" "$root"
mv "$tmp.log" "$root.log"
touch "$root.ready"
log "$suite root ready in $((SECONDS - t0)) s: $root"
echo "$root"
