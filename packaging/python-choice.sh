# The interpreter of fence-agents-gfs2-recorder. Its commands source this file
# at every start, and the package runs the same choice when it is installed,
# so a system where the agent could not start refuses the package:
#
#   1. $FGR_BINDIR/python3 when it is Python 3.9 or newer (RHEL 9 and 10,
#      Debian 12 and 13): the distribution's pexpect and pycurl are its own;
#   2. else the newest $FGR_BINDIR/python3.N with N >= 9 (RHEL 8, whose
#      python3 is 3.6: python39, python3.11 or python3.12).
#
# The native module is built with PyO3 for the stable ABI of Python 3.9;
# PyO3 cannot run under 3.6 at all. The caller sets FGR_BINDIR (/usr/bin).

# The minor version of the Python 3 interpreter $1: from the name it
# resolves to (python3.N), else by asking it. Prints nothing if it fails.
fgr_minor() {
    fgr_real=$(readlink -f "$1") || return 0
    case ${fgr_real##*/} in
    python3.[0-9] | python3.[0-9][0-9]) echo "${fgr_real##*/python3.}" ;;
    *) "$1" -c 'import sys; print(sys.version_info[1])' 2>/dev/null || true ;;
    esac
}

# Every Python 3 found in FGR_BINDIR with its version, for the refusal.
fgr_found() {
    fgr_list=
    for fgr_p in "$FGR_BINDIR"/python3 "$FGR_BINDIR"/python3.*; do
        case $fgr_p in *-config | *m) continue ;; esac
        [ -x "$fgr_p" ] || continue
        fgr_v=$("$fgr_p" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null) ||
            fgr_v="unknown version"
        fgr_list="$fgr_list${fgr_list:+, }$fgr_p is Python $fgr_v"
    done
    echo "${fgr_list:-no python3 in $FGR_BINDIR}"
}

# Sets FGR_PYTHON, or says why there is none (on stderr) and returns 1.
fgr_choose_python() {
    FGR_PYTHON=
    if [ -x "$FGR_BINDIR/python3" ]; then
        fgr_n=$(fgr_minor "$FGR_BINDIR/python3")
        case $fgr_n in
        [0-9] | [0-9][0-9])
            if [ "$fgr_n" -ge 9 ]; then
                FGR_PYTHON=$FGR_BINDIR/python3
                return 0
            fi
            ;;
        esac
    fi
    fgr_n=30
    while [ "$fgr_n" -ge 9 ]; do
        if [ -x "$FGR_BINDIR/python3.$fgr_n" ]; then
            FGR_PYTHON=$FGR_BINDIR/python3.$fgr_n
            return 0
        fi
        fgr_n=$((fgr_n - 1))
    done
    echo "fence_gfs2_recorder needs Python 3.9 or newer (its native module is" \
        "built with PyO3, which cannot run under older versions); found: $(fgr_found)." \
        "On RHEL 8: dnf install python39 (or python3.11, python3.12)." >&2
    return 1
}
