from __future__ import annotations

from stocksync_common.settings import ServiceSettings


class RuleEngineSettings(ServiceSettings):
    http_port: int = 8003
