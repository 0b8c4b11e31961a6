from __future__ import annotations

from pydantic import Field

from stocksync_common.settings import ServiceSettings


class RuleEngineSettings(ServiceSettings):
    http_port: int = 8003
    # How often the scheduler compares rules' periods and weekly windows with the clock:
    # a boundary is applied at most this long after it passes.
    rule_schedule_interval_s: float = Field(1.0, gt=0, le=60)
