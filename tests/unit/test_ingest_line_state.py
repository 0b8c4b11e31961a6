"""Order-line state: each movement once, whatever the channel resends or reorders."""

from __future__ import annotations

import itertools

from order_ingest.domain.movements import EmittedLine, LineReport, advance_line


def report(ordered: int = 3, shipped: int = 0, cancelled: int = 0, returned: int = 0) -> LineReport:
    return LineReport("O1", "L1", "A", ordered, shipped=shipped, cancelled=cancelled, returned=returned)


def moves(state: EmittedLine, *reports: LineReport) -> tuple[EmittedLine, list[tuple[str, int]]]:
    emitted: list[tuple[str, int]] = []
    for r in reports:
        state, movements = advance_line(state, r)
        emitted.extend((m.movement, m.quantity) for m in movements)
    return state, emitted


def test_a_placed_order_reserves_its_quantity_once() -> None:
    state, emitted = moves(EmittedLine(), report(), report(), report())
    assert emitted == [("placed", 3)]
    assert state == EmittedLine(placed=3)


def test_a_cancellation_before_its_order_places_then_releases_and_the_late_order_adds_nothing() -> None:
    state, emitted = moves(EmittedLine(), report(cancelled=3), report())
    assert emitted == [("placed", 3), ("cancelled", 3)]
    assert state == EmittedLine(placed=3, cancelled=3)


def test_cumulative_shipped_quantities_emit_only_the_delta() -> None:
    _, emitted = moves(EmittedLine(), report(shipped=1), report(shipped=1), report(shipped=3))
    assert emitted == [("placed", 3), ("shipped", 1), ("shipped", 2)]


def test_partial_shipment_then_cancellation_releases_only_what_was_not_shipped() -> None:
    state, emitted = moves(EmittedLine(), report(shipped=1), report(shipped=1, cancelled=2), report(cancelled=3))
    assert emitted == [("placed", 3), ("shipped", 1), ("cancelled", 2)]
    assert state == EmittedLine(placed=3, shipped=1, cancelled=2)


def test_a_stale_report_after_a_newer_one_emits_nothing() -> None:
    state, emitted = moves(EmittedLine(), report(shipped=3), report(shipped=0), report(shipped=2))
    assert emitted == [("placed", 3), ("shipped", 3)]
    assert state.shipped == 3


def test_returns_never_exceed_what_shipped() -> None:
    _, emitted = moves(EmittedLine(), report(shipped=2, returned=3))
    assert emitted == [("placed", 3), ("shipped", 2), ("returned", 2)]


def test_any_order_of_the_same_reports_ends_in_the_same_totals_and_never_breaks_the_invariants() -> None:
    reports = [report(), report(shipped=1), report(shipped=1, cancelled=2), report(shipped=1, cancelled=2, returned=1)]
    finals = set()
    for permutation in itertools.permutations(reports):
        state = EmittedLine()
        for r in permutation:
            state, _ = advance_line(state, r)
            assert state.shipped + state.cancelled <= state.placed
            assert 0 <= state.returned <= state.shipped
        finals.add(state)
    assert finals == {EmittedLine(placed=3, shipped=1, cancelled=2, returned=1)}


def test_movement_quantities_add_up_to_the_final_state() -> None:
    state, movements = EmittedLine(), []
    for r in (report(shipped=1), report(shipped=2), report(shipped=2, cancelled=1)):
        state, produced = advance_line(state, r)
        movements.extend(produced)
    totals = {
        kind: sum(m.quantity for m in movements if m.movement == kind) for kind in ("placed", "shipped", "cancelled")
    }
    assert totals == {"placed": 3, "shipped": 2, "cancelled": 1}
    assert [m.cumulative for m in movements if m.movement == "shipped"] == [1, 2]
