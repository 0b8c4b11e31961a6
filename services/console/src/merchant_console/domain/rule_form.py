"""The rule form in the seed's terms, to and from the API's rule document (pure).

A form sends flat fields (`condition_op`, `action_value`, `scope`, ...); the API takes
a nested rule. Nothing is validated here beyond turning text into the shape the API
expects: the API's own field errors are what the merchant sees.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CONDITIONS: tuple[tuple[str, str], ...] = (
    ("<=", "quantity is at most (<=)"),
    ("<", "quantity is below (<)"),
    (">=", "quantity is at least (>=)"),
    (">", "quantity is above (>)"),
    ("==", "quantity equals (==)"),
    ("between", "quantity is between"),
    ("always", "always"),
)
ACTIONS: tuple[tuple[str, str], ...] = (
    ("set", "set the value to N"),
    ("subtract", "subtract N (safety stock)"),
    ("cap", "cap at N"),
    ("percent", "publish N % of it"),
    ("allocate", "fixed allocation of N"),
    ("adaptive", "adaptive buffer (below)"),
)
# The adaptive buffer's parameters: form field, API field (docs/rules.md).
ADAPTIVE_FIELDS: tuple[tuple[str, str], ...] = (
    ("action_confidence", "confidence_pct"),
    ("action_minimum", "minimum"),
    ("action_maximum", "maximum"),
    ("action_floor", "floor_per_hour"),
)
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SCOPES: tuple[str, ...] = ("all", "skus", "attributes")

_SPLIT = re.compile(r"[,\n\r]+")


@dataclass
class RuleForm:
    """What the form shows: the fields as typed (strings), so that a refused form comes back as it was."""

    name: str = ""
    channels: list[str] = field(default_factory=list)  # empty: all channels
    scope: str = "all"
    skus: str = ""
    brands: str = ""
    categories: str = ""
    tags: str = ""
    condition_op: str = "<="
    condition_value: str = ""
    condition_upper: str = ""
    action_type: str = "set"
    action_value: str = ""
    # The adaptive buffer only; blank takes the API's default.
    action_confidence: str = ""
    action_minimum: str = ""
    action_maximum: str = ""
    action_floor: str = ""
    starts_at: str = ""
    ends_at: str = ""
    time_zone: str = "UTC"
    window_days: list[str] = field(default_factory=list)
    window_start: str = ""
    window_end: str = ""
    position: str = "100"
    enabled: bool = True

    @classmethod
    def from_fields(cls, fields: Mapping[str, Sequence[str]]) -> RuleForm:
        def one(name: str, default: str = "") -> str:
            values = fields.get(name) or [default]
            return values[-1].strip()

        channels = [c for c in fields.get("channels", []) if c and c != "all"]
        return cls(
            name=one("name"),
            channels=channels,
            scope=one("scope", "all") if one("scope", "all") in SCOPES else "all",
            skus=one("skus"),
            brands=one("brands"),
            categories=one("categories"),
            tags=one("tags"),
            condition_op=one("condition_op", "<="),
            condition_value=one("condition_value"),
            condition_upper=one("condition_upper"),
            action_type=one("action_type", "set"),
            action_value=one("action_value"),
            **{name: one(name) for name, _ in ADAPTIVE_FIELDS},
            starts_at=one("starts_at"),
            ends_at=one("ends_at"),
            time_zone=one("time_zone", "UTC") or "UTC",
            window_days=[d for d in fields.get("window_days", []) if d in WEEKDAYS],
            window_start=one("window_start"),
            window_end=one("window_end"),
            position=one("position", "100"),
            enabled=one("enabled", "") in ("on", "true", "1"),
        )

    @classmethod
    def from_rule(cls, rule: Mapping[str, Any]) -> RuleForm:
        """A saved rule (the API's document) as the form shows it."""
        product_filter = rule.get("product_filter") or {}
        windows = rule.get("weekly_windows") or []
        condition = rule.get("condition") or {}
        action = rule.get("action") or {}
        return cls(
            name=rule.get("name", ""),
            channels=[] if rule.get("channels") == "all" else [str(c) for c in rule.get("channels", [])],
            scope="skus" if rule.get("skus") else "attributes" if product_filter else "all",
            skus="\n".join(rule.get("skus") or []),
            brands=", ".join(product_filter.get("brands", [])),
            categories=", ".join(product_filter.get("categories", [])),
            tags=", ".join(product_filter.get("tags", [])),
            condition_op=condition.get("op", "<="),
            condition_value=_text(condition.get("value")),
            condition_upper=_text(condition.get("upper")),
            action_type=action.get("type", "set"),
            action_value="" if action.get("type") == "adaptive" else _text(action.get("value")),
            **{name: _text(action.get(key)) for name, key in ADAPTIVE_FIELDS},
            starts_at=(rule.get("starts_at") or "")[:16],
            ends_at=(rule.get("ends_at") or "")[:16],
            time_zone=rule.get("time_zone", "UTC"),
            window_days=list(windows[0]["days"]) if windows else [],
            window_start=windows[0]["start"] if windows else "",
            window_end=windows[0]["end"] if windows else "",
            position=str(rule.get("position", 100)),
            enabled=bool(rule.get("enabled", True)),
        )

    def _action(self) -> dict[str, Any]:
        if self.action_type != "adaptive":
            return {"type": self.action_type, "value": _number(self.action_value)}
        action: dict[str, Any] = {"type": "adaptive"}
        for name, key in ADAPTIVE_FIELDS:
            text = getattr(self, name)
            if text != "":
                action[key] = _decimal(text) if key in ("confidence_pct", "floor_per_hour") else _number(text)
        return action

    def rule_document(self) -> dict[str, Any]:
        """The rule as POST /v1/rules takes it; text left as typed where it is not a number."""
        document: dict[str, Any] = {
            "name": self.name,
            "channels": self.channels or "all",
            "condition": {"op": self.condition_op},
            "action": self._action(),
            "time_zone": self.time_zone,
            "position": _number(self.position),
            "enabled": self.enabled,
        }
        if self.condition_op != "always":
            document["condition"]["value"] = _number(self.condition_value)
        if self.condition_op == "between":
            document["condition"]["upper"] = _number(self.condition_upper)
        if self.scope == "skus":
            document["skus"] = _items(self.skus)
        elif self.scope == "attributes":
            document["product_filter"] = {
                name: values
                for name, values in (
                    ("brands", _items(self.brands)),
                    ("categories", _items(self.categories)),
                    ("tags", _items(self.tags)),
                )
                if values
            }
        if self.starts_at:
            document["starts_at"] = self.starts_at
        if self.ends_at:
            document["ends_at"] = self.ends_at
        if self.window_days or self.window_start or self.window_end:
            document["weekly_windows"] = [
                {"days": self.window_days, "start": self.window_start, "end": self.window_end}
            ]
        return document


def _items(text: str) -> list[str]:
    return [item.strip() for item in _SPLIT.split(text) if item.strip()]


def _decimal(text: str) -> float | str | None:
    """A number when the text is one; else the text, for the API to name the field at fault."""
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _number(text: str) -> int | str | None:
    """An integer when the text is one; else the text, so that the API names the field at fault."""
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        return text


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def describe_rule(rule: Mapping[str, Any], channel_names: Mapping[str, str]) -> str:
    """The rule in the seed's words: "set the value to 0 when quantity <= 3, all products, on C2"."""
    action = rule.get("action") or {}
    condition = rule.get("condition") or {}
    verbs = {
        "set": "set the value to {v}",
        "subtract": "subtract {v}",
        "cap": "cap at {v}",
        "percent": "publish {v} %",
        "allocate": "allocate {v}",
    }
    what = verbs.get(str(action.get("type")), "{v}").format(v=action.get("value"))
    if action.get("type") == "adaptive":
        what = (
            f"hide what the other channels may sell while this one is stale "
            f"({action.get('confidence_pct')}% confidence, {action.get('minimum')} to {action.get('maximum')} units)"
        )
    op = condition.get("op")
    if op == "always":
        when = "always"
    elif op == "between":
        when = f"when quantity is between {condition.get('value')} and {condition.get('upper')}"
    else:
        when = f"when quantity {op} {condition.get('value')}"
    if rule.get("skus"):
        skus = rule["skus"]
        scope = f"SKUs {', '.join(skus[:3])}" + (f" and {len(skus) - 3} more" if len(skus) > 3 else "")
    elif rule.get("product_filter"):
        scope = "products where " + "; ".join(f"{k}: {', '.join(v)}" for k, v in rule["product_filter"].items())
    else:
        scope = "all products"
    channels = rule.get("channels")
    where = (
        "all channels"
        if channels == "all"
        else ", ".join(channel_names.get(str(c), str(c)[:8]) for c in channels or [])
    )
    return f"{what} {when}, {scope}, on {where}"
