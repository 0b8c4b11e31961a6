"""Rule evaluation, pure: conditions, actions, scopes and the funnel."""

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rule_engine.domain.rules import Action, Condition, Rule, channel_quantity

C1, C2 = uuid.uuid4(), uuid.uuid4()


def rule(op: str, value: int | None, action: str, amount: int, *, position: int = 0, upper: int | None = None,
         channels: frozenset[uuid.UUID] = frozenset(), skus: frozenset[str] = frozenset()) -> Rule:
    return Rule(uuid.uuid4(), position, Condition(op, value, upper), Action(action, amount),  # type: ignore[arg-type]
                connection_ids=channels, skus=skus)


def test_seed_example_publishes_5_then_4_then_0_on_the_buffered_channel() -> None:
    buffer = rule("<=", 3, "set", 0, channels=frozenset({C2}))
    assert [channel_quantity([buffer], C2, "A", q).quantity for q in (5, 4, 3)] == [5, 4, 0]
    assert [channel_quantity([buffer], C1, "A", q).quantity for q in (5, 4, 3)] == [5, 4, 3]


@pytest.mark.parametrize(
    ("op", "value", "upper", "quantity", "holds"),
    [("<=", 3, None, 3, True), ("<=", 3, None, 4, False), ("<", 3, None, 3, False), (">=", 3, None, 3, True),
     (">", 3, None, 3, False), ("==", 3, None, 3, True), ("==", 3, None, 2, False),
     ("between", 2, 4, 4, True), ("between", 2, 4, 5, False), ("always", None, None, -7, True)],
)
def test_condition(op: str, value: int | None, upper: int | None, quantity: int, holds: bool) -> None:
    assert Condition(op, value, upper).holds(quantity) is holds  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("action", "amount", "available", "expected"),
    [("set", 0, 10, 0), ("subtract", 2, 10, 8), ("subtract", 20, 10, 0), ("cap", 5, 10, 5), ("cap", 50, 10, 10),
     ("percent", 50, 7, 3), ("percent", 100, 7, 7), ("allocate", 12, 3, 12)],
)
def test_action(action: str, amount: int, available: int, expected: int) -> None:
    assert channel_quantity([rule("always", None, action, amount)], C1, "A", available).quantity == expected


def test_funnel_applies_rules_in_position_order_on_the_running_quantity() -> None:
    subtract_then_cap = [rule("always", None, "cap", 5, position=2), rule("always", None, "subtract", 3, position=1)]
    # 10 - 3 = 7, capped at 5.
    decision = channel_quantity(subtract_then_cap, C1, "A", 10)
    assert decision.quantity == 5
    assert decision.rule_ids == (subtract_then_cap[1].rule_id, subtract_then_cap[0].rule_id)


def test_sku_scope_limits_a_rule_to_its_products() -> None:
    only_b = rule("always", None, "set", 0, skus=frozenset({"B"}))
    assert channel_quantity([only_b], C1, "A", 4).quantity == 4
    assert channel_quantity([only_b], C1, "B", 4).quantity == 0


def test_disabled_rule_does_nothing() -> None:
    disabled = Rule(uuid.uuid4(), 0, Condition("always"), Action("set", 0), enabled=False)
    assert channel_quantity([disabled], C1, "A", 4).quantity == 4


rules_strategy = st.lists(
    st.builds(
        lambda op, v, act, amount, pos: rule(op, v, act, amount, position=pos, upper=v + 3),
        st.sampled_from(["<=", "<", ">=", ">", "==", "between", "always"]),
        st.integers(0, 50),
        st.sampled_from(["set", "subtract", "cap", "percent"]),
        st.integers(0, 100),
        st.integers(0, 5),
    ),
    max_size=5,
)


@given(rules_strategy, st.integers(-5, 500))
def test_result_is_an_integer_between_zero_and_available(rules: list[Rule], available: int) -> None:
    # "set" may publish more than available only if the merchant asks for it; bound it here.
    rules = [r if r.action.type != "set" else Rule(r.rule_id, r.position, r.condition,
             Action("set", min(r.action.value, max(available, 0)))) for r in rules]
    quantity = channel_quantity(rules, C1, "A", available).quantity
    assert isinstance(quantity, int)
    assert 0 <= quantity <= max(available, 0)
