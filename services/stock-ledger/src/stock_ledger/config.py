from __future__ import annotations

from pydantic import AwareDatetime, Field, model_validator

from stocksync_common.settings import ServiceSettings


class LedgerSettings(ServiceSettings):
    http_port: int = 8002
    # Rows per transaction in a stock import: bounds the row locks one import holds.
    snapshot_chunk_rows: int = Field(1000, ge=1, le=5000)
    # Largest stock import body (JSON lines or CSV); more is refused with 413.
    snapshot_max_bytes: int = Field(512 * 1024 * 1024, ge=1024)
    # Largest JSON body `{"items": [...]}`.
    snapshot_json_max_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    # Fault injection for the crash test: exit right after a batch's database commit,
    # before its offsets are committed. Refused in production.
    fault_exit_after_db_commit: bool = False
    # Legacy API keys (HMACs under API_KEY_SECRET, issued before stored keys) are refused
    # from this instant on (RFC 3339); unset, they are accepted until revoked (docs/SECURITY.md).
    legacy_api_keys_until: AwareDatetime | None = None

    @model_validator(mode="after")
    def _no_fault_injection_in_production(self) -> LedgerSettings:
        if self.environment == "production" and self.fault_exit_after_db_commit:
            raise ValueError("FAULT_EXIT_AFTER_DB_COMMIT is for tests only")
        return self
