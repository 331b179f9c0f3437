"""The dashboard: a static page, server-sent events, and a small JSON API over the streams.

Reads with the read-only ``dashboard`` Redis user; the one write (``POST /api/symbols``) uses the ``control``
user, which may only append to ``strategy.ctrl.symbols``, and needs the configured bearer token.

Every input is checked at this edge before it reaches Redis: stream ids are parsed, numbers are finite and
bounded, the write's token is checked before its body is read, and the body is read only up to
``MAX_ENTRY_BYTES``. A refused request gets a 4xx with the reason; Redis being away gets a 503. A 500 is a
bug (``tests/integration/test_dashboard_schemathesis.py`` looks for them).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sse_starlette import EventSourceResponse
from starlette.requests import ClientDisconnect

from common.bus import decode_entry
from common.bus.entries import parse_range_reply, text
from common.config import Settings
from common.control import ControlRejected, publish_control, read_control_state
from common.redis_link import is_transient
from common.service import CheckResult, HealthCheck, mount_on_fastapi
from dashboard.events import STREAM_ID_PATTERN, InvalidStreamId, event_stream, latest_health, parse_stream_id
from schemas import Fill, Opportunity, Subject, SymbolControl
from schemas.base import SYMBOL_PATTERN, VENUES
from schemas.control import MAX_ENTRY_BYTES, MAX_SYMBOLS_PER_VENUE, ControlOp, ControlSource
from schemas.streams import StreamNames

STATIC = Path(__file__).resolve().parent / "static"

MAX_ERRORS_SHOWN = 5
"""Validation errors listed in a 422's reason (a 1,000-symbol list can have 1,000)."""


class SymbolRequest(BaseModel):
    """The body of ``POST /api/symbols``: one change to the user's symbol sets (``triarb symbols`` does the
    same). The detector's sets are its own; a producer holds the union of both."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"op": "add", "symbols": {"coinbase": ["BTC-USD"]}}]})

    # The schema states the limits SymbolControl enforces, so clients (and schemathesis) see them; the
    # checks themselves stay in SymbolControl, whose messages say what to change.
    op: Annotated[ControlOp, WithJsonSchema({"type": "string", "enum": [op.value for op in ControlOp]})] = Field(
        ControlOp.SET, description="set replaces the user's set of each named venue; add and remove edit it")
    symbols: Annotated[dict[str, list[str]], WithJsonSchema({
        "type": "object", "minProperties": 1, "maxProperties": len(VENUES), "propertyNames": {"enum": list(VENUES)},
        "additionalProperties": {"type": "array", "minItems": 1, "maxItems": MAX_SYMBOLS_PER_VENUE,
                                 "items": {"type": "string", "pattern": f"^{SYMBOL_PATTERN}$"}},
    })] = Field(description="venue → canonical BASE-QUOTE symbols its producer lists; other venues are untouched")


SYMBOL_REQUEST_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": SymbolRequest.model_json_schema()}}}}
"""The body as OpenAPI shows it. It is read by hand, so the token is checked before any of it is read."""

bearer = HTTPBearer(auto_error=False, description="TRIARB_DASHBOARD_TOKEN")


def create_app(
    settings: Settings, reader: Redis, control: Redis | None = None, redis_check: HealthCheck | None = None,
    *, follow_events: bool = True,
) -> FastAPI:
    """``redis_check`` answers ``/healthz`` (a :class:`RedisProbe`'s result; without one, Redis is not checked).
    ``follow_events=False`` makes each ``/events`` response end once the streams hold nothing newer (tests)."""
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

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422 (where and what of each error) without echoing inputs back: a 100 kB query string
        would come back whole."""
        errors = [{"type": error["type"], "loc": error["loc"], "msg": error["msg"]} for error in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/events", response_class=EventSourceResponse, responses={
        200: {"description": "an endless event stream", "content": {"text/event-stream": {}}},
        422: {"description": "Last-Event-ID or since is not a stream id"}})
    async def events(
        last_event_id: Annotated[str | None, Header(pattern=STREAM_ID_PATTERN, description=(
            "the id of the last opportunity event received; the browser sends it on a reconnect"))] = None,
        since: Annotated[str | None, Query(pattern=STREAM_ID_PATTERN, description=(
            "replay opportunities after this stream id (the newest one the page already loaded)"))] = None,
    ) -> EventSourceResponse:
        """SSE: ``opportunity`` (id = stream id, resumable with Last-Event-ID) and ``health`` events.

        ``since`` is the first connection's start; on a reconnect the browser's Last-Event-ID header takes
        over. A start newer than the stream's last entry follows new entries from there."""
        for value in (last_event_id, since):
            if value is not None:
                try:
                    parse_stream_id(value)
                except InvalidStreamId as exc:
                    raise HTTPException(422, str(exc)) from exc
        start = last_event_id if last_event_id is not None else since
        return EventSourceResponse(event_stream(reader, names, start, stopping, follow=follow_events), ping=15)

    @app.get("/api/opportunities")
    async def opportunities(
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        min_roi: Annotated[float | None, Query(ge=-1.0, le=1.0, allow_inf_nan=False, description=(
            "only opportunities with at least this net ROI (0.001 = 10 bps)"))] = None,
    ) -> list[Any]:
        """Newest first, with their stream ids (``min_roi`` filters among the newest ``4 × limit``)."""
        stream = names.stream(Subject.OPPORTUNITY)
        scan = limit * 4 if min_roi is not None else limit
        fills = await recent_fills(reader, names, scan)
        out: list[Any] = []
        for entry in parse_range_reply(stream, await reader.xrevrange(stream, count=scan)):
            delivery = decode_entry(names, entry)
            if delivery is None or not isinstance(delivery.model, Opportunity):
                continue
            if min_roi is not None and delivery.model.roi_net < min_roi:
                continue
            row = {"stream_id": entry.id, **delivery.model.model_dump(mode="json")}
            if row["fill"] is None and delivery.model.sim_id in fills:
                row["fill"] = fills[delivery.model.sim_id]
            out.append(row)
            if len(out) >= limit:
                break
        return out

    @app.get("/api/status")
    async def status() -> dict[str, Any]:
        """Each feed's latest health, each stream's length and groups, and each venue's symbol sets."""
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
        return {"feeds": feeds, "streams": streams, "symbols": await symbol_sets(reader, settings), "ts": now_ms}

    @app.post("/api/symbols", status_code=202, openapi_extra=SYMBOL_REQUEST_BODY, responses={
        401: {"description": "no or a wrong bearer token"},
        403: {"description": "symbol changes are disabled (no TRIARB_DASHBOARD_TOKEN)"},
        413: {"description": f"the body is larger than {MAX_ENTRY_BYTES} bytes"},
        422: {"description": "not a valid change, or a venue's producer does not list a symbol"}})
    async def set_symbols(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> JSONResponse:
        """Change the user's symbol sets: checked like ``triarb symbols`` (each named venue's producer must
        list every symbol), then appended to ``strategy.ctrl.symbols``; 202 with the entry written."""
        token = settings.dashboard_token
        if token is None or control is None:
            raise HTTPException(403, "symbol changes are disabled: set TRIARB_DASHBOARD_TOKEN")
        if credentials is None or not token_matches(credentials.credentials, token.get_secret_value()):
            raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
        body = await read_body(request, MAX_ENTRY_BYTES)
        try:
            change = SymbolRequest.model_validate_json(body)
            message = SymbolControl(op=change.op, source=ControlSource.USER, symbols=change.symbols,
                                    ts=time.time_ns() // 1_000_000, issued_by="dashboard")
        except ValidationError as exc:
            raise HTTPException(422, f"control message rejected: {validation_reasons(exc)}") from exc
        try:
            await publish_control(control, settings, message)
        except ControlRejected as exc:
            raise HTTPException(422, f"control message rejected: {exc}") from exc
        return JSONResponse({"published": message.model_dump(mode="json")}, status_code=202)

    return app


def token_matches(presented: str, token: str) -> bool:
    """Constant-time comparison of the octets sent with the token's UTF-8 octets. Header values arrive as
    latin-1 text (one char per octet), and ``compare_digest`` raises on non-ASCII ``str``, so compare bytes."""
    try:
        sent = presented.encode("latin-1")
    except UnicodeEncodeError:  # only reachable by calling this directly: real header text is latin-1
        return False
    return hmac.compare_digest(sent, token.encode())


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes: from its
    Content-Length before reading, or while reading a body sent without one (chunked)."""
    too_large = HTTPException(413, f"the request body is larger than the limit of {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and (len(declared) > 20
                                                                              or int(declared) > limit):
        raise too_large
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_large
    except ClientDisconnect as exc:  # nobody is left to answer; this keeps a hang-up out of the error log
        raise HTTPException(400, "the client disconnected before sending the whole body") from exc
    return bytes(body)


def validation_reasons(exc: ValidationError) -> str:
    """The first few validation errors as ``where: what``, each cut short (inputs are not echoed)."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    reasons = []
    for error in errors[:MAX_ERRORS_SHOWN]:
        where = ".".join(str(part)[:40] for part in error["loc"])
        what = error["msg"].removeprefix("Value error, ")[:200]
        reasons.append(f"{where}: {what}" if where else what)
    more = f" (and {len(errors) - MAX_ERRORS_SHOWN} more)" if len(errors) > MAX_ERRORS_SHOWN else ""
    return "; ".join(reasons) + more


async def recent_fills(reader: Redis, names: StreamNames, count: int) -> dict[str, Any]:
    """The newest ``count`` paper fills (``strategy.fill``) by ``sim_id``, as their traces."""
    stream = names.stream(Subject.FILL)
    fills: dict[str, Any] = {}
    for entry in parse_range_reply(stream, await reader.xrevrange(stream, count=count)):
        delivery = decode_entry(names, entry)
        if delivery is not None and isinstance(delivery.model, Fill):
            fills.setdefault(delivery.model.trace.sim_id, delivery.model.trace.model_dump(mode="json"))
    return fills


async def symbol_sets(reader: Redis, settings: Settings) -> dict[str, dict[str, Any]]:
    """Per venue, the sets the producers fold from the control stream: the user's (its configured symbols
    until a user ``set``), the detector's, and what the producer holds (their union)."""
    defaults = {venue: list(getattr(settings.producers, venue).symbols) for venue in VENUES}
    state = await read_control_state(reader, settings.names, defaults)
    return {
        venue: {
            "user": state.current(ControlSource.USER, venue),
            "user_is_default": (ControlSource.USER, venue) not in state.sets,
            "detector": state.current(ControlSource.DETECTOR, venue),
            "holds": state.wanted(venue),
        }
        for venue in state.venues()
    }
