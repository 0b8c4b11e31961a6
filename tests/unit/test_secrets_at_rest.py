"""Secrets at rest: encrypted in their columns, readable after a key rotation, never silently
read with the wrong key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.fernet import InvalidToken
from sqlalchemy.dialects import postgresql

from stocksync_common import secrets as at_rest
from stocksync_common.secrets import EncryptedJSON, EncryptedTextArray, configure_secrets, decrypt, encrypt

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
