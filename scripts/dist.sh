#!/usr/bin/env bash
# make dist: the release artefacts, versioned from Cargo.toml, into dist/:
#   fence_gfs2_recorder-V-cp39-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
#   fence_gfs2_recorder-V.tar.gz                       (sdist)
#   fence-agents-gfs2-recorder_V-1_amd64.deb           (Debian 12 and 13)
#   fence-agents-gfs2-recorder-V-1.x86_64.rpm          (RHEL 8, 9 and 10)
# The wheel is built with zig as the linker against glibc 2.17 (manylinux2014),
# so its one native library loads on every target; the packages hold the same
# staged tree (see packaging/): nothing is compiled or downloaded on the target.
#   VENV (default .venv)   virtualenv with maturin (make setup); ziglang is added to it
#   DIST (default dist)    where the artefacts go (emptied first)
set -euo pipefail
cd "$(dirname "$0")/.."
umask 022

VENV=${VENV:-.venv}
DIST=${DIST:-dist}
BUILD=build/dist
PACKAGE=fence-agents-gfs2-recorder
AGENT=fence_gfs2_recorder
LIBDIR=/usr/lib/fence_gfs2_recorder
RELAXNG=${RELAXNG:-/usr/share/cluster/relaxng}
# The packager: DEB_MAINTAINER, else the author of the commit built.
MAINTAINER=${DEB_MAINTAINER:-$(git log -1 --format="%an <%ae>" 2>/dev/null || true)}
# pexpect and pycurl for the interpreters RHEL 8 offers besides its 3.6
# (python39, python3.11, python3.12), none of which has them as packages.
VENDOR_PYTHONS=(39 311 312)
VENDOR_PURE=(pexpect==4.9.0 ptyprocess==0.7.0)
VENDOR_PYCURL=pycurl==7.45.7

t_start=$(date +%s.%N)
log() { printf '[dist] %s\n' "$*"; }
die() { printf '[dist] error: %s\n' "$*" >&2; exit 1; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(date +%s.%N)"; }

for tool in rpmbuild dpkg-deb xsltproc xmllint objdump gzip; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/setup.sh installs it)"
done
py=$VENV/bin/python
# maturin finds zig as `python3 -m ziglang`: the virtualenv's python3.
PATH=$(cd "$VENV/bin" && pwd):$PATH
export PATH
[ -x "$VENV/bin/maturin" ] || die "$VENV/bin/maturin not found: run make setup first"
[ -r "$RELAXNG/fence2man.xsl" ] || die "$RELAXNG/fence2man.xsl not found (install fence-agents)"
[ -n "$MAINTAINER" ] || die "no packager: set DEB_MAINTAINER='Name <address>'"
if ! "$py" -c 'import ziglang' 2>/dev/null; then
  log "installing ziglang into $VENV (the linker for the manylinux2014 wheel)"
  "$py" -m pip install -q --disable-pip-version-check ziglang
fi

version=$("$py" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["package"]["version"])' Cargo.toml)
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH
log "version $version (Cargo.toml)"
rm -rf "$BUILD" "$DIST"
mkdir -p "$BUILD" "$DIST"

# 1. The wheel and the sdist.
t=$(date +%s.%N)
"$VENV/bin/maturin" build --release --zig --compatibility manylinux2014 -i "$py" \
    -o "$BUILD/wheel" >"$BUILD/wheel.log" 2>&1 || { cat "$BUILD/wheel.log" >&2; die "maturin build failed"; }
wheels=("$BUILD"/wheel/*.whl)
[ ${#wheels[@]} = 1 ] && [ -f "${wheels[0]}" ] || die "expected one wheel, found: ${wheels[*]}"
wheel=${wheels[0]}
"$VENV/bin/maturin" sdist -o "$BUILD/sdist" >"$BUILD/sdist.log" 2>&1 || { cat "$BUILD/sdist.log" >&2; die "maturin sdist failed"; }
log "wheel and sdist in $(since "$t") s"

# 2. The staged tree both packages hold.
stage=$BUILD/stage
lib=$stage$LIBDIR
mkdir -p "$lib/site" "$stage/usr/sbin" "$stage/usr/bin" "$stage/usr/share/man/man8" \
         "$stage/usr/share/fence_gfs2_recorder" "$stage/etc/logrotate.d" "$stage/var/log/gfs2-fencing"
"$py" -m zipfile -e "$wheel" "$lib/site"
install -m 0644 packaging/python-choice.sh packaging/run.py "$lib/"
find "$stage" -type d -exec chmod 0755 {} +
find "$stage" -type f -exec chmod 0644 {} +
chmod 0750 "$stage/var/log/gfs2-fencing"  # as the agent creates it
for name in "$AGENT" fence-gfs2-report fence-gfs2-responder; do
  dir=$stage/usr/bin; [ "$name" = "$AGENT" ] && dir=$stage/usr/sbin
  sed -e "s|@NAME@|$name|g" -e "s|@LIBDIR@|$LIBDIR|g" packaging/launcher.in > "$dir/$name"
  chmod 0755 "$dir/$name"
done
install -m 0755 contrib/fence-gfs2-rotate-hold "$stage/usr/share/fence_gfs2_recorder/"
install -m 0644 contrib/logrotate-copytruncate.conf "$stage/usr/share/fence_gfs2_recorder/"
install -m 0644 contrib/logrotate.d/fence_gfs2_recorder "$stage/etc/logrotate.d/"

# The man page, from the staged agent's own manpage XML (fencing.py of this
# machine's fence-agents and its interpreter, as the launcher would choose).
FGR_BINDIR=/usr/bin
# shellcheck source=packaging/python-choice.sh
. packaging/python-choice.sh
fgr_choose_python || die "no interpreter to run the staged agent for its man page"
env -i PATH=/usr/bin:/bin "$FGR_PYTHON" -I -B "$lib/run.py" "$AGENT" -o manpage > "$BUILD/$AGENT.xml"
xmllint --noout --relaxng "$RELAXNG/metadata.rng" "$BUILD/$AGENT.xml" 2>"$BUILD/xmllint.err" \
  || { cat "$BUILD/xmllint.err" >&2; die "manpage XML does not validate against metadata.rng"; }
xsltproc "$RELAXNG/fence2man.xsl" "$BUILD/$AGENT.xml" > "$BUILD/$AGENT.8"
[ -s "$BUILD/$AGENT.8" ] || die "fence2man.xsl produced an empty man page"
gzip -9n < "$BUILD/$AGENT.8" > "$stage/usr/share/man/man8/$AGENT.8.gz"
chmod 0644 "$stage/usr/share/man/man8/$AGENT.8.gz"

# The newest glibc symbol version the native module needs (the .deb's libc6 bound).
so=$(find "$lib/site" -name '_native*.so')
glibc=$(objdump -T "$so" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)
[ -n "$glibc" ] || die "no GLIBC symbol version found in $so"
log "native module needs glibc $glibc"

# The maintainer-script check: python-choice.sh inlined into packaging/install-check.in.
"$py" - "$BUILD/install-check.sh" <<'EOF'
import sys
from pathlib import Path
check = Path("packaging/install-check.in").read_text()
choice = Path("packaging/python-choice.sh").read_text()
Path(sys.argv[1]).write_text(check.replace("@PYTHON_CHOICE@\n", choice))
EOF
# What the interpreters compile at run time goes with the package.
printf 'find %s -name __pycache__ -type d -prune -exec rm -rf {} +\n' "$LIBDIR" > "$BUILD/remove-pycache.sh"

subst() {  # subst TEMPLATE OUT KEY=VALUE...: @KEY@ replaced by VALUE; @INSTALL_CHECK@ by the check
  "$py" - "$@" "INSTALL_CHECK=$(cat "$BUILD/install-check.sh")" \
      "REMOVE_PYCACHE=$(cat "$BUILD/remove-pycache.sh")" <<'EOF'
import re
import sys
from pathlib import Path
template, out, *pairs = sys.argv[1:]
text = Path(template).read_text()
for pair in pairs:
    key, value = pair.split("=", 1)
    if out.endswith(".spec"):
        value = value.replace("%", "%%")  # the check's shell, not rpm macros
    text = text.replace(f"@{key}@", value)
left = re.search(r"@[A-Z_]+@", text)
if left:
    sys.exit(f"{template}: {left.group()} not replaced")
Path(out).write_text(text)
EOF
}

# 3. The .deb: the staged tree plus Debian's copyright and changelog.
t=$(date +%s.%N)
deb=$BUILD/deb
cp -a "$stage" "$deb"
doc=$deb/usr/share/doc/$PACKAGE
mkdir -p "$doc" "$deb/DEBIAN"
{
  echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
  echo "Upstream-Name: fence_gfs2_recorder"
  echo
  echo "Files: *"
  echo "Copyright: the fence_gfs2_recorder authors"
  echo "License: Apache-2.0"
  echo " On Debian systems the full text of the Apache License 2.0 is in"
  echo " /usr/share/common-licenses/Apache-2.0."
} > "$doc/copyright"
{
  echo "$PACKAGE ($version-1) unstable; urgency=medium"
  echo
  echo "  * Built from fence_gfs2_recorder $version."
  echo
  echo " -- $MAINTAINER  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n > "$doc/changelog.Debian.gz"
chmod 0644 "$doc/copyright" "$doc/changelog.Debian.gz"
size=$(du -sk --exclude=DEBIAN "$deb" | cut -f1)
subst packaging/deb/control.in "$deb/DEBIAN/control" PACKAGE="$PACKAGE" VERSION="$version" \
    MAINTAINER="$MAINTAINER" SIZE="$size" GLIBC="$glibc"
subst packaging/deb/postinst.in "$deb/DEBIAN/postinst"
subst packaging/deb/prerm.in "$deb/DEBIAN/prerm"
chmod 0755 "$deb/DEBIAN/postinst" "$deb/DEBIAN/prerm"
echo "/etc/logrotate.d/fence_gfs2_recorder" > "$deb/DEBIAN/conffiles"
(cd "$deb" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z \
   | xargs -0 md5sum) > "$BUILD/md5sums"
mv "$BUILD/md5sums" "$deb/DEBIAN/md5sums"
chmod 0644 "$deb/DEBIAN/control" "$deb/DEBIAN/conffiles" "$deb/DEBIAN/md5sums"
dpkg-deb --root-owner-group -Zxz --build "$deb" "$DIST/${PACKAGE}_${version}-1_amd64.deb" >/dev/null
log ".deb in $(since "$t") s"

# 4. The .rpm: the staged tree plus pexpect and pycurl from their wheels.
t=$(date +%s.%N)
rpmstage=$BUILD/rpmstage
cp -a "$stage" "$rpmstage"
cache=build/vendor-wheels
mkdir -p "$cache"
pipdl=("$py" -m pip download -q --disable-pip-version-check --only-binary=:all: --no-deps -d "$cache")
if ! ls "$cache"/pexpect-*.whl "$cache"/ptyprocess-*.whl >/dev/null 2>&1; then
  log "downloading ${VENDOR_PURE[*]}"
  "${pipdl[@]}" "${VENDOR_PURE[@]}"
fi
mkdir -p "$rpmstage$LIBDIR/vendor/py3"
for w in "$cache"/pexpect-*.whl "$cache"/ptyprocess-*.whl; do
  "$py" -m zipfile -e "$w" "$rpmstage$LIBDIR/vendor/py3"
done
for v in "${VENDOR_PYTHONS[@]}"; do
  ws=("$cache"/pycurl-*-cp$v-cp$v-*.whl)
  if [ ! -f "${ws[0]}" ]; then
    log "downloading $VENDOR_PYCURL for CPython ${v:0:1}.${v:1}"
    "${pipdl[@]}" --python-version "$v" --implementation cp --platform manylinux_2_28_x86_64 \
        --platform manylinux2014_x86_64 "$VENDOR_PYCURL"
    ws=("$cache"/pycurl-*-cp$v-cp$v-*.whl)
  fi
  mkdir -p "$rpmstage$LIBDIR/vendor/cp$v"
  "$py" -m zipfile -e "${ws[0]}" "$rpmstage$LIBDIR/vendor/cp$v"
  # Its examples and documentation are not needed to import it.
  rm -rf "$rpmstage$LIBDIR/vendor/cp$v"/pycurl-*.data
  # The libraries auditwheel bundled are the same for every version: one copy.
  if [ "$v" != "${VENDOR_PYTHONS[0]}" ]; then
    first=$rpmstage$LIBDIR/vendor/cp${VENDOR_PYTHONS[0]}/pycurl.libs
    diff -r "$first" "$rpmstage$LIBDIR/vendor/cp$v/pycurl.libs" >/dev/null \
      || die "pycurl's bundled libraries differ between CPython versions"
    rm -rf "$rpmstage$LIBDIR/vendor/cp$v/pycurl.libs"
    ln -s "../cp${VENDOR_PYTHONS[0]}/pycurl.libs" "$rpmstage$LIBDIR/vendor/cp$v/pycurl.libs"
  fi
done
find "$rpmstage$LIBDIR/vendor" -type d -exec chmod 0755 {} +
find "$rpmstage$LIBDIR/vendor" -type f -exec chmod 0644 {} +
top=$(pwd)/$BUILD/rpm
mkdir -p "$top"/{SPECS,RPMS,BUILD,BUILDROOT,SRPMS,SOURCES}
subst packaging/rpm/spec.in "$top/SPECS/$PACKAGE.spec" PACKAGE="$PACKAGE" VERSION="$version" \
    LIBDIR="$LIBDIR" STAGE="$(pwd)/$rpmstage"
rpmbuild -bb --quiet --define "_topdir $top" --define "_buildhost localhost" \
    --define "packager $MAINTAINER" \
    --define "changelog_date $(LC_ALL=C date -u -d "@$SOURCE_DATE_EPOCH" '+%a %b %d %Y')" \
    --define "use_source_date_epoch_as_buildtime 1" --target x86_64-linux \
    "$top/SPECS/$PACKAGE.spec" >"$BUILD/rpmbuild.log" 2>&1 \
  || { cat "$BUILD/rpmbuild.log" >&2; die "rpmbuild failed"; }
cp "$top"/RPMS/x86_64/"$PACKAGE-$version-1.x86_64.rpm" "$DIST/"
log ".rpm in $(since "$t") s"

cp "$wheel" "$BUILD"/sdist/*.tar.gz "$DIST/"
log "done in $(since "$t_start") s:"
(cd "$DIST" && ls -l --block-size=K -- *) | sed 's/^/[dist]   /'
