"""Reconnect policy, without sockets: which errors are retried, and how long to wait."""

from __future__ import annotations

import random

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, InvalidStatus, InvalidURI
from websockets.http11 import Response

from common.backoff import backoff_delays
from producers.connection import is_retryable


def status(code: int) -> InvalidStatus:
    return InvalidStatus(Response(code, "", Headers()))


def test_delays_grow_exponentially_with_jitter_and_stay_under_the_cap() -> None:
    delays = backoff_delays(0.25, 4.0, random.Random(3))
    first = [next(delays) for _ in range(10)]
    # ceilings: 0.25, 0.5, 1, 2, 4, 4, ...; every delay is in [0.125, ceiling]
    ceilings = [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert all(0.125 <= d <= c for d, c in zip(first, ceilings, strict=True))
    assert len(set(first)) == len(first)  # jittered, not a fixed ladder


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (OSError("connection refused"), True),
        (TimeoutError(), True),
        (ConnectionClosedError(None, None), True),
        (status(503), True),
        (status(429), True),
        (status(403), False),
        (status(404), False),
        (InvalidURI("ftp://x", "not a websocket URI"), False),
        (ValueError("bug"), False),
    ],
)
def test_network_trouble_is_retried_and_client_errors_are_fatal(error: Exception, retry: bool) -> None:
    assert is_retryable(error) is retry
