"""The fence agent: fencing.py option handling and docs, then one call into
the native engine per action.

Pacemaker runs it with options as ``key=value`` lines on stdin; people run
it with ``-o ACTION -n NODE --request-dir ...``. Exit codes follow
fence-agents: 0 success (or "on" for status), 1 failure, 2 "off" for status.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
import os
import signal
import sys
import time
import warnings
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from . import victim

if TYPE_CHECKING:
    from . import _native

AGENT_NAME = "fence_gfs2_recorder"
FENCE_LIB_ENV = "FENCE_AGENTS_LIB"
DEFAULT_FENCE_LIB = "/usr/share/fence"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_STATUS_OFF = 2

# Our options, in fencing.py's all_opt shape. The keys equal the long option
# with "-" turned into "_" so metadata lists each once. No "<", "&" or '"'
# in the texts: fencing.py does not escape them in the metadata XML.
OWN_OPTIONS: dict[str, dict[str, Any]] = {
    "request_dir": {
        "getopt": ":",
        "longopt": "request-dir",
        "help": "--request-dir=[path]           Directory fence requests are written to",
        "shortdesc": "Directory fence requests are written to, read by the NNF reconciler "
        "(env NNF_FENCE_REQUEST_DIR, else REQUEST_DIR of the NNF config file, "
        "else /localdisk/fence-recorder/requests)",
        "required": "0",
        "order": 10,
    },
    "response_dir": {
        "getopt": ":",
        "longopt": "response-dir",
        "help": "--response-dir=[path]          Directory the answers appear in",
        "shortdesc": "Directory the NNF reconciler writes its answers to "
        "(env NNF_FENCE_RESPONSE_DIR, else RESPONSE_DIR of the NNF config file, "
        "else /localdisk/fence-recorder/responses)",
        "required": "0",
        "order": 11,
    },
    "log_dir": {
        "getopt": ":",
        "longopt": "log-dir",
        "help": "--log-dir=[path]               Directory of the three fence event logs",
        "shortdesc": "Directory of the fence event logs "
        "(default /var/log/gfs2-fencing, or env LOG_DIR; env FENCE_LOG moves the main log)",
        "required": "0",
        "order": 12,
    },
    "fence_timeout": {
        "getopt": ":",
        "longopt": "fence-timeout",
        "help": "--fence-timeout=[seconds]      Seconds to wait for the answer",
        "shortdesc": "Seconds to wait for the answer before reporting failure, delay "
        "included (default 25, or env FENCE_TIMEOUT). Pacemaker kills the agent at the "
        "action timeout (default 60 s) and retries a failure once within it: keep twice "
        "fence_timeout plus 5 s below pcmk_reboot_timeout, pcmk_off_timeout and "
        "stonith-timeout",
        "required": "0",
        "order": 13,
    },
    "poll_interval": {
        "getopt": ":",
        "longopt": "poll-interval",
        "help": "--poll-interval=[seconds]      Seconds between polls of the response directory",
        "shortdesc": "Seconds between polls of the response directory, run beside inotify "
        "because NFS raises no event for writes from other hosts "
        "(default 0.5, or env FENCE_POLL_INTERVAL)",
        "required": "0",
        "order": 14,
    },
    # A value, not a flag: fencing.py silently drops a flag whose value it
    # does not know; the engine names a bad value instead.
    "force_poll": {
        "getopt": ":",
        "longopt": "force-poll",
        "help": "--force-poll=[yes|no]          Poll only, do not use inotify",
        "shortdesc": "Poll only, do not use inotify: yes or no "
        "(default no, or env FENCE_FORCE_POLL)",
        "required": "0",
        "order": 15,
    },
    "kubectl_path": {
        "getopt": ":",
        "longopt": "kubectl-path",
        "help": "--kubectl-path=[path]          kubectl used to find the GFS2 file systems",
        "shortdesc": "kubectl used to find the target GFS2 file systems, which checks a "
        "nothing-found answer and names them in the records (default kubectl from PATH, or env "
        "FENCE_KUBECTL; off or empty turns discovery off, and monitor warns)",
        "required": "0",
        "order": 16,
    },
    "kubeconfig": {
        "getopt": ":",
        "longopt": "kubeconfig",
        "help": "--kubeconfig=[path]            kubeconfig kubectl uses for GFS2 discovery",
        "shortdesc": "kubeconfig given to kubectl for GFS2 discovery, which checks a nothing-found "
        "answer (default ~/.kube/config of the agent's user, its home read from the password "
        "database since Pacemaker sets no HOME: /root/.kube/config for root; or env KUBECONFIG)",
        "required": "0",
        "order": 17,
    },
    "discovery_timeout": {
        "getopt": ":",
        "longopt": "discovery-timeout",
        "help": "--discovery-timeout=[seconds]  Time limit of the GFS2 discovery",
        "shortdesc": "Time limit of the GFS2 discovery; it never delays the fence "
        "(default 5, or env FENCE_DISCOVERY_TIMEOUT)",
        "required": "0",
        "order": 18,
    },
    "log_mode": {
        "getopt": ":",
        "longopt": "log-mode",
        "help": "--log-mode=[mode]              Octal file mode of new log files",
        "shortdesc": "Octal file mode of newly created log files "
        "(default 0600, or env FENCE_LOG_MODE)",
        "required": "0",
        "order": 19,
    },
    "stale_age": {
        "getopt": ":",
        "longopt": "stale-age",
        "help": "--stale-age=[seconds]          Age after which leftover requests are removed",
        "shortdesc": "Seconds after which requests and temp files left by killed agents are "
        "removed by monitor; must exceed fence_timeout "
        "(default 3600 or twice fence_timeout, or env FENCE_STALE_AGE)",
        "required": "0",
        "order": 20,
    },
    "nnf_config": {
        "getopt": ":",
        "longopt": "nnf-config",
        "help": "--nnf-config=[path]            NNF config.py naming the request/response dirs",
        "shortdesc": "The config.py shared with nnf-sos that sets REQUEST_DIR and RESPONSE_DIR; "
        "read, never run, and refused unless only root can change it "
        "(default /etc/nnf/fence/config.py if present, or env NNF_FENCE_CONFIG; empty: none)",
        "required": "0",
        "order": 21,
    },
    # The original agent's name for the node; the same as -n/--plug.
    "hostname": {
        "getopt": ":",
        "longopt": "hostname",
        "help": "--hostname=[nodename]          Name of the compute node to fence, as -n/--plug",
        "shortdesc": "Name of the compute node to fence, the same as plug "
        "(the original agent's option; both given must name the same node)",
        "required": "0",
        "order": 1,
    },
    # Pacemaker may send these; declared with an empty help so fencing.py
    # neither warns about them nor lists them in the metadata.
    "nodename": {
        "getopt": ":",
        "longopt": "nodename",
        "help": "",
        "required": "0",
        "order": 1,
    },
    "nodeid": {
        "getopt": ":",
        "longopt": "nodeid",
        "help": "",
        "required": "0",
        "order": 1,
    },
    # fence_dummy recorder mode's names (fence-agents agents/dummy), so its
    # devices work with only the agent's name changed; see DUMMY_NAMES.
    "type": {
        "getopt": ":",
        "longopt": "type",
        "help": "--type=[recorder]              fence_dummy's mode; only recorder is accepted",
        "shortdesc": "fence_dummy's type option: only recorder, the mode this agent "
        "replaces, is accepted; any other value is refused",
        "required": "0",
        "order": 30,
    },
    "request_path": {
        "getopt": ":",
        "longopt": "request-path",
        "help": "--request-path=[path]          fence_dummy's name for --request-dir",
        "shortdesc": "fence_dummy's name for request_dir (both given must be equal)",
        "required": "0",
        "order": 31,
    },
    "response_path": {
        "getopt": ":",
        "longopt": "response-path",
        "help": "--response-path=[path]         fence_dummy's name for --response-dir",
        "shortdesc": "fence_dummy's name for response_dir (both given must be equal)",
        "required": "0",
        "order": 32,
    },
    "log_path": {
        "getopt": ":",
        "longopt": "log-path",
        "help": "--log-path=[path]              fence_dummy's name for --log-dir",
        "shortdesc": "fence_dummy's name for log_dir (both given must be equal)",
        "required": "0",
        "order": 33,
    },
    "recorder_timeout": {
        "getopt": ":",
        "longopt": "recorder-timeout",
        "help": "--recorder-timeout=[seconds]   fence_dummy's name for --fence-timeout",
        "shortdesc": "fence_dummy's name for fence_timeout (both given must be equal)",
        "required": "0",
        "order": 34,
    },
    "recorder_poll_interval": {
        "getopt": ":",
        "longopt": "recorder-poll-interval",
        "help": "--recorder-poll-interval=[sec] fence_dummy's name for --poll-interval",
        "shortdesc": "fence_dummy's name for poll_interval (both given must be equal)",
        "required": "0",
        "order": 35,
    },
}

# fence_dummy's option -> ours. Its values mean the same here: directories,
# and seconds (fence_dummy takes whole seconds for recorder_timeout, this
# agent any number).
DUMMY_NAMES = {
    "request_path": "request_dir",
    "response_path": "response_dir",
    "log_path": "log_dir",
    "recorder_timeout": "fence_timeout",
    "recorder_poll_interval": "poll_interval",
}
DUMMY_TYPE = "recorder"

DEVICE_OPT = ["no_login", "no_password", "port", *OWN_OPTIONS]

# fencing.py gives every agent these; they time or retry its power loop, which
# this agent does not use. Kept out of the metadata; a value given is ignored
# with a warning naming it.
UNUSED_STANDARD_OPTIONS = (
    "power_timeout",
    "power_wait",
    "retry_on",
    "login_timeout",
    "shell_timeout",
    "stonith_status_sleep",
    "disable_timeout",
)

DOCS = {
    "shortdesc": "Fence agent for GFS2 on NearNodeFlash (NNF) storage",
    "longdesc": AGENT_NAME + " fences a compute node from its GFS2 file systems on "
    "NearNodeFlash storage. It does not power anything off: it writes a fence request "
    "into a request directory, the NNF reconciler detaches the node's NVMe namespaces and "
    "writes a response, and the agent waits for that answer or its own timeout. Every "
    "attempt is recorded in three log files in the log directory. The answer files are "
    "kept as the record that a node is fenced; action on removes them (unfencing).",
    "vendorurl": "https://github.com/NearNodeFlash",
}


class _Delivery(io.TextIOBase):
    """A standard stream whose failures are noted, never raised: with stdout
    closed or its reader gone, a fence that is done and recorded must still
    exit 0. Whether the lost output matters is decided at exit (`main`)."""

    lost: bool = False

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (OSError, ValueError):
            _Delivery.lost = True
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError):
            _Delivery.lost = True

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._stream.fileno()


def _standard_streams() -> None:
    """Descriptors 0 to 2 open (/dev/null for a closed one, so no file the
    agent opens later can take their place and receive stray output), stdin
    read with surrogate escapes (a byte that is not UTF-8 reaches the settings,
    which name it), and stdout and stderr that never raise."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free descriptor: fd
    if sys.stdin is None:
        sys.stdin = open(0, encoding="utf-8", errors="surrogateescape", closefd=False)  # noqa: SIM115
    elif isinstance(sys.stdin, io.TextIOWrapper):
        sys.stdin.reconfigure(errors="surrogateescape")
    out = sys.stdout or open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    err = sys.stderr or open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = _Delivery(out)
    sys.stderr = _Delivery(err)
    logging.raiseExceptions = False


# Set by the actions whose output is their result (list, metadata): for them
# output that cannot be delivered fails the action; for the others the exit
# code is the result (a fence's matches its record) and stands.
_output_is_the_result = False


# Signals received during a fence, in order. The handler only notes them:
# the engine asks `_interrupted` during its wait and turns a signal into an
# `interrupted` outcome and record. A handler that raised could do so after
# the engine had recorded `completed`, and the exit code would then disagree
# with the final record.
_signals_seen: list[str] = []


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    _signals_seen.append(signal.Signals(signum).name)


def _interrupted() -> str | None:
    return _signals_seen[0] if _signals_seen else None


def _import_lazily(name: str) -> None:
    """Registers `name` so its code runs only when an attribute is first used."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return  # the real import then reports it missing
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)


def load_fencing() -> ModuleType:
    """Imports fencing.py from fence-agents, or exits with one clear line."""
    lib = os.environ.get(FENCE_LIB_ENV) or DEFAULT_FENCE_LIB
    if lib not in sys.path:
        sys.path.insert(0, lib)
    # Never write a __pycache__ beside a system library (metadata runs unprivileged).
    sys.dont_write_bytecode = True
    # fencing.py imports pycurl for HTTP-based agents; this one makes no HTTP
    # call, and PyPI's pycurl takes about half of fencing.py's import time.
    _import_lazily("pycurl")
    try:
        with warnings.catch_warnings():
            # Older fence-agents (Debian 12, RHEL 8) write regexes in plain
            # strings, which Python 3.12 and newer warn about on stderr while
            # compiling fencing.py, at every run since no bytecode is kept.
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            fencing = importlib.import_module("fencing")
    except ImportError as e:
        sys.stderr.write(
            f"{AGENT_NAME}: cannot load fencing.py from {lib} ({e}); install the "
            f"fence-agents package or point {FENCE_LIB_ENV} at its library\n"
        )
        sys.exit(EXIT_FAILED)
    return fencing


def one_line(text: str) -> str:
    """Text safe to print into Pacemaker's logs: one line, no control characters."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _fail(message: str) -> NoReturn:
    logging.error("Failed: %s", message)
    sys.exit(EXIT_FAILED)


def resolve_settings(options: dict[str, Any]) -> _native.Settings:
    """Hands the raw option strings to the engine, which validates them."""
    from . import _native

    def opt(name: str) -> str | None:
        value = options.get("--" + OWN_OPTIONS[name]["longopt"])
        return None if value is None else str(value)

    try:
        return _native.resolve_settings(**{name: opt(name) for name, _ in _native.SETTINGS})
    except _native.SettingsError as e:
        # One line per bad setting, each naming its source and value.
        for line in str(e).splitlines():
            logging.error("Failed: %s", one_line(line))
        sys.exit(EXIT_FAILED)


def do_fence(
    options: dict[str, Any], settings: _native.Settings, started: float, delay: float
) -> int:
    """The exchange, its deadline counted from `started` (the agent's start):
    everything done for this fence counts within fence_timeout."""
    from . import _native

    target = str(options.get("--plug", ""))
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    result = _native.fence(
        settings,
        options["--action"],
        os.fsencode(target),
        interrupted=_interrupted,
        spent=time.monotonic() - started,
        delay=delay,
    )
    # From here on the outcome is decided and recorded: a signal arriving now
    # is only noted, and the exit code follows the record.
    return report_fence(target, result)


def report_fence(target: str, result: _native.FenceResult) -> int:
    """One line for Pacemaker's log, and the exit code of the recorded outcome."""
    shown = one_line(target)
    if result.success:
        print(
            f"Success: {shown} fenced ({one_line(result.action_performed or 'off')}) "
            f"in {result.elapsed_ms:.1f} ms: {one_line(result.message)}"
        )
        return EXIT_OK
    reason = {
        "answered": "the storage side answered failure",
        "contradicted": "nothing found to fence, but this rabbit holds its storage",
        "timed_out": "no answer",
        "interrupted": "interrupted",
        "refused": "refused",
        "failed": "request not sent",
    }[result.kind]
    logging.error("Failed: %s not fenced (%s): %s", shown, reason, one_line(result.message))
    return EXIT_FAILED


def do_status(settings: _native.Settings, target: str) -> int:
    """2 (off) while a fenced record exists for the target, 0 (on) otherwise."""
    from . import _native

    try:
        fenced = _native.is_fenced(settings, os.fsencode(target))
    except (OSError, ValueError) as e:
        logging.error("Failed: cannot tell the status of %s: %s", one_line(target), e)
        return EXIT_FAILED
    print("Status: OFF" if fenced else "Status: ON")
    return EXIT_STATUS_OFF if fenced else EXIT_OK


def do_unfence(settings: _native.Settings, target: str) -> int:
    from . import _native

    result = _native.unfence(settings, os.fsencode(target))
    if result.kind == "failed":
        logging.error("Failed: %s not unfenced: %s", one_line(target), one_line(result.message))
        return EXIT_FAILED
    print(f"Success: {one_line(target)} unfenced: {result.message}")
    return EXIT_OK


def do_list(settings: _native.Settings, with_status: bool) -> int:
    """The nodes nnf-sos counts fenced (all of them "off"), one safe line each."""
    from . import _native

    global _output_is_the_result
    _output_is_the_result = True
    try:
        targets = _native.fenced_targets(settings)
    except OSError as e:
        logging.error("Failed: %s", e)
        return EXIT_FAILED
    for t in targets:
        print(f"{t},,off" if with_status else f"{t},")
    return EXIT_OK


def warn_nnf(settings: _native.Settings) -> None:
    """Signs that nnf-sos does not meet the agent in the configured directories."""
    from . import _native

    for w in _native.nnf_warnings(settings):
        logging.warning("Warning: %s", one_line(w))


def show_origins(settings: _native.Settings, dummy: dict[str, str]) -> None:
    """Where each directory and time setting came from (validate-all); a
    value given under fence_dummy's name says so."""

    def named(name: str, origin: str) -> str:
        if name in dummy and origin == f"option {name}":
            return f"option {dummy[name]}, fence_dummy's name for {name}"
        return origin

    values = {
        "request_dir": settings.request_dir,
        "response_dir": settings.response_dir,
        "log_dir": settings.log_dir,
        "kubeconfig": settings.kubeconfig or "",
        "fence_timeout": f"{settings.fence_timeout:g}",
        "poll_interval": f"{settings.poll_interval:g}",
    }
    origins = dict(settings.origins)
    for name, value in values.items():
        print(f"{name}={one_line(value)} (from {one_line(named(name, origins[name]))})")
    config, origin = settings.nnf_config, one_line(settings.nnf_config_origin)
    print(f"nnf_config={one_line(config)} (from {origin})" if config else f"nnf_config= ({origin})")
    for note in settings.nnf_config_notes:
        print(f"nnf_config: {one_line(note)}")


def use_hostname(raw: dict[str, Any]) -> None:
    """--hostname (the original agent's option) names the node like -n/--plug."""
    host = raw.get("--hostname")
    if host is None:
        return
    plug = raw.get("--plug")
    if plug is not None and plug != host:
        sys.stderr.write(
            f"{AGENT_NAME}: Failed: -n/--plug {one_line(str(plug))!r} and --hostname "
            f"{one_line(str(host))!r} name different nodes; give one of them\n"
        )
        sys.exit(EXIT_FAILED)
    raw["--plug"] = host


def _longopt(name: str) -> str:
    return "--" + str(OWN_OPTIONS[name]["longopt"])


def use_dummy_names(raw: dict[str, Any]) -> dict[str, str]:
    """fence_dummy's options (stdin or argv) as ours; {our name: its name} of
    those given. Refuses, before anything is sent, a type other than recorder
    and both spellings of one setting with different values."""
    kind = raw.get(_longopt("type"))
    if kind is not None and kind != DUMMY_TYPE:
        _refuse_option(
            f"type {one_line(str(kind))!r} is not {DUMMY_TYPE!r}: this agent does what "
            f"fence_dummy's recorder mode does, and nothing else; set type={DUMMY_TYPE} "
            "or leave type out (nothing was sent)"
        )
    given: dict[str, str] = {}
    for theirs, ours in DUMMY_NAMES.items():
        value = raw.get(_longopt(theirs))
        if value is None:
            continue
        own = raw.get(_longopt(ours))
        if own is not None and own != value:
            _refuse_option(
                f"{ours} {one_line(str(own))!r} and {theirs} (fence_dummy's name for "
                f"{ours}) {one_line(str(value))!r} differ; give one of them "
                "(nothing was sent)"
            )
        raw[_longopt(ours)] = value
        given[ours] = theirs
    return given


def _refuse_option(message: str) -> NoReturn:
    sys.stderr.write(f"{AGENT_NAME}: Failed: {message}\n")
    sys.exit(EXIT_FAILED)


def report_mounts(settings: _native.Settings) -> None:
    """Names each directory's file system; warns on NFS options that delay answers."""
    from . import _native

    for description, warning in _native.mount_report(settings):
        print(description)
        if warning is not None:
            logging.warning("Warning: %s", warning)


def check_discovery(settings: _native.Settings, problems: list[str]) -> None:
    """GFS2 discovery must list NnfNodeBlockStorages, or be switched off on purpose."""
    from . import _native

    kind, message = _native.discovery_check(settings)
    if kind == "fails":
        problems.append(message)
    elif kind == "off":
        logging.warning("Warning: %s", one_line(message))
    else:
        print(one_line(message))


def do_monitor(settings: _native.Settings) -> int:
    from . import _native

    problems = _native.check_directories(settings, create=True)
    report_mounts(settings)
    if not problems:
        warn_nnf(settings)  # before the clean-up removes the oldest requests
        # Off the fence path: monitor runs periodically, so leftovers of
        # agents killed by Pacemaker are removed here.
        problems = _native.clean_stale(settings)
    check_discovery(settings, problems)
    for p in problems:
        logging.error("Failed: %s", p)
    return EXIT_FAILED if problems else EXIT_OK


def do_validate(
    settings: _native.Settings,
    target: str | None,
    options: dict[str, Any],
    dummy: dict[str, str],
) -> int:
    """Checks settings (already resolved), directories and target; no side effects."""
    from . import _native

    show_origins(settings, dummy)
    problems = _native.check_directories(settings, create=False)
    warn_nnf(settings)
    report_mounts(settings)
    check_discovery(settings, problems)
    if target is not None:
        try:
            _native.is_fenced(settings, os.fsencode(target))
        except ValueError as e:
            problems.append(f"target {one_line(target)!r}: {e}")
        except OSError:
            pass  # already reported by check_directories
    for p in problems:
        logging.error("Failed: %s", p)
    return EXIT_FAILED if problems else EXIT_OK


DELAY_DOC = (
    "Seconds to wait before the request is sent, counted within fence_timeout "
    "(at most fence_timeout minus 1); prefer pcmk_delay_base, which Pacemaker adds "
    "to its own deadline"
)
MIN_WAIT_AFTER_DELAY = 1.0  # seconds: the shortest fence_timeout the engine takes


def show_docs(fencing: ModuleType, options: dict[str, Any]) -> NoReturn:
    """fencing.py's metadata, with on marked automatic, as fence_scsi's is.

    Storage fencing is undone by unfencing when the node rejoins (Pacemaker
    then also leaves these devices out of the on phase of a multi-device
    reboot), but fencing.py only says so for agents without a reboot action.
    """
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            fencing.show_docs(options, DOCS)
    except SystemExit as e:
        if e.code not in (None, 0):
            raise
    text = out.getvalue()
    global _output_is_the_result
    _output_is_the_result = True
    on_manual = '<action name="on" automatic="0"/>'
    if text.count(on_manual) == 1:
        text = text.replace(on_manual, '<action name="on" automatic="1"/>')
    sys.stdout.write(text)
    sys.exit(EXIT_OK)


def delay_of(options: dict[str, Any], settings: _native.Settings) -> float:
    """`delay` in seconds, checked: the engine waits it within fence_timeout,
    after saying so in the main log."""
    raw = str(options.get("--delay", "0") or "0")
    try:
        delay = float(raw)
    except ValueError:
        _fail(f"delay: expected a number of seconds, got {one_line(raw)!r}")
    if not delay > 0:
        if delay == 0:
            return 0.0
        _fail(f"delay: expected a number of seconds >= 0, got {one_line(raw)!r}")
    if delay > settings.fence_timeout - MIN_WAIT_AFTER_DELAY:
        _fail(
            f"delay {delay:g} s leaves less than {MIN_WAIT_AFTER_DELAY:g} s of fence_timeout "
            f"{settings.fence_timeout:g} s: the delay is spent within fence_timeout"
        )
    return delay


def warn_unused(raw: dict[str, Any]) -> None:
    """fencing.py's power-loop options do nothing here: say so when given."""
    for name in UNUSED_STANDARD_OPTIONS:
        opt = "--" + name.replace("_", "-")
        if opt in raw:
            logging.warning(
                "Warning: %s is ignored: this agent has no power loop to time or retry "
                "(fence_timeout bounds the whole fence)",
                name,
            )


def run() -> int:
    """Parses the options as every fence agent does, then runs the action."""
    started = time.monotonic()
    sys.argv[0] = AGENT_NAME
    fencing = load_fencing()
    fencing.all_opt.update(OWN_OPTIONS)
    fencing.all_opt["port"]["help"] = (
        "-n, --plug=[nodename]          Name of the compute node to fence"
    )
    fencing.all_opt["port"]["shortdesc"] = "Name of the compute node to fence"
    fencing.all_opt["delay"]["shortdesc"] = DELAY_DOC
    device_opt = list(DEVICE_OPT)
    raw = fencing.process_input(device_opt)
    use_hostname(raw)
    given = dict(raw)
    dummy = use_dummy_names(raw)
    if str(raw.get("--action", "")).lower() == "validate-all":
        # Pacemaker validates a device without naming a node.
        device_opt.append("no_port")
    options = fencing.check_input(device_opt, raw, other_conditions=True)
    # list and list-status work, but are not advertised: Pacemaker would then
    # fence only the nodes they name (dynamic-list). Without them it asks
    # status, which answers for any node, so the device serves every node.
    hidden = {"separator", *UNUSED_STANDARD_OPTIONS}
    options["device_opt"] = [o for o in options["device_opt"] if o not in hidden]
    if options["--action"] in ("metadata", "manpage"):
        show_docs(fencing, options)
    fencing.show_docs(options, DOCS)
    warn_unused(given)

    action = options["--action"]
    target = options.get("--plug")
    settings = resolve_settings(options)
    if action == "validate-all":
        return do_validate(settings, target, options, dummy)
    if action == "monitor":
        return do_monitor(settings)
    if action in ("list", "list-status"):
        return do_list(settings, with_status=action == "list-status")
    assert target is not None  # fencing.py requires --plug for the other actions
    fencing_now = action in ("off", "reboot")
    # A fence's CIB query counts within fence_timeout, as everything it does.
    cib_limit = settings.fence_timeout - (time.monotonic() - started) if fencing_now else None
    refusal = victim.check_victim(options.get("--nodename"), target, cib_limit)
    if refusal is None and action not in ("status", "on") and victim.is_own_host(target):
        refusal = f"{target!r} is this host: its storage side cannot detach the host it runs on"
    if refusal is not None and fencing_now:
        # A fence Pacemaker asked for is recorded even when nothing is sent.
        from . import _native

        return report_fence(target, _native.refuse(settings, action, os.fsencode(target), refusal))
    if refusal is not None:
        logging.error("Failed: %s", one_line(refusal))
        return EXIT_FAILED
    if action == "status":
        return do_status(settings, target)
    if action == "on":
        return do_unfence(settings, target)
    return do_fence(options, settings, started, delay_of(options, settings))


def main() -> NoReturn:
    """Runs the agent and exits without tearing the interpreter down.

    Everything the agent writes is on disk when an action returns; what is
    left is interpreter teardown of the modules fencing.py imports (tens of
    milliseconds on the path between the answer and Pacemaker hearing it).
    """
    _standard_streams()
    try:
        code = run()
    except SystemExit as e:
        if isinstance(e.code, str):
            sys.stderr.write(e.code + "\n")
            code = EXIT_FAILED
        else:
            code = e.code or EXIT_OK
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    if _Delivery.lost and _output_is_the_result:
        # As fencing.py's atexit handler: a listing that was not delivered fails.
        code = code or EXIT_FAILED
    os._exit(code)
