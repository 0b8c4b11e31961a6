"""Ids that say when they were made: UUIDv7 (RFC 9562), for what another service learns of
a moment after its owner created it.

A connection is created by the channel-publisher and reaches the rule engine through
connections.v1, a moment later. A rule naming a connection the rule engine has not seen is
refused, unless the id says it was made just now: then the rule engine waits for it a
little (`rule_engine.service_layer.rule_changes`). Any other id (a random UUIDv4, or a
connection made long ago and unknown) is refused at once.
"""

from __future__ import annotations

import time
import uuid

import uuid6


def new_id() -> uuid.UUID:
    """A UUIDv7: 48 bits of Unix time in milliseconds, then random bits."""
    return uuid.UUID(int=uuid6.uuid7().int)


def made_within(value: uuid.UUID, seconds: float) -> bool:
    """Whether `value` is a UUIDv7 made in the last `seconds` (by this machine's clock,
    a second of skew allowed ahead)."""
    if value.version != 7:
        return False
    made_ms = value.int >> 80
    now_ms = time.time() * 1000
    return now_ms - seconds * 1000 <= made_ms <= now_ms + 1000
