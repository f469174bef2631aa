"""Inline SVG charts for the HTML scorecard: no script, no font, no file from elsewhere."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 760, 230
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 14, 38
PALETTE = ("#2f6db5", "#e08a1e", "#3a9a5b", "#b8434f", "#7b5ea7", "#8c8c8c", "#1f9fa8", "#c4a000")
SEVERITY_COLORS = {"critical": "#c0392b", "warning": "#e08a1e"}
VERDICT_COLORS = {"correct": "#3a9a5b", "partial": "#e0b31e", "incorrect": "#c0392b"}
Formatter = Callable[[float], str]


@dataclass(frozen=True)
class Marker:
    """A vertical mark at a position on the x axis (an index into the labels, may be fractional)."""

    at: float
    label: str
    color: str


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _svg(body: list[str], title: str, height: int = HEIGHT) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(title)}" class="chart"><title>{escape(title)}</title>'
        + "".join(body)
        + "</svg>"
    )


def _text(x: float, y: float, text: str, anchor: str = "start", size: int = 11, fill: str = "#333") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}">'
        f"{escape(text)}</text>"
    )


def _y_axis(top: float, fmt: Formatter, height: int = HEIGHT) -> list[str]:
    plot = height - TOP - BOTTOM
    parts = []
    for step in range(5):
        value = top * step / 4
        y = height - BOTTOM - plot * step / 4
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        parts.append(_text(LEFT - 6, y + 4, fmt(value), "end", 10, "#666"))
    return parts


def _x_labels(labels: Sequence[str], step_x: float) -> list[str]:
    every = max(1, len(labels) // 8)
    return [
        _text(LEFT + step_x * (i + 0.5), HEIGHT - BOTTOM + 14, label, "middle", 10, "#666")
        for i, label in enumerate(labels)
        if i % every == 0
    ]


def _markers(markers: Sequence[Marker], step_x: float) -> list[str]:
    parts = []
    for n, marker in enumerate(markers):
        x = LEFT + step_x * marker.at
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" stroke="{marker.color}" '
            f'stroke-dasharray="4 3" stroke-width="1.5"/>'
        )
        parts.append(_text(x + 3, TOP + 10 + 11 * (n % 4), marker.label, "start", 10, marker.color))
    return parts


def _legend(names: Sequence[str], colors: Sequence[str], y: float) -> list[str]:
    parts, x = [], float(LEFT)
    for name, fill in zip(names, colors, strict=True):
        parts.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{fill}"/>')
        parts.append(_text(x + 14, y, name, size=10))
        x += 24 + 6.2 * len(name)
    return parts


def stacked_bars(
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    fmt: Formatter,
    markers: Sequence[Marker] = (),
    colors: Sequence[str] | None = None,
) -> str:
    """One bar per label, stacked by series (in the order given)."""
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    top = max(totals, default=0) or 1.0
    step_x = (WIDTH - LEFT - RIGHT) / max(1, len(labels))
    plot = HEIGHT - TOP - BOTTOM
    fills = list(colors) if colors else [color(i) for i in range(len(series))]
    body = _y_axis(top, fmt)
    for i in range(len(labels)):
        base = 0.0
        for fill, values in zip(fills, series.values(), strict=True):
            h = plot * values[i] / top
            y = HEIGHT - BOTTOM - plot * base / top - h
            body.append(
                f'<rect x="{LEFT + step_x * i + 1:.1f}" y="{y:.1f}" width="{max(step_x - 2, 1):.1f}" '
                f'height="{h:.1f}" fill="{fill}"/>'
            )
            base += values[i]
    body += _x_labels(labels, step_x) + _markers(markers, step_x)
    body += _legend(list(series), fills, HEIGHT - 6)
    return _svg(body, title)


def lines(
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    fmt: Formatter,
    markers: Sequence[Marker] = (),
    target: float | None = None,
) -> str:
    """One line per series; a gap where a value is None; an optional dashed target line."""
    values = [v for s in series.values() for v in s if v is not None]
    top = max([*values, target or 0.0], default=0.0) * 1.1 or 1.0
    step_x = (WIDTH - LEFT - RIGHT) / max(1, len(labels))
    plot = HEIGHT - TOP - BOTTOM
    body = _y_axis(top, fmt)
    if target is not None:
        y = HEIGHT - BOTTOM - plot * target / top
        body.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#c0392b" stroke-dasharray="6 4"/>'
        )
        body.append(_text(WIDTH - RIGHT, y - 4, f"target {fmt(target)}", "end", 10, "#c0392b"))
    for n, points in enumerate(series.values()):
        coords = [
            (LEFT + step_x * (i + 0.5), HEIGHT - BOTTOM - plot * v / top)
            for i, v in enumerate(points)
            if v is not None
        ]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        body.append(f'<polyline points="{path}" fill="none" stroke="{color(n)}" stroke-width="2"/>')
        body += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color(n)}"/>' for x, y in coords]
    body += _x_labels(labels, step_x) + _markers(markers, step_x)
    body += _legend(list(series), [color(i) for i in range(len(series))], HEIGHT - 6)
    return _svg(body, title)


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    target: float | None
    fill: str
    note: str


def bars(title: str, items: Sequence[Bar], fmt: Formatter, target_name: str = "target") -> str:
    """Horizontal bars, one per item, each with its own target tick."""
    row, label_w = 26, 250
    height = TOP + row * len(items) + 24
    top = max([*(b.value for b in items), *(b.target or 0 for b in items)], default=0) * 1.1 or 1.0
    span = WIDTH - label_w - RIGHT - 90
    body = []
    for i, bar in enumerate(items):
        y = TOP + row * i
        body.append(_text(label_w - 8, y + 15, bar.label, "end"))
        body.append(
            f'<rect x="{label_w}" y="{y + 4}" width="{span * bar.value / top:.1f}" '
            f'height="16" fill="{bar.fill}"/>'
        )
        body.append(_text(label_w + span * bar.value / top + 6, y + 16, bar.note, size=10))
        if bar.target is not None:
            x = label_w + span * bar.target / top
            body.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y}" y2="{y + 24}" stroke="#222" stroke-width="2"/>'
            )
    body.append(_text(label_w, height - 6, f"black tick: {target_name}", size=10, fill="#666"))
    return _svg(body, title, height)


@dataclass(frozen=True)
class Event:
    at: float  # fraction of the axis, 0..1
    label: str
    severity: str


def timeline(title: str, events: Sequence[Event], left_label: str, mid_label: str, right_label: str) -> str:
    """Two periods side by side on one axis (previous | current), incidents as dots with labels."""
    height = 150
    axis_y, span = 104, WIDTH - LEFT - RIGHT
    mid = LEFT + span / 2
    body = [
        f'<rect x="{LEFT}" y="{axis_y - 78}" width="{span / 2:.1f}" height="78" fill="#f3f3f3"/>',
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{axis_y}" y2="{axis_y}" stroke="#888"/>',
        f'<line x1="{mid:.1f}" x2="{mid:.1f}" y1="{axis_y - 78}" y2="{axis_y + 6}" '
        'stroke="#444" stroke-dasharray="4 3"/>',
        _text(LEFT, axis_y + 18, left_label, size=10, fill="#666"),
        _text(mid, axis_y + 18, mid_label, "middle", 10, "#666"),
        _text(WIDTH - RIGHT, axis_y + 18, right_label, "end", 10, "#666"),
        _text(LEFT + 4, axis_y - 66, "previous period", size=10, fill="#666"),
        _text(mid + 4, axis_y - 66, "current period", size=10, fill="#666"),
    ]
    for n, event in enumerate(events):
        x = LEFT + span * event.at
        fill = SEVERITY_COLORS.get(event.severity, "#666")
        body.append(f'<circle cx="{x:.1f}" cy="{axis_y}" r="6" fill="{fill}"/>')
        body.append(_text(x, axis_y - 12 - 12 * (n % 4), event.label, "middle", 10, fill))
    body += _legend(
        ["critical", "warning"], [SEVERITY_COLORS["critical"], SEVERITY_COLORS["warning"]], height - 8
    )
    return _svg(body, title, height)
