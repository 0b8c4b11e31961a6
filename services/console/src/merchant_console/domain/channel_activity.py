"""What the console derives from pushes (pure): errors grouped by kind, health at a glance, the chart."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

# Numbers, quoted values and ids vary from one error to the next; the rest of the
# channel's message names the kind ("Quantity must be a number", "INVALID: ...").
_VARIABLE = re.compile(r"'[^']*'|\"[^\"]*\"|\b[0-9a-f]{8}-[0-9a-f-]{27}\b|\d+")
ERROR_STATUSES = ("rejected", "retrying", "unmapped")


def error_kind(status: str, channel_response: str | None) -> str:
    """The kind of an error: the channel's message with its variable parts blanked out."""
    message = (channel_response or "").strip() or f"{status} without a message"
    return _VARIABLE.sub("…", message)[:200]


@dataclass
class ErrorGroup:
    kind: str
    status: str
    count: int = 0
    skus: list[str] = field(default_factory=list)
    example: str = ""
    last_at: str = ""


def group_errors(pushes: Iterable[Mapping[str, Any]]) -> list[ErrorGroup]:
    """Failed pushes grouped by kind, the largest group first; each keeps the channel's own newest message."""
    groups: dict[tuple[str, str], ErrorGroup] = {}
    for push in pushes:
        status = str(push.get("status"))
        if status not in ERROR_STATUSES:
            continue
        kind = error_kind(status, push.get("channel_response"))
        group = groups.setdefault((status, kind), ErrorGroup(kind, status))
        group.count += 1
        if push["sku"] not in group.skus:
            group.skus.append(push["sku"])
        finished = str(push.get("finished_at", ""))
        if finished >= group.last_at:
            group.last_at = finished
            group.example = push.get("channel_response") or ""
    return sorted(groups.values(), key=lambda g: (-g.count, g.kind))


def error_rate(counts: Mapping[str, int]) -> float | None:
    """Share of the last hour's pushes that failed; None when nothing was pushed."""
    total = sum(counts.values())
    if total == 0:
        return None
    return sum(counts.get(s, 0) for s in ERROR_STATUSES) / total


@dataclass(frozen=True)
class Chart:
    """A sync-window chart: points in a width x height box, and its scale."""

    width: int
    height: int
    points: list[tuple[float, float]]
    max_ms: float
    count: int

    @property
    def polyline(self) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in self.points)


def sync_window_chart(
    pushes: Iterable[Mapping[str, Any]],
    now: datetime,
    *,
    span: timedelta = timedelta(hours=1),
    width: int = 600,
    height: int = 120,
) -> Chart:
    """Accepted pushes of the last `span` as points: x is the time, y the sync window (ms)."""
    start = now - span
    samples: list[tuple[datetime, float]] = []
    for push in pushes:
        window = push.get("sync_window_ms")
        if push.get("status") != "accepted" or window is None:
            continue
        finished = datetime.fromisoformat(str(push["finished_at"]))
        if start <= finished <= now:
            samples.append((finished, float(window)))
    samples.sort()
    top = max((w for _, w in samples), default=0.0)
    scale = top * 1.1 or 1.0
    seconds = span.total_seconds()
    points = [((t - start).total_seconds() / seconds * width, height - (w / scale) * height) for t, w in samples]
    return Chart(width, height, points, top, len(samples))
