"""Fake venues: local WebSocket servers that speak Coinbase Advanced Trade and Kraken v2 as the venues do.

Each simulates the venue's full book per symbol (a seeded random walk) and serves every client its own
view: Coinbase gets a full ``l2_data`` snapshot then updates with one ``sequence_num`` counter per
connection; Kraken gets ``status`` on connect, ``instrument`` precisions, per-symbol acks, a depth-limited
snapshot and updates with the CRC-32 checksum of what the client should now hold (levels pushed out of
the depth window are not deleted; levels coming back in are sent as inserts, as Kraken does). Tests and the
demo point producers here; only the URL differs. Misbehaviour on demand: :meth:`FakeVenue.drop_connections`,
:meth:`skip_sequence`, :meth:`corrupt_checksum`, :meth:`go_silent`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from producers.feed import Venue
from producers.simulators.localserver import LocalVenueServer
from producers.venues import kraken

TS = "2026-01-01T00:00:00.000000Z"


@dataclass
class Market:
    """One simulated book: prices on a tick grid (integers of ``tick``), sizes in text."""

    symbol: str
    mid: float
    price_precision: int = 2
    qty_precision: int = 8
    bids: dict[int, str] = field(default_factory=dict)  # price in ticks -> size text
    asks: dict[int, str] = field(default_factory=dict)

    @property
    def tick(self) -> float:
        return 10.0 ** -self.price_precision

    def price_text(self, ticks: int) -> str:
        return f"{ticks * self.tick:.{self.price_precision}f}"

    def seed_levels(self, rng: random.Random, levels: int = 40) -> None:
        center = round(self.mid / self.tick)
        for i in range(1, levels + 1):
            self.bids[center - i] = self.size_text(rng)
            self.asks[center + i] = self.size_text(rng)

    def size_text(self, rng: random.Random) -> str:
        return f"{rng.uniform(0.01, 3.0):.{self.qty_precision}f}"

    def step(self, rng: random.Random) -> tuple[str, int, str]:
        """One random change near the top: (side, price ticks, new size text; "0" deletes)."""
        side = rng.choice(("bid", "ask"))
        book = self.bids if side == "bid" else self.asks
        best = max(self.bids) if side == "bid" else min(self.asks)
        offset = rng.randint(0, 12)
        ticks = best - offset if side == "bid" else best + offset
        if ticks in book and rng.random() < 0.3 and len(book) > 15:
            del book[ticks]
            return side, ticks, "0"
        if (side == "bid" and ticks >= min(self.asks)) or (side == "ask" and ticks <= max(self.bids)):
            ticks = best  # never cross
        book[ticks] = self.size_text(rng)
        return side, ticks, book[ticks]

    def top(self, side: str, depth: int) -> dict[int, str]:
        book = self.bids if side == "bid" else self.asks
        keys = sorted(book, reverse=side == "bid")[:depth]
        return {k: book[k] for k in keys}


@dataclass
class Client:
    ws: ServerConnection
    sequence: int = 0
    books: dict[str, dict[str, dict[int, str]]] = field(default_factory=dict)  # symbol -> side -> view
    depth: int = kraken.DEFAULT_BOOK_DEPTH
    trades: set[str] = field(default_factory=set)
    skip_next: bool = False
    received: list[Any] = field(default_factory=list)


class FakeVenue(LocalVenueServer):
    """A fake ``venue`` serving ``markets``; ``tick_interval_s`` between book changes per market."""

    def __init__(self, venue: Venue, markets: list[Market], *, seed: int = 1, tick_interval_s: float = 0.01,
                 heartbeat_interval_s: float = 0.5) -> None:
        self.venue = venue
        self.markets = {m.symbol: m for m in markets}
        self._rng = random.Random(seed)
        for market in markets:
            market.seed_levels(self._rng)
        self._tick_interval_s = tick_interval_s
        self._heartbeat_interval_s = heartbeat_interval_s
        self.clients: list[Client] = []
        self.connections_accepted = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._silent = asyncio.Event()
        self._corrupt: set[str] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        url = await super().start(host, port)
        self._tasks = [asyncio.create_task(self._tick_forever()), asyncio.create_task(self._heartbeat_forever())]
        return url

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await super().stop()

    async def __aenter__(self) -> FakeVenue:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- misbehaviour -------------------------------------------------------------------------------

    async def drop_connections(self) -> None:
        """Cut every client's TCP connection without a close handshake (as a network failure would)."""
        for client in list(self.clients):
            client.ws.transport.abort()

    def skip_sequence(self) -> None:
        """Coinbase: the next frame to each client jumps one ``sequence_num`` (a lost message)."""
        for client in self.clients:
            client.skip_next = True

    def corrupt_checksum(self, symbol: str) -> None:
        """Kraken: the next update of ``symbol`` carries a wrong checksum."""
        self._corrupt.add(symbol)

    def go_silent(self, silent: bool = True) -> None:
        """Stop (or resume) sending anything, heartbeats included, while keeping sockets open."""
        if silent:
            self._silent.set()
        else:
            self._silent.clear()

    # --- protocol -----------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        client = Client(ws)
        self.clients.append(client)
        self.connections_accepted += 1
        try:
            if self.venue is Venue.KRAKEN:
                await self._send(client, {"channel": "status", "type": "update", "data": [
                    {"api_version": "v2", "connection_id": 14949390454975033707, "system": "online",
                     "version": "2.0.8"}]})
            async for message in ws:
                request = orjson.loads(message)
                client.received.append(request)
                if self.venue is Venue.COINBASE:
                    await self._coinbase_request(client, request)
                else:
                    await self._kraken_request(client, request)
        except ConnectionClosed:
            pass
        finally:
            self.clients.remove(client)

    async def _send(self, client: Client, message: dict[str, Any] | str) -> None:
        if self._silent.is_set():
            return
        if self.venue is Venue.COINBASE and isinstance(message, dict):
            if client.skip_next:
                client.sequence += 1
                client.skip_next = False
            message = {**message, "timestamp": TS, "sequence_num": client.sequence}
            client.sequence += 1
        text = message if isinstance(message, str) else orjson.dumps(message).decode()
        with contextlib.suppress(ConnectionClosed):
            await client.ws.send(text)

    async def _coinbase_request(self, client: Client, request: dict[str, Any]) -> None:
        channel, products = request.get("channel"), request.get("product_ids", [])
        if request.get("type") == "unsubscribe":
            for product in products:
                client.books.pop(product, None) if channel == "level2" else client.trades.discard(product)
        elif channel == "level2":
            for product in products:
                market = self.markets[product]
                client.books[product] = {}
                updates = [self._cb_level("bid", market, t, s) for t, s in market.top("bid", 10**6).items()]
                updates += [self._cb_level("offer", market, t, s) for t, s in market.top("ask", 10**6).items()]
                await self._send(client, {"channel": "l2_data", "events": [
                    {"type": "snapshot", "product_id": product, "updates": updates}]})
        elif channel == "market_trades":
            client.trades.update(products)
        await self._send(client, {"channel": "subscriptions", "events": [{"subscriptions": {
            "level2": sorted(client.books), "market_trades": sorted(client.trades), "heartbeats": ["heartbeats"]}}]})

    @staticmethod
    def _cb_level(side: str, market: Market, ticks: int, size: str) -> dict[str, str]:
        normalise = lambda text: text.rstrip("0").rstrip(".") if "." in text else text  # noqa: E731
        return {"side": side, "event_time": TS, "price_level": normalise(market.price_text(ticks)),
                "new_quantity": normalise(size)}

    async def _kraken_request(self, client: Client, request: dict[str, Any]) -> None:
        method, params, req_id = request.get("method"), request.get("params", {}), request.get("req_id")
        if method == "ping":
            await self._send(client, {"method": "pong", "req_id": req_id})
            return
        channel = params.get("channel")
        if channel == "instrument":
            pairs = [{"symbol": kraken.v2_symbol(m.symbol), "price_precision": m.price_precision,
                      "qty_precision": m.qty_precision, "status": "online"} for m in self.markets.values()]
            await self._send(client, {"channel": "instrument", "type": "snapshot",
                                      "data": {"assets": [], "pairs": pairs}})
            return
        for name in params.get("symbol", []):
            symbol = kraken.canonical(name)
            if symbol not in self.markets:
                await self._send(client, {"method": method, "error": f"Currency pair not supported {name}",
                                          "success": False, "req_id": req_id})
                continue
            await self._send(client, {"method": method, "result": {"channel": channel, "symbol": name},
                                      "success": True, "req_id": req_id})
            if channel == "book" and method == "subscribe":
                client.depth = int(params.get("depth", kraken.DEFAULT_BOOK_DEPTH))
                market = self.markets[symbol]
                view = {"bid": market.top("bid", client.depth), "ask": market.top("ask", client.depth)}
                client.books[symbol] = view
                await self._send(client, self._kraken_book("snapshot", market, view, view, {}))
            elif channel == "book":
                client.books.pop(symbol, None)
            elif channel == "trade":
                (client.trades.add if method == "subscribe" else client.trades.discard)(symbol)

    def _kraken_book(self, kind: str, market: Market, view: dict[str, dict[int, str]],
                     changed: dict[str, dict[int, str]], _: dict[str, Any]) -> str:
        """A v2 book message as text: numbers written with the pair's exact precision (they are JSON numbers)."""
        def levels(side: str) -> str:
            items = sorted(changed[side].items(), reverse=side == "bid")
            return ",".join(f'{{"price":{market.price_text(t)},"qty":{s}}}' for t, s in items)

        asks = [(market.price_text(t), s) for t, s in sorted(view["ask"].items())][: kraken.CHECKSUM_LEVELS]
        bids = [(market.price_text(t), s) for t, s in sorted(view["bid"].items(), reverse=True)]
        crc = kraken.checksum_v2(asks, bids[: kraken.CHECKSUM_LEVELS], market.price_precision, market.qty_precision)
        if kind == "update" and market.symbol in self._corrupt:
            self._corrupt.discard(market.symbol)
            crc ^= 1
        return (f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{kraken.v2_symbol(market.symbol)}",'
                f'"bids":[{levels("bid")}],"asks":[{levels("ask")}],"checksum":{crc},"timestamp":"{TS}"}}]}}')

    # --- market activity ----------------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self._tick_interval_s)
            if self._silent.is_set():
                continue
            for market in self.markets.values():
                side, ticks, size = market.step(self._rng)
                for client in list(self.clients):
                    if market.symbol in client.books:
                        await self._publish_change(client, market, side, ticks, size)

    async def _publish_change(self, client: Client, market: Market, side: str, ticks: int, size: str) -> None:
        if self.venue is Venue.COINBASE:
            level = self._cb_level("bid" if side == "bid" else "offer", market, ticks, size)
            await self._send(client, {"channel": "l2_data", "events": [
                {"type": "update", "product_id": market.symbol, "updates": [level]}]})
            return
        old = client.books[market.symbol]
        new = {"bid": market.top("bid", client.depth), "ask": market.top("ask", client.depth)}
        changed: dict[str, dict[int, str]] = {"bid": {}, "ask": {}}
        for book_side in ("bid", "ask"):
            for t, s in new[book_side].items():
                if old[book_side].get(t) != s:
                    changed[book_side][t] = s  # a new or changed level, or one back inside the window
            for t in old[book_side]:
                book = market.bids if book_side == "bid" else market.asks
                if t not in new[book_side] and t not in book:
                    changed[book_side][t] = "0"  # deleted (a level merely pushed out is not sent)
        client.books[market.symbol] = new
        if changed["bid"] or changed["ask"]:
            await self._send(client, self._kraken_book("update", market, new, changed, {}))

    async def _heartbeat_forever(self) -> None:
        counter = 41691
        while True:
            await asyncio.sleep(self._heartbeat_interval_s)
            counter += 1
            for client in list(self.clients):
                if self.venue is Venue.COINBASE:
                    await self._send(client, {"channel": "heartbeats", "events": [
                        {"current_time": TS, "heartbeat_counter": counter}]})
                elif client.books:
                    await self._send(client, {"channel": "heartbeat"})
