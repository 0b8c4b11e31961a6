"""Settings every service shares: what an operator gets for a bad value."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from stocksync_common.settings import ServiceSettings


def test_defaults_keep_the_heartbeat_well_inside_the_session() -> None:
    settings = ServiceSettings(_env_file=None)
    assert settings.kafka_heartbeat_interval_ms * 3 <= settings.kafka_session_timeout_ms


def test_a_heartbeat_too_slow_for_the_session_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="KAFKA_HEARTBEAT_INTERVAL_MS"):
        ServiceSettings(_env_file=None, kafka_session_timeout_ms=6_000, kafka_heartbeat_interval_ms=3_000)


def test_production_refuses_the_default_secrets() -> None:
    with pytest.raises(ValidationError, match=r"(?i)secret|token"):
        ServiceSettings(_env_file=None, environment="production")


def test_sources_rank_environment_then_mounted_secrets_then_dotenv_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The order docs/configuration.md states: a mounted secret outranks a stray .env."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    dotenv = tmp_path / ".env"
    dotenv.write_text("LOG_LEVEL=from-dotenv\nADMIN_TOKEN=from-dotenv\nHTTP_HOST=from-dotenv\n")
    (secrets / "admin_token").write_text("from-secret-file")
    (secrets / "log_level").write_text("from-secret-file")
    monkeypatch.setenv("LOG_LEVEL", "from-environment")
    for name in ("ADMIN_TOKEN", "HTTP_HOST", "DATABASE_POOL_SIZE"):
        monkeypatch.delenv(name, raising=False)

    settings = ServiceSettings(_env_file=dotenv, _secrets_dir=secrets)

    assert settings.log_level == "from-environment"
    assert settings.admin_token.get_secret_value() == "from-secret-file"
    assert settings.http_host == "from-dotenv"
    assert settings.database_pool_size == 10


def test_a_setting_file_named_by_its_file_variable_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = tmp_path / "admin-token"
    token.write_text("from-a-mounted-file\n")
    monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("ADMIN_TOKEN_FILE", str(token))
    assert ServiceSettings(_env_file=None).admin_token.get_secret_value() == "from-a-mounted-file"
    monkeypatch.setenv("ADMIN_TOKEN", "from-environment")  # the environment still wins
    assert ServiceSettings(_env_file=None).admin_token.get_secret_value() == "from-environment"


def test_an_unreadable_setting_file_stops_the_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRETS_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="SECRETS_KEY_FILE"):
        ServiceSettings(_env_file=None)
