from __future__ import annotations

from stocksync_common.settings import ServiceSettings


class LedgerSettings(ServiceSettings):
    http_port: int = 8002
