"""The only code that knows how a model is laid out as Redis stream fields.

Scalars become plain field values (so ``redis-cli XRANGE`` reads well), nested lists, dicts and models
become compact JSON, ``None`` fields are omitted. Decoding checks the schema version first and raises a
:class:`CodecError` (never anything else) so callers can dead-letter the entry with its reason.
``schemas.wire`` writes this same layout for snapshots on the producers' hot path (tested byte for byte).
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from functools import cache, lru_cache
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from schemas.base import WireModel
from schemas.control import SymbolControl
from schemas.episode import Episode
from schemas.health import Health
from schemas.market import Snapshot, Trade
from schemas.opportunity import Fill, Opportunity
from schemas.streams import Subject

M = TypeVar("M", bound=WireModel)

SUBJECT_MODELS: dict[Subject, type[WireModel]] = {
    Subject.SNAPSHOT: Snapshot,
    Subject.TRADE: Trade,
    Subject.HEALTH: Health,
    Subject.CONTROL: SymbolControl,
    Subject.OPPORTUNITY: Opportunity,
    Subject.FILL: Fill,
    Subject.EPISODE: Episode,
}

SUPPORTED_VERSIONS: dict[type[WireModel], frozenset[int]] = {
    model: frozenset({model.model_fields["v"].default}) for model in SUBJECT_MODELS.values()
}
"""Each subject's readable versions: its current one (an older entry is dead-lettered with the reason)."""

FieldValue = str | bytes


class CodecError(ValueError):
    """An entry that cannot become a model. ``reason`` is short and safe to store in the dead-letter stream."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownVersionError(CodecError):
    """The entry's ``v`` is missing or newer than this code understands."""


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _encode_value(value: Any) -> FieldValue:
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is int:
        return str(value)
    if kind is float:
        return repr(value)
    if kind is bool:
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    return orjson.dumps(value, default=_json_default)


def encode_fields(model: WireModel) -> list[FieldValue]:
    """Flat ``[field, value, field, value, ...]`` for XADD; ``None`` fields are left out."""
    out: list[FieldValue] = []
    for name, value in model.__dict__.items():
        if value is not None:
            out.append(name)
            out.append(_encode_value(value))
    return out


def encode_dict(model: WireModel) -> dict[str, FieldValue]:
    """The same layout as :func:`encode_fields`, as a mapping (for redis-py calls and tests)."""
    flat = encode_fields(model)
    return {str(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}


def _is_json_annotation(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_json_annotation(arg) for arg in typing.get_args(annotation) if arg is not type(None))
    if origin is typing.Annotated:
        return _is_json_annotation(typing.get_args(annotation)[0])
    if origin in (list, dict, tuple, set, frozenset):
        return True
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


@cache
def _json_fields(model: type[WireModel]) -> frozenset[str]:
    return frozenset(name for name, info in model.model_fields.items() if _is_json_annotation(info.annotation))


def _text(value: FieldValue) -> str:
    return value.decode() if isinstance(value, bytes) else value


def decode_as(model: type[M], fields: Mapping[Any, FieldValue]) -> M:
    """Build ``model`` from stream fields (bytes or str). Raises :class:`CodecError` on any problem.

    This runs for every consumed entry, so it makes one pass and leaves the rest to pydantic-core.
    """
    try:
        entry = {k.decode() if type(k) is bytes else k: v for k, v in fields.items()}
    except UnicodeDecodeError as exc:
        raise CodecError(f"{model.__name__}: field name is not UTF-8") from exc
    version = _supported_version(model, entry.pop("v", None))
    json_fields = _json_fields(model)
    data: dict[str, Any] = {"v": version}
    name = ""
    try:
        for name, value in entry.items():
            if name in json_fields:
                data[name] = orjson.loads(value)
            else:
                data[name] = value.decode() if type(value) is bytes else value
    except (orjson.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CodecError(f"{model.__name__}: field {name!r} is not valid JSON/UTF-8: {exc}") from exc
    return _validated(model, data)


def decode_json_as(model: type[M], document: bytes | str) -> M:
    """Build ``model`` from one JSON object with its fields (the hot cache's form of a snapshot), with the
    checks and errors of :func:`decode_as`."""
    try:
        data = orjson.loads(document)
    except orjson.JSONDecodeError as exc:
        raise CodecError(f"{model.__name__}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CodecError(f"{model.__name__}: not a JSON object")
    raw_version = data.get("v")
    if raw_version is not None and type(raw_version) is not int:  # JSON says what it is: 1, never "1" or 1.0
        raise UnknownVersionError(f"{model.__name__}: v={raw_version!r} is not an integer")
    data["v"] = _supported_version(model, raw_version if raw_version is None else str(raw_version))
    return _validated(model, data)


def _supported_version(model: type[WireModel], raw_version: Any) -> int:
    """The entry's ``v`` as an int, or :class:`UnknownVersionError` unless this build reads that version."""
    if raw_version is None:
        raise UnknownVersionError(f"{model.__name__}: entry has no 'v' field")
    try:
        version = int(_text(raw_version))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnknownVersionError(f"{model.__name__}: v={raw_version!r} is not an integer") from exc
    if version not in SUPPORTED_VERSIONS[model]:
        known = sorted(SUPPORTED_VERSIONS[model])
        raise UnknownVersionError(f"{model.__name__}: v={version} is not supported (this build reads {known})")
    return version


def _validated(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<entry>'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise CodecError(f"{model.__name__}: {problems}") from exc


def decode(subject: Subject | str, fields: Mapping[Any, FieldValue]) -> WireModel:
    """Decode an entry of ``subject``'s stream into its model."""
    try:
        model = SUBJECT_MODELS[Subject(subject)]
    except ValueError as exc:
        raise CodecError(f"no model for subject {subject!r}") from exc
    return decode_as(model, fields)


@dataclass(frozen=True, slots=True)
class BookRef:
    """Which book a snapshot entry is about, and nothing else: what the detector needs from each delivered
    snapshot (it reads the legs it evaluates from the hot cache). A slotted dataclass, not a model: one is
    handed over per delivered entry and it is never validated or encoded again."""

    exchange: str
    symbol: str


_ASCII_NAME = re.compile(rb"[a-z][a-z0-9_]{0,31}")
_ASCII_SYMBOL = re.compile(rb"[A-Z0-9]{1,20}-[A-Z0-9]{1,20}")
BOOK_REF_CACHE_SIZE = 4096
"""Books whose checked :class:`BookRef` is kept (a venue lists a few hundred): each pair is checked once."""


def decode_book_ref(fields: Mapping[Any, FieldValue]) -> BookRef:
    """``exchange`` and ``symbol`` of a snapshot entry (bytes fields, as Redis returns them), with the same
    version and spelling checks a full decode makes on them; raises :class:`CodecError`. Entries of the same
    book get the same (immutable) instance."""
    version = fields.get(b"v")
    if version != b"1":
        if version is None:
            raise UnknownVersionError("Snapshot: entry has no 'v' field")
        raise UnknownVersionError(f"Snapshot: v={version!r} is not supported (this build reads [1])")
    return _checked_book_ref(fields.get(b"exchange"), fields.get(b"symbol"))


@lru_cache(maxsize=BOOK_REF_CACHE_SIZE)
def _checked_book_ref(exchange: FieldValue | None, symbol: FieldValue | None) -> BookRef:
    """Only a pair that passes is cached: a refused one raises again on every entry."""
    if not isinstance(exchange, bytes) or not _ASCII_NAME.fullmatch(exchange):
        raise CodecError(f"Snapshot: exchange {exchange!r} is not a lower-case venue name")
    if not isinstance(symbol, bytes) or not _ASCII_SYMBOL.fullmatch(symbol):
        raise CodecError(f"Snapshot: symbol {symbol!r} is not canonical BASE-QUOTE")
    return BookRef(exchange.decode(), symbol.decode())
