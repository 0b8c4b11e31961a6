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
    # The display delay per connection (docs/channels.md "Display delay"), for the adaptive buffer.
    display_delay_default_s: float = Field(
        120.0, ge=0, le=86_400, description="A connection's display delay until enough samples are measured"
    )
    display_delay_window: int = Field(200, ge=1, le=10_000, description="Samples kept per connection")
    display_delay_min_samples: int = Field(
        20, ge=1, le=10_000, description="Samples before the measure replaces the default"
    )
    display_probe_interval_s: float = Field(
        1.0, gt=0, le=60, description="How often a probe reads the channel back (the measurement's resolution)"
    )
    display_probe_max_s: float = Field(
        900.0, gt=0, le=86_400, description="A probe waiting longer records this as a (censored) sample"
    )
    display_delay_announce_change: float = Field(
        0.1, ge=0, le=10, description="Relative move of the p95 that is announced again on connection.delays.v1"
    )
    display_delay_announce_interval_s: float = Field(
        60.0, ge=0, le=86_400, description="Least time between two announcements of one connection's delay"
    )
