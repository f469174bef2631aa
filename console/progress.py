"""Progress of a long job, as steps done of a total, for whoever shows it (a CLI bar, a console toast).

A job that has natural steps (files, tables, cases) reports `Step(done, total, name)`;
a step with no known fraction has `total=None`. Reporting is a plain callable so that
the store, the lake and the reports stay free of any UI: the caller decides what to show.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Step:
    """`done` of `total` steps finished; `name` says what is being done now."""

    done: int
    total: int | None
    name: str

    @property
    def percent(self) -> int | None:
        if not self.total:
            return None
        return round(100 * self.done / self.total)


Progress = Callable[[Step], None]


def silent(_: Step) -> None:
    """The progress of a job nobody watches."""
