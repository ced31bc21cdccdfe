"""A fix for a kopf bug that can leave the whole operator deaf.

kopf holds every handler until each watch stream has listed its objects once (the "indexed"
gate that makes index handlers see complete listings). Each stream adds a toggle to that gate
and removes it when its listing ends, and each new object adds one until its first event is
indexed. A stream cancelled before its listing ended (its namespace was deleted, as test and
preview namespaces under a glob are) and an object worker cancelled before its first event
leave their toggles behind: the gate never opens again and no ModelDeployment anywhere is
reconciled, while the process looks healthy (kopf 1.45.2; seen in CI, reproduced by
tests/integration/test_faults.py). The wrappers below remove a stream's or worker's toggle
when it ends, however it ends; removing one twice is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from kopf._cogs.aiokits import aiotoggles
from kopf._core.reactor import queueing

_APPLIED = "_modeldeploy_drops_toggles"


def apply() -> None:
    """Wrap kopf's watcher and worker coroutines (idempotent)."""
    for name in ("watcher", "worker"):
        original = getattr(queueing, name)
        if not getattr(original, _APPLIED, False):
            setattr(queueing, name, _dropping_toggle(original))


def _dropping_toggle(
    coroutine: Callable[..., Awaitable[None]],
) -> Callable[..., Awaitable[None]]:
    @functools.wraps(coroutine)
    async def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            await coroutine(*args, **kwargs)
        finally:
            gate: aiotoggles.ToggleSet | None = kwargs.get("operator_indexed")
            toggle: aiotoggles.Toggle | None = kwargs.get("resource_indexed")
            if gate is not None and toggle is not None:
                # Shielded: this runs while the task is being cancelled.
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(gate.drop_toggle(toggle))

    setattr(wrapper, _APPLIED, True)
    return wrapper
