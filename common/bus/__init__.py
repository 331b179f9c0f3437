"""The Redis Streams bus: batched publishing, consumer groups and fan-out reading.

Backends know Redis and nothing about venues; every field layout question goes to ``schemas.codec``.
"""

from common.bus.entries import Delivery, StreamEntry
from common.bus.fanout import NEW_ONLY, FanoutReader, decode_entry, history
from common.bus.group import GroupConsumer, Handler, consumer_name
from common.bus.publisher import PUBLISH_SCRIPT, Publisher, PublishError

__all__ = [
    "NEW_ONLY",
    "PUBLISH_SCRIPT",
    "Delivery",
    "FanoutReader",
    "GroupConsumer",
    "Handler",
    "PublishError",
    "Publisher",
    "StreamEntry",
    "consumer_name",
    "decode_entry",
    "history",
]
