"""The WebSocket server under the fake and replay venues: loopback, any free port, no frame size limit."""

from __future__ import annotations

from websockets.asyncio.server import Server, ServerConnection, serve


class LocalVenueServer:
    """Subclasses implement ``_handle`` (one client connection); ``start`` returns the ``ws://`` URL."""

    _server: Server | None = None

    async def _handle(self, ws: ServerConnection) -> None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        assert self._server is not None, "the venue server is not started"
        host, port = next(iter(self._server.sockets)).getsockname()[:2]
        return f"ws://{host}:{port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._server = await serve(self._handle, host, port, max_size=None, compression=None)
        return self.url

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
