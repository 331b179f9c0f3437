"""Runs the dashboard app on uvicorn inside our event loop, and stops it cleanly with the stack."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import uvicorn
from redis.asyncio import Redis

from common.config import Settings
from dashboard.app import create_app


async def serve_dashboard(
    settings: Settings, reader: Redis, control: Redis | None, stop: asyncio.Event,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    app = create_app(settings, reader, control)
    config = uvicorn.Config(app, host=settings.dashboard_host, port=settings.dashboard_port, log_level="warning",
                            lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # the stack owns signals
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
