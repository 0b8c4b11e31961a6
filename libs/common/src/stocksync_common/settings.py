"""The settings base every service extends: one place per service for every setting.

Each value comes from, in this order: the environment; the file named by
`<SETTING>_FILE` (e.g. `ADMIN_TOKEN_FILE=/etc/stocksync/admin-token`); a file under
`/run/secrets` named like the setting (how Kubernetes and compose mount secrets); a `.env`
file; the default (docs/configuration.md). Outside development a default secret is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEV_SECRET = "dev-only-change-me"


class FileVariableSettingsSource(PydanticBaseSettingsSource):
    """`<SETTING>_FILE=<path>`: the setting is the content of that file (trailing newline
    dropped), the convention of the official container images for mounted secrets."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        path = os.environ.get(f"{field_name.upper()}_FILE")
        if not path:
            return None, field_name, False
        try:
            return Path(path).read_text().rstrip("\r\n"), field_name, False
        except OSError as error:
            raise ValueError(f"{field_name.upper()}_FILE: cannot read {path}: {error.strerror}") from None

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for field_name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, field_name)
            if value is not None:
                values[key] = value
        return values


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        extra="ignore",
        # Kubernetes and compose mount secrets as files; a missing folder is fine.
        secrets_dir="/run/secrets" if os.path.isdir("/run/secrets") else None,
        env_ignore_empty=True,
    )

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/stocksync"
    database_pool_size: int = Field(10, ge=1)
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # How long a fetch may wait on the broker for new records. Small values keep the
    # sync window short at the cost of more idle fetch requests.
    # The embedded broker answers a fetch only when this wait ends, so it bounds each
    # hop's latency; each busy consumer also fetches 1000/wait times a second. Why 15 ms
    # and not 5: bench/findings.md (the floor uses the same value).
    kafka_fetch_max_wait_ms: int = Field(15, ge=0, le=500)
    # The fetch wait of a consumer that got no records for a second (stocksync_common.kafka).
    kafka_idle_fetch_max_wait_ms: int = Field(100, ge=0, le=500)
    kafka_max_batch: int = Field(500, ge=1)
    # A batch that fails because the database or the broker is unreachable is retried
    # after 0.5 s, 1 s, 2 s, ... up to this (docs/dead-letters.md).
    consumer_retry_backoff_max_s: float = Field(30.0, gt=0, le=600)
    # Group membership. A member that stops heartbeating (killed, or one whose leave
    # the broker ignores: the embedded broker does) holds its partitions until the
    # session times out, and every join waits for it; short values move partitions
    # sooner after a crash. The heartbeat must be well under the session timeout.
    kafka_session_timeout_ms: int = Field(6_000, ge=1_000, le=300_000)
    kafka_heartbeat_interval_ms: int = Field(1_000, ge=100, le=60_000)
    # How long a join waits for the members that are still alive to rejoin.
    kafka_rebalance_timeout_ms: int = Field(10_000, ge=1_000, le=300_000)
    # How often each consumer reads its partitions' lag from the broker (committed offset
    # against the log end) for stocksync_consumer_lag.
    consumer_lag_interval_s: float = Field(15.0, ge=1, le=3600)
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    log_level: str = "INFO"
    # Verifies the legacy merchant API keys (HMAC, issued before stored keys): used by the
    # stock-ledger only (stocksync_common.auth).
    api_key_secret: SecretStr = SecretStr(DEV_SECRET)
    # Where every other service asks whether a presented API key is valid: the stock-ledger.
    api_keys_url: str = "http://127.0.0.1:8002"
    # How long a service trusts the stock-ledger's answer about a key: a revoked key is
    # refused everywhere at most this long after its revocation.
    api_key_cache_ttl_s: float = Field(5.0, ge=0, le=60)
    # How long an unknown or revoked key is refused without asking again.
    api_key_negative_cache_ttl_s: float = Field(5.0, ge=0, le=60)
    # Only for creating merchants.
    admin_token: SecretStr = SecretStr(DEV_SECRET)
    # Encrypts channel credentials and webhook secrets at rest (stocksync_common.secrets);
    # the previous keys (comma-separated) still decrypt during a rotation.
    secrets_key: SecretStr = SecretStr(DEV_SECRET)
    secrets_previous_keys: SecretStr = SecretStr("")
    # Whether a channel connection may point at a loopback, link-local (cloud metadata),
    # private or otherwise non-public address (stocksync_common.channel_hosts). Unset: yes
    # outside production (the sandbox marketplaces listen on 127.0.0.1), no in production.
    allow_private_channel_hosts: bool | None = None
    outbox_poll_interval_s: float = Field(0.5, gt=0)
    # Published outbox rows are kept this long, so that a broker that lost what it held
    # (the embedded in-memory broker restarted) gets them again (docs/RELIABILITY.md).
    outbox_retention_s: float = Field(3600.0, ge=0, le=30 * 86_400)
    outbox_broker_check_interval_s: float = Field(1.0, gt=0, le=60)
    # The relay's lease ends this long after its holder fell silent (network cut, frozen
    # process); another instance then takes over (stocksync_common.outbox).
    outbox_lease_timeout_s: float = Field(5.0, ge=1, le=300)
    graceful_shutdown_timeout_s: float = Field(20.0, gt=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # A mounted secret outranks a stray .env file (pydantic-settings' own order puts
        # .env first); the environment outranks both, and `<SETTING>_FILE` comes right after it.
        files = FileVariableSettingsSource(settings_cls)
        return init_settings, env_settings, files, file_secret_settings, dotenv_settings

    @field_validator("database_url")
    @classmethod
    def _use_the_asyncpg_driver(cls, url: str) -> str:
        # Operators hand over plain URLs (CloudNativePG's `uri` key, most providers);
        # the services talk to PostgreSQL through asyncpg.
        for scheme in ("postgresql://", "postgres://"):
            if url.startswith(scheme):
                return "postgresql+asyncpg://" + url.removeprefix(scheme)
        return url

    @model_validator(mode="after")
    def _heartbeat_within_the_session(self) -> ServiceSettings:
        if self.kafka_heartbeat_interval_ms * 3 > self.kafka_session_timeout_ms:
            raise ValueError("KAFKA_HEARTBEAT_INTERVAL_MS must be at most a third of KAFKA_SESSION_TIMEOUT_MS")
        return self

    @model_validator(mode="after")
    def _refuse_default_secrets_in_production(self) -> ServiceSettings:
        if self.environment == "production":
            for name in ("api_key_secret", "admin_token", "secrets_key"):
                value: SecretStr = getattr(self, name)
                if value.get_secret_value() == DEV_SECRET or len(value.get_secret_value()) < 16:
                    raise ValueError(f"{name.upper()} must be set to a secret of 16+ characters in production")
        return self

    @property
    def private_channel_hosts_allowed(self) -> bool:
        if self.allow_private_channel_hosts is None:
            return self.environment != "production"
        return self.allow_private_channel_hosts

    @property
    def previous_secrets_keys(self) -> list[str]:
        return [key for key in self.secrets_previous_keys.get_secret_value().split(",") if key]

    @property
    def service_name(self) -> str:
        return "stocksync"
