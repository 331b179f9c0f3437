"""An L2 order book for one (venue, symbol): absolute level updates; the published top N, the checksum and
the crossing check kept current after every change.

Levels are keyed by float price: every venue price has at most 15 significant digits, so equal decimal
values (``"0.1"``, ``"0.10"``) parse to the same float and sort exactly. Each level also keeps the venue's
price and size text, which Kraken checksums are computed over.

Venues change the levels near the top far more often than the rest, and only the top is published and
checksummed, so each side is split in two. The *head* holds the best 16 to 64 levels as parallel lists
sorted by key: reading the top N or the checksum text is a slice, and finding a level is a bisect over a
few dozen floats (float dict keys are hashed again on every lookup). The *tail* holds the rest in a dict,
with its keys sorted in blocks (the Coinbase BTC-USD book holds ~46k levels, and one sorted list would
move every key behind an insert). Keys ascend with the best level last on both sides (bids keyed by price,
asks by negated price), so moving levels between head and tail only touches list ends.
"""

from __future__ import annotations

import zlib
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Sequence
from itertools import accumulate
from math import inf

import msgspec

from producers.venues.events import TextLevel
from schemas.checks import MAX_PRICE, MAX_SIZE
from schemas.market import Level

ChecksumToken = Callable[[str, str], str]
"""Turns a level's (price, size) text into its part of the venue's checksum string (Kraken)."""

HEAD_MIN, HEAD_TARGET, HEAD_MAX = 16, 32, 64
"""Head size bounds (levels): refilled to the target below the minimum, spilled to it above the maximum.
The minimum covers the published top 5 and Kraken's checksummed top 10."""
BLOCK_MAX = 256
"""Most keys in one tail block: an insert or delete moves at most this many (2 KiB)."""

TailEntry = tuple[float, float, TextLevel, str]
"""A tail level: price, size, wire text, checksum token ("" without a token function)."""


class BookIntegrityError(ValueError):
    """A level that cannot be a price or size (not a positive price / non-negative size within bounds)."""


_JSON_FLOAT = msgspec.json.Decoder(float).decode
"""A JSON number's text to float, five times faster than ``float()`` on text and equal to it on every text it
takes ("-0" aside: 0.0, not -0.0; a size zero either way, never a price). What it refuses ("1_0", ".5",
"inf"...) goes to ``float()``."""


def _number(text: str) -> float:
    """``float(text)``: venues write JSON numbers, parsed by :data:`_JSON_FLOAT`; any other text by ``float()``."""
    try:
        return _JSON_FLOAT(text)
    except (TypeError, ValueError):
        return float(text)


def _float_level(level: TextLevel) -> tuple[float, float]:
    """``float()`` of a level's two texts, or :class:`BookIntegrityError` when they are not numbers."""
    try:
        price_text, size_text = level
        return float(price_text), float(size_text)
    except (TypeError, ValueError) as exc:
        raise BookIntegrityError(f"level {level!r} is not numeric") from exc


def parse_level(level: TextLevel) -> tuple[float, float]:
    """``(price, size)`` as floats, or :class:`BookIntegrityError` when they cannot be a price and a size."""
    try:
        price, size = _number(level[0]), _number(level[1])
    except (TypeError, ValueError) as exc:
        raise BookIntegrityError(f"level {level!r} is not numeric") from exc
    if not (0 < price <= MAX_PRICE and 0 <= size <= MAX_SIZE):
        raise BookIntegrityError(f"level {level!r}: price outside (0, {MAX_PRICE:g}] or size outside [0, {MAX_SIZE:g}]")
    return price, size


class SortedKeys:
    """Distinct floats in ascending order, in blocks of at most ``BLOCK_MAX``; ``maxes[b]`` is the highest
    key of ``blocks[b]``, so a bisect over ``maxes`` finds a key's block."""

    __slots__ = ("blocks", "maxes")

    def __init__(self) -> None:
        self.blocks: list[list[float]] = []
        self.maxes: list[float] = []

    def clear(self) -> None:
        self.blocks.clear()
        self.maxes.clear()

    def add(self, key: float) -> None:
        """Insert a key that is not held."""
        blocks, maxes = self.blocks, self.maxes
        b = bisect_left(maxes, key)
        if b == len(maxes):
            if not maxes:
                blocks.append([key])
                maxes.append(key)
                return
            b -= 1
        block = blocks[b]
        insort(block, key)
        maxes[b] = block[-1]
        if len(block) > BLOCK_MAX:
            upper = block[BLOCK_MAX // 2:]
            del block[BLOCK_MAX // 2:]
            blocks.insert(b + 1, upper)
            maxes[b] = block[-1]
            maxes.insert(b + 1, upper[-1])

    def remove(self, key: float) -> None:
        """Remove a key that is held."""
        blocks, maxes = self.blocks, self.maxes
        b = bisect_left(maxes, key)
        block = blocks[b]
        del block[bisect_left(block, key)]
        if block:
            maxes[b] = block[-1]
        else:
            del blocks[b], maxes[b]

    def extend(self, keys: list[float]) -> None:
        """Append ascending keys that are all above every key held."""
        blocks, maxes = self.blocks, self.maxes
        start = 0
        if blocks and keys:
            start = BLOCK_MAX - len(blocks[-1])  # fill the last block first
            blocks[-1].extend(keys[:start])
            maxes[-1] = blocks[-1][-1]
        for first in range(start, len(keys), BLOCK_MAX):
            block = keys[first:first + BLOCK_MAX]
            blocks.append(block)
            maxes.append(block[-1])

    def highest(self, count: int) -> list[float]:
        """The ``count`` highest keys, highest first."""
        out: list[float] = []
        for block in reversed(self.blocks):
            if len(out) >= count:
                break
            out.extend(block[:len(out) - count - 1:-1])
        return out

    def pop_highest(self, count: int) -> list[float]:
        """Remove the ``count`` highest keys; returns them ascending."""
        out = self.highest(count)[::-1]
        self._drop(count, from_top=True)
        return out

    def pop_lowest(self, count: int) -> list[float]:
        """Remove the ``count`` lowest keys; returns them ascending."""
        out: list[float] = []
        for block in self.blocks:
            if len(out) >= count:
                break
            out.extend(block[:count - len(out)])
        self._drop(count, from_top=False)
        return out

    def _drop(self, count: int, *, from_top: bool) -> None:
        blocks, maxes = self.blocks, self.maxes
        while count > 0 and blocks:
            block = blocks[-1] if from_top else blocks[0]
            taken = min(count, len(block))
            count -= taken
            if taken == len(block):
                del blocks[-1 if from_top else 0], maxes[-1 if from_top else 0]
            elif from_top:
                del block[-taken:]
                maxes[-1] = block[-1]
            else:
                del block[:taken]


class BookSide:
    """One side. ``descending`` for bids (best = highest price), ascending for asks.

    A feed reads the same two views after every message, so the side keeps them current rather than
    computing them on request: ``top_levels``, its best ``top_n`` levels as (price, size, cumulative size),
    and ``checksum_text``, the tokens of its best ``checksum_levels`` levels (when a token function is set).
    Each view is rebuilt only after a change at or in front of its *edge*, the key of its last level when it
    was built: a change strictly behind the edge leaves the view and the edge itself unchanged. With fewer
    levels than the view holds the edge is ``-inf`` (every change counts); a disabled view's edge is ``inf``.
    """

    __slots__ = ("_negate", "depth", "token", "top_n", "checksum_levels", "checksum_first", "top_levels",
                 "checksum_text", "checksum_crc", "_hk", "_hp", "_hs", "_ht", "_hc", "_tk", "_tail", "_top_edge",
                 "_sum_edge")

    def __init__(self, descending: bool, *, depth: int | None = None, top_n: int = 0, checksum_levels: int = 0,
                 checksum_first: bool = False) -> None:
        self._negate = not descending  # key = price for bids, -price for asks: the best has the largest key
        self.depth = depth  # levels kept (Kraken): the worst beyond it are dropped after every message
        self.token: ChecksumToken | None = None
        self.top_n = top_n
        self.checksum_levels = checksum_levels
        self.checksum_first = checksum_first  # this side's text starts the book's checksum: keep its CRC
        self.top_levels: list[Level] = []
        self.checksum_text = b""
        self.checksum_crc = 0  # zlib.crc32(checksum_text) when checksum_first: the book's CRC continues from it
        # head: parallel lists ascending by key (best last): key, price, size, wire text, checksum token
        self._hk: list[float] = []
        self._hp: list[float] = []
        self._hs: list[float] = []
        self._ht: list[TextLevel] = []
        self._hc: list[str] = []  # kept only while ``token`` is set
        # tail: every key below the head's lowest, sorted, and each level by key
        self._tk = SortedKeys()
        self._tail: dict[float, TailEntry] = {}
        self._top_edge = self._sum_edge = -inf
        self._refresh_views()

    def __len__(self) -> int:
        return len(self._hk) + len(self._tail)

    def clear(self) -> None:
        for part in (self._hk, self._hp, self._hs, self._ht, self._hc):
            part.clear()
        self._tk.clear()
        self._tail.clear()
        self._refresh_views()

    def replace(self, levels: Iterable[TextLevel], token: ChecksumToken | None) -> None:
        """Become exactly ``levels`` (a snapshot; applied in order, size zero removes), sorted once."""
        self.clear()
        self.token = token
        entries: dict[float, TailEntry] = {}
        negate = self._negate
        try:
            for level in levels:
                price, size = parse_level(level)
                key = -price if negate else price
                if size:
                    entries[key] = (price, size, level, token(level[0], level[1]) if token is not None else "")
                else:
                    entries.pop(key, None)
        finally:  # a bad level leaves the levels before it, as an update would
            keys = sorted(entries)
            split = max(0, len(keys) - HEAD_TARGET)
            self._tk.extend(keys[:split])
            self._tail.update((key, entries[key]) for key in keys[:split])
            self._push_head(keys[split:], [entries[key] for key in keys[split:]])
            self._refresh_views()
        if self.depth is not None:
            self.truncate(self.depth)

    def _push_head(self, keys: list[float], entries: list[TailEntry]) -> None:
        """Put ``keys`` (ascending, all below the head) in front of the head."""
        self._hk[:0] = keys
        self._hp[:0] = [entry[0] for entry in entries]
        self._hs[:0] = [entry[1] for entry in entries]
        self._ht[:0] = [entry[2] for entry in entries]
        if self.token is not None:
            self._hc[:0] = [entry[3] for entry in entries]

    def _refill(self) -> None:
        """Move the best tail levels up until the head holds ``HEAD_TARGET`` (or the tail is empty)."""
        tail = self._tail
        keys = self._tk.pop_highest(min(len(tail), HEAD_TARGET - len(self._hk)))
        self._push_head(keys, [tail.pop(key) for key in keys])

    def _spill(self) -> None:
        """Move the head's lowest levels down to the tail until it holds ``HEAD_TARGET``."""
        count = len(self._hk) - HEAD_TARGET
        hk, hp, hs, ht, hc = self._hk, self._hp, self._hs, self._ht, self._hc
        tokens = hc[:count] if self.token is not None else [""] * count
        self._tk.extend(hk[:count])  # all above the tail's keys
        self._tail.update(zip(hk[:count], zip(hp[:count], hs[:count], ht[:count], tokens, strict=True), strict=True))
        del hk[:count], hp[:count], hs[:count], ht[:count], hc[:count]

    def update(self, levels: Iterable[TextLevel]) -> bool:
        """Set the absolute size at each price, in order; size zero removes the level. Returns whether the
        checksum text was rebuilt (the book's CRC needs recomputing only then).

        Levels before a bad one stay applied (the caller discards the whole book on BookIntegrityError).
        """
        hk = self._hk  # one name per line: a tuple assignment of four or more builds a tuple
        tail_maxes = self._tk.maxes
        token = self.token
        negate = self._negate
        top_edge, sum_edge = self._top_edge, self._sum_edge
        new_top = new_sum = False
        try:
            for level in levels:
                try:
                    price_text, size_text = level
                    price, size = _JSON_FLOAT(price_text), _JSON_FLOAT(size_text)  # _number, inlined
                except (TypeError, ValueError):
                    price, size = _float_level(level)
                if not (price > 0.0 and size >= 0.0 and price <= MAX_PRICE and size <= MAX_SIZE):  # NaN fails too
                    parse_level(level)  # raises with the message
                key = -price if negate else price
                if key >= top_edge:
                    new_top = True
                if key >= sum_edge:
                    new_sum = True
                if tail_maxes and key <= tail_maxes[-1]:  # a tail level
                    tail = self._tail
                    if size:
                        count = len(tail)
                        tail[key] = (price, size, level, token(price_text, size_text) if token is not None else "")
                        if len(tail) != count:
                            self._tk.add(key)
                    elif tail.pop(key, None) is not None:
                        self._tk.remove(key)
                    continue
                i = bisect_left(hk, key)
                if i < len(hk) and hk[i] == key:
                    if size:
                        if token is not None:
                            self._hc[i] = token(price_text, size_text)
                        self._hs[i] = size
                        self._ht[i] = level
                    else:
                        del hk[i], self._hp[i], self._hs[i], self._ht[i]
                        if token is not None:
                            del self._hc[i]
                        if len(hk) < HEAD_MIN and self._tail:
                            self._refill()
                elif size:
                    if token is not None:
                        self._hc.insert(i, token(price_text, size_text))
                    hk.insert(i, key)
                    self._hp.insert(i, price)
                    self._hs.insert(i, size)
                    self._ht.insert(i, level)
                    if len(hk) > HEAD_MAX:
                        self._spill()
        finally:
            if new_top or new_sum:
                self._refresh_views(new_top, new_sum)
        depth = self.depth
        if depth is not None and len(hk) + len(self._tail) > depth:  # only after an insert
            new_sum = self.truncate(depth) or new_sum
        return new_sum

    def truncate(self, depth: int) -> bool:
        """Drop levels beyond ``depth`` (Kraken sends no deletes for levels pushed out of the window).
        Returns whether the checksum text was rebuilt."""
        excess = len(self._hk) + len(self._tail) - depth
        if excess <= 0:
            return False
        tail = self._tail
        dropped = self._tk.pop_lowest(min(excess, len(tail)))
        for key in dropped:
            del tail[key]
        highest_dropped = dropped[-1] if dropped else -inf
        from_head = excess - len(dropped)
        if from_head:
            highest_dropped = self._hk[from_head - 1]
            del self._hk[:from_head], self._hp[:from_head], self._hs[:from_head], self._ht[:from_head]
            del self._hc[:from_head]
        resum = highest_dropped >= self._sum_edge
        if resum or highest_dropped >= self._top_edge:  # only when ``depth`` is shallower than a view
            self._refresh_views(highest_dropped >= self._top_edge, resum)
        return resum

    def _refresh_views(self, top: bool = True, checksum: bool = True) -> None:
        """Rebuild ``top_levels`` and/or ``checksum_text`` (with their edges) from the levels held."""
        if top:
            n, hp, hs = self.top_n, self._hp, self._hs
            if n == 5 and len(hp) >= 5:  # the default published depth, written out: a third faster than the loop
                p4, p3, p2, p1, p0 = hp[-5:]
                s4, s3, s2, s1, s0 = hs[-5:]
                c1 = s0 + s1  # the loop's sums in its order (its first, 0.0 + s0, is s0: sizes are positive)
                c2 = c1 + s2
                c3 = c2 + s3
                self.top_levels = [(p0, s0, s0), (p1, s1, c1), (p2, s2, c2), (p3, s3, c3), (p4, s4, c3 + s4)]
                self._top_edge = self._hk[-5]
            elif 0 < n <= len(hp):  # by index: zip/accumulate over slices is slower for a few levels
                levels: list[Level] = []
                cumulative = 0.0
                for i in range(len(hp) - 1, len(hp) - 1 - n, -1):
                    size = hs[i]
                    cumulative += size
                    levels.append((hp[i], size, cumulative))
                self.top_levels, self._top_edge = levels, self._hk[-n]
            else:
                self.top_levels, self._top_edge = self._levels(n), self._edge(n) if n > 0 else inf
        if checksum:
            n = self.checksum_levels
            if self.token is None or n <= 0:
                text, self._sum_edge = b"", inf
            elif n <= len(self._hc):  # the usual case
                text, self._sum_edge = "".join(self._hc[:-n - 1:-1]).encode(), self._hk[-n]
            else:
                text, self._sum_edge = "".join(self._best(n)[3]).encode(), self._edge(n)
            self.checksum_text = text
            if self.checksum_first:
                self.checksum_crc = zlib.crc32(text)

    def _edge(self, n: int) -> float:
        """The key of the ``n``-th best level; -inf when there are fewer."""
        hk = self._hk
        if 0 < n <= len(hk):
            return hk[-n]
        deeper = n - len(hk)
        return self._tk.highest(deeper)[-1] if 0 < deeper <= len(self._tail) else -inf

    def _best(self, n: int) -> tuple[list[float], list[float], list[TextLevel], list[str]]:
        """Prices, sizes, wire texts and tokens of the best ``n`` levels, best first (any ``n``)."""
        if n <= 0:
            return [], [], [], []
        hk, hc = self._hk, self._hc
        tokens = hc[:-n - 1:-1] if self.token is not None else [""] * min(n, len(hk))
        prices, sizes, texts = self._hp[:-n - 1:-1], self._hs[:-n - 1:-1], self._ht[:-n - 1:-1]
        if n > len(hk) and self._tail:  # the head is too short: rare
            deeper = [self._tail[key] for key in self._tk.highest(n - len(hk))]
            prices += [entry[0] for entry in deeper]
            sizes += [entry[1] for entry in deeper]
            texts += [entry[2] for entry in deeper]
            tokens += [entry[3] for entry in deeper]
        return prices, sizes, texts, tokens

    def _levels(self, n: int) -> list[Level]:
        prices, sizes, _, _ = self._best(n)
        return list(zip(prices, sizes, accumulate(sizes), strict=True))

    def top(self, n: int) -> list[Level]:
        """The best ``n`` levels as ``(price, size, cumulative size)``, best first."""
        return self.top_levels if n == self.top_n else self._levels(n)

    def top_text(self, n: int) -> list[TextLevel]:
        """The best ``n`` levels as the venue's own (price, size) text, for checksums."""
        return self._best(n)[2]


class OrderBook:
    """Book of one symbol. ``depth`` (Kraken) truncates each side after every message; None keeps all.

    After every change the book holds what a feed publishes and verifies: each side's ``top_levels`` (its
    best ``top_n``) and, with ``checksum_levels``, ``checksum``: the CRC-32 (zlib) of the asks' checksum
    text followed by the bids' (Kraken's order; no other venue checksums books), or None when the last
    snapshot came without a token function (the book cannot be verified). The CRC is recomputed only when a
    side's text changed, and the asks' part of it only when theirs did.
    """

    __slots__ = ("symbol", "depth", "bids", "asks", "checksum", "_verifiable")

    def __init__(self, symbol: str, depth: int | None = None, *, top_n: int = 0, checksum_levels: int = 0) -> None:
        self.symbol = symbol
        self.depth = depth
        self.bids = BookSide(descending=True, depth=depth, top_n=top_n, checksum_levels=checksum_levels)
        self.asks = BookSide(descending=False, depth=depth, top_n=top_n, checksum_levels=checksum_levels,
                             checksum_first=True)
        self.checksum: int | None = None
        self._verifiable = False  # checksum_levels and a token function at the last snapshot

    def apply_snapshot(
        self, bids: Iterable[TextLevel], asks: Iterable[TextLevel], token: ChecksumToken | None = None
    ) -> bool:
        """Replace the whole book; ``token`` (Kraken) precomputes each level's checksum token.

        Returns :meth:`is_crossed` of the result.
        """
        self.asks.clear()  # a bad bid level must not leave the old asks behind
        self.asks.token = token
        self.bids.replace(bids, token)
        self.asks.replace(asks, token)
        self._update_checksum()
        return self.is_crossed()

    def apply_update(self, bids: Sequence[TextLevel], asks: Sequence[TextLevel]) -> bool:
        """Apply levels in the order given (one message may touch a price twice); each side truncates itself.

        Returns :meth:`is_crossed` of the result (computed here: the caller checks it after every message).
        """
        bid_side, ask_side = self.bids, self.asks
        resum = False  # a side's checksum text was rebuilt
        if bids:
            resum = bid_side.update(bids)
        if asks:
            resum = ask_side.update(asks) or resum
        if resum and self._verifiable:  # the asks' text then the bids': the CRC of the asks continued over the bids
            self.checksum = zlib.crc32(bid_side.checksum_text, ask_side.checksum_crc)
        best_bids, best_asks = bid_side._hp, ask_side._hp
        return best_bids[-1] >= best_asks[-1] if best_bids and best_asks else False

    def _update_checksum(self) -> None:
        self._verifiable = self.bids.checksum_levels > 0 and self.asks.token is not None
        self.checksum = zlib.crc32(self.bids.checksum_text, self.asks.checksum_crc) if self._verifiable else None

    def top(self, n: int) -> tuple[list[Level], list[Level]]:
        return self.bids.top(n), self.asks.top(n)

    def is_crossed(self) -> bool:
        bids, asks = self.bids._hp, self.asks._hp  # each side's best price is the last of its head
        return bids[-1] >= asks[-1] if bids and asks else False
