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
    "fence",
    "fenced_targets",
    "is_fenced",
    "mount_report",
    "nnf_warnings",
    "resolve_settings",
    "run_responder",
    "unfence",
]

__version__: str
SETTINGS: tuple[tuple[str, str], ...]
ENVIRONMENT: tuple[str, ...]

class SettingsError(ValueError): ...

@final
class Settings:
    @property
    def request_dir(self) -> str: ...
    @property
    def response_dir(self) -> str: ...
    @property
    def log_dir(self) -> str: ...
    @property
    def main_log(self) -> str: ...
    @property
    def fence_timeout(self) -> float: ...
    @property
    def poll_interval(self) -> float: ...
    @property
    def force_poll(self) -> bool: ...
    @property
    def kubectl_path(self) -> str | None: ...
    @property
    def discovery_timeout(self) -> float: ...
    @property
    def log_mode(self) -> int: ...
    @property
    def stale_age(self) -> float: ...
    @property
    def nnf_config(self) -> str | None: ...
    @property
    def nnf_config_origin(self) -> str: ...
    @property
    def nnf_config_notes(self) -> list[str]: ...
    @property
    def origins(self) -> list[tuple[str, str]]: ...

@final
class FenceResult:
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
    @property
    def kind(self) -> Literal["removed", "nothing_to_remove", "failed"]: ...
    @property
    def removed(self) -> list[str]: ...
    @property
    def message(self) -> str: ...

def resolve_settings(**options: str | None) -> Settings: ...
def fence(
    settings: Settings,
    action: str,
    target: bytes,
    recorder_node: str | None = None,
    interrupted: Callable[[], str | None] | None = None,
) -> FenceResult: ...
def check_directories(settings: Settings, create: bool = False) -> list[str]: ...
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
) -> int: ...
def is_fenced(settings: Settings, target: bytes) -> bool: ...
def fenced_targets(settings: Settings) -> list[str]: ...
def unfence(
    settings: Settings, target: bytes, recorder_node: str | None = None
) -> UnfenceResult: ...
def clean_stale(settings: Settings) -> list[str]: ...
def nnf_warnings(settings: Settings) -> list[str]: ...
def mount_report(settings: Settings) -> list[tuple[str, str | None]]: ...
