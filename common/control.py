"""Publishing and reading symbol control: the checks the CLI and the dashboard run before writing.

Producers are the authority (they reject what does not fit their catalog), but a person should hear "no"
at once, with the reason, instead of finding a dead-letter entry later. So a request is checked here
against the same rules: a well-formed :class:`SymbolControl`, within the size limit, naming only markets
each venue's producer registered (``md:markets:{venue}``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from common.bus import Publisher, history
from common.config import Settings
from common.markets import read_catalogs
from schemas.checks import control_problem
from schemas.codec import CodecError, decode_as, encode_fields
from schemas.control import MAX_ENTRY_BYTES, SymbolControl, SymbolState
from schemas.streams import StreamNames, Subject


class ControlRejected(ValueError):
    """A control request that would be refused; the message says why (safe to show to the requester)."""


def entry_size(control: SymbolControl) -> int:
    return sum(len(value) for value in encode_fields(control))


async def check_control(redis: Redis, names: StreamNames, control: SymbolControl) -> None:
    """Raise :class:`ControlRejected` unless every venue's producer would apply ``control``."""
    if (size := entry_size(control)) > MAX_ENTRY_BYTES:
        raise ControlRejected(f"the entry would be {size} bytes, more than the limit of {MAX_ENTRY_BYTES}")
    catalogs = await read_catalogs(redis, names, control.symbols)
    problems = []
    for venue in control.symbols:
        if venue not in catalogs:
            problems.append(f"{venue}: no market list registered (is the {venue} producer running?)")
        elif problem := control_problem(control, venue, catalogs[venue]):
            problems.append(problem)
    if problems:
        raise ControlRejected("; ".join(problems))


async def publish_control(redis: Redis, settings: Settings, control: SymbolControl, *,
                          timeout_s: float = 10.0) -> None:
    """Check, then append ``control`` to ``strategy.ctrl.symbols`` (as the ``control`` role). A person is
    waiting: if Redis does not take it within ``timeout_s``, a Redis ``TimeoutError`` says so (the entry
    may still land once Redis is back)."""
    try:
        async with asyncio.timeout(timeout_s):
            await check_control(redis, settings.names, control)
            async with Publisher(redis, settings.names, settings.streams, settings.bus,
                                 component="control") as publisher:
                await publisher.publish(control)
    except TimeoutError as exc:
        raise RedisTimeoutError(f"Redis did not take the control entry within {timeout_s:g} s") from exc


async def read_control_state(redis: Redis, names: StreamNames, defaults: Mapping[str, list[str]]) -> SymbolState:
    """The symbol state the producers fold from the retained control stream (entries they would reject
    for a catalog they registered are left out, as they leave them out)."""
    catalogs = await read_catalogs(redis, names)
    state = SymbolState(defaults={venue: list(symbols) for venue, symbols in defaults.items()})
    async for entry in history(redis, names.stream(Subject.CONTROL)):
        try:
            control = decode_as(SymbolControl, entry.fields)
        except CodecError:
            continue
        accepted = [venue for venue in control.symbols
                    if venue not in catalogs or control_problem(control, venue, catalogs[venue]) is None]
        state.apply(control, accepted)
    return state
