"""fence_gfs2_recorder: a Pacemaker STONITH agent for GFS2 on NearNodeFlash.

The agent asks the NNF reconciler to detach a compute node's storage by
writing a request file and waiting for the response; the exchange, its
timeout and its journal live in the native module. The native module is
loaded on first use so that ``-o metadata`` stays as cheap as possible.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "FenceResult",
    "Settings",
    "SettingsError",
    "__version__",
    "check_directories",
    "fence",
    "resolve_settings",
    "run_responder",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import _native

        return getattr(_native, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
