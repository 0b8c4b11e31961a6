"""Each connection's display delay: from an order's receipt to the moment the channel shows it.

Measured from the push history and read-backs, one push at a time per connection:

- every tick, a connection without an open probe takes its newest accepted push since
  the last one sampled (a push that carries the order's receipt time);
- a channel whose API can be read back (Shopify, WooCommerce, eBay) gets a probe: the
  listing is read every `display_probe_interval_s` (slower as it waits, `next_read_in`)
  until it shows the pushed quantity; the sample is that read's time minus the order's
  receipt. A newer quantity sent meanwhile ends the probe without a sample (the channel
  may never show the older one); a probe older than `display_probe_max_s` records that
  age as a censored sample (the channel is at least that slow);
- a channel that cannot be read back is sampled at acceptance (its sync window), the
  best it can tell.

Only the last `display_delay_window` samples are kept. Once `display_delay_min_samples`
exist the p50 and p95 replace the configured default; the delay is then announced on
connection.delays.v1 (through the outbox) the first time and whenever its p95 moves
enough (`domain.display_delay.should_announce`), which the rule engine's adaptive buffer
reads. The cost is bounded: at most one read call per connection per tick.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync_common.contracts import ConnectionDelayMeasured, utcnow
from stocksync_common.periodic import Periodic
from stocksync_common.uow import UnitOfWork, UnitOfWorkFactory

from channel_publisher.adapters import display_delay_store
from channel_publisher.config import PublisherSettings
from channel_publisher.domain.display_delay import DisplayDelay, next_read_in, should_announce
from channel_publisher.domain.pushes import PushItem, ReadsQuantities
from channel_publisher.service_layer.connection_adapters import AdapterSource

log = logging.getLogger(__name__)

DISPLAY_DELAY = Gauge(
    "stocksync_channel_display_delay_seconds",
    "Time from an order's receipt to the channel showing the new quantity (over the sliding window)",
    ["connection_id", "quantile"],
)


def display_delay_worker(units: UnitOfWorkFactory, settings: PublisherSettings, adapters: AdapterSource) -> Periodic:
    async def step() -> None:
        await measure_display_delays(units, settings, adapters)

    return Periodic("display-delays", settings.display_probe_interval_s, step)


async def measure_display_delays(
    units: UnitOfWorkFactory, settings: PublisherSettings, adapters: AdapterSource, now: datetime | None = None
) -> None:
    """One tick: start probes or take samples, read the due probes, announce."""
    engine = units.engine
    now = now or utcnow()
    measured: set[uuid.UUID] = set()
    async with engine.begin() as conn:
        measured |= await _take_new_pushes(adapters, conn, now)
        due = await display_delay_store.due_probes(conn, now)
    # Concurrently: one slow or unreachable channel must not hold the others' probes back.
    results = await asyncio.gather(*(_read_probe(engine, settings, adapters, probe) for probe in due))
    measured |= {probe.connection_id for probe, sampled in zip(due, results, strict=True) if sampled}
    for connection_id in sorted(measured):
        async with units.begin() as uow:
            await _summarise(uow, settings, connection_id, utcnow())


async def _take_new_pushes(adapters: AdapterSource, conn: AsyncConnection, now: datetime) -> set[uuid.UUID]:
    """Per active connection without an open probe, its newest accepted push not yet
    sampled: a probe where the channel can be read back, else a sample at acceptance."""
    sampled: set[uuid.UUID] = set()
    for push in await display_delay_store.newest_unsampled_pushes(conn, now):
        # Claim the push first: of two publisher instances, only the one that moves the
        # connection's mark forward samples it.
        if not await display_delay_store.claim_push(conn, push.connection_id, push.push_id, push.finished_at):
            continue
        found = await adapters.adapter_for(push.connection_id)
        if found is not None and isinstance(found.adapter, ReadsQuantities):
            await display_delay_store.open_probe(conn, push, now)
        else:
            await _record(
                conn, push.connection_id, (push.finished_at - push.origin_received_at).total_seconds(), "accepted"
            )
            sampled.add(push.connection_id)
    return sampled


async def _read_probe(engine: AsyncEngine, settings: PublisherSettings, adapters: AdapterSource, probe: Any) -> bool:
    """Read one probe's listing; True when it produced a sample."""
    superseded = probe.sent_version is not None and probe.sent_version > probe.version
    shown: int | None = None
    read_failed = False
    if not superseded and probe.external is not None:
        found = await adapters.adapter_for(probe.connection_id)
        adapter = found.adapter if found is not None else None
        if not isinstance(adapter, ReadsQuantities):
            superseded = True  # no longer readable (its type or credentials changed): nothing to measure
        else:
            try:
                answer = await adapter.read_quantities(
                    [PushItem(probe.sku, probe.location, probe.quantity, dict(probe.external), probe.version)]
                )
                shown = answer.get(0)
            except Exception as exc:
                read_failed = True
                log.warning(
                    "display probe: read-back failed",
                    extra={"connection_id": str(probe.connection_id), "error": str(exc)},
                )
    read_at = utcnow()
    async with engine.begin() as conn:
        if superseded or probe.external is None:
            await display_delay_store.close_probe(conn, probe)
            return False
        if not read_failed and shown == probe.quantity:
            if not await display_delay_store.close_probe(conn, probe):
                return False
            await _record(conn, probe.connection_id, (read_at - probe.origin_received_at).total_seconds(), "read_back")
            return True
        if (read_at - probe.accepted_at).total_seconds() >= settings.display_probe_max_s:
            if not await display_delay_store.close_probe(conn, probe):
                return False
            await _record(conn, probe.connection_id, (read_at - probe.origin_received_at).total_seconds(), "censored")
            return True
        wait = next_read_in(probe.reads, settings.display_probe_interval_s)
        await display_delay_store.read_again_at(conn, probe, read_at + timedelta(seconds=wait))
    return False


async def _record(conn: AsyncConnection, connection_id: uuid.UUID, delay_s: float, how: str) -> None:
    await display_delay_store.record_sample(conn, connection_id, min(max(0.0, delay_s), 86_400.0), how, utcnow())


async def read_display_delay(
    conn: AsyncConnection, settings: PublisherSettings, connection_id: uuid.UUID
) -> DisplayDelay:
    """The connection's delay over its last `display_delay_window` samples (or the default)."""
    samples = await display_delay_store.newest_samples(conn, connection_id, settings.display_delay_window)
    return DisplayDelay.of(samples, settings.display_delay_default_s, settings.display_delay_min_samples)


async def _summarise(uow: UnitOfWork, settings: PublisherSettings, connection_id: uuid.UUID, now: datetime) -> None:
    """Trim the window, update the gauge, and announce the delay if it moved enough."""
    conn = uow.sqlalchemy
    await display_delay_store.trim_samples(conn, connection_id, settings.display_delay_window)
    delay = await read_display_delay(conn, settings, connection_id)
    DISPLAY_DELAY.labels(str(connection_id), "0.5").set(delay.p50_s)
    DISPLAY_DELAY.labels(str(connection_id), "0.95").set(delay.p95_s)
    state = await display_delay_store.lock_announced(conn, connection_id)
    if state is None or not should_announce(
        delay,
        state.announced_p95_s,
        state.announced_at,
        now,
        min_change=settings.display_delay_announce_change,
        min_interval=timedelta(seconds=settings.display_delay_announce_interval_s),
    ):
        return
    event = ConnectionDelayMeasured(
        merchant_id=state.merchant_id,
        connection_id=connection_id,
        causation_id=f"display-delay:{connection_id}",
        p50_s=delay.p50_s,
        p95_s=delay.p95_s,
        samples=delay.samples,
        occurred_at=now,
    )
    uow.add([event])
    await display_delay_store.mark_announced(conn, connection_id, delay.p95_s, now)
