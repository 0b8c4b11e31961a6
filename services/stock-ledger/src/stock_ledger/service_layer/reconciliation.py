"""Reconciliation: does every stock row agree with its ledger, its lines and its events?

Checks, per stock row:
- `ledger_sum`: on_hand and reserved equal the sums of the SKU's ledger deltas;
- `ledger_version`: the version equals the newest version in its ledger entries;
- `negative_reserved`: reserved is not below zero;
- `order_lines`: reserved equals what the SKU's order lines reserve (a bundle line
  reserves its components, by the quantities it recorded when placed);
- `emitted_version`: the newest StockChanged version on stock.changed.v1 (or still in
  the outbox) equals the row's version: an event was neither lost nor invented.
It reads only; a difference is reported, never repaired blindly.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import StockChanged
from stocksync_common.kafka import decode_event
from stocksync_common.topics import STOCK_CHANGED

from stock_ledger.adapters.tables import ledger_entries, order_line_components, order_lines, outbox, stock_items
from stock_ledger.domain.stock import SkuKey


@dataclass(frozen=True)
class Discrepancy:
    key: SkuKey
    check: str
    expected: int | None
    actual: int | None

    def describe(self) -> str:
        merchant_id, sku, location = self.key
        return (
            f"{self.check}: merchant {merchant_id} sku {sku!r} location {location!r}: "
            f"expected {self.expected}, found {self.actual}"
        )


async def ledger_discrepancies(engine: AsyncEngine, merchant_id: uuid.UUID | None = None) -> list[Discrepancy]:
    s, e, line = stock_items.c, ledger_entries.c, order_lines.c
    sums = (
        sa.select(
            e.merchant_id,
            e.sku,
            e.location,
            sa.func.sum(e.delta_on_hand).label("on_hand"),
            sa.func.sum(e.delta_reserved).label("reserved"),
            sa.func.max(e.version).label("version"),
        )
        .group_by(e.merchant_id, e.sku, e.location)
        .subquery("sums")
    )
    part = order_line_components.c
    line_matches_part = sa.and_(
        part.merchant_id == line.merchant_id,
        part.connection_id == line.connection_id,
        part.external_order_id == line.external_order_id,
        part.line_id == line.line_id,
    )
    # A bundle line reserves its components (the quantities it was placed with), not its own SKU.
    reserving = sa.union_all(
        sa.select(line.merchant_id, line.sku, line.location, line.reserved).where(
            ~sa.exists().where(line_matches_part)
        ),
        sa.select(
            line.merchant_id,
            part.component_sku.label("sku"),
            line.location,
            (line.reserved * part.quantity).label("reserved"),
        ).select_from(order_lines.join(order_line_components, line_matches_part)),
    ).subquery("reserving")
    lines = (
        sa.select(
            reserving.c.merchant_id,
            reserving.c.sku,
            reserving.c.location,
            sa.func.sum(reserving.c.reserved).label("reserved"),
        )
        .group_by(reserving.c.merchant_id, reserving.c.sku, reserving.c.location)
        .subquery("lines")
    )
    query = (
        sa.select(
            s.merchant_id,
            s.sku,
            s.location,
            s.on_hand,
            s.reserved,
            s.version,
            sums.c.on_hand.label("ledger_on_hand"),
            sums.c.reserved.label("ledger_reserved"),
            sums.c.version.label("ledger_version"),
            lines.c.reserved.label("lines_reserved"),
        )
        .outerjoin(
            sums, sa.and_(sums.c.merchant_id == s.merchant_id, sums.c.sku == s.sku, sums.c.location == s.location)
        )
        .outerjoin(
            lines, sa.and_(lines.c.merchant_id == s.merchant_id, lines.c.sku == s.sku, lines.c.location == s.location)
        )
    )
    if merchant_id is not None:
        query = query.where(s.merchant_id == merchant_id)
    found: list[Discrepancy] = []
    async with engine.connect() as conn:
        async for row in await conn.stream(query):
            key = (row.merchant_id, row.sku, row.location)
            checks = [
                ("ledger_sum_on_hand", row.ledger_on_hand or 0, row.on_hand),
                ("ledger_sum_reserved", row.ledger_reserved or 0, row.reserved),
                ("ledger_version", row.ledger_version or 0, row.version),
                ("order_lines_reserved", row.lines_reserved or 0, row.reserved),
            ]
            found += [Discrepancy(key, name, int(want), int(got)) for name, want, got in checks if want != got]
            if row.reserved < 0:
                found.append(Discrepancy(key, "negative_reserved", 0, row.reserved))
        orphans = (
            sa.select(sums.c.merchant_id, sums.c.sku, sums.c.location)
            .outerjoin(
                stock_items,
                sa.and_(sums.c.merchant_id == s.merchant_id, sums.c.sku == s.sku, sums.c.location == s.location),
            )
            .where(s.sku.is_(None))
        )
        if merchant_id is not None:
            orphans = orphans.where(sums.c.merchant_id == merchant_id)
        for orphan in await conn.execute(orphans):
            key = (orphan.merchant_id, orphan.sku, orphan.location)
            found.append(Discrepancy(key, "ledger_without_stock_row", 0, None))
    return found


async def version_discrepancies(
    engine: AsyncEngine, emitted: dict[SkuKey, int], merchant_id: uuid.UUID | None = None
) -> list[Discrepancy]:
    """Compare row versions with the newest emitted (or still queued) StockChanged."""
    emitted = dict(emitted)
    s = stock_items.c
    async with engine.connect() as conn:
        for payload in (
            await conn.execute(sa.select(outbox.c.payload).where(outbox.c.topic == STOCK_CHANGED.name))
        ).scalars():
            _newest(emitted, [decode_event(STOCK_CHANGED, payload)])
        query = sa.select(s.merchant_id, s.sku, s.location, s.version).where(s.version > 0)
        if merchant_id is not None:
            query = query.where(s.merchant_id == merchant_id)
        found: list[Discrepancy] = []
        async for version_row in await conn.stream(query):
            key = (version_row.merchant_id, version_row.sku, version_row.location)
            if emitted.get(key) != version_row.version:
                found.append(Discrepancy(key, "emitted_version", version_row.version, emitted.get(key)))
    return found


def _newest(emitted: dict[SkuKey, int], events: Iterable[object]) -> None:
    for event in events:
        if isinstance(event, StockChanged):
            key = (event.merchant_id, event.sku, event.location)
            emitted[key] = max(emitted.get(key, 0), event.version)


async def emitted_versions(bootstrap_servers: str, merchant_id: uuid.UUID | None = None) -> dict[SkuKey, int]:
    """The newest StockChanged version per SKU on the topic, read from the start to its end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    emitted: dict[SkuKey, int] = {}
    try:
        await consumer.topics()  # loads the cluster metadata, partitions included
        partitions = [
            TopicPartition(STOCK_CHANGED.name, p)
            for p in sorted(consumer.partitions_for_topic(STOCK_CHANGED.name) or [])
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
            for records in batches.values():
                events = [decode_event(STOCK_CHANGED, r.value) for r in records if r.value is not None]
                _newest(emitted, (ev for ev in events if merchant_id is None or ev.merchant_id == merchant_id))
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    return emitted
