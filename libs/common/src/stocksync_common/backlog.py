"""`GET /v1/admin/backlog/<service>`: what a service has not done yet, for operators.

The consumer lag is what `PartitionLag` last measured from the broker (every
`CONSUMER_LAG_INTERVAL_S`, the `stocksync_consumer_lag` gauge); the outbox backlog is
counted when asked (the relay's own count, on the partial index of unpublished rows).
Each service answers on a path of its own, so that the embedded gateway and the
HTTPRoute route it like every other path; `stocksync backlog` gathers the four.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from stocksync_common.auth import require_admin
from stocksync_common.errors import error_responses
from stocksync_common.kafka import CONSUMER_LAG
from stocksync_common.outbox import OutboxRelay


class PartitionLagOut(BaseModel):
    group: str
    topic: str
    partition: int
    lag: int = Field(description="Records between the group's committed offset and the partition's end")


class BacklogOut(BaseModel):
    service: str
    consumer_lag: int = Field(description="The sum over this instance's partitions")
    partitions: list[PartitionLagOut] = Field(description="As last measured, every CONSUMER_LAG_INTERVAL_S")
    outbox_backlog: int | None = Field(description="Outbox rows not yet published; null: this service has no outbox")


def consumer_lag() -> list[PartitionLagOut]:
    """The lag gauge's current series: this process's assigned partitions."""
    found = []
    for metric in CONSUMER_LAG.collect():
        for sample in metric.samples:
            labels = sample.labels
            found.append(
                PartitionLagOut(
                    group=labels["group"],
                    topic=labels["topic"],
                    partition=int(labels["partition"]),
                    lag=int(sample.value),
                )
            )
    return sorted(found, key=lambda p: (p.group, p.topic, p.partition))


def backlog_router(service: str, relay: Callable[[], OutboxRelay | None]) -> APIRouter:
    """`relay`: the service's relay once it has started (None: the service has no outbox)."""
    router = APIRouter(tags=["operations"])

    @router.get(
        f"/v1/admin/backlog/{service}",
        response_model=BacklogOut,
        dependencies=[Depends(require_admin)],
        responses=error_responses(401, e401="Admin token required"),
    )
    async def backlog() -> BacklogOut:
        """This instance's consumer lag per partition and its outbox backlog (admin token)."""
        outbox_relay = relay()
        partitions = consumer_lag()
        return BacklogOut(
            service=service,
            consumer_lag=sum(p.lag for p in partitions),
            partitions=partitions,
            outbox_backlog=await outbox_relay.measure_backlog() if outbox_relay is not None else None,
        )

    return router
