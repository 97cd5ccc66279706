"""Start-up waits: retried on the listed failures with growing pauses, anything else at once."""

from __future__ import annotations

import asyncio

import pytest

from services.common.retry import until_ready


def test_retries_listed_failures_then_returns() -> None:
    calls = []

    async def attempt() -> str:
        calls.append(len(calls))
        if len(calls) < 3:
            raise ConnectionError("not yet")
        return "ready"

    assert asyncio.run(until_ready(attempt, what="x", retry_on=(ConnectionError,), first_delay_s=0.001)) == "ready"
    assert calls == [0, 1, 2]


def test_other_failures_are_not_retried() -> None:
    calls = []

    async def attempt() -> None:
        calls.append(1)
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError, match="a bug"):
        asyncio.run(until_ready(attempt, what="x", retry_on=(ConnectionError,), first_delay_s=0.001))
    assert calls == [1]
