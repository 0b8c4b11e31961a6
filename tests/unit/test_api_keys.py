import uuid

from stocksync_common.auth import issue_api_key, verify_api_key


def test_issued_key_names_its_merchant() -> None:
    merchant = uuid.uuid4()
    for _ in range(200):  # macs with "_" and "-" in them too
        assert verify_api_key("secret", issue_api_key("secret", merchant)) == merchant


def test_key_signed_with_another_secret_is_refused() -> None:
    assert verify_api_key("secret", issue_api_key("other", uuid.uuid4())) is None


def test_key_with_another_merchant_id_is_refused() -> None:
    key = issue_api_key("secret", uuid.uuid4())
    forged = "_".join(["ssk", uuid.uuid4().hex, *key.split("_", 3)[2:]])
    assert verify_api_key("secret", forged) is None


def test_garbage_is_refused() -> None:
    for garbage in ["", "ssk", "ssk_zz_1_2", "Bearer x", "ssk_" + "0" * 32 + "_x"]:
        assert verify_api_key("secret", garbage) is None
