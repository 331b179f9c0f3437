"""Runs the dashboard app on uvicorn inside our event loop, and stops it cleanly with the stack."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

import uvicorn
from redis.asyncio import Redis

from common.config import Settings
from common.redis_link import RedisProbe
from dashboard.app import create_app


class _StackOwnedSignalsServer(uvicorn.Server):
    """uvicorn inside our event loop. The process's owner (``triarb up``/``dashboard``) handles SIGINT and
    SIGTERM: uvicorn's ``capture_signals`` would replace those handlers while it serves and re-raise the
    signal on exit, turning one Ctrl-C into "second SIGINT: exiting without draining"."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_dashboard(
    settings: Settings, reader: Redis, control: Redis | None, stop: asyncio.Event,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    probe = RedisProbe()
    app = create_app(settings, reader, control, redis_check=probe.result)
    watching = asyncio.create_task(probe.watch(reader, stop))
    config = uvicorn.Config(app, host=settings.dashboard_host, port=settings.dashboard_port, log_level="warning",
                            lifespan="off", access_log=False)
    server = _StackOwnedSignalsServer(config)
    try:
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        if serving.done():
            await serving  # raises the bind error
            return
        if on_ready is not None:
            on_ready(server.servers[0].sockets[0].getsockname()[1])
        await stop.wait()
        app.state.stopping.set()  # ends the event streams so connections can close
        server.should_exit = True
        await serving
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
