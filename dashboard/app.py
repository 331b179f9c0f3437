"""The dashboard: a static page, server-sent events, and a small JSON API over the streams.

Reads with the read-only ``dashboard`` Redis user; the one write (``POST /api/symbols``) uses the ``control``
user, which may only append to ``strategy.ctrl.symbols``, and needs the configured bearer token.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sse_starlette.sse import EventSourceResponse

from common.bus import Publisher, decode_entry, latest
from common.bus.entries import parse_range_reply, text
from common.config import Settings
from common.redis_link import is_transient
from common.service import CheckResult, HealthCheck, mount_on_fastapi
from dashboard.events import event_stream, latest_health
from schemas import Opportunity, Subject, SymbolControl

STATIC = Path(__file__).resolve().parent / "static"


def create_app(
    settings: Settings, reader: Redis, control: Redis | None = None, redis_check: HealthCheck | None = None
) -> FastAPI:
    """``redis_check`` answers ``/healthz`` (a :class:`RedisProbe`'s result; without one, Redis is not checked)."""
    app = FastAPI(title="triarb dashboard", docs_url=None, redoc_url=None)
    names = settings.names
    stopping = asyncio.Event()
    app.state.stopping = stopping
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    mount_on_fastapi(app, "dashboard", {"redis": redis_check or (lambda: CheckResult(True, "not checked"))})

    @app.exception_handler(RedisError)
    async def redis_unavailable(request: Request, exc: RedisError) -> JSONResponse:
        """Redis away (restarting, unreachable): 503 with the reason, never a 500 with a traceback."""
        if not is_transient(exc):
            raise exc
        return JSONResponse({"detail": f"Redis is unavailable, retry shortly: {type(exc).__name__}"}, status_code=503,
                            headers={"Retry-After": "1"})

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/events")
    async def events(last_event_id: str | None = Header(None), since: str | None = None) -> EventSourceResponse:
        """SSE: ``opportunity`` (id = stream id, resumable with Last-Event-ID) and ``health`` events.

        ``since`` is the first connection's start (the newest opportunity the page already loaded); on a
        reconnect the browser's Last-Event-ID header takes over."""
        start = last_event_id or since
        if start is not None and not _is_stream_id(start):
            raise HTTPException(422, f"{start!r} is not a stream id")
        return EventSourceResponse(event_stream(reader, names, start, stopping), ping=15)

    @app.get("/api/opportunities")
    async def opportunities(limit: int = Query(50, ge=1, le=1000), min_roi: float | None = None) -> list[Any]:
        """Newest first, with their stream ids."""
        stream = names.stream(Subject.OPPORTUNITY)
        out: list[Any] = []
        for entry in parse_range_reply(stream, await reader.xrevrange(stream, count=limit * 4 if min_roi else limit)):
            delivery = decode_entry(names, entry)
            if delivery is None or not isinstance(delivery.model, Opportunity):
                continue
            if min_roi is not None and delivery.model.roi_net < min_roi:
                continue
            out.append({"stream_id": entry.id, **delivery.model.model_dump(mode="json")})
            if len(out) >= limit:
                break
        return out

    @app.get("/api/status")
    async def status() -> dict[str, Any]:
        now_ms = time.time_ns() // 1_000_000
        feeds = [
            {**health.model_dump(mode="json"), "lag_ms": now_ms - health.last_msg_ms if health.last_msg_ms else None}
            for _, health in (await latest_health(reader, names)).values()
        ]
        streams: dict[str, Any] = {}
        for subject in Subject:
            stream = names.stream(subject)
            length = await reader.xlen(stream)
            groups = []
            if length:
                for info in await reader.xinfo_groups(stream):
                    groups.append({"group": text(info["name"]), "pending": info["pending"], "lag": info.get("lag")})
            streams[subject.value] = {"length": length, "groups": groups}
        control_entry = await latest(reader, names, Subject.CONTROL)
        symbols = control_entry.model.symbols if control_entry and isinstance(control_entry.model, SymbolControl) \
            else {}
        return {"feeds": feeds, "streams": streams, "symbols": symbols, "ts": now_ms}

    @app.post("/api/symbols")
    async def set_symbols(request: Request, authorization: str | None = Header(None)) -> JSONResponse:
        token = settings.dashboard_token
        if token is None or control is None:
            raise HTTPException(403, "symbol changes are disabled: set TRIARB_DASHBOARD_TOKEN")
        expected = f"Bearer {token.get_secret_value()}"
        if not authorization or not hmac.compare_digest(authorization, expected):
            raise HTTPException(401, "a valid bearer token is required")
        try:
            body = orjson.loads(await request.body())
            message = SymbolControl(symbols=body["symbols"], ts=time.time_ns() // 1_000_000, issued_by="dashboard")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValidationError) as exc:
            raise HTTPException(422, f"control message rejected: {exc}") from exc
        known = await known_markets(reader, settings)
        unknown = sorted({s for symbols in message.symbols.values() for s in symbols} - known)
        if unknown:
            raise HTTPException(422, f"unknown markets: {', '.join(unknown)} (no venue book for them)")
        async with Publisher(control, names, settings.streams, settings.bus) as publisher:
            await publisher.publish(message)
        return JSONResponse({"published": message.model_dump(mode="json")}, status_code=202)

    return app


def _is_stream_id(value: str) -> bool:
    milliseconds, _, sequence = value.partition("-")
    return milliseconds.isdigit() and (sequence == "" or sequence.isdigit())


async def known_markets(reader: Redis, settings: Settings) -> set[str]:
    """Markets some producer holds a book for (hot-cache keys ``md:book:{venue}:{symbol}``)."""
    pattern = settings.names.book_key("*", "*")
    return {text(key).rsplit(":", 1)[1] async for key in reader.scan_iter(match=pattern, count=1000)}
