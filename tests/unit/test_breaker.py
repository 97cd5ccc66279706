"""The per-shard circuit breaker's states, on a fake clock, and the channels' retry policy per method."""

from __future__ import annotations

import asyncio
import json

from services.common.breaker import BreakerState, CircuitBreaker
from services.common.channels import retry_service_config
from services.common.index_client import SEARCH, SERVICE


class FakeClock:  # for the breaker without a probe, whose trials come on a caller's call
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


def test_a_down_peer_is_skipped_until_a_background_probe_finds_it_healthy() -> None:
    """The probe runs on its own schedule (cooldowns 20, 40, 80 ms here), not on a caller's call,
    and no call goes through until it finds the peer healthy."""

    async def scenario() -> None:
        probe = Probe(False, False, True)
        breaker = CircuitBreaker("shard-1", probe, cooldown_s=0.02, max_cooldown_s=0.08)
        assert breaker.allow()
        breaker.trip("connection refused")
        assert breaker.state is BreakerState.OPEN and not breaker.allow()
        await asyncio.sleep(0.01)
        assert probe.calls == 0 and not breaker.allow()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if breaker.state is BreakerState.CLOSED:
                break
            assert not breaker.allow()
        assert probe.calls == 3 and breaker.allow()
        await breaker.close()

    asyncio.run(scenario())


def test_a_call_in_flight_that_succeeds_closes_it_and_ends_the_probing() -> None:
    async def scenario() -> None:
        probe = Probe(*[False] * 50)
        breaker = CircuitBreaker("shard-1", probe, cooldown_s=0.01, max_cooldown_s=0.01)
        breaker.trip("timeouts")
        await asyncio.sleep(0.05)
        breaker.record_success()
        calls = probe.calls
        await asyncio.sleep(0.05)
        assert breaker.state is BreakerState.CLOSED and probe.calls <= calls + 1
        await breaker.close()

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
        probe = Probe(*[False] * 100)
        breaker = CircuitBreaker("shard-3", probe, cooldown_s=0.01, max_cooldown_s=0.02)
        breaker.trip("down")
        await asyncio.sleep(0.3)
        await breaker.close()
        # Uncapped, the cooldowns 10, 20, 40, 80, 160 ms would allow 5 probes in 300 ms.
        assert probe.calls >= 8

    asyncio.run(scenario())


def test_searches_fail_fast_and_writes_keep_their_retries() -> None:
    config = json.loads(retry_service_config(SERVICE, fail_fast=(SEARCH,)))
    retried, fail_fast = config["methodConfig"]
    assert retried["name"] == [{"service": SERVICE}]
    assert retried["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    # gRPC takes the most specific name: Search alone has no retry policy, Upsert and Delete keep theirs.
    assert fail_fast == {"name": [{"service": SERVICE, "method": "Search"}]}
