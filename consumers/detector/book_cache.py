"""Hot-cache books decoded once per stored state.

Every batch re-reads every leg of every affected triangle (other workers may have moved them), but most legs
have not changed since the last batch: with five books at 2k updates/s, four of the five legs a batch reads
are the ones it read before. Validating them again was most of a small batch's cost, so a reply whose fields
equal the last reply of that book reuses the book decoded then (a dict comparison of a dozen byte strings).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas import CodecError, Snapshot
from schemas.checks import snapshot_problem
from schemas.codec import decode_as


class DecodedBooks:
    """The last trusted book per (venue, symbol) with the stored fields it came from."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], tuple[Mapping[Any, Any], Snapshot]] = {}

    def __len__(self) -> int:
        return len(self._last)

    def trusted(self, venue: str, symbol: str, fields: Mapping[Any, Any]) -> Snapshot | str:
        """The book stored under ``venue``/``symbol``, or why it cannot be trusted (does not decode, is filed
        under another market, or cannot exist)."""
        key = (venue, symbol)
        last = self._last.get(key)
        if last is not None and last[0] == fields:
            return last[1]
        try:
            book = decode_as(Snapshot, fields)
        except CodecError as exc:
            return exc.reason
        if (book.exchange, book.symbol) != key:
            return f"holds {book.exchange}:{book.symbol}"
        problem = snapshot_problem(book)
        if problem is not None:
            return problem
        self._last[key] = (fields, book)
        return book
