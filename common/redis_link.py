"""Riding out Redis faults: which errors are transient, how long to wait, and what the outage cost.

Every long-lived Redis client loop (group consumers, fan-out readers, the publisher, the dashboard) treats
a lost connection, a server still ``LOADING`` its AOF, or an authentication error during a restart as
weather, not as a bug: it waits a capped, jittered delay and tries again until it is stopped. A
:class:`RedisLink` per component keeps the books on that (up/down, reconnects, seconds disconnected) for
metrics, ``md.health`` and ``/healthz``. A :class:`RedisProbe` answers ``/healthz`` from a fresh PING
every second, so a dead Redis reads as down within seconds, never as a stale "PING ok".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common import metrics
from common.backoff import backoff_delays
from common.service import CheckResult

log = logging.getLogger(__name__)

TRANSIENT_REPLIES = ("LOADING", "NOAUTH", "WRONGPASS", "TRYAGAIN", "MASTERDOWN", "BUSY ")
"""Error replies a restarting server gives that go away by themselves (redis-py maps most of them to
ConnectionError subclasses already; the rest arrive as plain ResponseError)."""


UVLOOP_CLOSED_TRANSPORT = "unable to perform operation on"
"""uvloop raises RuntimeError (not ConnectionError) when redis-py writes to a socket the server closed in
the same instant, e.g. AUTH on a connection to a server that is going down."""


def is_transient(exc: BaseException) -> bool:
    """True for faults that retrying fixes: the connection (refused, reset, timed out), a server that is
    loading, or credentials refused while a server restarts. ACL denials (NOPERM), OOM and bad commands
    are not: retrying them would hide a bug or a misconfiguration. Nor are other OSErrors (a full disk
    under the persistence writer): they are the handler's failure, not a Redis outage."""
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)):
        return True  # includes AuthenticationError, BusyLoadingError and socket resets/refusals
    if isinstance(exc, RuntimeError) and str(exc).startswith(UVLOOP_CLOSED_TRANSPORT):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(TRANSIENT_REPLIES)


class RedisLink:
    """One component's view of its Redis connection: call :meth:`failed` on a transient error (then wait
    what it returns, or use :meth:`pause`) and :meth:`ok` after the next success."""

    def __init__(self, component: str, *, base_s: float = 0.1, cap_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.component = component
        self._base_s = base_s
        self._cap_s = cap_s
        self._clock = clock
        self._delays = backoff_delays(base_s, cap_s)
        self.up = True
        self.reconnects = 0
        self.down_since: float | None = None
        self._down_total_s = 0.0
        self.last_error = ""
        metrics.REDIS_UP.labels(component=component).set(1)
        metrics.REDIS_RECONNECTS.labels(component=component)
        metrics.REDIS_DISCONNECTED_SECONDS.labels(component=component)

    @property
    def down_seconds(self) -> float:
        """Total time spent disconnected, the current outage included."""
        current = self._clock() - self.down_since if self.down_since is not None else 0.0
        return self._down_total_s + current

    def failed(self, exc: BaseException) -> float:
        """Record a transient failure; returns how long to wait before the next attempt."""
        self.last_error = f"{type(exc).__name__}: {exc}"[:200]
        if self.up:
            self.up = False
            self.down_since = self._clock()
            metrics.REDIS_UP.labels(component=self.component).set(0)
            log.warning("lost Redis, retrying with backoff: %s", self.last_error,
                        extra={"component": self.component})
        return next(self._delays)

    def ok(self) -> None:
        """Record a success; ends the outage (if any) and resets the backoff."""
        if self.up:
            return
        assert self.down_since is not None
        outage = self._clock() - self.down_since
        self._down_total_s += outage
        self.up, self.down_since = True, None
        self.reconnects += 1
        self._delays = backoff_delays(self._base_s, self._cap_s)
        metrics.REDIS_UP.labels(component=self.component).set(1)
        metrics.REDIS_RECONNECTS.labels(component=self.component).inc()
        metrics.REDIS_DISCONNECTED_SECONDS.labels(component=self.component).inc(outage)
        log.info("Redis is back after %.1fs", outage, extra={"component": self.component})

    async def pause(self, exc: BaseException, stop: asyncio.Event | None = None) -> None:
        """:meth:`failed`, then wait the backoff delay (returns early once ``stop`` is set)."""
        delay = self.failed(exc)
        if stop is None:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await stop.wait()


class RedisProbe:
    """``/healthz`` check: a PING answered within the last ``max_age_s``. The verdict is computed from the
    time of the last answer, so it turns to failing even if a PING hangs."""

    def __init__(self, *, interval_s: float = 1.0, max_age_s: float = 3.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._interval_s = interval_s
        self._max_age_s = max_age_s
        self._clock = clock
        self._last_ok: float | None = None
        self._error = "not checked yet"

    def result(self) -> CheckResult:
        if self._last_ok is None:
            return CheckResult(False, self._error)
        age = self._clock() - self._last_ok
        if age > self._max_age_s:
            return CheckResult(False, f"no PING answer for {age:.1f}s: {self._error}")
        return CheckResult(True, "PING ok")

    async def watch(self, redis: Redis, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with asyncio.timeout(self._interval_s):
                    await redis.ping()
                self._last_ok = self._clock()
            except Exception as exc:  # every failure, transient or not, is "down" for a health check
                self._error = f"{type(exc).__name__}: {exc}"[:200]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval_s):
                    await stop.wait()
