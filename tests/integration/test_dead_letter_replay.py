"""The stock-ledger's dead-letter list and replay, on the real database."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from stocksync_common.dead_letters import DeadLetter, dead_letter_event
from stocksync_common.kafka import encode_event
from stocksync_common.topics import ORDERS
from stocksync_common.uow import UnitOfWorkFactory

from stock_ledger.adapters.tables import outbox
from stock_ledger.service_layer.dead_letters import collect_dead_letters, list_dead_letters, replay_dead_letters
from tests.integration.ledger_helpers import line_moved

pytestmark = pytest.mark.integration


def test_a_replay_puts_the_original_record_back_once_and_replay_all_skips_what_was_replayed(
    database_url: str,
) -> None:
    merchant_id, stranger = uuid.uuid4(), uuid.uuid4()
    events = [line_moved(merchant_id, uuid.uuid4(), "placed", 1, sku=sku, line=sku) for sku in ("A", "B")]
    letters = [
        dead_letter_event(
            uuid.uuid4(),
            DeadLetter(
                "stock-ledger",
                ORDERS.name,
                2,
                40 + n,
                ORDERS.key_of(e),
                encode_event(e),
                "boom",
                e.merchant_id,
                e.event_id,
            ),
        )
        for n, e in enumerate(events)
    ]

    async def run() -> dict[str, Any]:
        engine = create_async_engine(database_url)
        wakes: list[int] = []
        units = UnitOfWorkFactory(engine, outbox=outbox, wake_relay=lambda: wakes.append(1))
        try:
            # A stock-ledger running on this database (the e2e stack) may publish the
            # replayed rows meanwhile: the outbox keeps published rows for
            # OUTBOX_RETENTION_S, so they are read here either way. (This test used to hold
            # the relay's lock; the relay now holds it as a lease for as long as it runs.)
            # Collected twice (the topic redelivers): listed once.
            await collect_dead_letters(letters, engine)
            await collect_dead_letters(letters, engine)
            async with engine.connect() as conn:
                listed = await list_dead_letters(conn, merchant_id=merchant_id)
                foreign = await list_dead_letters(conn, merchant_id=stranger)
            not_theirs = await replay_dead_letters(
                units, merchant_id=stranger, dead_letter_id=letters[0].dead_letter_id
            )
            wakes_after = [len(wakes)]
            one = await replay_dead_letters(units, merchant_id=merchant_id, dead_letter_id=letters[0].dead_letter_id)
            rest = await replay_dead_letters(units, merchant_id=merchant_id)
            wakes_after.append(len(wakes))
            again = await replay_dead_letters(units, merchant_id=merchant_id)
            wakes_after.append(len(wakes))
            async with engine.connect() as conn:
                replayed = (
                    await conn.execute(
                        sa.select(outbox.c.topic, outbox.c.key, outbox.c.payload).where(
                            outbox.c.causation_id.in_([f"replay:{letter.dead_letter_id}" for letter in letters])
                        )
                    )
                ).all()
                after = await list_dead_letters(conn, merchant_id=merchant_id)
            return {
                "listed": listed,
                "foreign": foreign,
                "not_theirs": not_theirs,
                "one": one,
                "rest": rest,
                "again": again,
                "replayed": replayed,
                "after": after,
                "wakes_after": wakes_after,
            }
        finally:
            await engine.dispose()

    result = asyncio.run(run())

    assert len(result["listed"]) == 2 and result["foreign"] == []
    assert result["not_theirs"] == []
    assert result["one"] == [letters[0].dead_letter_id]
    assert result["rest"] == [letters[1].dead_letter_id]  # replay-all: only those not replayed yet
    assert result["again"] == []
    # The relay is woken after each replay that wrote records, and only then.
    assert result["wakes_after"] == [0, 2, 2]
    # The original record, byte for byte, on its topic with its key: the same event id,
    # which the ledger's inbox applies at most once however often it is replayed.
    assert sorted(result["replayed"]) == sorted((ORDERS.name, ORDERS.key_of(e), encode_event(e)) for e in events)
    assert {row.replay_count for row in result["after"]} == {1}
    assert all(row.replayed_at is not None for row in result["after"])
