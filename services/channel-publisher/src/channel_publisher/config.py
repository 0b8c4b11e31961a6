from __future__ import annotations

from pydantic import Field

from stocksync_common.settings import ServiceSettings


class PublisherSettings(ServiceSettings):
    http_port: int = 8004
    channel_timeout_s: float = Field(10.0, gt=0, description="Timeout of one call to a channel API")
    push_poll_interval_s: float = Field(0.5, gt=0)
    pause_after_failures: int = Field(
        8, ge=1, description="Channel calls failing as a whole in a row before the connection is paused"
    )
    pause_duration_s: float = Field(300.0, gt=0, description="How long an automatic pause lasts before a retry")
    drift_check_interval_s: float = Field(
        900.0, gt=0, description="Read-back period of the drift check (a connection may set its own)"
    )
