"""Waiting for a dependency at start-up: retry one call with capped exponential backoff until it answers.

Built on tenacity. The ingest worker's supervisor loop and its scheduled job retries (requeued in
Redis with a delay) are not retries of one call, so they keep their own timing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

log = logging.getLogger(__name__)

T = TypeVar("T")


async def until_ready(attempt: Callable[[], Awaitable[T]], *, what: str,
                      retry_on: tuple[type[BaseException], ...],
                      first_delay_s: float = 0.1, max_delay_s: float = 5.0) -> T:
    """Calls ``attempt`` until it returns, sleeping first_delay_s, 2x, 4x ... up to max_delay_s
    after each failure of a kind in ``retry_on``; any other exception propagates at once."""

    def note(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        pause = state.next_action.sleep if state.next_action else 0.0
        log.info("waiting for %s: %s (retrying in %.1fs)", what, error, pause)

    retrying = AsyncRetrying(retry=retry_if_exception_type(retry_on), reraise=True, before_sleep=note,
                             wait=wait_exponential(multiplier=first_delay_s, max=max_delay_s))
    async for round_ in retrying:
        with round_:
            return await attempt()
    raise AssertionError("unreachable: tenacity retries until success or re-raises")
