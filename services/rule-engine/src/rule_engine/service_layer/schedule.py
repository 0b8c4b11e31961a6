"""Schedule boundaries: a rule's period or weekly window starting or ending re-evaluates at once.

Each rule row keeps `in_force`: whether the published quantities reflect it as in force.
The scheduler compares that with the clock; where they differ it flips the flag and
re-evaluates what the rule touches, in one transaction. Because the flag is durable, a
boundary that passed while no rule engine ran is applied at the first tick after start,
and a window that opened and closed during the outage correctly changes nothing.
Several instances can run: a rule row being flipped is locked, the others skip it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import utcnow

from rule_engine.adapters.tables import rules
from rule_engine.service_layer.evaluation import reevaluate, rule_from_row, scope_of_rule_change

log = logging.getLogger(__name__)

_HAS_SCHEDULE = sa.or_(
    rules.c.starts_at.is_not(None), rules.c.ends_at.is_not(None), rules.c.weekly_windows != sa.text("'[]'::jsonb")
)


async def apply_schedule_boundaries(engine: AsyncEngine, at: datetime | None = None) -> int:
    """Re-evaluate every merchant with a rule whose in-force state changed; return events emitted."""
    at = at or utcnow()
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(rules).where(rules.c.enabled.is_(True), _HAS_SCHEDULE))).all()
    due: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for row in rows:
        if rule_from_row(row).schedule.in_force(at) != row.in_force:
            due[row.merchant_id].append(row.rule_id)
    emitted = 0
    for merchant_id, rule_ids in due.items():
        async with engine.begin() as conn:
            locked = (
                await conn.execute(
                    sa.select(rules)
                    .where(rules.c.rule_id.in_(rule_ids), rules.c.enabled.is_(True))
                    .order_by(rules.c.rule_id)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for row in locked:
                rule = rule_from_row(row)
                in_force = rule.schedule.in_force(at)
                if in_force == row.in_force:
                    continue  # another instance got there first
                await conn.execute(sa.update(rules).where(rules.c.rule_id == row.rule_id).values(in_force=in_force))
                boundary = "started" if in_force else "ended"
                emitted += len(
                    await reevaluate(
                        conn,
                        merchant_id,
                        scope_of_rule_change(rule, None),
                        causation_id=f"rule:{row.rule_id}:{boundary}",
                        at=at,
                    )
                )
                log.info("rule schedule boundary", extra={"rule_id": str(row.rule_id), "boundary": boundary})
    return emitted


class RuleScheduler:
    """The background worker: checks boundaries every `interval_s` seconds."""

    def __init__(self, engine: AsyncEngine, interval_s: float, on_emitted: Callable[[], None]) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.on_emitted = on_emitted
        self._stopping = asyncio.Event()

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                if await apply_schedule_boundaries(self.engine):
                    self.on_emitted()
            except Exception:  # the database may be down: try again next tick
                log.exception("schedule check failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval_s)
