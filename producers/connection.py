"""One venue WebSocket, kept alive: connect, subscribe, receive, watch for silence, reconnect.

The reconnect loop is websockets' own (``async for ws in connect(...)``) driven by two pure helpers that
are unit-tested without sockets: :func:`is_retryable` classifies an error, :func:`backoff_delays` yields
capped, jittered delays. What this module adds is the staleness watchdog (no frame for ``stale_after_s``
→ close and reconnect: a socket can look open while the venue has stopped talking), the frame size a
Coinbase book snapshot needs (5 MB; websockets defaults to 1 MiB), capture of every frame, and callbacks
that tell the producer about each new connection, frame and state change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from common.backoff import backoff_delays
from producers.capture import CaptureWriter

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 32 * 1024 * 1024
"""Coinbase's BTC-USD level2 snapshot alone is 5.08 MB; leave room for deeper books."""


class LinkState(StrEnum):
    CONNECTING = "connecting"
    UP = "up"
    STALE = "stale"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class LinkSettings:
    url: str
    stale_after_s: float = 5.0
    open_timeout_s: float = 10.0
    backoff_base_s: float = 0.25
    backoff_cap_s: float = 30.0


def is_retryable(exc: Exception) -> bool:
    """Network trouble and server-side refusals (5xx, 429) are worth retrying; a bad URL or a 4xx is not."""
    if isinstance(exc, InvalidURI):
        return False
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        return status >= 500 or status == 429
    return isinstance(exc, (OSError, TimeoutError, asyncio.TimeoutError, InvalidHandshake, ConnectionClosed))


class Link:
    """Runs until ``stop`` is set. ``on_connect`` sends the subscriptions of each new connection; frames
    go to ``on_frame`` with their receive time in ms; ``on_state`` hears every state change with a reason."""

    def __init__(
        self,
        settings: LinkSettings,
        *,
        on_connect: Callable[[], Awaitable[None]],
        on_frame: Callable[[str | bytes, int], Awaitable[None]],
        on_state: Callable[[LinkState, str], None],
        capture: CaptureWriter | None = None,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.settings = settings
        self._on_connect = on_connect
        self._on_frame = on_frame
        self._on_state = on_state
        self._capture = capture
        self._clock_ms = clock_ms
        self._ws: ClientConnection | None = None
        self.connections = 0
        """Successful connections so far; ``connections - 1`` is the number of reconnects."""

    @property
    def connected(self) -> bool:
        return self._ws is not None

    async def send(self, text: str) -> bool:
        """Send on the live socket (subscriptions); False when there is none (the next connect resends)."""
        ws = self._ws
        if ws is None:
            return False
        try:
            await ws.send(text)
        except ConnectionClosed:
            return False
        if self._capture is not None:
            self._capture.sent(self.connections, text)
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, serve and reconnect until ``stop``. A connection being served sees ``stop`` itself and closes
        cleanly; a connect attempt or a reconnect backoff (websockets' loop, which cannot see ``stop``) is
        cancelled, so a stop never waits for an unreachable venue."""
        linking = asyncio.ensure_future(self._link(stop))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({linking, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not linking.done() and self._ws is None:
                linking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await linking
        finally:
            stopping.cancel()
        self._on_state(LinkState.DOWN, "stopped")

    async def _link(self, stop: asyncio.Event) -> None:
        base_s, cap_s = self.settings.backoff_base_s, self.settings.backoff_cap_s
        self._on_state(LinkState.CONNECTING, f"connecting to {self.settings.url}")
        connector = connect(
            self.settings.url, max_size=MAX_FRAME_BYTES, open_timeout=self.settings.open_timeout_s,
            process_exception=lambda exc: None if is_retryable(exc) else exc,
            reconnect_delays=lambda: backoff_delays(base_s, cap_s), proxy=None, compression=None,
        )
        async for ws in connector:
            if stop.is_set():
                await ws.close()
                break
            self._ws = ws
            self.connections += 1
            if self._capture is not None:
                self._capture.connected(self.connections, self.settings.url)
            try:
                await self._serve(ws, stop)
            finally:
                self._ws = None
            if stop.is_set():
                break
            await asyncio.sleep(next(backoff_delays(base_s, cap_s)))  # a short pause before reconnecting

    async def _serve(self, ws: ClientConnection, stop: asyncio.Event) -> None:
        """One connection's life: subscribe, then receive until it closes, goes silent or we stop."""
        self._on_state(LinkState.UP, f"connected (connection {self.connections})")
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await self._on_connect()
            while not stop.is_set():
                receive = asyncio.ensure_future(ws.recv())
                done, _ = await asyncio.wait(
                    {receive, stopping}, timeout=self.settings.stale_after_s, return_when=asyncio.FIRST_COMPLETED
                )
                if receive not in done:
                    receive.cancel()
                    if not stop.is_set():
                        self._on_state(LinkState.STALE, f"no message for {self.settings.stale_after_s:g}s")
                    await ws.close()
                    return
                frame = receive.result()
                received_ms = self._clock_ms()
                if self._capture is not None:
                    self._capture.received(self.connections, frame)
                await self._on_frame(frame, received_ms)
        except ConnectionClosed as exc:
            self._on_state(LinkState.DOWN, f"connection closed: {exc}")
        finally:
            stopping.cancel()
            if stop.is_set():
                await ws.close()
