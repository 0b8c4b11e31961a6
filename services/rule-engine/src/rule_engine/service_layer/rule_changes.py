"""Rule changes: create, replace, delete, preview; each saved change re-evaluates and is recorded.

A saved change runs in one unit of work (`units.begin()`): lock the rule row, write it,
re-evaluate every SKU and channel the old or the new version can touch (as of now),
write the emitted quantities to the outbox, and append the change (who, when, before,
after) to the history; its commit wakes the relay when it emitted anything. A preview
runs the same evaluation (`changed_quantities`) on the same projection without writing
anything, so it lists exactly what saving would emit at that moment.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tenacity import AsyncRetrying, retry_if_result, stop_after_delay, wait_fixed

from stocksync_common.contracts import utcnow
from stocksync_common.ids import made_within
from stocksync_common.uow import UnitOfWorkFactory

from rule_engine.adapters.tables import connections, rule_changes, rules
from rule_engine.domain.rules import Funnel, Rule
from rule_engine.service_layer.evaluation import (
    QuantityChange,
    changed_quantities,
    load_rules,
    reevaluate,
    rule_from_row,
    scope_of_rule_change,
)

# The columns a merchant sets; the rest (ids, timestamps, in_force) the engine keeps.
RULE_FIELDS = (
    "name",
    "position",
    "enabled",
    "connection_ids",
    "skus",
    "condition",
    "action",
    "product_filter",
    "starts_at",
    "ends_at",
    "weekly_windows",
    "time_zone",
)


class RuleNotFound(LookupError):
    """No such rule for this merchant: another merchant's rule is not found either, so that
    an answer never tells whether an id exists."""


class UnknownChannels(ValueError):
    def __init__(self, connection_ids: Sequence[uuid.UUID]) -> None:
        super().__init__(f"unknown channel connection(s): {', '.join(str(c) for c in connection_ids)}")
        self.connection_ids = connection_ids


def rule_document(row: Any) -> dict[str, Any]:
    """A rule as the API shows it and the history records it (JSON-ready)."""
    m = row._mapping
    return {
        "name": m["name"],
        "channels": [str(c) for c in m["connection_ids"]] or "all",
        "skus": list(m["skus"]) or None,
        "product_filter": m["product_filter"] or None,
        "condition": m["condition"],
        "action": m["action"],
        "starts_at": m["starts_at"].isoformat() if m["starts_at"] else None,
        "ends_at": m["ends_at"].isoformat() if m["ends_at"] else None,
        "weekly_windows": m["weekly_windows"],
        "time_zone": m["time_zone"],
        "position": m["position"],
        "enabled": m["enabled"],
    }


async def _check_channels(conn: AsyncConnection, merchant_id: uuid.UUID, connection_ids: Sequence[uuid.UUID]) -> None:
    if not connection_ids:
        return
    known = set(
        (
            await conn.execute(
                sa.select(connections.c.connection_id).where(
                    connections.c.merchant_id == merchant_id, connections.c.connection_id.in_(connection_ids)
                )
            )
        ).scalars()
    )
    unknown = [c for c in connection_ids if c not in known]
    if unknown:
        raise UnknownChannels(unknown)


_T = TypeVar("_T")
_P = ParamSpec("_P")
# What a use case runs on: the engine of a read, the units of work of a change.
_Db = TypeVar("_Db", AsyncEngine, UnitOfWorkFactory)

# A connection made this recently (its id is a UUIDv7: stocksync_common.ids) may still be on
# its way here through connections.v1: a rule naming it waits up to CONNECTION_ARRIVAL_WAIT_S
# for it instead of being refused at once. Any other unknown id is refused at once.
RECENT_CONNECTION_S = 60.0
CONNECTION_ARRIVAL_WAIT_S = 5.0


def waits_for_new_channels(
    use_case: Callable[Concatenate[_Db, uuid.UUID, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[_Db, uuid.UUID, _P], Coroutine[Any, Any, _T]]:
    """Run the use case again once the connections it found unknown have arrived, when
    all of them were made within RECENT_CONNECTION_S; else its UnknownChannels stands."""

    @functools.wraps(use_case)
    async def run(db: _Db, merchant_id: uuid.UUID, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return await use_case(db, merchant_id, *args, **kwargs)
        except UnknownChannels as error:
            recent = [c for c in error.connection_ids if made_within(c, RECENT_CONNECTION_S)]
            engine = db.engine if isinstance(db, UnitOfWorkFactory) else db
            if len(recent) < len(error.connection_ids) or not await _arrived(engine, merchant_id, recent):
                raise
        return await use_case(db, merchant_id, *args, **kwargs)

    return run


async def _arrived(engine: AsyncEngine, merchant_id: uuid.UUID, connection_ids: Sequence[uuid.UUID]) -> bool:
    async def missing() -> int:
        async with engine.connect() as conn:
            known = await conn.scalar(
                sa.select(sa.func.count()).where(
                    connections.c.merchant_id == merchant_id, connections.c.connection_id.in_(connection_ids)
                )
            )
        return len(set(connection_ids)) - int(known or 0)

    left: int = await AsyncRetrying(
        retry=retry_if_result(bool),
        stop=stop_after_delay(CONNECTION_ARRIVAL_WAIT_S),
        wait=wait_fixed(0.1),
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else 1,
    )(missing)
    return left == 0


async def _lock_rule(conn: AsyncConnection, merchant_id: uuid.UUID, rule_id: uuid.UUID) -> Any:
    row = (await conn.execute(sa.select(rules).where(rules.c.rule_id == rule_id).with_for_update())).one_or_none()
    if row is None or row.merchant_id != merchant_id:
        raise RuleNotFound(rule_id)
    return row


def _change_kind(before: Any, values: dict[str, Any]) -> str:
    differs = {f for f in RULE_FIELDS if before._mapping[f] != values[f]}
    if differs == {"enabled"}:
        return "enabled" if values["enabled"] else "disabled"
    return "updated"


async def _record(
    conn: AsyncConnection,
    merchant_id: uuid.UUID,
    rule_id: uuid.UUID,
    kind: str,
    changed_by: str,
    before: Any | None,
    after: Any | None,
    changed: int,
) -> None:
    await conn.execute(
        sa.insert(rule_changes).values(
            rule_id=rule_id,
            merchant_id=merchant_id,
            kind=kind,
            changed_by=changed_by,
            before=rule_document(before) if before is not None else None,
            after=rule_document(after) if after is not None else None,
            channel_quantities_changed=changed,
        )
    )


@waits_for_new_channels
async def create_rule(
    units: UnitOfWorkFactory, merchant_id: uuid.UUID, values: dict[str, Any], changed_by: str
) -> tuple[Any, int]:
    at = utcnow()
    async with units.begin() as uow:
        conn = uow.sqlalchemy
        await _check_channels(conn, merchant_id, values["connection_ids"])
        rule_id = uuid.uuid4()
        row = (
            await conn.execute(
                sa.insert(rules).values(rule_id=rule_id, merchant_id=merchant_id, **values).returning(rules)
            )
        ).one()
        rule = rule_from_row(row)
        row = await _mark_in_force(conn, rule, at)
        changed = await reevaluate(
            uow, merchant_id, scope_of_rule_change(None, rule), causation_id=f"rule:{rule_id}:created", at=at
        )
        await _record(conn, merchant_id, rule_id, "created", changed_by, None, row, len(changed))
    return row, len(changed)


@waits_for_new_channels
async def replace_rule(
    units: UnitOfWorkFactory,
    merchant_id: uuid.UUID,
    rule_id: uuid.UUID,
    new_values: Callable[[dict[str, Any]], dict[str, Any]],
    changed_by: str,
) -> tuple[Any, int]:
    """PUT and PATCH: `new_values` turns the current rule document into the whole new rule's columns.

    It runs under the rule's row lock, so a PATCH merges onto the latest version.
    """
    at = utcnow()
    async with units.begin() as uow:
        conn = uow.sqlalchemy
        before = await _lock_rule(conn, merchant_id, rule_id)
        values = new_values(rule_document(before))
        await _check_channels(conn, merchant_id, values["connection_ids"])
        kind = _change_kind(before, values)
        row = (
            await conn.execute(
                sa.update(rules)
                .where(rules.c.rule_id == rule_id)
                .values(**values, updated_at=sa.func.now())
                .returning(rules)
            )
        ).one()
        rule = rule_from_row(row)
        row = await _mark_in_force(conn, rule, at)
        changed = await reevaluate(
            uow,
            merchant_id,
            scope_of_rule_change(rule_from_row(before), rule),
            causation_id=f"rule:{rule_id}:{kind}",
            at=at,
        )
        await _record(conn, merchant_id, rule_id, kind, changed_by, before, row, len(changed))
    return row, len(changed)


async def delete_rule(units: UnitOfWorkFactory, merchant_id: uuid.UUID, rule_id: uuid.UUID, changed_by: str) -> int:
    at = utcnow()
    async with units.begin() as uow:
        conn = uow.sqlalchemy
        before = await _lock_rule(conn, merchant_id, rule_id)
        await conn.execute(sa.delete(rules).where(rules.c.rule_id == rule_id))
        changed = await reevaluate(
            uow,
            merchant_id,
            scope_of_rule_change(rule_from_row(before), None),
            causation_id=f"rule:{rule_id}:deleted",
            at=at,
        )
        await _record(conn, merchant_id, rule_id, "deleted", changed_by, before, None, len(changed))
    return len(changed)


async def _mark_in_force(conn: AsyncConnection, rule: Rule, at: datetime) -> Any:
    """Record what the quantities about to be published reflect, and when the scheduler next looks."""
    return (
        await conn.execute(
            sa.update(rules)
            .where(rules.c.rule_id == rule.rule_id)
            .values(in_force=rule.schedule.in_force(at), next_check_at=rule.schedule.next_change(at))
            .returning(rules)
        )
    ).one()


async def get_rule(engine: AsyncEngine, merchant_id: uuid.UUID, rule_id: uuid.UUID) -> Any:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(rules).where(rules.c.rule_id == rule_id))).one_or_none()
    if row is None or row.merchant_id != merchant_id:
        raise RuleNotFound(rule_id)
    return row


async def list_rules(engine: AsyncEngine, merchant_id: uuid.UUID) -> list[Any]:
    async with engine.connect() as conn:
        return list(
            (
                await conn.execute(
                    sa.select(rules)
                    .where(rules.c.merchant_id == merchant_id)
                    .order_by(rules.c.position, rules.c.created_at)
                )
            ).all()
        )


async def rule_history(engine: AsyncEngine, merchant_id: uuid.UUID, rule_id: uuid.UUID) -> list[Any]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(rule_changes).where(rule_changes.c.rule_id == rule_id).order_by(rule_changes.c.change_id)
            )
        ).all()
    if not rows:
        await get_rule(engine, merchant_id, rule_id)  # not found, or a rule with no history yet
        return []
    if rows[0].merchant_id != merchant_id:
        raise RuleNotFound(rule_id)
    return list(rows)


# How many changes a preview lists unless asked otherwise; its totals count them all.
PREVIEW_LIMIT = 1000


@dataclass(frozen=True)
class Preview:
    """Totals over every change and one page of them (see `ChangeList`)."""

    at: datetime
    changes: list[QuantityChange]
    channel_quantities_changed: int
    skus_changed: int
    more: bool
    next: tuple[str, str] | None


@waits_for_new_channels
async def preview_rule_change(
    engine: AsyncEngine,
    merchant_id: uuid.UUID,
    *,
    rule_id: uuid.UUID | None,
    values: dict[str, Any] | None,
    at: datetime | None = None,
    limit: int = PREVIEW_LIMIT,
    after: tuple[str, str] | None = None,
) -> Preview:
    """What saving `values` as rule `rule_id` (new if None; deleting if `values` is None) would emit.

    Writes nothing. Its queries read one snapshot (repeatable read), as
    `changed_quantities` needs.
    """
    at = at or utcnow()
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")
        if values is not None:
            await _check_channels(conn, merchant_id, values["connection_ids"])
        before = None
        if rule_id is not None:
            row = (await conn.execute(sa.select(rules).where(rules.c.rule_id == rule_id))).one_or_none()
            if row is None or row.merchant_id != merchant_id:
                raise RuleNotFound(rule_id)
            before = rule_from_row(row)
        proposed_rule = None
        if values is not None:
            proposed_rule = rule_from_row(
                _Row(
                    {
                        "rule_id": rule_id or uuid.UUID(int=0),
                        "merchant_id": merchant_id,
                        **values,
                    }
                )
            )
        current_rules = [r for r in await load_rules(conn, merchant_id) if r.rule_id != rule_id]
        proposed = Funnel([*current_rules, *([proposed_rule] if proposed_rule is not None else [])], at)
        found = await changed_quantities(
            conn,
            merchant_id,
            proposed,
            scope_of_rule_change(before, proposed_rule),
            lock_stock=False,
            limit=limit,
            after=after,
            at=at,
        )
    return Preview(at, found.changes, found.channel_quantities_changed, found.skus_changed, found.more, found.next)


class _Row:
    """A rule not yet saved, shaped like a row so that `rule_from_row` reads it."""

    def __init__(self, mapping: dict[str, Any]) -> None:
        self._mapping = mapping
