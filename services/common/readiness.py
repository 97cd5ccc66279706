"""A service's core, given to its servicer at construction and filled in once start-up has built it.

The server answers health checks (NOT_SERVING) while the core loads: a model, a large index. Until
then every RPC gets NotReady (UNAVAILABLE, which callers retry). This is the one place that says so.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from services.common.errors import NotReady

T = TypeVar("T")


class Pending(Generic[T]):
    """Holds a core that start-up sets once; ``get`` refuses with NotReady until then."""

    def __init__(self, not_ready: str, core: T | None = None) -> None:
        self._not_ready = not_ready
        self._core = core

    def set(self, core: T) -> None:
        self._core = core

    def get(self) -> T:
        if self._core is None:
            raise NotReady(self._not_ready)
        return self._core

    @property
    def ready(self) -> bool:
        return self._core is not None

    def take(self) -> T | None:
        """The core, if any, now no longer served (for shutdown)."""
        core, self._core = self._core, None
        return core
