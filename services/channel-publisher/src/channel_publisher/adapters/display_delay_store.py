"""Every statement on the display-delay measurement: probes, samples, each connection's mark.

Tables `display_probes` (a push being read back until the channel shows it),
`display_delays` (the samples, a sliding window per connection) and `display_delay_state`
(per connection: the last push sampled, the delay last announced). SQLAlchemy Core on the
caller's connection. Safe with several publisher instances: a push is claimed by moving
the connection's mark (`claim_push`), a probe is closed once (`close_probe` deletes it
only as it was read), and an announcement locks the connection's state row first.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from channel_publisher.adapters.push_store import same_key
from channel_publisher.adapters.tables import (
    connections,
    display_delay_state,
    display_delays,
    display_probes,
    last_sent,
    listings,
    pushes,
)


async def newest_unsampled_pushes(conn: AsyncConnection, now: datetime) -> Sequence[sa.Row[Any]]:
    """Per active connection without an open probe: its newest accepted push not yet sampled
    (connection_id, channel_type, push_id, sku, location, quantity, version,
    origin_received_at, finished_at).

    Looked up through the history's (connection_id, finished_at) index, from the last push
    sampled (or the last hour): a connection that has not pushed for days costs one probe
    of the index, not a scan of everyone's pushes since."""
    state = display_delay_state.alias("st")
    since = sa.func.coalesce(state.c.last_finished_at, sa.literal(now - timedelta(hours=1), sa.DateTime(timezone=True)))
    newest = (
        sa.select(
            pushes.c.push_id,
            pushes.c.sku,
            pushes.c.location,
            pushes.c.quantity,
            pushes.c.version,
            pushes.c.origin_received_at,
            pushes.c.finished_at,
        )
        .where(
            pushes.c.connection_id == connections.c.connection_id,
            pushes.c.status == "accepted",
            pushes.c.origin_received_at.is_not(None),
            pushes.c.finished_at >= since,
            pushes.c.push_id > sa.func.coalesce(state.c.last_push_id, 0),
        )
        .order_by(pushes.c.finished_at.desc(), pushes.c.push_id.desc())
        .limit(1)
        .lateral("newest")
    )
    return (
        await conn.execute(
            sa.select(connections.c.connection_id, connections.c.channel_type, newest)
            .select_from(
                connections.outerjoin(state, state.c.connection_id == connections.c.connection_id).join(
                    newest, sa.true()
                )
            )
            .where(
                connections.c.active,
                ~sa.exists().where(display_probes.c.connection_id == connections.c.connection_id),
            )
        )
    ).all()


async def claim_push(conn: AsyncConnection, connection_id: uuid.UUID, push_id: int, finished_at: datetime) -> bool:
    """Move the connection's mark to this push; False when it already is there or past it
    (another instance claimed it: it waited for the row lock, then found nothing to do)."""
    sampled_up_to = {"last_push_id": push_id, "last_finished_at": finished_at}
    stmt = pg.insert(display_delay_state).values(connection_id=connection_id, **sampled_up_to)
    claimed = await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[display_delay_state.c.connection_id],
            set_=sampled_up_to,
            where=display_delay_state.c.last_push_id < stmt.excluded.last_push_id,
        ).returning(display_delay_state.c.connection_id)
    )
    return claimed.first() is not None


async def open_probe(conn: AsyncConnection, push: Any, now: datetime) -> None:
    """A probe of an accepted push (a `newest_unsampled_pushes` row), first read at `now`."""
    await conn.execute(
        pg.insert(display_probes)
        .on_conflict_do_nothing()
        .values(
            connection_id=push.connection_id,
            sku=push.sku,
            location=push.location,
            quantity=push.quantity,
            version=push.version,
            origin_received_at=push.origin_received_at,
            accepted_at=push.finished_at,
            reads=0,
            next_read_at=now,
        )
    )


async def due_probes(conn: AsyncConnection, now: datetime) -> Sequence[sa.Row[Any]]:
    """The probes due for a read, each with its listing's `external` and the version last
    sent for its key (`sent_version`)."""
    return (
        await conn.execute(
            sa.select(display_probes, listings.c.external, last_sent.c.version.label("sent_version"))
            .join(listings, same_key(listings, display_probes), isouter=True)
            .join(last_sent, same_key(last_sent, display_probes), isouter=True)
            .where(display_probes.c.next_read_at <= now)
        )
    ).all()


def _as_read(probe: Any) -> sa.ColumnElement[bool]:
    # This probe as it was read: another instance that read it too, or a newer probe, is left alone.
    return sa.and_(
        display_probes.c.connection_id == probe.connection_id,
        display_probes.c.version == probe.version,
        display_probes.c.reads == probe.reads,
    )


async def close_probe(conn: AsyncConnection, probe: Any) -> bool:
    """Delete the probe as it was read (a `due_probes` row); False if another instance did."""
    deleted = await conn.execute(sa.delete(display_probes).where(_as_read(probe)).returning(display_probes.c.version))
    return deleted.first() is not None


async def read_again_at(conn: AsyncConnection, probe: Any, at: datetime) -> None:
    """The probe, as it was read, is read once more at `at`."""
    await conn.execute(sa.update(display_probes).where(_as_read(probe)).values(reads=probe.reads + 1, next_read_at=at))


async def record_sample(
    conn: AsyncConnection, connection_id: uuid.UUID, delay_s: float, how: str, at: datetime
) -> None:
    await conn.execute(
        sa.insert(display_delays).values(connection_id=connection_id, delay_s=delay_s, how=how, measured_at=at)
    )


async def newest_samples(conn: AsyncConnection, connection_id: uuid.UUID, window: int) -> list[float]:
    """The connection's last `window` samples, newest first."""
    samples = (
        await conn.execute(
            sa.select(display_delays.c.delay_s)
            .where(display_delays.c.connection_id == connection_id)
            .order_by(display_delays.c.sample_id.desc())
            .limit(window)
        )
    ).scalars()
    return list(samples)


async def trim_samples(conn: AsyncConnection, connection_id: uuid.UUID, window: int) -> None:
    """Keep only the connection's last `window` samples."""
    await conn.execute(
        sa.delete(display_delays).where(
            display_delays.c.connection_id == connection_id,
            display_delays.c.sample_id
            < sa.select(sa.func.min(sa.literal_column("sample_id")))
            .select_from(
                sa.select(display_delays.c.sample_id)
                .where(display_delays.c.connection_id == connection_id)
                .order_by(display_delays.c.sample_id.desc())
                .limit(window)
                .subquery()
            )
            .scalar_subquery(),
        )
    )


async def lock_announced(conn: AsyncConnection, connection_id: uuid.UUID) -> sa.Row[Any] | None:
    """The connection's state row (the delay last announced, and when), locked, with the
    connection's merchant_id; None before its first sample was claimed."""
    return (
        await conn.execute(
            sa.select(display_delay_state, connections.c.merchant_id)
            .join(connections, connections.c.connection_id == display_delay_state.c.connection_id)
            .where(display_delay_state.c.connection_id == connection_id)
            .with_for_update(of=display_delay_state)
        )
    ).one_or_none()


async def mark_announced(conn: AsyncConnection, connection_id: uuid.UUID, p95_s: float, at: datetime) -> None:
    await conn.execute(
        sa.update(display_delay_state)
        .where(display_delay_state.c.connection_id == connection_id)
        .values(announced_p95_s=p95_s, announced_at=at)
    )
