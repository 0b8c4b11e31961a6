from __future__ import annotations

from pydantic import Field

from stocksync_common.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    http_port: int = 8001
    # Larger webhook bodies are refused with 413 before anything is read into memory.
    webhook_max_body_bytes: int = Field(1_048_576, ge=1024)
    # How long a webhook waits for the broker to acknowledge its events. Past it, the
    # events are durable in PostgreSQL and the relay publishes them when it can.
    webhook_broker_ack_timeout_s: float = Field(3.0, gt=0)
