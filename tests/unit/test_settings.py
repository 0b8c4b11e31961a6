"""Settings every service shares: what an operator gets for a bad value."""

from __future__ import annotations

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
