"""The REST face of a :class:`FakeVenue`: the public top-of-book endpoints the fallback poller calls,
answering from the same simulated books the fake WebSocket serves (Coinbase ``product_book``, Kraken
``Depth`` with its ``{"error": [], "result": {...}}`` envelope)."""

from __future__ import annotations

from aiohttp import web

from producers.feed import Venue
from producers.simulators.fakevenue import FakeVenue
from producers.venues import kraken


class FakeRest:
    def __init__(self, venue: FakeVenue) -> None:
        self.venue = venue
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, host: str = "127.0.0.1") -> str:
        app = web.Application()
        app.router.add_get("/api/v3/brokerage/market/product_book", self._coinbase_book)
        app.router.add_get("/0/public/Depth", self._kraken_depth)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _levels(self, symbol: str, side: str, count: int) -> list[tuple[str, str]]:
        market = self.venue.markets[symbol]
        return [(market.price_text(t), s) for t, s in market.top(side, count).items()]

    async def _coinbase_book(self, request: web.Request) -> web.Response:
        self.requests += 1
        symbol, limit = request.query["product_id"], int(request.query.get("limit", 5))
        if symbol not in self.venue.markets:
            return web.json_response({"error": "NOT_FOUND"}, status=404)
        return web.json_response({"pricebook": {
            "product_id": symbol, "time": "2026-01-01T00:00:00.000000Z",
            "bids": [{"price": p, "size": s} for p, s in self._levels(symbol, "bid", limit)],
            "asks": [{"price": p, "size": s} for p, s in self._levels(symbol, "ask", limit)],
        }})

    async def _kraken_depth(self, request: web.Request) -> web.Response:
        self.requests += 1
        pair, count = request.query["pair"], int(request.query.get("count", 5))
        symbol = kraken.canonical(pair[:3] + "/" + pair[3:])  # the fake's markets all have 3-letter bases
        if self.venue.venue is not Venue.KRAKEN or symbol not in self.venue.markets:
            return web.json_response({"error": ["EQuery:Unknown asset pair"]})
        book = {"bids": [[p, s, 1767225600] for p, s in self._levels(symbol, "bid", count)],
                "asks": [[p, s, 1767225600] for p, s in self._levels(symbol, "ask", count)]}
        return web.json_response({"error": [], "result": {f"X{pair}": book}})
