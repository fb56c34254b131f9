#!/usr/bin/env bash
# Builds what the storage lab boots, under build/storage-lab (gitignored), each
# piece keyed by what it is made from so that a re-run reuses it:
#   kernel-<package version>/   Debian's kernel package, unpacked (never installed)
#   initramfs-<kernel>.cpio.gz  busybox + the modules to mount the root disk and
#                               the lab's 9p share
#   rootfs-<hash>/              debootstrap of the cluster stack; the kernel's modules
#                               the lab uses and the agent (scripts/install.sh, run in
#                               a chroot) are refreshed in place when they change
#   root-<hash>.img             that tree as an ext4 image, the VMs' root disk (each
#                               VM writes to a throw-away snapshot of it)
# A disk, not the tree over 9p: under load every 9p lookup waits for QEMU on
# the host, and Pacemaker times out reading a fence agent's metadata.
# Prints the paths as shell assignments on its last lines (KERNEL=, INITRD=, IMAGE=).
# Run as root.
#   LAB_BUILD (default build/storage-lab)   where the pieces go
#   LAB_MIRROR (default http://deb.debian.org/debian), LAB_SUITE (default bookworm)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT_DIR=$PWD
BUILD=${LAB_BUILD:-$ROOT_DIR/build/storage-lab}
MIRROR=${LAB_MIRROR:-http://deb.debian.org/debian}
SUITE=${LAB_SUITE:-bookworm}
VENV=$(realpath --relative-to="$ROOT_DIR" "${VENV:-.venv}")
case $VENV in ../*) echo "VENV must be inside the project" >&2; exit 1;; esac
HOST_PACKAGES=(qemu-system-x86 debootstrap busybox-static cpio zstd kmod iproute2 e2fsprogs)
# python3-cffi-backend: debootstrap cannot resolve the virtual package behind
# python3-cryptography (pulled in by fence-agents) without it.
GUEST_PACKAGES=(python3-cffi-backend corosync pacemaker pacemaker-cli-utils dlm-controld
                gfs2-utils nvme-cli nfs-kernel-server nfs-common rpcbind iproute2 kmod procps
                python3 python3-venv fence-agents util-linux psmisc libxml2-utils xsltproc
                ca-certificates)
# The modules the initramfs loads to reach the root disk and the lab share.
INITRD_MODULES=(virtio_pci virtio_blk crc32c_generic ext4 9pnet_virtio 9p)
# The modules the lab loads once up (with what they depend on).
GUEST_MODULES=(virtio_net configfs brd nvmet nvmet_tcp nvme_tcp nvme_fabrics dlm crc32c_generic
               gfs2 nfs nfsv4 nfsd sunrpc rpcsec_gss_krb5)

log() { printf '[storage-lab setup] %s\n' "$*" >&2; }
die() { printf '[storage-lab setup] error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot)"

missing=()
for p in "${HOST_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends "${missing[@]}" >/dev/null
fi
mkdir -p "$BUILD"

# 1. The kernel: the package the linux-image-amd64 metapackage points at.
kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
[ -n "$kpkg" ] || die "apt-cache knows no linux-image-amd64 (run apt-get update)"
kver_pkg=$(apt-cache policy "$kpkg" | awk '/Candidate:/ {print $2}')
KVER=${kpkg#linux-image-}
KDIR=$BUILD/kernel-$kver_pkg
if [ ! -e "$KDIR/.complete" ] || [ ! -e "$KDIR/lib/modules/$KVER/modules.dep" ]; then
  log "fetching $kpkg $kver_pkg"
  rm -rf "$KDIR" "$BUILD/deb"; mkdir -p "$BUILD/deb"
  (cd "$BUILD/deb" && apt-get download "$kpkg=$kver_pkg" >/dev/null 2>&1) \
    || die "apt-get download $kpkg=$kver_pkg failed"
  dpkg-deb -x "$BUILD"/deb/*.deb "$KDIR"
  depmod -b "$KDIR" "$KVER"
  rm -rf "$BUILD/deb"
  touch "$KDIR/.complete"
fi
KERNEL=$KDIR/boot/vmlinuz-$KVER
[ -r "$KERNEL" ] || die "no $KERNEL in the package"

# 2. The initramfs: busybox, the modules for a 9p root, lab/guest/initramfs-init.
INITRD=$BUILD/initramfs-$kver_pkg-$(sha256sum lab/guest/initramfs-init | cut -c1-12).cpio.gz
if [ ! -e "$INITRD" ]; then
  log "building $(basename "$INITRD")"
  rm -rf "$BUILD"/initramfs.*/ "$BUILD"/initramfs-*.cpio.gz
  w=$(mktemp -d "$BUILD/initramfs.XXXXXX")
  mkdir -p "$w"/{bin,dev,proc,sys,newroot} "$w/lib/modules/$KVER"
  cp /bin/busybox "$w/bin/busybox"
  for a in sh mount umount mkdir modprobe switch_root cat echo sleep grep reboot; do ln -s busybox "$w/bin/$a"; done
  for m in "${INITRD_MODULES[@]}"; do
    modprobe -d "$KDIR" -S "$KVER" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
  done | sort -u | while read -r f; do
    rel=${f#"$KDIR"/}; mkdir -p "$w/$(dirname "$rel")"; cp "$f" "$w/$rel"
  done
  cp "$KDIR/lib/modules/$KVER"/modules.{order,builtin,builtin.modinfo} "$w/lib/modules/$KVER/"
  depmod -b "$w" "$KVER"
  install -m 0755 lab/guest/initramfs-init "$w/init"
  (cd "$w" && find . | cpio -o -H newc --quiet | gzip -1) > "$INITRD.tmp"
  mv "$INITRD.tmp" "$INITRD"; rm -rf "$w"
fi

# 3. The root file system.
key=$(printf '%s\n' "$SUITE" "$MIRROR" "${GUEST_PACKAGES[@]}" | sha256sum | cut -c1-12)
ROOTFS=$BUILD/rootfs-$SUITE-$key
if [ ! -e "$ROOTFS/.complete" ]; then
  log "debootstrap $SUITE with the cluster stack (about 2 minutes)"
  rm -rf "$ROOTFS"
  echo "$SUITE $key $(date -u +%FT%TZ)" > "$BUILD/.stamp.tmp"
  inc=$(IFS=,; echo "${GUEST_PACKAGES[*]}")
  t0=$(date +%s)
  debootstrap --variant=minbase --include="$inc" "$SUITE" "$ROOTFS" "$MIRROR" \
    > "$BUILD/debootstrap.log" 2>&1 || { tail -20 "$BUILD/debootstrap.log" >&2; die "debootstrap failed"; }
  chroot "$ROOTFS" apt-get clean
  log "debootstrap took $(( $(date +%s) - t0 )) s"
  mv "$BUILD/.stamp.tmp" "$ROOTFS/.complete"
fi
# The modules the lab uses (hard links), refreshed when the kernel or the list changes.
mkey="$kver_pkg ${GUEST_MODULES[*]}"
if [ "$(cat "$ROOTFS/.kernel" 2>/dev/null)" != "$mkey" ]; then
  log "installing the modules the lab uses of $KVER into the root"
  rm -rf "$ROOTFS/lib/modules"; mkdir -p "$ROOTFS/lib/modules/$KVER"
  for m in "${GUEST_MODULES[@]}"; do
    modprobe -d "$KDIR" -S "$KVER" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
  done | sort -u | while read -r f; do
    rel=${f#"$KDIR"/}; mkdir -p "$ROOTFS/$(dirname "$rel")"; ln "$f" "$ROOTFS/$rel"
  done
  cp "$KDIR/lib/modules/$KVER"/modules.{order,builtin,builtin.modinfo} "$ROOTFS/lib/modules/$KVER/"
  depmod -b "$ROOTFS" "$KVER"
  echo "$mkey" > "$ROOTFS/.kernel"
fi
# The agent, installed as a site installs it, refreshed when the wheel changes.
wheels=("$VENV"/dist/*.whl)
[ -f "${wheels[0]}" ] || die "no wheel in $VENV/dist: run make setup first"
wkey=$( (sha256sum "${wheels[0]}"; sha256sum scripts/install.sh contrib/fence-gfs2-rotate-hold) | sha256sum | cut -c1-16)
if [ "$(cat "$ROOTFS/.agent" 2>/dev/null)" != "$wkey" ]; then
  log "installing the agent into the root with scripts/install.sh"
  cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
  mkdir -p "$ROOTFS/src"
  # pip in the chroot trusts what the host trusts (a site's proxy CA) and
  # takes the host's index and proxy settings.
  ca=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
  pass=(PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root VENV="/src/$VENV"
        PIP_CERT=/etc/ssl/certs/ca-certificates.crt)
  for v in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_DEFAULT_TIMEOUT http_proxy https_proxy \
           HTTP_PROXY HTTPS_PROXY no_proxy NO_PROXY; do
    [ -z "${!v:-}" ] || pass+=("$v=${!v}")
  done
  # A private mount namespace: the bind mounts vanish with it, whatever happens.
  unshare --mount --propagation private bash -euc '
    root=$1 src=$2 ca=$3; shift 3
    mount --bind "$src" "$root/src"; mount -t proc proc "$root/proc"
    [ ! -r "$ca" ] || mount --bind -o ro "$ca" "$root/etc/ssl/certs/ca-certificates.crt"
    chroot "$root" env -i "$@" bash /src/scripts/install.sh' _ "$ROOTFS" "$ROOT_DIR" "$ca" "${pass[@]}" >&2
  echo "$wkey" > "$ROOTFS/.agent"
fi
# 4. The root disk.
ikey=$(cat "$ROOTFS/.complete" "$ROOTFS/.kernel" "$ROOTFS/.agent" | sha256sum | cut -c1-12)
IMAGE=$BUILD/root-$SUITE-$key-$ikey.img
if [ ! -e "$IMAGE" ]; then
  log "making the root disk $(basename "$IMAGE")"
  rm -f "$BUILD"/root-*.img "$BUILD"/root-*.img.tmp
  mke2fs -q -t ext4 -L labroot -d "$ROOTFS" "$IMAGE.tmp" 2G
  mv "$IMAGE.tmp" "$IMAGE"
fi
echo "KVER=$KVER"
echo "KERNEL=$KERNEL"
echo "INITRD=$INITRD"
echo "ROOTFS=$ROOTFS"
echo "IMAGE=$IMAGE"
