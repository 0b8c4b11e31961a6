"""Schedule boundaries: a rule's period or weekly window starting or ending re-evaluates at once.

Each rule row keeps `in_force`: whether the published quantities reflect it as in force.
The scheduler compares that with the clock; where they differ it flips the flag and
re-evaluates what the rule touches, in one transaction. Because the flag is durable, a
boundary that passed while no rule engine ran is applied at the first tick after start,
and a window that opened and closed during the outage correctly changes nothing.
Several instances can run: a rule row being flipped is locked, the others skip it.

A tick reads only the rules whose `next_check_at` has come: the schedule's first
boundary after the last comparison (`Schedule.next_change`; `in_force` cannot change
before it). Saving a rule and every comparison set it again; a rule without a period or
windows has none and is never read.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from datetime import datetime

import sqlalchemy as sa

from stocksync_common.contracts import utcnow
from stocksync_common.periodic import Periodic
from stocksync_common.uow import UnitOfWorkFactory

from rule_engine.adapters.tables import rules
from rule_engine.service_layer.evaluation import reevaluate, rule_from_row, scope_of_rule_change

log = logging.getLogger(__name__)


async def apply_schedule_boundaries(units: UnitOfWorkFactory, at: datetime | None = None) -> int:
    """Re-evaluate every merchant with a rule whose in-force state changed; return events emitted."""
    at = at or utcnow()
    is_due = sa.and_(rules.c.enabled.is_(True), rules.c.next_check_at <= at)
    async with units.engine.connect() as conn:
        rows = (await conn.execute(sa.select(rules.c.merchant_id, rules.c.rule_id).where(is_due))).all()
    due: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for row in rows:
        due[row.merchant_id].append(row.rule_id)
    emitted = 0
    for merchant_id, rule_ids in due.items():
        async with units.begin() as uow:
            conn = uow.sqlalchemy
            locked = (
                await conn.execute(
                    sa.select(rules)
                    .where(rules.c.rule_id.in_(rule_ids), is_due)
                    .order_by(rules.c.rule_id)
                    .with_for_update(skip_locked=True)
                )
            ).all()  # a rule another instance has just checked is no longer due
            for row in locked:
                rule = rule_from_row(row)
                in_force = rule.schedule.in_force(at)
                await conn.execute(
                    sa.update(rules)
                    .where(rules.c.rule_id == row.rule_id)
                    .values(in_force=in_force, next_check_at=rule.schedule.next_change(at))
                )
                if in_force == row.in_force:
                    continue  # a boundary that changes nothing, e.g. one window ending as the next starts
                boundary = "started" if in_force else "ended"
                emitted += len(
                    await reevaluate(
                        uow,
                        merchant_id,
                        scope_of_rule_change(rule, None),
                        causation_id=f"rule:{row.rule_id}:{boundary}",
                        at=at,
                    )
                )
                log.info("rule schedule boundary", extra={"rule_id": str(row.rule_id), "boundary": boundary})
    return emitted


def rule_scheduler(units: UnitOfWorkFactory, interval_s: float) -> Periodic:
    """The background worker: checks boundaries every `interval_s` seconds."""

    async def check() -> None:
        await apply_schedule_boundaries(units)

    return Periodic("rule-scheduler", interval_s, check)
