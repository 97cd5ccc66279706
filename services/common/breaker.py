"""A circuit breaker per peer: a peer that is down is skipped at once instead of waited for.

Closed, calls go through; ``failures_to_open`` failures in a row open the breaker, and ``trip``
opens it at once (a failure that proves the peer is gone: connection refused, not SERVING). Open,
calls are refused without touching the network. Once ``cooldown_s`` has passed it is half-open:

- with a ``probe`` (the index shards: a gRPC health check), the probe runs in the background on
  its own schedule and callers keep skipping the peer, so no caller's request waits on a peer
  that may be frozen, and a peer that is back is used again even before the next call;
- without one (the Redis query cache, whose calls time out in 50 ms), the next caller's own call
  is the trial.

A healthy probe or a successful call closes the breaker; a failed one opens it again with the
cooldown doubled, up to ``max_cooldown_s``. Hand-written: the Python breakers (pybreaker,
aiobreaker, purgatory) only count a wrapped call's exceptions and have no background probe.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"  # the probe is running


class CircuitBreaker:
    """Whether to call one peer now; see the module docstring for the states."""

    def __init__(self, name: str, probe: Callable[[], Awaitable[bool]] | None = None, *,
                 failures_to_open: int = 3, cooldown_s: float = 0.25, max_cooldown_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._probe = probe
        self.failures_to_open = failures_to_open
        self.base_cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self._clock = clock
        self.state = BreakerState.CLOSED
        self.reason = ""
        self._failures = 0
        self._cooldown_s = cooldown_s
        self._retry_at = 0.0
        self._probing: asyncio.Task[None] | None = None

    @property
    def is_open(self) -> bool:
        return self.state is not BreakerState.CLOSED

    def allow(self) -> bool:
        """True when a call may go to the peer (without a probe: also the one trial when cooled down)."""
        if self.state is BreakerState.CLOSED:
            return True
        if self._probe is None and self._clock() >= self._retry_at:
            self._reopen()  # should the trial's caller never report back, another trial comes later
            return True
        return False

    def trip(self, reason: str) -> None:
        """The peer is known to be down: open now (a no-op while already open or probing)."""
        if self.state is BreakerState.CLOSED:
            self.reason = reason
            self._cooldown_s = self.base_cooldown_s / 2  # _reopen doubles it back
            self._reopen()
            if self._probe is not None and (self._probing is None or self._probing.done()):
                self._probing = asyncio.ensure_future(self._probe_until_healthy())
            log.warning("%s skipped until it is healthy again: %s", self.name, reason)

    def record_failure(self, reason: str) -> None:
        self._failures += 1
        if self.state is BreakerState.OPEN:
            self.reason = reason  # a trial failed; _reopen already pushed the next one out
        elif self._failures >= self.failures_to_open:
            self.trip(f"{self._failures} calls in a row failed: {reason}")

    def record_success(self) -> None:
        self._failures = 0
        if self.state is not BreakerState.CLOSED:  # a call in flight when it opened came back fine
            self._close()

    def _reopen(self) -> None:
        self.state = BreakerState.OPEN
        self._cooldown_s = min(self._cooldown_s * 2, self.max_cooldown_s)
        self._retry_at = self._clock() + self._cooldown_s

    def _close(self) -> None:
        self.state = BreakerState.CLOSED
        self._failures = 0
        log.warning("%s is healthy again; calls go to it", self.name)

    async def _probe_until_healthy(self) -> None:
        assert self._probe is not None
        while True:
            await asyncio.sleep(self._cooldown_s)
            if self.state is BreakerState.CLOSED:
                return
            self.state = BreakerState.HALF_OPEN
            try:
                healthy = await self._probe()
            except Exception as exc:  # noqa: BLE001 - a failed probe is an unhealthy peer, whatever the cause
                log.debug("probe of %s failed: %r", self.name, exc)
                healthy = False
            if self.state is BreakerState.CLOSED:
                return
            if healthy:
                self._close()
                return
            self._reopen()

    async def close(self) -> None:
        if self._probing is not None and not self._probing.done():
            self._probing.cancel()
            await asyncio.gather(self._probing, return_exceptions=True)
