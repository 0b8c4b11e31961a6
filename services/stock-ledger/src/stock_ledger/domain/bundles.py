"""Bundles (kits): a SKU sold as a set of component SKUs, each a number of times.

A bundle has no stock of its own: at each location its available is the number of
whole bundles its components make there, the minimum over components of
floor(component available / quantity per bundle). It can be negative when a component
is oversold there (the component's oversell says so; the bundle opens none). An order
line for a bundle reserves its components at one location, never split, with the
quantities of the definition it was placed under.

Bundles cannot contain bundles: a component is never a bundle and a bundle is never a
component, so no definition can form a cycle and one level of derivation is enough.

A bundle's row is a stock row like any other: its on_hand is the number of whole
bundles its components make (reserved stays 0), moved by ledger entries of kind
`bundle`, with the same per-row versions, so consumers and the publisher's "never push
stale" treat a bundle like any SKU. Saving a transaction's stock changes recomputes, at
the locations that moved, every bundle containing a SKU whose levels changed
(`bundle_targets`, then `derived_changes`: adapters/ledger_store.py's second lock phase).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from stock_ledger.domain.stock import SkuChange, SkuKey, StockLevel

COMPONENTS_MAX = 100
"""Components of one bundle: a kit lists a few parts, never thousands."""
QUANTITY_PER_BUNDLE_MAX = 10_000
"""Units of one component in one bundle; times an order line's quantity, within bigint."""
BUNDLES_PER_MERCHANT_MAX = 100_000


def buildable(components: Mapping[str, int], available: Mapping[str, int]) -> int:
    """Whole bundles the components make: min over components of floor(available / quantity)."""
    if not components:
        raise ValueError("a bundle has at least one component")
    return min(available.get(sku, 0) // quantity for sku, quantity in components.items())


class BundleRefused(ValueError):
    """A definition that would break a rule of bundles; the message says which."""


def check_definition(
    sku: str,
    components: Mapping[str, int],
    *,
    bundles_among_components: set[str],
    bundles_containing_sku: set[str],
) -> None:
    """Refuse a bundle inside a bundle, a bundle of itself, and empty or oversized definitions."""
    if not 0 < len(components) <= COMPONENTS_MAX:
        raise BundleRefused(f"a bundle has 1 to {COMPONENTS_MAX} components")
    if sku in components:
        raise BundleRefused("a bundle cannot contain itself")
    if bundles_among_components:
        raise BundleRefused(f"a bundle cannot contain a bundle: {', '.join(sorted(bundles_among_components))}")
    if bundles_containing_sku:
        raise BundleRefused(
            f"{sku!r} is a component of {', '.join(sorted(bundles_containing_sku)[:5])}: a bundle cannot be a component"
        )
    for component, quantity in components.items():
        if not 0 < quantity <= QUANTITY_PER_BUNDLE_MAX:
            raise BundleRefused(f"{component!r}: a quantity per bundle is 1 to {QUANTITY_PER_BUNDLE_MAX}")


@dataclass(frozen=True)
class BundleTarget:
    """A bundle's row to recompute, and what caused it."""

    definition: Mapping[str, int]  # empty: the bundle is gone, its available is 0
    causation_id: str
    origin_received_at: datetime | None = None


def moved_levels(changes: Iterable[SkuChange]) -> dict[SkuKey, StockLevel]:
    """The rows whose levels `changes` moved (bundles' own rows aside): what bundles follow."""
    return {c.key: c.after for c in changes if c.new_version and not c.derived}


def bundle_targets(
    definitions: Mapping[tuple[uuid.UUID, str], Mapping[str, int]], changes: Sequence[SkuChange]
) -> dict[SkuKey, BundleTarget]:
    """The rows of the bundles (`definitions`) containing a SKU that `changes` moved, at
    each location where it moved, caused by that SKU's change."""
    moved = moved_levels(changes)
    by_sku = {(c.key[0], c.key[1]): c for c in changes}
    targets: dict[SkuKey, BundleTarget] = {}
    for (merchant_id, bundle), definition in definitions.items():
        for component in definition:
            for location in {loc for m, sku, loc in moved if (m, sku) == (merchant_id, component)}:
                cause = by_sku[(merchant_id, component)]
                targets.setdefault(
                    (merchant_id, bundle, location),
                    BundleTarget(definition, cause.causation_id, cause.origin_received_at),
                )
    return targets


def derived_changes(
    targets: Mapping[SkuKey, BundleTarget],
    levels: Mapping[SkuKey, StockLevel],
    available: Mapping[SkuKey, int],
) -> list[SkuChange]:
    """Each target's row (`levels`: as locked) recomputed from its components'
    `available` (a component without a row has 0): a new version where it changes, in
    the order of `targets`."""
    changes: list[SkuChange] = []
    for key, target in targets.items():
        merchant_id, _, location = key
        before = levels[key]
        units = (
            buildable(target.definition, {c: available.get((merchant_id, c, location), 0) for c in target.definition})
            if target.definition
            else 0
        )
        if units == before.on_hand and before.reserved == 0 and before.version > 0:
            continue
        after = replace(before, on_hand=units, reserved=0, version=before.version + 1)
        changes.append(SkuChange(key, before, after, target.causation_id, target.origin_received_at, derived=True))
    return changes
