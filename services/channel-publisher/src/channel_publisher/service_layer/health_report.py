"""What a merchant sees of one connection's last hour: outcomes, sync window, errors,
backlog, pause and drift."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import utcnow

from channel_publisher.adapters import connection_store, drift_store, push_store
from channel_publisher.adapters.channels.access_tokens import token_status
from channel_publisher.config import PublisherSettings
from channel_publisher.service_layer.display_delays import read_display_delay

WINDOW = timedelta(hours=1)


async def connection_health(
    engine: AsyncEngine, merchant_id: uuid.UUID, connection_id: uuid.UUID, settings: PublisherSettings
) -> dict[str, Any] | None:
    since = utcnow() - WINDOW
    async with engine.connect() as conn:
        row = await connection_store.owned_connection_row(conn, merchant_id, connection_id)
        if row is None:
            return None
        recent = await push_store.recent_pushes(conn, connection_id, since)
        display_delay = await read_display_delay(conn, settings, connection_id)
        drifted = await drift_store.findings_since(conn, connection_id, since)
        token = await token_status(conn, connection_id)
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
        "pushes": {status: recent.counts.get(status, 0) for status in ("accepted", "rejected", "retrying")},
        "unmapped_skus": recent.unmapped_skus,
        "credentials": None
        if token is None
        else {
            "token_expires_at": token.expires_at,
            "token_refreshed_at": token.refreshed_at,
            "error": token.last_error,
            "failed_at": token.failed_at,
        },
        "sync_window_ms": dict(zip(("p50", "p95", "max"), recent.sync_window_ms, strict=True)),
        "last_error": {k: v for k, v in recent.last_error._mapping.items() if k != "push_id"}
        if recent.last_error is not None
        else None,
        "pending": recent.pending,
        "oldest_pending_since": recent.oldest_pending_since,
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
