"""UUIDv7 ids say when they were made (stocksync_common.ids)."""

from __future__ import annotations

import time
import uuid

from stocksync_common.ids import made_within, new_id


def at(ms: int) -> uuid.UUID:
    """A UUIDv7 made at `ms` (Unix milliseconds)."""
    return uuid.UUID(int=(new_id().int & ~(((1 << 48) - 1) << 80)) | (ms << 80))


def test_a_new_id_is_a_uuid7_made_now_and_later_ones_sort_after_it() -> None:
    first = new_id()
    assert first.version == 7 and first.variant == uuid.RFC_4122
    assert made_within(first, 5)
    assert sorted([new_id() for _ in range(100)], key=lambda u: u.int)[0].int > first.int


def test_only_a_uuid7_made_inside_the_window_counts_as_recent() -> None:
    now_ms = int(time.time() * 1000)
    assert made_within(at(now_ms - 30_000), 60)
    assert not made_within(at(now_ms - 120_000), 60)
    assert not made_within(at(now_ms + 60_000), 60)  # from the future: a forged or broken clock
    assert not made_within(uuid.uuid4(), 60)
    assert not made_within(uuid.UUID(int=0), 60)
