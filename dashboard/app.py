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
from dashboard.events import (
    STREAM_ID_PATTERN,
    InvalidStreamId,
    episode_rows,
    event_stream,
    fills_by_sim_id,
    latest_health,
    parse_stream_id,
)
from schemas import Opportunity, Snapshot, Subject, SymbolControl
from schemas.base import SYMBOL_PATTERN, VENUES
from schemas.codec import CodecError, decode_json_as
from schemas.control import MAX_ENTRY_BYTES, MAX_SYMBOLS_PER_VENUE, ControlOp, ControlSource

STATIC = Path(__file__).resolve().parent / "static"
FAVICON = STATIC / "favicon.svg"

REPLAYED_AFTER_MS = 600_000
"""A book whose venue time is this far behind our receive time is replayed data (the demo's bundled session, a
capture) or a venue clock gone wrong: its venue→ingest "latency" is no latency, so it is flagged ``replayed``."""

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

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        """Where browsers and other clients look for an icon unasked; the page links the same file."""
        return FileResponse(FAVICON, media_type="image/svg+xml")

    @app.get("/events", response_class=EventSourceResponse, responses={
        200: {"description": "an endless event stream", "content": {"text/event-stream": {}}},
        422: {"description": "Last-Event-ID or since is not a stream id"}})
    async def events(
        last_event_id: Annotated[str | None, Header(pattern=STREAM_ID_PATTERN, description=(
            "the id of the last opportunity event received; the browser sends it on a reconnect"))] = None,
        since: Annotated[str | None, Query(pattern=STREAM_ID_PATTERN, description=(
            "replay opportunities after this stream id (the newest one the page already loaded)"))] = None,
    ) -> EventSourceResponse:
        """SSE: ``opportunity`` (id = stream id, resumable with Last-Event-ID), ``fill``, ``health`` and
        ``episode`` events (on connect the current state of the newest episodes, with ``paper``, then each
        new event of an episode; every one carries the whole episode, so the highest ``seq`` of an id wins).

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
        fills = await fills_by_sim_id(reader, names, scan)
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

    @app.get("/api/episodes")
    async def episodes(
        count: Annotated[int, Query(ge=1, le=1000, description="how many episodes")] = 50,
    ) -> list[Any]:
        """The newest-opened episodes first, each once, as its newest event on ``strategy.episode`` (with that
        event's ``stream_id``), and ``paper``: the paper broker's simulated result of its first opportunity
        (``sim_id`` and ``result``, the fill's trace, ``None`` until it is filled)."""
        return await episode_rows(reader, names, count)

    @app.get("/api/status")
    async def status() -> dict[str, Any]:
        """Each feed's latest health and lag, each held book's freshness (from the hot cache), each stream's
        length and groups, and each venue's symbol sets."""
        return await stack_status(reader, settings)

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


async def stack_status(reader: Redis, settings: Settings) -> dict[str, Any]:
    """What ``/api/status`` and ``triarb status`` show: feeds (latest health, ``lag_ms``), held books, every
    stream's length and groups (pending, lag), and the symbol sets."""
    names = settings.names
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
    symbols = await symbol_sets(reader, settings)
    books = await book_states(reader, settings, {venue: sets["holds"] for venue, sets in symbols.items()}, now_ms)
    return {"feeds": feeds, "books": books, "streams": streams, "symbols": symbols, "ts": now_ms}


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


async def book_states(
    reader: Redis, settings: Settings, held: dict[str, list[str]], now_ms: int
) -> list[dict[str, Any]]:
    """Per held book, from its hot-cache entry: the venue time of its last depth change (``ts_event``), its age
    (``age_ms`` since we received it; ``stale`` past ``detector.max_age_ms``, the detector's limit), its
    venue→ingest latency, ``replayed`` when that is no latency (``REPLAYED_AFTER_MS``), the top of book and
    each side's cumulative size. A book without an entry, or with one that does not decode, says why in
    ``detail``."""
    held = {venue: symbols for venue, symbols in held.items() if symbols}
    async with reader.pipeline(transaction=False) as pipe:
        for venue, symbols in held.items():  # one MGET per venue: a multi-key command stays within one venue
            pipe.mget([settings.names.book_key(venue, symbol) for symbol in symbols])
        replies = await pipe.execute() if held else []
    pairs = [(venue, symbol) for venue, symbols in held.items() for symbol in symbols]
    documents = [document for reply in replies for document in reply]
    books: list[dict[str, Any]] = []
    for (venue, symbol), document in zip(pairs, documents, strict=True):
        row: dict[str, Any] = {"exchange": venue, "symbol": symbol}
        if document is None:
            books.append(row | {"detail": "no book in the hot cache (never received, or expired)"})
            continue
        try:
            book = decode_json_as(Snapshot, document)
        except CodecError as exc:
            books.append(row | {"detail": exc.reason})
            continue
        venue_to_ingest_ms = book.ts_ingest - book.ts_event
        age_ms = max(0, now_ms - book.ts_ingest)
        books.append(row | {
            "source": book.source.value, "ts_event": book.ts_event, "ts_ingest": book.ts_ingest, "age_ms": age_ms,
            "stale": age_ms > settings.detector.max_age_ms, "venue_to_ingest_ms": venue_to_ingest_ms,
            "replayed": venue_to_ingest_ms > REPLAYED_AFTER_MS,
            "best_bid": book.bids[0][:2] if book.bids else None, "best_ask": book.asks[0][:2] if book.asks else None,
            "bid_levels": len(book.bids), "ask_levels": len(book.asks),
            "bid_cumulative": book.bids[-1][2] if book.bids else 0.0,
            "ask_cumulative": book.asks[-1][2] if book.asks else 0.0,
        })
    return books


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
