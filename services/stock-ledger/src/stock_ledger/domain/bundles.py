"""Bundles (kits): a SKU sold as a set of component SKUs, each a number of times.

A bundle has no stock of its own: at each location its available is the number of
whole bundles its components make there, the minimum over components of
floor(component available / quantity per bundle). It can be negative when a component
is oversold there (the component's oversell says so; the bundle opens none). An order
line for a bundle reserves its components at one location, never split, with the
quantities of the definition it was placed under.

Bundles cannot contain bundles: a component is never a bundle and a bundle is never a
component, so no definition can form a cycle and one level of derivation is enough.
"""

from __future__ import annotations

from collections.abc import Mapping

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
