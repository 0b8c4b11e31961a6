"""The console's pure parts: the rule form in the seed's terms, errors grouped by kind, the chart, the session."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from merchant_console.adapters.session import Session, SessionSealer
from merchant_console.domain.channel_activity import error_kind, error_rate, group_errors, sync_window_chart
from merchant_console.domain.rule_form import RuleForm, describe_rule


def test_the_seed_rule_form_becomes_the_api_rule_document() -> None:
    form = RuleForm.from_fields(
        {
            "name": ["Buffer C2"],
            "channels": ["c2-id"],
            "scope": ["all"],
            "condition_op": ["<="],
            "condition_value": ["3"],
            "action_type": ["set"],
            "action_value": ["0"],
            "time_zone": ["Europe/Paris"],
            "position": ["100"],
            "enabled": ["on"],
        }
    )
    assert form.rule_document() == {
        "name": "Buffer C2",
        "channels": ["c2-id"],
        "condition": {"op": "<=", "value": 3},
        "action": {"type": "set", "value": 0},
        "time_zone": "Europe/Paris",
        "position": 100,
        "enabled": True,
    }


def test_no_channel_ticked_means_every_channel_and_text_stays_text_for_the_api_to_name() -> None:
    form = RuleForm.from_fields({"condition_op": ["between"], "condition_value": ["2"], "condition_upper": ["x"]})
    document = form.rule_document()
    assert document["channels"] == "all"
    assert document["condition"] == {"op": "between", "value": 2, "upper": "x"}
    assert document["action"] == {"type": "set", "value": None}
    assert document["enabled"] is False


def test_scope_selection_and_attributes_and_weekly_window() -> None:
    skus = RuleForm.from_fields({"scope": ["skus"], "skus": ["A, B\nC\n\n"]}).rule_document()
    assert skus["skus"] == ["A", "B", "C"]
    attributes = RuleForm.from_fields(
        {"scope": ["attributes"], "brands": ["Acme, Zed"], "tags": ["sale"], "skus": ["ignored"]}
    ).rule_document()
    assert attributes["product_filter"] == {"brands": ["Acme", "Zed"], "tags": ["sale"]}
    assert "skus" not in attributes
    window = RuleForm.from_fields(
        {"window_days": ["sat", "sun", "noday"], "window_start": ["09:00"], "window_end": ["18:00"]}
    ).rule_document()
    assert window["weekly_windows"] == [{"days": ["sat", "sun"], "start": "09:00", "end": "18:00"}]


def test_a_saved_rule_comes_back_to_the_form_unchanged() -> None:
    saved = {
        "name": "Weekend buffer",
        "channels": ["c1"],
        "skus": ["A", "B"],
        "product_filter": None,
        "condition": {"op": "<=", "value": 3, "upper": None},
        "action": {"type": "subtract", "value": 2},
        "starts_at": "2026-12-01T09:00:00+01:00",
        "ends_at": None,
        "weekly_windows": [{"days": ["sat"], "start": "08:00", "end": "20:00"}],
        "time_zone": "Europe/Paris",
        "position": 20,
        "enabled": True,
    }
    document = RuleForm.from_rule(saved).rule_document()
    assert document["skus"] == ["A", "B"]
    assert document["condition"] == {"op": "<=", "value": 3}
    assert document["action"] == {"type": "subtract", "value": 2}
    assert document["starts_at"] == "2026-12-01T09:00"
    assert document["weekly_windows"] == [{"days": ["sat"], "start": "08:00", "end": "20:00"}]
    assert document["position"] == 20


def test_an_adaptive_rule_keeps_its_parameters_through_the_form() -> None:
    action = {"type": "adaptive", "value": 0, "confidence_pct": 99.0, "minimum": 1, "maximum": 6, "floor_per_hour": 2.5}
    saved = {"name": "Adaptive", "channels": "all", "condition": {"op": "always"}, "action": action}
    form = RuleForm.from_rule(saved)
    assert (form.action_value, form.action_confidence, form.action_maximum) == ("", "99.0", "6")
    assert form.rule_document()["action"] == {
        "type": "adaptive",
        "confidence_pct": 99.0,
        "minimum": 1,
        "maximum": 6,
        "floor_per_hour": 2.5,
    }
    # Blank fields take the API's defaults; text stays text for the API to name the field.
    typed = RuleForm.from_fields({"action_type": ["adaptive"], "action_confidence": ["high"], "action_maximum": [""]})
    assert typed.rule_document()["action"] == {"type": "adaptive", "confidence_pct": "high"}
    assert "hide what the other channels may sell" in describe_rule(saved, {})


def test_describe_rule_in_the_seed_words() -> None:
    rule = {"action": {"type": "set", "value": 0}, "condition": {"op": "<=", "value": 3}, "channels": ["c2"]}
    assert (
        describe_rule(rule, {"c2": "C2 (shopify)"})
        == "set the value to 0 when quantity <= 3, all products, on C2 (shopify)"
    )


def test_errors_group_by_the_channel_message_without_its_variable_parts() -> None:
    pushes = [
        {
            "status": "rejected",
            "sku": "A",
            "channel_response": "SKU 'A' quantity 12 refused",
            "finished_at": "2026-01-01T00:00:01+00:00",
        },
        {
            "status": "rejected",
            "sku": "B",
            "channel_response": "SKU 'B' quantity 7 refused",
            "finished_at": "2026-01-01T00:00:02+00:00",
        },
        {
            "status": "rejected",
            "sku": "A",
            "channel_response": "Listing closed",
            "finished_at": "2026-01-01T00:00:03+00:00",
        },
        {"status": "accepted", "sku": "C", "channel_response": "ok", "finished_at": "2026-01-01T00:00:04+00:00"},
    ]
    groups = group_errors(pushes)
    assert [(g.kind, g.count, g.skus) for g in groups] == [
        ("SKU … quantity … refused", 2, ["A", "B"]),
        ("Listing closed", 1, ["A"]),
    ]
    assert groups[0].example == "SKU 'B' quantity 7 refused"
    assert error_kind("rejected", None) == "rejected without a message"


def test_error_rate_counts_every_failed_status() -> None:
    assert error_rate({"accepted": 0, "rejected": 0}) is None
    assert error_rate({"accepted": 3, "rejected": 1, "retrying": 0, "unmapped": 0}) == 0.25


def test_the_chart_places_accepted_pushes_of_the_last_hour() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    pushes = [
        {"status": "accepted", "sync_window_ms": 100.0, "finished_at": (now - timedelta(minutes=30)).isoformat()},
        {"status": "accepted", "sync_window_ms": 50.0, "finished_at": now.isoformat()},
        {"status": "rejected", "sync_window_ms": 10.0, "finished_at": now.isoformat()},
        {"status": "accepted", "sync_window_ms": 10.0, "finished_at": (now - timedelta(hours=2)).isoformat()},
    ]
    chart = sync_window_chart(pushes, now, width=600, height=110)
    assert chart.count == 2 and chart.max_ms == 100.0
    (x1, y1), (x2, y2) = chart.points
    assert (round(x1), round(x2)) == (300, 600)
    assert round(y1) == 10 and round(y2) == 60  # 100 ms near the top, 50 ms half way


def test_a_sealed_session_opens_only_with_its_secret_and_hides_the_key() -> None:
    sealer = SessionSealer("secret-one", 3600)
    session = Session.new("sk_live_key")
    sealed = sealer.seal(session)
    assert "sk_live_key" not in sealed
    assert sealer.open(sealed) == session
    assert SessionSealer("secret-two", 3600).open(sealed) is None
    assert sealer.open(sealed[:-2] + "AA") is None
    assert sealer.open("") is None and sealer.open("x" * 5000) is None
