"""`python -m stocksync_common.create_topics`: create the registry's topics and exit.

The one-shot job of docker-compose runs it before the services start. On Kubernetes
with Strimzi, the KafkaTopic resources in deploy/k8s take its place. Topics that
already exist are left as they are.
"""

from __future__ import annotations

import argparse
import asyncio

from tenacity import AsyncRetrying, stop_after_delay, wait_fixed

from stocksync_common.kafka import ensure_topics
from stocksync_common.settings import ServiceSettings


async def create_topics(bootstrap_servers: str, replication_factor: int, wait_s: float) -> None:
    # A broker that has just reported healthy may still refuse admin requests briefly.
    async for attempt in AsyncRetrying(stop=stop_after_delay(wait_s), wait=wait_fixed(1), reraise=True):
        with attempt:
            await ensure_topics(bootstrap_servers, replication_factor=replication_factor)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stocksync_common.create_topics")
    parser.add_argument("--replication-factor", type=int, default=1)
    parser.add_argument("--wait-s", type=float, default=60.0, help="how long to retry while the broker starts")
    args = parser.parse_args(argv)
    settings = ServiceSettings()
    asyncio.run(create_topics(settings.kafka_bootstrap_servers, args.replication_factor, args.wait_s))
    print(f"topics ready on {settings.kafka_bootstrap_servers}", flush=True)


if __name__ == "__main__":
    main()
