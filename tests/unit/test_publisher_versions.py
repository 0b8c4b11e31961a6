"""Which channel quantity wins (channel_publisher.domain.versions): a newer version wins,
in Python and in the one SQL fragment the queue's statements share."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from channel_publisher.adapters.push_store import ENQUEUE_SQL, SETTLE_SQL
from channel_publisher.domain.versions import NEWER_VERSION_SQL, is_newer, needs_sending

versions = st.integers(min_value=0, max_value=2**63 - 1)


def test_only_a_strictly_greater_version_is_newer() -> None:
    assert is_newer(8, 7)
    assert not is_newer(7, 7)
    assert not is_newer(6, 7)


@given(versions, versions)
def test_of_two_different_versions_exactly_one_is_newer(a: int, b: int) -> None:
    if a != b:
        assert is_newer(a, b) != is_newer(b, a)
    else:
        assert not is_newer(a, b)


def test_a_pending_quantity_is_sent_only_when_newer_than_what_the_channel_accepted() -> None:
    assert needs_sending(5, 0, resync=False)  # nothing sent yet
    assert needs_sending(5, 4, resync=False)
    assert not needs_sending(5, 5, resync=False)  # the channel has it already
    assert not needs_sending(4, 5, resync=False)  # the channel has something newer


def test_a_resync_sends_the_accepted_version_again_but_never_an_older_one() -> None:
    assert needs_sending(5, 5, resync=True)
    assert needs_sending(6, 5, resync=True)
    assert not needs_sending(4, 5, resync=True)


def test_the_queue_statements_state_the_rule_with_the_shared_fragment() -> None:
    newer = NEWER_VERSION_SQL.format(version="excluded.version", than="p.version")
    assert newer == "(excluded.version > p.version)"
    # Enqueue: nothing the channel already has (or newer) is queued; a late older one
    # does not replace a pending newer one.
    assert "AND NOT (c.version > s.version)" in ENQUEUE_SQL
    assert f"WHERE {newer}" in ENQUEUE_SQL
    # Settle: last_sent only moves forward.
    assert "WHERE (excluded.version > s.version)" in SETTLE_SQL
    for statement in (ENQUEUE_SQL, SETTLE_SQL):
        assert ".version <" not in statement and ".version >=" not in statement
