"""Which channel quantity wins, pure: a newer version wins.

Every channel quantity of a SKU on a connection carries the rule-engine's version, which
grows with each decision. A quantity replaces another only when its version is newer:
a pending push is replaced by a newer one and never by an older one arriving late, a
quantity not newer than what the channel already accepted (`last_sent`) is not queued
and is dropped again just before sending, and `last_sent` only moves forward. A resync
is the one exception: it sends again the very version the channel accepted.

The publisher's statements state the same rule with `NEWER_VERSION_SQL`
(adapters/push_store.py, ENQUEUE_SQL and SETTLE_SQL).
"""

from __future__ import annotations

# `is_newer` in SQL, over two version expressions `{version}` and `{than}`.
NEWER_VERSION_SQL = "({version} > {than})"


def is_newer(version: int, than: int) -> bool:
    """A newer version wins: `version` replaces `than` only when it is greater."""
    return version > than


def needs_sending(version: int, sent_version: int, *, resync: bool) -> bool:
    """Whether a pending quantity still goes to the channel, which accepted `sent_version`
    (0 when nothing yet): when newer, or when a resync asks for the accepted one again."""
    return is_newer(version, sent_version) or (resync and version == sent_version)
