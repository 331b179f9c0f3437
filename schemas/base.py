"""Shared building blocks of the wire models: strict base class and validated scalar types."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

SYMBOL_PATTERN = r"[A-Z0-9]{1,20}-[A-Z0-9]{1,20}"
"""A canonical symbol, as a whole string (also the OpenAPI pattern)."""

_SYMBOL = re.compile(SYMBOL_PATTERN)
_EXCHANGE = re.compile(r"[a-z][a-z0-9_]{0,31}")


def _check_symbol(value: str) -> str:
    if not _SYMBOL.fullmatch(value):
        raise ValueError(f"symbol {value!r} is not canonical BASE-QUOTE (upper case, e.g. 'BTC-USD')")
    return value


def _check_exchange(value: str) -> str:
    if not _EXCHANGE.fullmatch(value):
        raise ValueError(f"exchange {value!r} must be a lower-case venue name such as 'coinbase' or 'kraken'")
    return value


CanonicalSymbol = Annotated[str, AfterValidator(_check_symbol)]
"""A market as ``BASE-QUOTE`` in upper case; venue spellings (``XBT/USD``) are mapped before this point."""

ExchangeName = Annotated[str, AfterValidator(_check_exchange)]
"""A venue's lower-case name, also the middle part of hot-cache keys."""

VENUES = ("coinbase", "kraken")
"""The venues this build has producers for; control messages and market data naming another are rejected."""

EpochMs = Annotated[int, Field(ge=0, le=2**53 - 1)]
"""Milliseconds since the Unix epoch; at most 2**53 - 1, so JSON readers (JavaScript included) keep it exact."""


class WireModel(BaseModel):
    """Base of every stream subject: immutable, no unknown fields, finite numbers; subjects add ``v``.

    ``extra="forbid"`` makes a producer/consumer version skew fail loudly at decode time (the entry is
    dead-lettered) instead of silently dropping a field.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
