"""What a merchant sees of one connection's last hour: outcomes, sync window, errors,
backlog, pause and drift."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import utcnow

from channel_publisher.adapters.tables import (
    access_tokens,
    connections,
    drift_findings,
    pending_pushes,
    pushes,
    unmapped_skus,
)
from channel_publisher.config import PublisherSettings
from channel_publisher.service_layer.display_delays import read_display_delay

WINDOW = timedelta(hours=1)


async def connection_health(
    engine: AsyncEngine, merchant_id: uuid.UUID, connection_id: uuid.UUID, settings: PublisherSettings
) -> dict[str, Any] | None:
    since = utcnow() - WINDOW
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(connections).where(
                    connections.c.connection_id == connection_id, connections.c.merchant_id == merchant_id
                )
            )
        ).one_or_none()
        if row is None:
            return None
        recent = sa.and_(pushes.c.connection_id == connection_id, pushes.c.finished_at >= since)
        counts: dict[str, int] = dict(
            (
                await conn.execute(sa.select(pushes.c.status, sa.func.count()).where(recent).group_by(pushes.c.status))
            ).all()
        )
        window = (
            await conn.execute(
                sa.select(
                    sa.func.percentile_cont(0.5).within_group(pushes.c.sync_window_ms),
                    sa.func.percentile_cont(0.95).within_group(pushes.c.sync_window_ms),
                    sa.func.max(pushes.c.sync_window_ms),
                ).where(recent, pushes.c.status == "accepted", pushes.c.sync_window_ms.is_not(None))
            )
        ).one()
        # The newest of each error status from ix_pushes_connection_problems, then the newer
        # of the two: one `status IN (...)` made the planner walk the whole history backwards.
        newest = [
            sa.select(pushes.c.push_id, pushes.c.sku, pushes.c.status, pushes.c.channel_response, pushes.c.finished_at)
            .where(pushes.c.connection_id == connection_id, pushes.c.status == status)
            .order_by(pushes.c.push_id.desc())
            .limit(1)
            .subquery()
            .select()
            for status in ("rejected", "retrying")
        ]
        last_error = (
            await conn.execute(sa.union_all(*newest).order_by(sa.text("push_id DESC")).limit(1))
        ).one_or_none()
        pending = (
            await conn.execute(
                sa.select(sa.func.count(), sa.func.min(pending_pushes.c.enqueued_at)).where(
                    pending_pushes.c.connection_id == connection_id
                )
            )
        ).one()
        display_delay = await read_display_delay(conn, settings, connection_id)
        drifted = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(drift_findings)
                .where(drift_findings.c.connection_id == connection_id, drift_findings.c.checked_at >= since)
            )
        ).scalar_one()
        unmapped = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(unmapped_skus)
                .where(unmapped_skus.c.connection_id == connection_id)
            )
        ).scalar_one()
        token = (
            await conn.execute(
                sa.select(
                    access_tokens.c.expires_at,
                    access_tokens.c.refreshed_at,
                    access_tokens.c.last_error,
                    access_tokens.c.failed_at,
                ).where(access_tokens.c.connection_id == connection_id)
            )
        ).one_or_none()
    credentials_failing = token is not None and token.last_error is not None
    state = (
        "paused"
        if row.paused_at is not None
        else "failing"
        if row.consecutive_failures or credentials_failing
        else "ok"
    )
    return {
        "connection_id": connection_id,
        "status": state,
        "since": since,
        "pushes": {status: counts.get(status, 0) for status in ("accepted", "rejected", "retrying")},
        "unmapped_skus": unmapped,
        "credentials": None
        if token is None
        else {
            "token_expires_at": token.expires_at,
            "token_refreshed_at": token.refreshed_at,
            "error": token.last_error,
            "failed_at": token.failed_at,
        },
        "sync_window_ms": {"p50": window[0], "p95": window[1], "max": window[2]},
        "last_error": {k: v for k, v in last_error._mapping.items() if k != "push_id"}
        if last_error is not None
        else None,
        "pending": pending[0],
        "oldest_pending_since": pending[1],
        "consecutive_failures": row.consecutive_failures,
        "paused_at": row.paused_at,
        "pause_reason": row.pause_reason,
        "resume_at": row.resume_at,
        "last_drift_check_at": row.last_drift_check_at,
        "drift_findings": drifted,
        "display_delay": {
            "p50_s": display_delay.p50_s,
            "p95_s": display_delay.p95_s,
            "samples": display_delay.samples,
            "measured": display_delay.measured,
        },
    }
