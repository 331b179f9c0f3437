"""The ``/healthz`` and ``/metrics`` endpoint every triarb service exposes.

A service registers named checks; ``/healthz`` answers 200 when all pass and 503 otherwise, with each
check's detail, so an orchestrator and a person read the same answer. A check that raises counts as
failing (with the error as detail), never as a 500. Each scrape of ``/metrics`` sets ``triarb_service_up``
from the same checks.

A process has one metrics registry and serves it once: while a :class:`ServiceEndpoint` runs, a FastAPI
app's ``/metrics`` (the dashboard inside ``triarb up``) answers 404 and names the endpoint that serves it,
so a Prometheus scraping both ports does not count every series twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from common import metrics

if TYPE_CHECKING:
    from fastapi import FastAPI


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    detail: str


HealthCheck = Callable[[], CheckResult]


def healthz_payload(service: str, checks: Mapping[str, HealthCheck]) -> tuple[int, dict[str, Any]]:
    """Run every check; 200 if all pass, else 503. Pure apart from what the checks themselves read."""
    results: dict[str, dict[str, Any]] = {}
    for name, check in checks.items():
        try:
            result = check()
        except Exception as exc:  # a broken check is a failing check, reported with its error
            result = CheckResult(False, f"check raised {type(exc).__name__}: {exc}")
        results[name] = {"ok": result.ok, "detail": result.detail}
    ok = all(r["ok"] for r in results.values())
    return (200 if ok else 503), {"service": service, "status": "ok" if ok else "failing", "checks": results}


def exposition(service: str, checks: Mapping[str, HealthCheck]) -> bytes:
    """The process's registry in Prometheus text, with ``triarb_service_up`` set from ``checks`` just before."""
    status, _ = healthz_payload(service, checks)
    metrics.SERVICE_UP.labels(service=service).set(1 if status == 200 else 0)
    return generate_latest()


_running_endpoints: list[ServiceEndpoint] = []
"""This process's started endpoints; while there is one, it serves the registry and a FastAPI app does not."""


class ServiceEndpoint:
    """A small aiohttp server with ``/healthz`` and ``/metrics`` (default Prometheus registry)."""

    def __init__(self, name: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.name = name
        self._host = host
        self._port = port
        self._checks: dict[str, HealthCheck] = {}
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    def add_check(self, name: str, check: HealthCheck) -> None:
        self._checks[name] = check

    async def _healthz(self, request: web.Request) -> web.Response:
        status, body = healthz_payload(self.name, self._checks)
        return web.json_response(body, status=status)

    async def _metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=exposition(self.name, self._checks))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self._host, self._port)
        try:
            await self._site.start()
        except OSError as exc:
            await self.stop()
            raise OSError(
                exc.errno, f"cannot serve /healthz on {self._host}:{self._port} ({exc.strerror}); "
                "set TRIARB_SERVICE_PORT to a free port (0 = any)"
            ) from exc
        _running_endpoints.append(self)

    @property
    def port(self) -> int:
        if self._site is None or self._site._server is None:
            raise RuntimeError("the service endpoint is not started")
        sockets = getattr(self._site._server, "sockets", None) or []
        return int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self in _running_endpoints:
            _running_endpoints.remove(self)
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = self._site = None

    async def __aenter__(self) -> ServiceEndpoint:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def mount_on_fastapi(app: FastAPI, service: str, checks: Mapping[str, HealthCheck]) -> None:
    """The same two routes on a FastAPI app (the dashboard), without a second server. ``/metrics`` answers
    404 while a :class:`ServiceEndpoint` of the same process serves the registry (one exposition per process)."""
    from fastapi.responses import JSONResponse, Response

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        status, body = healthz_payload(service, checks)
        return JSONResponse(body, status_code=status)

    @app.get("/metrics", include_in_schema=False)
    def metrics_text() -> Response:
        if _running_endpoints:
            owner = _running_endpoints[0]
            return JSONResponse({"detail": f"this process's metrics are served once, by {owner.name} on port "
                                           f"{owner.port}: scrape http://<host>:{owner.port}/metrics"},
                                status_code=404)
        return Response(exposition(service, checks), media_type=CONTENT_TYPE_LATEST)
