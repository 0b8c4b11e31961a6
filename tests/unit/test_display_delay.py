"""A connection's display delay: nearest-rank quantiles over the window, the default until
warm, and when a change is worth announcing to the rule engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from channel_publisher.domain.display_delay import DisplayDelay, next_read_in, should_announce

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def test_the_default_stands_in_until_enough_samples_exist() -> None:
    delay = DisplayDelay.of([1.0, 2.0], default_s=120.0, min_samples=3)
    assert delay == DisplayDelay(120.0, 120.0, 2, False)


def test_quantiles_are_nearest_rank_over_the_samples() -> None:
    delay = DisplayDelay.of([float(s) for s in range(1, 101)], default_s=120.0, min_samples=20)
    assert (delay.p50_s, delay.p95_s, delay.samples, delay.measured) == (50.0, 95.0, 100, True)


def test_a_slow_tail_moves_the_p95_not_the_p50() -> None:
    delay = DisplayDelay.of([2.0] * 18 + [90.0, 120.0], default_s=5.0, min_samples=20)
    assert (delay.p50_s, delay.p95_s) == (2.0, 90.0)


def test_an_unmeasured_delay_is_never_announced() -> None:
    unmeasured = DisplayDelay(120.0, 120.0, 3, False)
    assert not should_announce(unmeasured, None, None, NOW, min_change=0.1, min_interval=MINUTE)


def test_the_first_measured_delay_is_announced() -> None:
    assert should_announce(DisplayDelay(2.0, 3.0, 20, True), None, None, NOW, min_change=0.1, min_interval=MINUTE)


def test_a_small_move_or_a_recent_announcement_is_not_announced_again() -> None:
    delay = DisplayDelay(2.0, 100.0, 200, True)
    earlier = NOW - 2 * MINUTE
    assert not should_announce(delay, 95.0, earlier, NOW, min_change=0.1, min_interval=MINUTE)  # 5 < 9.5
    assert not should_announce(delay, 50.0, NOW - timedelta(seconds=30), NOW, min_change=0.1, min_interval=MINUTE)
    assert should_announce(delay, 50.0, earlier, NOW, min_change=0.1, min_interval=MINUTE)


def test_a_fast_channel_moves_by_at_least_a_second() -> None:
    delay = DisplayDelay(0.2, 0.9, 200, True)
    assert not should_announce(delay, 0.5, NOW - MINUTE, NOW, min_change=0.1, min_interval=MINUTE)


def test_a_probe_reads_less_often_as_it_waits() -> None:
    assert [next_read_in(r, 1.0) for r in (0, 9, 10, 25, 1000)] == [1.0, 1.0, 2.0, 3.0, 30.0]
