"""Every statement on the drift findings: what a drift check found the channel showing.

Append-only rows (`drift_findings`), SQLAlchemy Core on the caller's connection. What a
check compares is the push store's (`push_store.sent_and_listed`, `still_last_sent`);
when a connection was last checked is the connection store's.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from channel_publisher.adapters.tables import drift_findings


async def record_findings(conn: AsyncConnection, findings: Sequence[dict[str, Any]]) -> None:
    if findings:
        await conn.execute(sa.insert(drift_findings), list(findings))


async def newest_findings(conn: AsyncConnection, connection_id: uuid.UUID, limit: int) -> Sequence[sa.RowMapping]:
    query = (
        sa.select(drift_findings)
        .where(drift_findings.c.connection_id == connection_id)
        .order_by(drift_findings.c.finding_id.desc())
        .limit(limit)
    )
    return (await conn.execute(query)).mappings().all()


async def findings_since(conn: AsyncConnection, connection_id: uuid.UUID, since: datetime) -> int:
    count: int = (
        await conn.execute(
            sa.select(sa.func.count())
            .select_from(drift_findings)
            .where(drift_findings.c.connection_id == connection_id, drift_findings.c.checked_at >= since)
        )
    ).scalar_one()
    return count
