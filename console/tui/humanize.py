"""Numbers as people read them: currency, thousands, durations, shares. No Textual here.

Every function takes None (a NULL from DuckDB) and returns DASH for it, so panes can
format a row without checking each cell.
"""

from __future__ import annotations

import math
from datetime import datetime

DASH = "–"


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def usd(value: float | None) -> str:
    """$1,234.56; below a dollar with enough digits to see it ($0.0042); $0 for zero."""
    if value is None or _missing(value):
        return DASH
    if value == 0:
        return "$0"
    size = abs(value)
    sign = "-" if value < 0 else ""
    if size >= 1:
        return f"{sign}${size:,.2f}"
    if size >= 0.01:
        return f"{sign}${size:.3f}"
    if size >= 0.0001:
        return f"{sign}${size:.4f}"
    return f"{sign}${size:.6f}"


def count(value: float | None) -> str:
    """12,345 (thousands separated)."""
    if value is None or _missing(value):
        return DASH
    return f"{round(value):,}"


def compact(value: float | None) -> str:
    """950, 12.3k, 4.1M: a count that must fit in a narrow column."""
    if value is None or _missing(value):
        return DASH
    size = abs(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if size >= limit:
            return f"{value / limit:.1f}{suffix}"
    return f"{round(value):,}"


def duration_ms(value: float | None) -> str:
    """850 ms, 1.24 s, 2 m 05 s, 1 h 02 m."""
    if value is None or _missing(value):
        return DASH
    if value < 1000:
        return f"{value:.0f} ms"
    seconds = value / 1000
    if seconds < 60:
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


def percent(value: float | None, digits: int = 1) -> str:
    """A share (0.123) as 12.3%."""
    if value is None or _missing(value):
        return DASH
    return f"{value * 100:.{digits}f}%"


def per_second(value: float | None) -> str:
    """Requests or tokens per second: 120/s, 3.4/s, 0.25/s; slower as 1.5/min or 3/h."""
    if value is None or _missing(value):
        return DASH
    if 0 < value < 1 / 60:
        return f"{value * 3600:.0f}/h"
    if 0 < value < 0.1:
        return f"{value * 60:.1f}/min"
    if value >= 100:
        return f"{value:,.0f}/s"
    if value >= 1:
        return f"{value:.1f}/s"
    return f"{value:.2f}/s"


def change(current: float | None, baseline: float | None) -> str:
    """Relative change of current against baseline: +12%, -3%, or DASH."""
    if current is None or baseline is None or _missing(current) or _missing(baseline) or baseline == 0:
        return DASH
    return f"{(current - baseline) / abs(baseline) * 100:+.0f}%"


def clock(value: datetime | None) -> str:
    """A UTC timestamp as HH:MM:SS."""
    return DASH if value is None else value.strftime("%H:%M:%S")


def day_and_time(value: datetime | None) -> str:
    """A UTC timestamp as 2026-10-31 14:05."""
    return DASH if value is None else value.strftime("%Y-%m-%d %H:%M")


def text(value: object) -> str:
    """Any cell as text; NULL as DASH."""
    return DASH if value is None else str(value)


SPARK_BARS = "▁▂▃▄▅▆▇█"


def spark(values: list[float]) -> str:
    """A trend as one line of block characters, scaled to its own maximum."""
    if not values:
        return ""
    top = max(values)
    if top <= 0:
        return SPARK_BARS[0] * len(values)
    last = len(SPARK_BARS) - 1
    return "".join(SPARK_BARS[min(last, round(value / top * last))] for value in values)
