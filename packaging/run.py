"""Starts one of the package's commands (the launchers in /usr/sbin and /usr/bin).

The Python package lives beside this file, in ``site/``, outside every
interpreter's site-packages: no other program sees it, and it sees no other
copy of itself. pexpect and pycurl, which fencing.py imports, are the
distribution's when it has them for this interpreter; ``vendor/`` (RPM only)
holds copies from their wheels for the interpreters RHEL 8 has none for, and
is searched after the distribution's.
"""

from __future__ import annotations

import importlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
COMMANDS = {
    "fence_gfs2_recorder": "fence_gfs2_recorder.agent",
    "fence-gfs2-report": "fence_gfs2_recorder.report",
    "fence-gfs2-responder": "fence_gfs2_recorder.responder",
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(COMMANDS)}}} [ARGS...]")
    name = sys.argv.pop(1)
    sys.argv[0] = name
    sys.path.insert(0, os.path.join(HERE, "site"))
    tag = "cp{}{}".format(*sys.version_info[:2])
    for sub in ("py3", tag):
        vendored = os.path.join(HERE, "vendor", sub)
        if os.path.isdir(vendored):
            sys.path.append(vendored)
    module = importlib.import_module(COMMANDS[name])
    sys.exit(module.main())


if __name__ == "__main__":
    main()
