"""Secrets at rest: encrypted in their columns, readable after a key rotation, never silently
read with the wrong key."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from cryptography.fernet import InvalidToken
from sqlalchemy.dialects import postgresql

from stocksync_common import secrets as at_rest
from stocksync_common.contracts import ConnectionChanged
from stocksync_common.kafka import decode_event, encode_event
from stocksync_common.secrets import (
    EncryptedJSON,
    EncryptedText,
    EncryptedTextArray,
    configure_secrets,
    decrypt,
    encrypt,
    open_connection,
    seal_connection,
)
from stocksync_common.topics import CONNECTIONS

DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


@pytest.fixture(autouse=True)
def _restore_key() -> Iterator[None]:
    saved = at_rest._box
    yield
    at_rest._box = saved


def test_a_secret_is_stored_encrypted_and_read_back() -> None:
    configure_secrets("k" * 32)
    stored = encrypt("shpss_the_secret")
    assert "shpss_the_secret" not in stored and stored.startswith("fernet:")
    assert decrypt(stored) == "shpss_the_secret"
    assert encrypt("same") != encrypt("same")  # a fresh IV each time


def test_columns_encrypt_on_write_and_decrypt_on_read() -> None:
    configure_secrets("k" * 32)
    credentials = {"access_token": "tok-123", "nested": {"n": 1}}
    stored = EncryptedJSON().process_bind_param(credentials, DIALECT)
    assert "tok-123" not in str(stored)
    assert EncryptedJSON().process_result_value(stored, DIALECT) == credentials
    secrets = ["whsec_one", "second-secret"]
    stored_list = EncryptedTextArray().process_bind_param(secrets, DIALECT)
    assert not set(secrets) & set(stored_list)
    assert EncryptedTextArray().process_result_value(stored_list, DIALECT) == secrets


def test_rows_written_before_encryption_are_read_as_they_are() -> None:
    configure_secrets("k" * 32)
    assert EncryptedJSON().process_result_value({"access_token": "old"}, DIALECT) == {"access_token": "old"}
    assert EncryptedTextArray().process_result_value(["old-secret"], DIALECT) == ["old-secret"]


def test_a_rotated_key_still_reads_what_the_previous_one_wrote_and_a_wrong_key_fails_loudly() -> None:
    configure_secrets("old-key-0123456789")
    stored = encrypt("the secret")
    configure_secrets("new-key-0123456789", ["old-key-0123456789"])
    assert decrypt(stored) == "the secret"
    configure_secrets("another-key-0123456789")
    with pytest.raises(InvalidToken):
        decrypt(stored)


def _connection(**secrets: object) -> ConnectionChanged:
    return ConnectionChanged(
        merchant_id=uuid.uuid4(),
        connection_id=uuid.uuid4(),
        channel_type="mirakl",
        name="M",
        active=True,
        causation_id="test",
        **secrets,  # type: ignore[arg-type]
    )


def test_connections_v1_carries_its_secrets_sealed_and_opens_them_back() -> None:
    configure_secrets("k" * 32)
    event = _connection(
        webhook_secrets=("whsec_one", "whsec_two"),
        inbound={"api_key": "inbound-key", "poll_interval_s": 60},
        channel_api={"base_url": "https://m.example", "api_key": "mirakl-key"},
    )
    sealed = seal_connection(event)
    wire = encode_event(sealed).decode()
    for secret in ("whsec_one", "whsec_two", "inbound-key", "mirakl-key", "m.example"):
        assert secret not in wire
    received = decode_event(CONNECTIONS, wire.encode())
    assert isinstance(received, ConnectionChanged)
    opened = open_connection(received)
    assert (opened.webhook_secrets, opened.inbound, opened.channel_api) == (
        event.webhook_secrets,
        event.inbound,
        event.channel_api,
    )


def test_a_connection_event_published_before_sealing_is_read_as_it_is() -> None:
    event = _connection(webhook_secrets=("clear",), inbound={"signature_header": "x"}, channel_api={"api_key": "k"})
    assert open_connection(event) == event


def test_an_oauth_token_column_is_encrypted() -> None:
    configure_secrets("k" * 32)
    column = EncryptedText()
    stored = column.process_bind_param("Atzr|token", DIALECT)
    assert stored.startswith("fernet:") and "Atzr" not in stored
    assert column.process_result_value(stored, DIALECT) == "Atzr|token"
    assert column.process_result_value("written before", DIALECT) == "written before"
