"""The scorecard's period: `--period 30d` ending now, or `--from/--to`, and the one before it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

PERIOD = re.compile(r"^\s*(?P<n>\d+)\s*(?P<unit>[hdw])\s*$")
UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


class PeriodError(ValueError):
    """A period that cannot be read; the message is meant for the user."""


@dataclass(frozen=True)
class Window:
    """[start, end) in naive UTC."""

    start: datetime
    end: datetime

    @property
    def days(self) -> float:
        return (self.end - self.start).total_seconds() / 86400

    def before(self) -> Window:
        """The window of the same length that ends where this one starts."""
        return Window(self.start - (self.end - self.start), self.start)

    def params(self) -> dict[str, str]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat()}

    def label(self) -> str:
        return f"{_show(self.start)} – {_show(self.end)}"


def _show(moment: datetime) -> str:
    return (
        moment.strftime("%Y-%m-%d")
        if moment.time() == datetime.min.time()
        else moment.strftime("%Y-%m-%d %H:%M")
    )


def parse_length(text: str) -> timedelta:
    match = PERIOD.match(text)
    if match is None or int(match["n"]) == 0:
        raise PeriodError(f"--period {text!r}: expected a length such as 30d, 2w or 12h")
    return int(match["n"]) * UNITS[match["unit"]]


def parse_moment(text: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise PeriodError(f"{option} {text!r}: expected an ISO date or date-time, e.g. 2026-10-01") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def resolve(period: str | None, start: str | None, end: str | None, now: datetime | None = None) -> Window:
    """The window: --from/--to win; a missing --to is now; a missing --from is --to minus --period."""
    stop = parse_moment(end, "--to") if end else (now or utc_now())
    if start:
        if period:
            raise PeriodError("give --period or --from, not both")
        begin = parse_moment(start, "--from")
    else:
        begin = stop - parse_length(period or "30d")
    if begin >= stop:
        raise PeriodError(
            f"the period is empty: --from {begin.isoformat()} is not before --to {stop.isoformat()}"
        )
    return Window(begin, stop)
