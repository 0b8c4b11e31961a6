from __future__ import annotations

from pydantic import Field

from stocksync_common.settings import ServiceSettings


class RuleEngineSettings(ServiceSettings):
    http_port: int = 8003
    # How often the scheduler compares rules' periods and weekly windows with the clock:
    # a boundary is applied at most this long after it passes.
    rule_schedule_interval_s: float = Field(1.0, gt=0, le=60)
    # The adaptive buffer (docs/rules.md): how sales rates decay, the delay a connection has
    # until the publisher has measured one, and how often decayed rates are re-evaluated.
    adaptive_rate_tau_s: float = Field(1800.0, ge=60, le=604_800)
    adaptive_default_delay_s: float = Field(120.0, ge=0, le=86_400)
    adaptive_refresh_interval_s: float = Field(300.0, ge=1, le=86_400)
