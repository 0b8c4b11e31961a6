"""Defining, replacing and deleting bundles (domain/bundles.py), and reading them.

Locking protocol (adapters/bundle_store.py): first the rows of every component, old and
new, at every location where the bundle or one of them has stock, in lock order; then
the definitions are read again and checked under those locks; then the bundle's own
rows (the second phase, `ledger_store.derive_bundles`), which are recomputed from the components
and get a new version where they change. An order or a snapshot moving a component
either committed before (its levels are read here) or waits for this transaction (and
then reads the new definition).

Known limit: a component's first stock at a location none of them had stock at, in a
transaction concurrent with the definition, is not locked here; the bundle's row
there stays at 0 until the next change of one of its components at that location.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from stocksync_common.contracts import DEFAULT_LOCATION, StockChanged, utcnow
from stocksync_common.uow import UnitOfWork

from stock_ledger.adapters import bundle_store, ledger_store
from stock_ledger.adapters.bundle_store import Definition
from stock_ledger.domain.bundles import BUNDLES_PER_MERCHANT_MAX, BundleRefused, BundleTarget, check_definition
from stock_ledger.domain.stock import plan_stock_changes


class BundleNotFound(LookupError):
    pass


class BundleExists(BundleRefused):
    pass


@dataclass(frozen=True)
class BundleSaved:
    created: bool
    available: dict[str, int]  # per location, after the change
    changed: list[StockChanged]


async def save_bundle(
    uow: UnitOfWork, merchant_id: uuid.UUID, sku: str, definition: Definition | None, *, create_only: bool = False
) -> BundleSaved:
    """Define or replace the bundle `sku` (`definition`), or delete it (None).

    Raises BundleRefused (a rule of bundles; with `create_only`, an existing bundle) and
    BundleNotFound (deleting a bundle that does not exist).
    """
    async with uow:
        conn = uow.connection
        wanted = [(merchant_id, sku), *((merchant_id, c) for c in definition or {})]
        old = (await bundle_store.definitions(conn, wanted)).get((merchant_id, sku))
        components = sorted(set(old or {}) | set(definition or {}))
        locations = await bundle_store.locations_of(conn, merchant_id, [sku, *components]) or [DEFAULT_LOCATION]
        await ledger_store.lock_stock(conn, [(merchant_id, c, loc) for c in components for loc in locations])

        # Under the locks: what is defined now.
        current = await bundle_store.definitions(conn, wanted)
        old = current.get((merchant_id, sku))
        if definition is None and old is None:
            raise BundleNotFound(sku)
        if create_only and old is not None:
            raise BundleExists(f"bundle {sku!r} exists: PUT replaces it")
        if definition is not None:
            check_definition(
                sku,
                definition,
                bundles_among_components={c for c in definition if (merchant_id, c) in current},
                bundles_containing_sku={b for (_, b), d in current.items() if sku in d},
            )
            if old is None and await bundle_store.count_bundles(conn, merchant_id) >= BUNDLES_PER_MERCHANT_MAX:
                raise BundleRefused(f"at most {BUNDLES_PER_MERCHANT_MAX} bundles per merchant")
        await bundle_store.replace_definition(conn, merchant_id, sku, definition or {})

        causation_id = f"bundle:{sku}:{'deleted' if definition is None else 'defined'}:{uuid.uuid4()}"
        targets = {(merchant_id, sku, loc): BundleTarget(definition or {}, causation_id) for loc in locations}
        rows = (await ledger_store.lock_stock(conn, targets)).levels
        if old is None and any(level.on_hand or level.reserved for level in rows.values()):
            raise BundleRefused(f"{sku!r} has stock of its own: a bundle's stock is its components'")
        now = utcnow()
        derived, entries = await ledger_store.derive_bundles(conn, targets, now)
        changed = await ledger_store.save_stock_changes(uow, plan_stock_changes(derived, now), entries)
        after = {c.key[2]: c.after.available for c in derived}
        available = {loc: after.get(loc, rows[(merchant_id, sku, loc)].available) for loc in locations}
        await uow.commit()
    return BundleSaved(old is None, available, changed)


@dataclass(frozen=True)
class Bundle:
    sku: str
    components: Definition


async def list_bundles(uow: UnitOfWork, merchant_id: uuid.UUID, after: str = "", limit: int = 100) -> list[Bundle]:
    async with uow:
        found = await bundle_store.list_definitions(uow.connection, merchant_id, after, limit)
    return [Bundle(sku, components) for sku, components in found]


async def read_bundle(uow: UnitOfWork, merchant_id: uuid.UUID, sku: str) -> tuple[Bundle, dict[str, int]]:
    """A bundle and its available per location (where it has a row)."""
    async with uow:
        conn = uow.connection
        definition = (await bundle_store.definitions(conn, [(merchant_id, sku)])).get((merchant_id, sku))
        if definition is None:
            raise BundleNotFound(sku)
        locations = await bundle_store.locations_of(conn, merchant_id, [sku])
        available = await bundle_store.available_at(conn, [(merchant_id, sku, loc) for loc in locations])
    return Bundle(sku, definition), {loc: available.get((merchant_id, sku, loc), 0) for loc in locations}
