"""How the scorecard writes numbers, shared by the readings and every renderer."""

from __future__ import annotations

from console.reports.targets import Unit


def usd(value: float | None) -> str:
    if value is None:
        return "–"
    if value == 0:
        return "$0"
    if abs(value) >= 100:
        return f"${value:,.0f}"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    return f"${value:.4f}"


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f} %"


def count(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


def show(value: float | None, unit: Unit) -> str:
    if unit == "usd":
        return usd(value)
    if unit == "ratio":
        return pct(value, 2 if value is not None and (value > 0.99 or value < 0.1) else 1)
    if unit == "ms":
        return ms(value)
    return count(value)


def change(value: float | None, previous: float | None, unit: Unit) -> str:
    """The change on the previous period: points for ratios, percent for the rest."""
    if value is None or previous is None:
        return "–"
    if unit == "ratio":
        return f"{(value - previous) * 100:+.1f} pt"
    if previous == 0:
        return "new" if value else "±0"
    return f"{(value / previous - 1) * 100:+.0f} %"


def trend_word(value: float | None, previous: float | None) -> str:
    if value is None or previous is None:
        return "no previous period to compare"
    if previous == value:
        return "flat on the previous period"
    if previous == 0:
        return "up from zero in the previous period"
    word = "up" if value > previous else "down"
    return f"{word} {abs(value / previous - 1) * 100:.0f} % on the previous period"
