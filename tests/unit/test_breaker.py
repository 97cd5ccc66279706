"""The per-shard circuit breaker's states, on a fake clock, and the channels' retry policy per method."""

from __future__ import annotations

import asyncio
import json

from services.common.breaker import BreakerState, CircuitBreaker
from services.common.channels import retry_service_config
from services.common.index_client import SEARCH, SERVICE


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Probe:
    """Answers the breaker's probes from a script, recording how many ran."""

    def __init__(self, *answers: bool) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self) -> bool:
        self.calls += 1
        return self.answers.pop(0)


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def test_a_down_peer_is_skipped_until_a_background_probe_finds_it_healthy() -> None:
    async def scenario() -> None:
        clock, probe = FakeClock(), Probe(False, True)
        breaker = CircuitBreaker("shard-1", probe, cooldown_s=0.25, max_cooldown_s=2.0, clock=clock)
        assert breaker.allow()
        breaker.trip("connection refused")
        assert breaker.state is BreakerState.OPEN and not breaker.allow()
        clock.now += 0.25
        # Half-open: the probe runs in the background and the call is still skipped.
        assert not breaker.allow() and breaker.state is BreakerState.HALF_OPEN
        assert not breaker.allow()
        await _settle()
        assert probe.calls == 1 and breaker.state is BreakerState.OPEN
        # Still down: the cooldown doubled, so 0.25 s later it is still skipped without a probe.
        clock.now += 0.25
        assert not breaker.allow() and probe.calls == 1
        clock.now += 0.25
        assert not breaker.allow()
        await _settle()
        assert probe.calls == 2 and breaker.state is BreakerState.CLOSED and breaker.allow()

    asyncio.run(scenario())


def test_failures_open_the_breaker_only_when_consecutive() -> None:
    async def scenario() -> None:
        breaker = CircuitBreaker("shard-2", Probe(), failures_to_open=3, clock=FakeClock())
        for _ in range(5):
            breaker.record_failure("DEADLINE_EXCEEDED")
            breaker.record_failure("DEADLINE_EXCEEDED")
            breaker.record_success()
        assert breaker.allow()
        for _ in range(3):
            breaker.record_failure("DEADLINE_EXCEEDED")
        assert not breaker.allow() and "3 calls in a row failed" in breaker.reason
        await breaker.close()

    asyncio.run(scenario())


def test_without_a_probe_one_caller_is_the_trial_and_a_lost_trial_is_retried() -> None:
    """The Redis cache's breaker: after the cooldown exactly one call goes through; if it fails, or
    its caller never reports back, the next trial comes one cooldown later; a success closes it."""
    clock = FakeClock()
    breaker = CircuitBreaker("redis", failures_to_open=3, cooldown_s=5.0, max_cooldown_s=5.0, clock=clock)
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure("timeout")
    assert not breaker.allow()
    clock.now += 5.0
    assert breaker.allow() and not breaker.allow()  # one trial
    breaker.record_failure("timeout")
    clock.now += 4.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.allow()  # the trial whose caller vanished
    clock.now += 5.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow() and breaker.allow()


def test_the_cooldown_is_capped() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        probe = Probe(*[False] * 6)
        breaker = CircuitBreaker("shard-3", probe, cooldown_s=0.25, max_cooldown_s=1.0, clock=clock)
        breaker.trip("down")
        for _ in range(6):
            clock.now += 1.0  # always past a capped cooldown
            breaker.allow()
            await _settle()
        assert probe.calls == 6

    asyncio.run(scenario())


def test_searches_fail_fast_and_writes_keep_their_retries() -> None:
    config = json.loads(retry_service_config(SERVICE, fail_fast=(SEARCH,)))
    retried, fail_fast = config["methodConfig"]
    assert retried["name"] == [{"service": SERVICE}]
    assert retried["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    # gRPC takes the most specific name: Search alone has no retry policy, Upsert and Delete keep theirs.
    assert fail_fast == {"name": [{"service": SERVICE, "method": "Search"}]}
