"""A connection's health (channel_publisher.domain.connection_health): paused unless
resume_at has passed; paused after N calls failing as a whole; cleared by a call that
goes through."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from channel_publisher.domain.connection_health import ConnectionHealth, after_call

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def failed(health: ConnectionHealth, now: datetime = NOW, after: int = 3) -> ConnectionHealth:
    change = after_call(
        health, failed_whole=True, now=now, pause_after_failures=after, pause_duration_s=60, last_error="503"
    )
    return change.after


def test_a_healthy_connection_accepts_pushes_and_a_paused_one_only_once_resume_at_has_passed() -> None:
    assert ConnectionHealth().accepts_pushes(NOW)
    paused = ConnectionHealth(paused_at=NOW, resume_at=NOW + timedelta(seconds=60), consecutive_failures=3)
    assert not paused.accepts_pushes(NOW)
    assert not paused.accepts_pushes(NOW + timedelta(seconds=59))
    assert paused.accepts_pushes(NOW + timedelta(seconds=60))
    # Paused with no resume time (set by hand): it waits until someone resumes it.
    assert not ConnectionHealth(paused_at=NOW).accepts_pushes(NOW + timedelta(days=365))


def test_the_connection_is_paused_at_the_nth_failure_in_a_row_with_the_reason() -> None:
    health = failed(failed(ConnectionHealth()))
    assert health == ConnectionHealth(None, None, 2)
    change = after_call(
        health, failed_whole=True, now=NOW, pause_after_failures=3, pause_duration_s=60, last_error="HTTP 503"
    )
    assert change.paused
    assert change.after == ConnectionHealth(NOW, NOW + timedelta(seconds=60), 3)
    assert change.pause_reason == "3 failed calls in a row; last: HTTP 503"
    assert not change.after.accepts_pushes(NOW + timedelta(seconds=30))


def test_a_failed_trial_after_resume_at_pauses_again_and_keeps_when_the_pause_began() -> None:
    paused = failed(failed(failed(ConnectionHealth())))
    later = NOW + timedelta(seconds=61)
    assert paused.accepts_pushes(later)  # the trial call
    again = failed(paused, now=later)
    assert again == ConnectionHealth(NOW, later + timedelta(seconds=60), 4)
    assert not again.accepts_pushes(later)


def test_a_call_that_goes_through_clears_failures_and_pause_and_says_it_resumed() -> None:
    paused = failed(failed(failed(ConnectionHealth())))
    change = after_call(paused, failed_whole=False, now=NOW, pause_after_failures=3, pause_duration_s=60, last_error="")
    assert change.after == ConnectionHealth()
    assert change.resumed and not change.paused
    unpaused = after_call(
        ConnectionHealth(None, None, 2),
        failed_whole=False,
        now=NOW,
        pause_after_failures=3,
        pause_duration_s=60,
        last_error="",
    )
    assert unpaused.after == ConnectionHealth() and not unpaused.resumed
