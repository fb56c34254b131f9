"""Which node Pacemaker means, and which node this agent must never fence.

Pacemaker names its victim twice on the agent's stdin: ``nodename`` is the
cluster node it wants fenced, ``port`` what the device should act on. They
differ in two cases that look the same on stdin:

- the device maps names with ``pcmk_host_map`` (``compute-node-1:nid0001``):
  ``port`` is the mapped storage name and is what must be fenced;
- the device has a fixed ``port`` parameter (one device per node, as in
  older documentation) and Pacemaker asks it about another node: ``port``
  is a node Pacemaker did not name.

- the device is dedicated to one node (``port=rabbit-compute-1
  pcmk_host_list=compute-1``, as NNF's HA guide creates them): ``port``
  is the storage side's name of the one node the device serves.

``pcmk_*`` parameters are never passed to the agent, so the CIB is read:
the agent acts on ``port`` only when a fence_gfs2_recorder device maps
``nodename`` to exactly that ``port`` in ``pcmk_host_map``, or has that
``port`` and a ``pcmk_host_list`` naming ``nodename`` alone; it refuses
otherwise (for ``status`` too, so such a device never claims a node it
would not fence). A fixed ``port`` without a host list, or with a list
naming other or more nodes, still refuses.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

AGENT_TYPE = "fence_gfs2_recorder"
CIB_QUERY_TIMEOUT = 5.0  # seconds; the CIB manager is local
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def parse_host_map(text: str) -> dict[str, str]:
    """pcmk_host_map as Pacemaker's fencer reads it: ``name:port`` or
    ``name=port`` entries separated by ``;``, spaces or tabs; a backslash
    escapes the next character. Names are compared case-insensitively."""
    entries: dict[str, str] = {}
    name: str | None = None
    token: list[str] = []
    chars = iter(text + ";")
    for c in chars:
        if c == "\\":
            token.append(next(chars, ""))
        elif c in ":=":
            name = "".join(token)
            token = []
        elif c in "; \t":
            if name is not None and name:
                entries[name.casefold()] = "".join(token)
            name = None
            token = []
        else:
            token.append(c)
    return entries


def parse_host_list(text: str) -> list[str]:
    """pcmk_host_list's names: separated by spaces, tabs, commas or semicolons."""
    return [n for n in re.split(r"[\s,;]+", text) if n]


def mapped_ports(cib_xml: str, nodename: str) -> set[str]:
    """The ports fence_gfs2_recorder devices give nodename: what a
    pcmk_host_map maps it to, and the fixed port of a device whose
    pcmk_host_list names nodename alone."""
    import xml.etree.ElementTree as ET  # only when the names disagree

    root = ET.fromstring(cib_xml)
    ports: set[str] = set()
    for prim in root.iter("primitive"):
        if prim.get("class") != "stonith" or prim.get("type") != AGENT_TYPE:
            continue
        params = {
            nv.get("name"): nv.get("value") or ""
            for attrs in prim.iter("instance_attributes")
            for nv in attrs.iter("nvpair")
        }
        port = parse_host_map(params.get("pcmk_host_map", "")).get(nodename.casefold())
        if port is not None:
            ports.add(port)
        hosts = parse_host_list(params.get("pcmk_host_list", ""))
        fixed = params.get("port") or params.get("plug")
        if fixed and [h.casefold() for h in hosts] == [nodename.casefold()]:
            ports.add(fixed)
    return ports


def query_cib(limit: float = CIB_QUERY_TIMEOUT) -> str:
    """The resources section of the local CIB, within `limit` seconds (at most
    CIB_QUERY_TIMEOUT); raises OSError or ValueError."""
    limit = min(limit, CIB_QUERY_TIMEOUT)
    if limit <= 0:
        raise OSError("no time left within fence_timeout to ask cibadmin")
    cibadmin = shutil.which("cibadmin", path=os.environ.get("PATH") or SYSTEM_PATH)
    if cibadmin is None:
        raise OSError("cibadmin not found")
    try:
        r = subprocess.run(
            [cibadmin, "--query", "--local", "--scope", "resources"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=limit,
        )
    except subprocess.TimeoutExpired as e:
        raise OSError(f"cibadmin did not answer within {limit:.3g} s") from e
    if r.returncode != 0:
        raise OSError(f"cibadmin exited {r.returncode}: {r.stderr.strip()[:200]}")
    return r.stdout


def check_victim(nodename: str | None, port: str, limit: float | None = None) -> str | None:
    """None when port is the node Pacemaker means; else why the agent refuses.
    `limit`: the seconds the CIB query may take (a fence's: what is left of
    fence_timeout)."""
    if not nodename or nodename.casefold() == port.casefold():
        return None
    try:
        ports = mapped_ports(query_cib(CIB_QUERY_TIMEOUT if limit is None else limit), nodename)
    except (OSError, ValueError, SyntaxError) as e:  # ParseError is a SyntaxError
        return (
            f"Pacemaker named node {nodename!r} but port is {port!r}, and the CIB "
            f"cannot be read to look for a pcmk_host_map that maps one to the other ({e})"
        )
    if port in ports:
        return None
    return (
        f"Pacemaker named node {nodename!r} but port is {port!r}, and no "
        f"{AGENT_TYPE} device maps {nodename!r} to {port!r} in pcmk_host_map "
        f"or has port {port!r} with pcmk_host_list naming {nodename!r} alone: "
        "refusing to act on a node Pacemaker did not name (a device with a fixed "
        "port serves only that node; give it pcmk_host_list, or map the name)"
    )


def _names(host: str) -> set[str]:
    host = host.casefold().rstrip(".")
    return {host, host.split(".", 1)[0]}


def is_own_host(target: str, own: str | None = None) -> bool:
    """True when target is this host (by its name or its short name)."""
    own = own if own is not None else os.uname().nodename
    mine = _names(own)
    theirs = _names(target)
    return target.casefold().rstrip(".") in mine or own.casefold().rstrip(".") in theirs
