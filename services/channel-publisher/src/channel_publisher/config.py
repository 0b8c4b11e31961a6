from __future__ import annotations

from pydantic import Field

from stocksync_common.settings import ServiceSettings


class PublisherSettings(ServiceSettings):
    http_port: int = 8004
    channel_timeout_s: float = Field(10.0, gt=0, description="Timeout of one call to a channel API")
    push_max_attempts: int = Field(6, ge=1, description="Attempts of a transient failure before recording it")
    push_poll_interval_s: float = Field(0.5, gt=0)
