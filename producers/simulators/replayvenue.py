"""A venue that replays a capture: the producer connects, subscribes, and receives the recorded frames.

``triarb replay FILE`` and ``make demo`` run the real producer against it, so parsing, books, resyncs and
publishing are exactly the live code; only the URL differs. Frames are paced by their recorded times
(``speed`` × real time, or as fast as possible), and Coinbase ``sequence_num`` is renumbered per client
connection so a looped replay or a reconnect is a consistent new connection, as on the real venue.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from producers.capture import read_capture
from producers.feed import PARSERS, Venue
from producers.replay import subscribed_depth, venue_of
from producers.simulators.localserver import LocalVenueServer
from producers.venues.events import BookSnapshot, VenueProtocolError


class ReplayVenue(LocalVenueServer):
    """Serves the received frames of ``path`` to every client, from the start, after its first message."""

    def __init__(self, path: Path, *, speed: float | None = 1.0, loop: bool = False) -> None:
        self.path = path
        self.speed = speed
        self.loop = loop
        self.frames: list[tuple[float, str]] = []
        self.depth: int | None = None
        header: dict[str, object] = {}
        for record in read_capture(path):
            if record.kind == "header":
                header = record.raw
            elif record.kind == "recv" and record.data is not None:
                self.frames.append((record.ts or 0.0, record.data))
            elif record.kind == "send" and record.data is not None and self.depth is None:
                self.depth = subscribed_depth(record.data)
        self.venue: Venue = venue_of(header)
        self.header = header
        self.finished = asyncio.Event()
        self.clients = 0

    def book_symbols(self) -> list[str]:
        """Symbols whose book snapshots the capture holds (what a producer should subscribe to)."""
        parse = PARSERS[self.venue]
        symbols: set[str] = set()
        for _, frame in self.frames:
            if "snapshot" in frame or '"as"' in frame:
                with contextlib.suppress(VenueProtocolError):
                    symbols.update(e.symbol for e in parse(frame).events if isinstance(e, BookSnapshot))
        return sorted(symbols)

    async def _handle(self, ws: ServerConnection) -> None:
        self.clients += 1
        drain: asyncio.Task[None] | None = None
        try:
            await ws.recv()  # a venue starts sending once the client has subscribed
            drain = asyncio.create_task(self._ignore_requests(ws))
            sequence = 0
            while True:
                sequence = await self._stream(ws, sequence)
                if not self.loop:
                    break
            self.finished.set()
            await ws.wait_closed()
        except ConnectionClosed:
            pass
        finally:
            if drain is not None:
                drain.cancel()

    async def _ignore_requests(self, ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                pass

    async def _stream(self, ws: ServerConnection, sequence: int) -> int:
        """Send every frame once; returns the next Coinbase sequence number of this connection."""
        loop = asyncio.get_running_loop()
        started, first_ts = loop.time(), self.frames[0][0] if self.frames else 0.0
        for ts, frame in self.frames:
            if self.speed:
                delay = (ts - first_ts) / self.speed - (loop.time() - started)
                if delay > 0:
                    await asyncio.sleep(delay)
            if self.venue is Venue.COINBASE and '"sequence_num"' in frame:
                message = orjson.loads(frame)
                message["sequence_num"] = sequence
                sequence += 1
                frame = orjson.dumps(message).decode()
            await ws.send(frame)
        return sequence
