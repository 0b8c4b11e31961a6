"""Absolute stock from the merchant's ERP or catalogue, with watermark reconciliation.

A snapshot row says "SKU X had N units on hand at `as_of`". The ledger sets on_hand to
N plus every on_hand movement it applied that happened after `as_of` (the ERP cannot
have seen those), and `as_of` becomes the SKU's watermark. A row older than the
watermark is recorded in the ledger as `snapshot_stale` and changes nothing.

Rows are applied in chunks, one transaction per chunk (adapters/ledger_store.py has the
lock order), so an import of 100,000 SKUs never holds 100,000 row locks at once. A chunk
goes through the same three statements as a batch of order lines.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from stocksync_common.contracts import Event, ProductAttributesChanged, StockChanged, utcnow
from stocksync_common.uow import UnitOfWork

from stock_ledger.adapters import attributes_store, bundle_store, ledger_store
from stock_ledger.adapters.ledger_store import MOVEMENTS, LedgerEntry, SnapshotAsOf
from stock_ledger.domain.stock import SkuChange, SkuKey, is_stale_snapshot, plan_stock_changes, snapshot_on_hand


@dataclass(frozen=True)
class AttributeUpdate:
    """Catalogue attributes a row names; what a row does not name keeps its value.

    In `attributes`, an empty string removes that attribute.
    """

    brand: str | None = None
    category: str | None = None
    tags: tuple[str, ...] | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    names_brand: bool = False
    names_category: bool = False


@dataclass(frozen=True)
class SnapshotRow:
    line: int
    sku: str
    location: str
    on_hand: int
    as_of: datetime
    attributes: AttributeUpdate | None = None


@dataclass
class SnapshotOutcome:
    applied: int = 0
    ignored_stale: int = 0
    # Rows naming a bundle: refused, since a bundle's stock is its components'.
    refused: list[RejectedRow] = field(default_factory=list)
    changed: list[StockChanged] = field(default_factory=list)


async def apply_snapshot_rows(
    uow: UnitOfWork, merchant_id: uuid.UUID, snapshot_id: uuid.UUID, rows: Sequence[SnapshotRow]
) -> SnapshotOutcome:
    """Apply one chunk of a snapshot in `uow` (entered; the caller commits); rows name
    distinct (sku, location)."""
    outcome = SnapshotOutcome()
    if not rows:
        return outcome
    conn = uow.connection
    # A bundle's stock is its components': a count of a bundle SKU is refused (its
    # catalogue attributes are kept: rules scope bundles like any SKU).
    bundles = await bundle_store.definitions(conn, {(merchant_id, r.sku) for r in rows})
    outcome.refused = [
        RejectedRow(r.line, "sku", f"{r.sku!r} is a bundle: its stock is its components'")
        for r in rows
        if (merchant_id, r.sku) in bundles
    ]
    described = [r for r in rows if r.attributes is not None]
    rows = [r for r in rows if (merchant_id, r.sku) not in bundles]
    levels = (await ledger_store.lock_stock(conn, ((merchant_id, r.sku, r.location) for r in rows))).levels
    current = [r for r in rows if not is_stale_snapshot(levels[(merchant_id, r.sku, r.location)], r.as_of)]
    moved_since = await ledger_store.on_hand_moved_since(
        conn, merchant_id, [SnapshotAsOf(r.sku, r.location, r.as_of) for r in current]
    )

    entries: list[LedgerEntry] = []
    changes: list[SkuChange] = []
    current_keys = {(r.sku, r.location) for r in current}
    for row in rows:
        key: SkuKey = (merchant_id, row.sku, row.location)
        before = levels[key]
        causation_id = f"snapshot:{snapshot_id}:{row.sku}:{row.location}"
        if (row.sku, row.location) not in current_keys:
            kind, delta_on_hand, version = "snapshot_stale", 0, before.version
            outcome.ignored_stale += 1
        else:
            on_hand = snapshot_on_hand(row.on_hand, moved_since.get((row.sku, row.location), 0))
            after = replace(before, on_hand=on_hand, watermark=row.as_of)
            # A SKU seen for the first time gets a version even at 0 units: channels must hear of it.
            if on_hand != before.on_hand or before.version == 0:
                after = replace(after, version=before.version + 1)
            changes.append(SkuChange(key, before, after, causation_id))
            kind, delta_on_hand, version = "snapshot", on_hand - before.on_hand, after.version
            outcome.applied += 1
        MOVEMENTS.labels(kind).inc()
        entries.append(
            LedgerEntry(
                merchant_id=merchant_id,
                sku=row.sku,
                location=row.location,
                causation_id=causation_id,
                kind=kind,
                quantity=row.on_hand,
                delta_on_hand=delta_on_hand,
                delta_reserved=0,
                version=version,
                occurred_at=row.as_of,
            )
        )
    outcome.changed = await ledger_store.save_stock_changes(uow, plan_stock_changes(changes, utcnow()), entries)
    uow.add(await _changed_attributes(uow, merchant_id, snapshot_id, described))
    return outcome


async def _changed_attributes(
    uow: UnitOfWork, merchant_id: uuid.UUID, snapshot_id: uuid.UUID, rows: Sequence[SnapshotRow]
) -> list[Event]:
    """Merge the rows' attributes; one ProductAttributesChanged per SKU that changed."""
    updates: dict[str, AttributeUpdate] = {}
    for row in rows:
        assert row.attributes is not None
        updates[row.sku] = row.attributes  # attributes are per SKU, whatever the location
    if not updates:
        return []
    existing = await attributes_store.lock_attributes(uow.connection, merchant_id, sorted(updates))
    now = utcnow()
    saved: list[attributes_store.ProductAttributes] = []
    events: list[Event] = []
    for sku in sorted(updates):
        update, old = updates[sku], existing.get(sku)
        brand = update.brand if update.names_brand else (old.brand if old else None)
        category = update.category if update.names_category else (old.category if old else None)
        tags = list(update.tags) if update.tags is not None else (list(old.tags) if old else [])
        attributes = dict(old.attributes) if old else {}
        for name, value in update.attributes.items():
            if value == "":
                attributes.pop(name, None)
            else:
                attributes[name] = value
        if old is not None and (old.brand, old.category, list(old.tags), old.attributes) == (
            brand,
            category,
            tags,
            attributes,
        ):
            continue
        version = (old.version if old else 0) + 1
        saved.append(attributes_store.ProductAttributes(sku, brand, category, tags, attributes, version))
        events.append(
            ProductAttributesChanged(
                merchant_id=merchant_id,
                sku=sku,
                brand=brand,
                category=category,
                tags=tuple(tags),
                attributes=attributes,
                version=version,
                causation_id=f"snapshot:{snapshot_id}:{sku}",
                occurred_at=now,
            )
        )
    await attributes_store.save_attributes(uow.connection, merchant_id, saved, now)
    return events


@dataclass(frozen=True)
class RejectedRow:
    line: int
    field: str | None
    message: str


@dataclass
class ImportReport:
    snapshot_id: uuid.UUID
    applied: int = 0
    ignored_stale: int = 0
    rejected: int = 0
    # The first `MAX_LISTED_ERRORS` rejected rows; `rejected` counts them all.
    errors: list[RejectedRow] = field(default_factory=list)
    changed: list[StockChanged] = field(default_factory=list)

    MAX_LISTED_ERRORS = 1000

    def reject(self, row: RejectedRow) -> None:
        self.rejected += 1
        if len(self.errors) < self.MAX_LISTED_ERRORS:
            self.errors.append(row)


async def import_snapshot(
    units: Callable[[], UnitOfWork],
    merchant_id: uuid.UUID,
    rows: AsyncIterable[SnapshotRow | RejectedRow],
    *,
    chunk_size: int = 1000,
    keep_changed: bool = False,
) -> ImportReport:
    """Apply good rows chunk by chunk as they stream in; count and list the bad ones.

    A SKU (and location) named twice in one upload is rejected the second time, so a
    file means the same thing whatever its chunking. Only the (sku, location) pairs seen
    so far are kept in memory, never the rows.
    """
    report = ImportReport(uuid.uuid4())
    first_line: dict[tuple[str, str], int] = {}
    chunk: list[SnapshotRow] = []

    async def flush() -> None:
        if not chunk:
            return
        async with units() as uow:
            outcome = await apply_snapshot_rows(uow, merchant_id, report.snapshot_id, chunk)
            await uow.commit()
        report.applied += outcome.applied
        report.ignored_stale += outcome.ignored_stale
        for refused in outcome.refused:
            report.reject(refused)
        if keep_changed:
            report.changed.extend(outcome.changed)
        chunk.clear()

    async for row in rows:
        if isinstance(row, RejectedRow):
            report.reject(row)
            continue
        seen_on = first_line.setdefault((row.sku, row.location), row.line)
        if seen_on != row.line:
            message = f"SKU {row.sku!r} at {row.location!r} is already on line {seen_on}"
            report.reject(RejectedRow(row.line, "sku", message))
            continue
        chunk.append(row)
        if len(chunk) >= chunk_size:
            await flush()
    await flush()
    return report
