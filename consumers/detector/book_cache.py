"""Hot-cache books decoded once per stored state.

Every batch re-reads every leg of every affected triangle (other workers may have moved them), but most legs
have not changed since the last batch: with five books at 2k updates/s, four of the five legs a batch reads
are the ones it read before. Validating them again was most of a small batch's cost, so a document equal to
the last one read for that book reuses the book decoded then (one bytes comparison).
"""

from __future__ import annotations

from schemas import CodecError, Snapshot
from schemas.checks import snapshot_problem
from schemas.codec import decode_json_as


class DecodedBooks:
    """The last trusted book per (venue, symbol) with the stored document it came from."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], tuple[bytes, Snapshot]] = {}

    def __len__(self) -> int:
        return len(self._last)

    def trusted(self, venue: str, symbol: str, document: bytes) -> Snapshot | str:
        """The book stored under ``venue``/``symbol``, or why it cannot be trusted (does not decode, is filed
        under another market, or cannot exist)."""
        key = (venue, symbol)
        last = self._last.get(key)
        if last is not None and last[0] == document:
            return last[1]
        try:
            book = decode_json_as(Snapshot, document)
        except CodecError as exc:
            return exc.reason
        if (book.exchange, book.symbol) != key:
            return f"holds {book.exchange}:{book.symbol}"
        problem = snapshot_problem(book)
        if problem is not None:
            return problem
        self._last[key] = (document, book)
        return book
