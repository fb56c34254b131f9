"""Typed stubs of the Rust engine (fence_gfs2_recorder._native)."""

from collections.abc import Callable
from typing import Literal, final

__all__ = [
    "ENVIRONMENT",
    "SETTINGS",
    "FenceResult",
    "Settings",
    "SettingsError",
    "UnfenceResult",
    "__version__",
    "check_directories",
    "clean_stale",
    "discovery_check",
    "fence",
    "fenced_targets",
    "is_fenced",
    "mount_report",
    "nnf_warnings",
    "refuse",
    "resolve_settings",
    "run_responder",
    "unfence",
]

__version__: str
SETTINGS: tuple[tuple[str, str], ...]
"""(name, environment variable) of every setting ``resolve_settings`` takes."""
ENVIRONMENT: tuple[str, ...]
"""Every environment variable the engine reads (the settings' and FENCE_LOG)."""

class SettingsError(ValueError):
    """A setting is present but invalid; ``str()`` gives one line per bad setting."""

    errors: tuple[tuple[str, str, str, str], ...]
    """(setting, source, value, reason) of every bad setting found. The source
    is ``option``, ``environment variable NAME``, the line of NNF's config
    file, or ``default location``."""

@final
class Settings:
    """Resolved, validated settings (read-only); durations in seconds."""

    @property
    def request_dir(self) -> str:
        """Where requests are published (option, environment, NNF config, default)."""
    @property
    def response_dir(self) -> str:
        """Where the storage side writes its answers, and keeps them."""
    @property
    def log_dir(self) -> str:
        """The directory of the three logs."""
    @property
    def main_log(self) -> str:
        """The main log: ``FENCE_LOG``, else ``fence-events.log`` in ``log_dir``."""
    @property
    def fence_timeout(self) -> float:
        """How long a fence waits for its answer, ``delay`` included."""
    @property
    def poll_interval(self) -> float:
        """How often the response directory is listed when polling."""
    @property
    def force_poll(self) -> bool:
        """Poll only, never watch (directories whose changes are not notified)."""
    @property
    def kubectl_path(self) -> str | None:
        """kubectl for GFS2 discovery; None: discovery is off."""
    @property
    def kubeconfig(self) -> str | None:
        """The kubeconfig kubectl is given; None: no home directory for the default."""
    @property
    def discovery_timeout(self) -> float:
        """The longest discovery may run; the fence never waits for it."""
    @property
    def log_mode(self) -> int:
        """The mode of log files the agent creates."""
    @property
    def stale_age(self) -> float:
        """Leftover requests older than this are removed by ``monitor``."""
    @property
    def nnf_config(self) -> str | None:
        """NNF's shared config.py that was read; None: none."""
    @property
    def nnf_config_origin(self) -> str:
        """How that config was found, or why none was read."""
    @property
    def nnf_config_notes(self) -> list[str]:
        """The statements of that config its reader ignored."""
    @property
    def origins(self) -> list[tuple[str, str]]:
        """(setting, origin) of each path, kubeconfig and seconds setting."""

@final
class FenceResult:
    """How a fence ended: ``success`` only for an answer of success."""

    @property
    def kind(
        self,
    ) -> Literal["answered", "contradicted", "timed_out", "interrupted", "refused", "failed"]: ...
    @property
    def success(self) -> bool: ...
    @property
    def message(self) -> str: ...
    @property
    def action_performed(self) -> str | None: ...
    @property
    def response_path(self) -> str | None: ...
    @property
    def request_id(self) -> str | None: ...
    @property
    def elapsed_ms(self) -> float: ...

@final
class UnfenceResult:
    """How an unfence ended, with the records it removed."""

    @property
    def kind(self) -> Literal["removed", "nothing_to_remove", "failed"]: ...
    @property
    def removed(self) -> list[str]: ...
    @property
    def message(self) -> str: ...

def resolve_settings(**options: str | None) -> Settings:
    """Resolves the settings: each given value, else its environment variable,
    else NNF's shared config (the directories), else the default.

    The keywords are the names of ``SETTINGS``; None means not given. Raises
    SettingsError listing every invalid value, TypeError for an unknown name.
    """

def fence(
    settings: Settings,
    action: str,
    target: bytes,
    recorder_node: str | None = None,
    interrupted: Callable[[], str | None] | None = None,
    spent: float = 0.0,
    delay: float = 0.0,
) -> FenceResult:
    """Waits ``delay``, writes a fence request for ``target`` and waits for the
    answer, its timeout (``fence_timeout`` less the ``spent`` seconds already
    used), or ``interrupted`` returning a signal name; never raises for an
    expected outcome, and records every attempt in the logs."""

def refuse(
    settings: Settings,
    action: str,
    target: bytes,
    why: str,
    recorder_node: str | None = None,
) -> FenceResult:
    """Records a fence of ``target`` refused before any request is written
    (``why`` says why); the result is of kind ``refused``."""

def check_directories(settings: Settings, create: bool = False) -> list[str]:
    """Problems with the directories (empty: none); ``create`` makes missing ones."""

def run_responder(
    request_dir: str,
    response_dir: str,
    mode: str = "success",
    delay: float = 0.0,
    pause: float = 0.2,
    poll_interval: float = 0.5,
    force_poll: bool = False,
    max_answers: int | None = None,
    verbose: bool = True,
    answer_delay: float = 0.0,
    nothing_found: list[str] | None = None,
    serial_cost: float | None = None,
    nvmet_subsystem: str | None = None,
    nvmet_root: str | None = None,
) -> int:
    """Plays the storage side on the directories until a signal; returns the
    number of answers written. Mode ``detach`` disables the target's
    namespaces in nvmet (subsystem ``nvmet_subsystem``, ``{target}`` standing
    for the node) before answering, and enables them when the answer is
    removed. Raises OSError (FileNotFoundError, PermissionError) when a
    directory cannot be used, ValueError for a bad mode or template."""

def is_fenced(settings: Settings, target: bytes) -> bool:
    """True while nnf-sos counts ``target`` fenced. Raises OSError
    (FileNotFoundError, PermissionError) when the response directory cannot be
    read, ValueError for an unacceptable target name."""

def fenced_targets(settings: Settings) -> list[str]:
    """The targets nnf-sos counts fenced, each escaped to one field of one
    line; OSError as for ``is_fenced``."""

def unfence(settings: Settings, target: bytes, recorder_node: str | None = None) -> UnfenceResult:
    """Keeps a copy of ``target``'s fenced records under the log directory,
    removes them, and records the event."""

def clean_stale(settings: Settings) -> list[str]:
    """Removes requests and temp files older than ``stale_age``; returns problems."""

def nnf_warnings(settings: Settings) -> list[str]:
    """Signs that nnf-sos does not serve the configured directories."""

def mount_report(settings: Settings) -> list[tuple[str, str | None]]:
    """(description, warning or None) of each directory's file system."""

def discovery_check(settings: Settings) -> tuple[str, str]:
    """("lists" | "off" | "fails", message): can discovery list NnfNodeBlockStorages?"""
