"""Chart geometry for the reports: where every bar, point, tick and label goes.

Pure numbers and strings, no markup: the SVG is drawn by the templates
(``securedr/templates/_charts.html.j2``) from what these functions return. Durations are in
seconds; the axis unit (minutes, hours, days) is chosen so ticks stay readable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any


def _unit(max_seconds: float) -> tuple[float, str, str]:
    """Seconds per axis unit, its short suffix and its name."""
    if max_seconds <= 2 * 3600:
        return 60.0, "m", "minutes"
    if max_seconds <= 4 * 86400:
        return 3600.0, "h", "hours"
    return 86400.0, "d", "days"


def axis(max_seconds: float) -> tuple[float, str, str, float, float]:
    """Unit seconds, suffix, unit name, tick step and axis maximum (in units) for a chart."""
    unit, suffix, name = _unit(max_seconds)
    top = max(max_seconds / unit, 1e-9)
    raw = top / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if raw <= m * magnitude)
    return unit, suffix, name, step, math.ceil(top / step - 1e-9) * step


def num(value: float) -> str:
    """A tick label: at most two decimals, no trailing zeros."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def short(label: str, limit: int) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "\u2026"


def _ticks(axis_max: float, step: float) -> list[float]:
    out = []
    tick = 0.0
    while tick <= axis_max + 1e-9:
        out.append(tick)
        tick += step
    return out


def bar_chart(
    *,
    chart_id: str,
    title: str,
    axis_title: str,
    rows: Sequence[tuple[str, float | None, str]],
    target: float,
    fmt: Callable[[float | None], str],
) -> dict[str, Any]:
    """Horizontal bars (one per resource) against a target line.

    ``rows`` are (label, seconds or None, text for None); ``fmt`` formats a duration. A bar
    over the target carries ``over`` (drawn in the alarm colour and labelled "OVER"); a None
    value is a ``missing`` text instead of a zero-length bar.
    """
    width, left, right, top, row_h = 560, 170, 118, 46, 20
    plot_w = width - left - right
    height = top + row_h * max(len(rows), 1) + 44
    values = [v for _, v, _ in rows if v is not None]
    unit, suffix, unit_name, step, axis_max = axis(max([target, *values]) * 1.05)
    plot_bottom = top + row_h * max(len(rows), 1)

    def x(seconds: float) -> float:
        return left + min(seconds / unit / axis_max, 1.0) * plot_w

    bars = []
    for i, (label, value, missing) in enumerate(rows):
        y = top + i * row_h
        bar: dict[str, Any] = {
            "label": label,
            "short": short(label, 24),
            "text_y": y + row_h / 2 + 4,
            "missing": missing if value is None else None,
        }
        if value is not None:
            over = value > target
            end = x(value)
            bar.update(
                over=over,
                y=y + 3,
                width=max(end - left, 1.5),
                height=row_h - 6,
                value_text=fmt(value),
                text=f"\u25b2 OVER {fmt(value)}" if over else fmt(value),
                text_x=end + 5,
            )
        bars.append(bar)
    target_x = x(target)
    return {
        "id": chart_id,
        "title": title,
        "width": width,
        "height": height,
        "left": left,
        "top": top,
        "plot_w": plot_w,
        "plot_bottom": plot_bottom,
        "ticks": [
            {"x": left + t / axis_max * plot_w, "label": f"{num(t)}{suffix}"}
            for t in _ticks(axis_max, step)
        ],
        "axis_label": f"{axis_title} ({unit_name})",
        "bars": bars,
        "target_x": target_x,
        "target_anchor": "end" if target_x > left + plot_w * 0.75 else "middle",
        "target_text": f"target {fmt(target)}",
    }


def trend_chart(
    *,
    chart_id: str,
    title: str,
    axis_title: str,
    points: Sequence[tuple[str, float | None, float, bool]],
    fmt: Callable[[float | None], str],
) -> dict[str, Any]:
    """Overall value per drill (joined by a line) against each drill's target (a step line).

    ``points`` are (x label, seconds or None, target seconds, is current drill). A point over
    its target carries ``over``; an unmeasured drill has ``value`` None (drawn as a cross); a
    gap breaks the line rather than faking a value.
    """
    width, left, right, top, bottom = 560, 56, 24, 40, 56
    plot_h = 170
    height = top + plot_h + bottom
    plot_w = width - left - right
    values = [v for _, v, _, _ in points if v is not None]
    targets = [t for _, _, t, _ in points]
    unit, suffix, unit_name, step, axis_max = axis(max([*targets, *values]) * 1.08)
    n = len(points)

    def px(i: int) -> float:
        return left + (plot_w / 2 if n == 1 else 16 + i * (plot_w - 32) / (n - 1))

    def py(seconds: float) -> float:
        return top + plot_h - min(seconds / unit / axis_max, 1.0) * plot_h

    # The target may change between drills (plan edits): a step line per drill.
    if n == 1:
        target_path = f"M{left} {py(targets[0]):.1f} H{left + plot_w}"
    else:
        target_path = f"M{px(0):.1f} {py(targets[0]):.1f}"
        for i in range(1, n):
            mid = (px(i - 1) + px(i)) / 2
            target_path += f" H{mid:.1f} V{py(targets[i]):.1f}"
        target_path += f" H{px(n - 1):.1f}"
    segment: list[str] = []
    segments: list[str] = []
    for i, (_, value, _, _) in enumerate(points):
        if value is None:
            if len(segment) > 1:
                segments.append(" ".join(segment))
            segment = []
        else:
            segment.append(f"{px(i):.1f},{py(value):.1f}")
    if len(segment) > 1:
        segments.append(" ".join(segment))
    label_every = max(1, math.ceil(n / 8))
    marks = []
    for i, (label, value, target, current) in enumerate(points):
        r = 6 if current else 4.5
        mark: dict[str, Any] = {
            "label": label,
            "x": px(i),
            "r": r,
            "current": current,
            "show_label": i % label_every == 0 or i == n - 1,
            "value": value,
        }
        if value is None:
            mark["y"] = top + plot_h - 8
        else:
            cy = py(value)
            mark.update(
                y=cy,
                over=value > target,
                over_y=max(cy - r - 4, 12),
                value_text=fmt(value),
            )
        marks.append(mark)
    return {
        "id": chart_id,
        "title": title,
        "width": width,
        "height": height,
        "left": left,
        "top": top,
        "plot_w": plot_w,
        "plot_h": plot_h,
        "ticks": [
            {"y": top + plot_h - t / axis_max * plot_h, "label": f"{num(t)}{suffix}"}
            for t in _ticks(axis_max, step)
        ],
        "axis_label": f"{axis_title} ({unit_name})",
        "target_path": target_path,
        "target_text_y": py(targets[-1]) - 5,
        "target_text": f"target {fmt(targets[-1])}",
        "segments": segments,
        "marks": marks,
    }
