"""The one error model and the strict bounds of the API's edges."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import TypeAdapter, ValidationError

from stocksync_common.bounds import Timestamp, storable_json
from stocksync_common.errors import error_body

TIMESTAMP = TypeAdapter(Timestamp)


def test_a_validation_error_names_its_first_field_and_never_echoes_the_input() -> None:
    body = error_body(
        422,
        [{"loc": ("body", "webhook_secret"), "msg": "too short", "type": "string_too_short", "input": "s3cr3t"}],
    )
    assert body == {
        "code": "invalid_request",
        "message": "too short",
        "field": "body.webhook_secret",
        "detail": [{"loc": ["body", "webhook_secret"], "msg": "too short", "type": "string_too_short"}],
    }
    assert "s3cr3t" not in str(body)


def test_a_message_error_has_its_code_and_no_field() -> None:
    assert error_body(404, "no such connection") == {
        "code": "not_found",
        "message": "no such connection",
        "field": None,
        "detail": "no such connection",
    }


@pytest.mark.parametrize(
    "value", ["0.5", "0", "1700000000", "2026-01-01", "2026-01-01T00:00:00", "0001-01-01T00:00:00+01:00", "x"]
)
def test_a_date_time_must_be_rfc3339_with_an_offset_and_within_the_calendar(value: str) -> None:
    with pytest.raises(ValidationError):
        TIMESTAMP.validate_python(value)


def test_a_date_time_with_an_offset_is_read_as_utc() -> None:
    assert TIMESTAMP.validate_python("2026-12-01T10:00:00+01:00") == datetime(2026, 12, 1, 9, tzinfo=UTC)
    assert TIMESTAMP.validate_python("2026-12-01T09:00:00.5Z").tzinfo == UTC


@pytest.mark.parametrize(
    "value", [{"a": "x\x00"}, {"a\x00": 1}, {"a": 2**63}, {"a": float("inf")}, {"a": [[[[[[[[[1]]]]]]]]]}]
)
def test_a_json_document_jsonb_cannot_hold_is_refused(value: object) -> None:
    with pytest.raises(ValueError):
        storable_json(value)
