"""The sandbox Shopify store's inventory, and the `inventorySetQuantities` use case.

Invariant: for every inventory level, `on_hand == available + committed` (the sandbox keeps
no other inventory states). As in Shopify, setting `available` moves `on_hand` by the same
delta and setting `on_hand` moves `available`; only orders move `committed`.

A set is atomic, as Shopify's is: every userError of the whole input is collected first and,
if there is any, nothing is applied. Callers run `set_quantities` without awaiting in
between, so on one event loop no other request can slip in between the checks and the
writes.

Nothing here knows GraphQL: the GraphQL layer turns the version-specific input into a
`SetQuantities` command (notably the compare-and-set rules, which changed across API
versions) and renders the result.
"""

import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

# Some Shopify ids carry a query string, e.g. gid://shopify/InventoryLevel/1?inventory_item_id=2
GID_PATTERN = re.compile(r"^gid://shopify/(?P<resource>[A-Za-z]+)/(?P<number>[0-9]+)(?P<query>\?[^\s]*)?$")

QUANTITY_NAMES = ("available", "on_hand")

# The reasons Shopify accepts for quantity changes, from its "inventory states" docs
# (shopify.dev/docs/apps/fulfillment/inventory-management-apps/quantities-states).
# (unverified that the list is complete and identical in every API version)
QUANTITY_CHANGE_REASONS = frozenset(
    {
        "correction",
        "cycle_count_available",
        "damaged",
        "movement_created",
        "movement_updated",
        "movement_received",
        "movement_canceled",
        "other",
        "promotion",
        "quality_control",
        "received",
        "reservation_created",
        "reservation_deleted",
        "reservation_updated",
        "restock",
        "safety_stock",
        "shrinkage",
    }
)

# "The total quantity can't be higher than 1,000,000,000" (InventorySetQuantitiesUserErrorCode).
QUANTITY_LIMIT = 1_000_000_000

_URI_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")


def parse_gid(value: str) -> tuple[str, int] | None:
    """`gid://shopify/InventoryItem/42` -> ("InventoryItem", 42); None if it is not a Shopify gid."""
    match = GID_PATTERN.match(value)
    if match is None:
        return None
    return match["resource"], int(match["number"])


def _is_plain_gid(value: str, resource: str) -> bool:
    match = GID_PATTERN.match(value)
    return match is not None and match["resource"] == resource and match["query"] is None


def to_gid(resource: str, value: str | int) -> str:
    """Accept either a bare numeric id or a gid of `resource`, as the control API does."""
    if isinstance(value, int) or value.isdigit():
        return f"gid://shopify/{resource}/{int(value)}"
    if not _is_plain_gid(value, resource):
        raise ValueError(f"{value!r} is neither a number nor a gid://shopify/{resource}/<n>")
    return value


@dataclass(frozen=True)
class UserError:
    field: tuple[str, ...] | None
    message: str
    code: str

    def as_json(self) -> dict[str, Any]:
        return {
            "field": None if self.field is None else list(self.field),
            "message": self.message,
            "code": self.code,
        }


# The compare-and-set condition of one quantity. Which input field carries it, and whether
# it may be left out, depends on the API version; the GraphQL layer decides, this module
# only enforces.
@dataclass(frozen=True)
class Unchecked:
    """The caller opted out of the compare-and-set check."""


@dataclass(frozen=True)
class CompareWith:
    field: str  # the input field holding the expected quantity, reported in the userError
    expected: int
    stale_code: str
    stale_message: str


@dataclass(frozen=True)
class CompareMissing:
    field: str
    message: str


CompareCondition = Unchecked | CompareWith | CompareMissing


@dataclass(frozen=True)
class QuantityToSet:
    inventory_item_id: str
    location_id: str
    quantity: int
    compare: CompareCondition


@dataclass(frozen=True)
class SetQuantities:
    name: str
    reason: str
    reference_document_uri: str | None
    quantities: tuple[QuantityToSet, ...]
    idempotency_key: str | None
    request_id: str
    api_version: str

    def parameters_fingerprint(self) -> bytes:
        """What an idempotency key is bound to: the operation's parameters, not the request."""
        return orjson.dumps(
            {
                "name": self.name,
                "reason": self.reason,
                "reference_document_uri": self.reference_document_uri,
                "quantities": [
                    [q.inventory_item_id, q.location_id, q.quantity, repr(q.compare)] for q in self.quantities
                ],
            }
        )


@dataclass(frozen=True)
class InventoryChange:
    name: str
    delta: int
    quantity_after_change: int
    inventory_item_id: str
    location_id: str


@dataclass(frozen=True)
class AdjustmentGroup:
    id: str
    created_at: str
    reason: str
    reference_document_uri: str | None
    changes: tuple[InventoryChange, ...]


@dataclass(frozen=True)
class SetQuantitiesResult:
    group: AdjustmentGroup | None
    user_errors: tuple[UserError, ...]
    replayed: bool = False


@dataclass(frozen=True)
class AppliedChange:
    """One quantity of one accepted `inventorySetQuantities` call, as the control API lists it."""

    seq: int
    received_at: float
    request_id: str
    api_version: str
    adjustment_group_id: str
    inventory_item_id: str
    location_id: str
    sku: str | None
    name: str
    quantity: int
    delta: int
    reason: str
    reference_document_uri: str | None
    idempotency_key: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "received_at": self.received_at,
            "request_id": self.request_id,
            "api_version": self.api_version,
            "adjustment_group_id": self.adjustment_group_id,
            "inventory_item_id": self.inventory_item_id,
            "location_id": self.location_id,
            "sku": self.sku,
            "name": self.name,
            "quantity": self.quantity,
            "delta": self.delta,
            "reason": self.reason,
            "reference_document_uri": self.reference_document_uri,
            "idempotency_key": self.idempotency_key,
        }


@dataclass(frozen=True)
class CatalogItem:
    """A seeded inventory item with the variant and product it belongs to (for order webhooks)."""

    inventory_item_id: str
    sku: str
    variant_id: int
    product_id: int
    title: str
    price: str


@dataclass(frozen=True)
class SeedLevel:
    item: CatalogItem
    location_id: str
    available: int
    committed: int = 0


@dataclass
class InventoryLevel:
    inventory_item_id: str
    location_id: str
    available: int
    committed: int = 0
    updated_at: str | None = None

    @property
    def on_hand(self) -> int:
        return self.available + self.committed

    def quantity(self, name: str) -> int:
        if name == "available":
            return self.available
        if name == "on_hand":
            return self.on_hand
        if name == "committed":
            return self.committed
        raise ValueError(f"unknown quantity name {name!r}")


@dataclass
class _IdempotencyRecord:
    fingerprint: bytes
    result: SetQuantitiesResult


def _level_key(inventory_item_id: str, location_id: str) -> tuple[str, str]:
    return inventory_item_id, location_id


class Inventory:
    """Levels per (inventory item, location), the seeded catalog, and the applied-change log.

    With an empty catalog the store accepts any well-formed inventory item and location ids
    (levels start at 0), so an adapter can be exercised without seeding; once anything is
    seeded, unknown ids are refused as Shopify refuses them.
    """

    def __init__(self, wall_clock: Callable[[], float]) -> None:
        self._wall_clock = wall_clock
        self._catalog: dict[str, CatalogItem] = {}
        self._locations: set[str] = set()
        self._levels: dict[tuple[str, str], InventoryLevel] = {}
        self._changes: list[AppliedChange] = []
        self._idempotency: dict[str, _IdempotencyRecord] = {}
        self._group_numbers: Iterator[int] = itertools.count(1)
        self._last_received_at = 0.0
        # A storefront that shows an accepted quantity only this long after (a marketplace's
        # display lag, for tests of the adaptive buffer): reads of a level see it as it was
        # then. The change log and the control API show what was applied, at once.
        self.display_delay_s = 0.0

    def shown_quantity(self, level: InventoryLevel, name: str) -> int:
        """The level's quantity as reads show it: without the changes newer than the display delay."""
        quantity = level.quantity(name)
        if self.display_delay_s <= 0 or name not in ("available", "on_hand"):
            return quantity
        cutoff = self._wall_clock() - self.display_delay_s
        for change in reversed(self._changes):
            if change.received_at <= cutoff:
                break
            if (change.inventory_item_id, change.location_id) == (level.inventory_item_id, level.location_id):
                quantity -= change.delta  # a set moves available and on_hand alike
        return quantity

    def reset(self) -> None:
        self._catalog.clear()
        self._locations.clear()
        self._levels.clear()
        self._changes.clear()
        self._idempotency.clear()
        self._group_numbers = itertools.count(1)
        self._last_received_at = 0.0

    # --- seeding and reading -------------------------------------------------------------

    def seed(self, levels: Sequence[SeedLevel]) -> None:
        for seed in levels:
            self._catalog[seed.item.inventory_item_id] = seed.item
            self._locations.add(seed.location_id)
            self._levels[_level_key(seed.item.inventory_item_id, seed.location_id)] = InventoryLevel(
                inventory_item_id=seed.item.inventory_item_id,
                location_id=seed.location_id,
                available=seed.available,
                committed=seed.committed,
            )

    def catalog_item(self, inventory_item_id: str) -> CatalogItem | None:
        return self._catalog.get(inventory_item_id)

    def catalog_item_for_sku(self, sku: str) -> CatalogItem | None:
        return next((item for item in self._catalog.values() if item.sku == sku), None)

    def knows_location(self, location_id: str) -> bool:
        return location_id in self._locations or any(
            level.location_id == location_id for level in self._levels.values()
        )

    def level(self, inventory_item_id: str, location_id: str) -> InventoryLevel | None:
        return self._levels.get(_level_key(inventory_item_id, location_id))

    def levels(self) -> list[InventoryLevel]:
        return list(self._levels.values())

    def changes_since(self, seq: int) -> list[AppliedChange]:
        # seq starts at 1 and increments by one, so the log index is seq - 1.
        return self._changes[max(seq, 0) :]

    @property
    def last_seq(self) -> int:
        return len(self._changes)

    # --- inventorySetQuantities ----------------------------------------------------------

    def set_quantities(self, command: SetQuantities) -> SetQuantitiesResult:
        if command.idempotency_key is not None:
            record = self._idempotency.get(command.idempotency_key)
            if record is not None:
                return _replay(record, command)
        errors = self._user_errors(command)
        if errors:
            result = SetQuantitiesResult(group=None, user_errors=tuple(errors))
        else:
            result = SetQuantitiesResult(group=self._apply(command), user_errors=())
        if command.idempotency_key is not None:
            self._idempotency[command.idempotency_key] = _IdempotencyRecord(command.parameters_fingerprint(), result)
        return result

    def _user_errors(self, command: SetQuantities) -> list[UserError]:
        errors: list[UserError] = []
        if command.name not in QUANTITY_NAMES:
            errors.append(
                UserError(
                    ("input", "name"),
                    "The quantity name must be either 'available' or 'on_hand'.",
                    "INVALID_NAME",
                )
            )
        if command.reason not in QUANTITY_CHANGE_REASONS:
            errors.append(UserError(("input", "reason"), "The specified reason is invalid.", "INVALID_REASON"))
        if command.reference_document_uri is not None and not _URI_PATTERN.match(command.reference_document_uri):
            errors.append(
                UserError(
                    ("input", "referenceDocumentUri"),
                    "The specified reference document is invalid.",
                    "INVALID_REFERENCE_DOCUMENT",
                )
            )
        seen: set[tuple[str, str]] = set()
        for index, target in enumerate(command.quantities):
            path = ("input", "quantities", str(index))
            key = _level_key(target.inventory_item_id, target.location_id)
            if key in seen:
                errors.append(
                    UserError(
                        path,
                        "The combination of inventoryItemId and locationId must be unique.",
                        "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
                    )
                )
                continue
            seen.add(key)
            errors.extend(self._quantity_errors(command.name, target, path))
        return errors

    def _quantity_errors(self, name: str, target: QuantityToSet, path: tuple[str, ...]) -> list[UserError]:
        errors: list[UserError] = []
        item_ok = self._item_exists(target.inventory_item_id)
        location_ok = self._location_exists(target.location_id)
        if not item_ok:
            errors.append(
                UserError(
                    (*path, "inventoryItemId"),
                    "The specified inventory item could not be found.",
                    "INVALID_INVENTORY_ITEM",
                )
            )
        if not location_ok:
            errors.append(
                UserError(
                    (*path, "locationId"),
                    "The specified location could not be found.",
                    "INVALID_LOCATION",
                )
            )
        if target.quantity > QUANTITY_LIMIT:
            errors.append(
                UserError(
                    (*path, "quantity"),
                    "The total quantity can't be higher than 1,000,000,000.",
                    "INVALID_QUANTITY_TOO_HIGH",
                )
            )
        elif target.quantity < -QUANTITY_LIMIT:
            errors.append(
                UserError(
                    (*path, "quantity"),
                    "The total quantity can't be lower than -1,000,000,000.",
                    "INVALID_QUANTITY_TOO_LOW",
                )
            )
        elif name == "on_hand" and target.quantity < 0:
            # Shopify lets `available` go negative (oversold) but not on_hand. (unverified)
            errors.append(
                UserError((*path, "quantity"), "The quantity can't be negative.", "INVALID_QUANTITY_NEGATIVE")
            )
        if not (item_ok and location_ok):
            return errors
        level = self.level(target.inventory_item_id, target.location_id)
        if level is None and self._catalog:
            errors.append(
                UserError(
                    (*path, "locationId"),
                    "The specified inventory item is not stocked at the location.",
                    "ITEM_NOT_STOCKED_AT_LOCATION",
                )
            )
            return errors
        if name in QUANTITY_NAMES:
            current = 0 if level is None else level.quantity(name)
            errors.extend(_compare_errors(target.compare, current, path))
        return errors

    def _item_exists(self, inventory_item_id: str) -> bool:
        if not _is_plain_gid(inventory_item_id, "InventoryItem"):
            return False
        return not self._catalog or inventory_item_id in self._catalog

    def _location_exists(self, location_id: str) -> bool:
        if not _is_plain_gid(location_id, "Location"):
            return False
        return not self._catalog or location_id in self._locations

    def _apply(self, command: SetQuantities) -> AdjustmentGroup:
        received_at = self._stamp()
        created_at = _iso_utc(received_at)
        group_id = f"gid://shopify/InventoryAdjustmentGroup/{next(self._group_numbers)}"
        other_name = "on_hand" if command.name == "available" else "available"
        changes: list[InventoryChange] = []
        for target in command.quantities:
            key = _level_key(target.inventory_item_id, target.location_id)
            level = self._levels.setdefault(
                key, InventoryLevel(target.inventory_item_id, target.location_id, available=0)
            )
            delta = target.quantity - level.quantity(command.name)
            # available and on_hand differ by `committed`, which a set never touches.
            level.available += delta
            level.updated_at = created_at
            # Shopify reports the named quantity and the one that moved with it. (unverified
            # that it lists both, and lists zero deltas; filter with `changes(quantityNames:)`)
            for name in (command.name, other_name):
                changes.append(
                    InventoryChange(
                        name=name,
                        delta=delta,
                        quantity_after_change=level.quantity(name),
                        inventory_item_id=target.inventory_item_id,
                        location_id=target.location_id,
                    )
                )
            catalog_item = self._catalog.get(target.inventory_item_id)
            self._changes.append(
                AppliedChange(
                    seq=len(self._changes) + 1,
                    received_at=received_at,
                    request_id=command.request_id,
                    api_version=command.api_version,
                    adjustment_group_id=group_id,
                    inventory_item_id=target.inventory_item_id,
                    location_id=target.location_id,
                    sku=None if catalog_item is None else catalog_item.sku,
                    name=command.name,
                    quantity=target.quantity,
                    delta=delta,
                    reason=command.reason,
                    reference_document_uri=command.reference_document_uri,
                    idempotency_key=command.idempotency_key,
                )
            )
        return AdjustmentGroup(
            id=group_id,
            created_at=created_at,
            reason=command.reason,
            reference_document_uri=command.reference_document_uri,
            changes=tuple(changes),
        )

    def _stamp(self) -> float:
        """Wall-clock receive time, never earlier than the previous change's."""
        self._last_received_at = max(self._last_received_at, self._wall_clock())
        return self._last_received_at

    # --- what orders do to inventory -----------------------------------------------------

    def commit_for_order(self, sku: str, quantity: int) -> None:
        """An order line moves units from available to committed at the item's first location.

        Shopify picks the fulfilling location by its own rules; the first seeded location is
        a simplification. SKUs that are not seeded are not tracked, so nothing moves.
        """
        level = self._order_level(sku)
        if level is not None:
            level.available -= quantity
            level.committed += quantity

    def release_for_order(self, sku: str, quantity: int) -> None:
        """A cancelled, unfulfilled line is restocked: committed goes back to available."""
        level = self._order_level(sku)
        if level is not None:
            level.available += quantity
            level.committed -= quantity

    def ship_for_order(self, sku: str, quantity: int) -> None:
        """A fulfilled line leaves the building: committed (and so on_hand) goes down."""
        level = self._order_level(sku)
        if level is not None:
            level.committed -= quantity

    def _order_level(self, sku: str) -> InventoryLevel | None:
        item = self.catalog_item_for_sku(sku)
        if item is None:
            return None
        return next(
            (lvl for lvl in self._levels.values() if lvl.inventory_item_id == item.inventory_item_id),
            None,
        )


def _compare_errors(compare: CompareCondition, current: int, path: tuple[str, ...]) -> list[UserError]:
    if isinstance(compare, CompareMissing):
        return [UserError((*path, compare.field), compare.message, "COMPARE_QUANTITY_REQUIRED")]
    if isinstance(compare, CompareWith) and compare.expected != current:
        return [UserError((*path, compare.field), compare.stale_message, compare.stale_code)]
    return []


def _replay(record: _IdempotencyRecord, command: SetQuantities) -> SetQuantitiesResult:
    if record.fingerprint != command.parameters_fingerprint():
        error = UserError(
            None,
            "The same idempotency key cannot be used with different operation parameters.",
            "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
        )
        return SetQuantitiesResult(group=None, user_errors=(error,))
    if record.result.user_errors:
        error = UserError(
            None,
            "A previous request with this idempotency key failed. Retry with a new idempotency key.",
            "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED",
        )
        return SetQuantitiesResult(group=None, user_errors=(error,))
    return SetQuantitiesResult(group=record.result.group, user_errors=(), replayed=True)


def _iso_utc(timestamp: float) -> str:
    """Shopify's DateTime: ISO 8601 in UTC with a Z, to the second."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
