"""Schemathesis against the dashboard's own OpenAPI: no generated request, valid or not, gets a 5xx.

The app runs in-process (ASGI, in schemathesis' own event loop thread) against the session's redis-server,
with a token configured and both producers' catalogs registered, so valid requests reach Redis and succeed
(POST /api/symbols answers 202 for the schema's example). Every operation is fuzzed, ``/events`` included:
the app is built with ``follow_events=False``, so each event stream ends once it has sent what the streams
hold instead of following them until a read timeout. The Authorization header is fixed to the valid token
(auth edge cases are rows of ``test_dashboard_http.py``).

``TRIARB_FUZZ_EXAMPLES`` (default 100; ``make chaos`` sets 10000) is the examples per operation, capped at
``MAX_EXAMPLES_PER_OPERATION``: past that, more examples of these small schemas mostly repeat themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator

import hypothesis
import pytest
import redis
import schemathesis
from fastapi import FastAPI
from pydantic import SecretStr
from redis.asyncio import Redis
from schemathesis.checks import not_a_server_error

from common.bus import Publisher
from common.config import Role, Settings
from common.redis import connect
from dashboard.app import create_app
from tests import samples
from tests.integration.test_dashboard_http import CATALOGS, TOKEN

pytestmark = pytest.mark.integration

MAX_EXAMPLES_PER_OPERATION = 1000
FUZZ_EXAMPLES = min(int(os.environ.get("TRIARB_FUZZ_EXAMPLES", "100")), MAX_EXAMPLES_PER_OPERATION)
"""Read at import: the autouse fixture in conftest clears TRIARB_* variables before each test runs."""


@pytest.fixture
def dashboard_app(settings: Settings, admin_sync: redis.Redis) -> Iterator[FastAPI]:
    """The app with its Redis clients closed by its ASGI lifespan, in the loop that used them (schemathesis
    ends the lifespan at the test's teardown). The clients connect lazily, so they bind to that loop."""
    for venue, symbols in CATALOGS.items():  # as the producers register them (common.markets.register_markets)
        admin_sync.sadd(settings.names.markets_key(venue), *symbols)
    seed_streams(settings)
    settings = settings.model_copy(update={"dashboard_token": SecretStr(TOKEN)})
    reader, control = connect(settings, Role.DASHBOARD), connect(settings, Role.CONTROL)
    app = create_app(settings, reader, control, follow_events=False)

    @contextlib.asynccontextmanager
    async def close_clients(_: FastAPI) -> AsyncIterator[None]:
        yield
        await reader.aclose()
        await control.aclose()

    app.router.lifespan_context = close_clients
    yield app


def seed_streams(settings: Settings) -> None:
    """A few opportunities and health records, so reads return entries to decode and replay."""

    async def publish() -> None:
        for role, models in ((Role.DETECTOR, [samples.opportunity(id=f"opp-{n}") for n in range(5)]),
                             (Role.PRODUCER, [samples.health(), samples.health(exchange="coinbase")])):
            client = connect(settings, role)
            async with Publisher(client, settings.names, settings.streams, settings.bus) as publisher:
                for model in models:
                    await publisher.publish(model)
            await client.aclose()

    asyncio.run(publish())


OPENAPI = create_app(Settings.model_construct(), Redis()).openapi()
"""The schema, from an app that never connects (routes do not depend on settings). Loaded at import because
``schemathesis.pytest.from_fixture`` fails on pytest 9 (it sets ``Function._nodeid``, which pytest 9 removed);
each case is sent to the fixture's app instead (``call_and_validate(app=...)``)."""

schema = schemathesis.openapi.from_dict(OPENAPI)
schema.config.generation.update(max_examples=FUZZ_EXAMPLES, with_security_parameters=False)


@schema.parametrize()  # one app per operation, shared by its examples on purpose:
@hypothesis.settings(suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
def test_no_request_gets_a_server_error(case: schemathesis.Case, dashboard_app: FastAPI) -> None:
    case.call_and_validate(app=dashboard_app, headers={"Authorization": f"Bearer {TOKEN}"},
                           checks=[not_a_server_error])
