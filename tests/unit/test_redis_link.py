"""Which Redis faults are weather (retry) and which are bugs (raise), and what an outage is recorded as."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    NoPermissionError,
    ResponseError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

from common import metrics
from common.redis_link import RedisLink, RedisProbe, is_transient


@pytest.mark.parametrize("exc", [
    RedisConnectionError("Connection refused"), RedisTimeoutError("timed out"), BusyLoadingError("LOADING"),
    AuthenticationError("WRONGPASS"), ConnectionResetError(), TimeoutError(), ResponseError("LOADING Redis is loading"),
    RuntimeError("unable to perform operation on <TCPTransport closed=True>; the handler is closed"),
])
def test_connection_loading_and_restart_auth_faults_are_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize("exc", [
    NoPermissionError("this user has no permissions"), ResponseError("OOM command not allowed"),
    ResponseError("ERR unknown command"), RuntimeError("something else"), ValueError("bad"),
    OSError(28, "No space left on device"),
])
def test_acl_denials_oom_and_bugs_are_not(exc: BaseException) -> None:
    assert not is_transient(exc)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_counts_one_reconnect_and_its_duration() -> None:
    clock = Clock()
    link = RedisLink("unit-outage", clock=clock)
    delays = [link.failed(RedisConnectionError("down")) for _ in range(6)]
    assert not link.up and metrics.REDIS_UP.labels(component="unit-outage")._value.get() == 0
    assert all(0 < delay <= 2.0 for delay in delays) and max(delays[3:]) > min(delays[:1])  # grows, capped
    clock.now += 4.0
    assert link.down_seconds == pytest.approx(4.0)
    link.ok()
    link.ok()  # a second success is not a second reconnect
    assert link.up and link.reconnects == 1 and link.down_seconds == pytest.approx(4.0)
    assert metrics.REDIS_RECONNECTS.labels(component="unit-outage")._value.get() == 1
    assert metrics.REDIS_DISCONNECTED_SECONDS.labels(component="unit-outage")._value.get() == pytest.approx(4.0)


async def test_pause_returns_early_when_stopped() -> None:
    link = RedisLink("unit-pause", base_s=30.0, cap_s=30.0)
    stop = asyncio.Event()
    stop.set()
    await asyncio.wait_for(link.pause(RedisConnectionError("down"), stop), timeout=5)


def test_probe_reads_down_once_its_last_answer_is_too_old_even_if_a_ping_hangs() -> None:
    clock = Clock()
    probe = RedisProbe(max_age_s=3.0, clock=clock)
    assert not probe.result().ok  # never answered
    probe._last_ok = clock.now
    assert probe.result().ok
    clock.now += 3.5  # no answer since: a hung PING changes nothing
    result = probe.result()
    assert not result.ok and "no PING answer for 3.5s" in result.detail
