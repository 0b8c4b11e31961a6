from __future__ import annotations

from pydantic import Field

from stocksync_common.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    http_port: int = 8001
    # Larger webhook bodies are refused with 413 before anything is read into memory.
    webhook_max_body_bytes: int = Field(1_048_576, ge=1024)
    # Per connection: at most this many webhooks per period, then 429 with Retry-After.
    # Marketplaces retry a 429, so a storm on one connection slows only that connection.
    webhook_rate_limit: int = Field(100, ge=1)
    webhook_rate_period_s: float = Field(1.0, gt=0)
    # Past this many webhooks in flight in one process, a new one is answered 503 with
    # Retry-After (every channel retries) instead of queueing for seconds.
    webhook_max_in_flight: int = Field(256, ge=1, le=100_000)
    # Concurrent webhooks share one transaction (group commit), at most this many.
    webhook_max_group: int = Field(200, ge=1, le=5_000)
    # Deliveries (raw bodies) are kept this long for the merchant's audit, then deleted.
    delivery_retention_days: float = Field(30.0, gt=0)
    retention_sweep_interval_s: float = Field(3600.0, gt=0)
    # Mirakl OR11 polling. Mirakl allows one call a minute per operation; a connection's
    # own `poll_interval_s` (60 to 3600) applies unless the override is set (tests and
    # demos with a sandbox whose limit is shortened to match).
    mirakl_poll_interval_override_s: float | None = Field(None, gt=0)
    # Each call starts this much before the newest update already seen, so an order
    # updated while the previous call ran is not missed (the dedupe absorbs the overlap).
    mirakl_poll_overlap_s: float = Field(120.0, ge=0)
    # A new connection's first call looks this far back.
    mirakl_initial_lookback_s: float = Field(86_400.0, ge=0)
    mirakl_page_size: int = Field(100, ge=1, le=100)
    poller_tick_s: float = Field(1.0, gt=0)
