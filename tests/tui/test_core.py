"""The Textual-free parts: number formatting and the traffic filter language."""

from __future__ import annotations

from datetime import datetime

import pytest

from console.tui import humanize
from console.tui.readmodel.audit import chain_links
from console.tui.readmodel.traffic import FilterError, TrafficFilter


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "–"),
        (0, "$0"),
        (1234.5, "$1,234.50"),
        (0.0421, "$0.042"),
        (0.0042, "$0.0042"),
        (7.9e-5, "$0.000079"),
    ],
)
def test_usd(value: float | None, shown: str) -> None:
    assert humanize.usd(value) == shown


@pytest.mark.parametrize(
    ("ms", "shown"),
    [(850, "850 ms"), (1240, "1.24 s"), (12_500, "12.5 s"), (125_000, "2 m 05 s"), (3_720_000, "1 h 02 m")],
)
def test_durations(ms: float, shown: str) -> None:
    assert humanize.duration_ms(ms) == shown


def test_counts_shares_and_rates() -> None:
    assert humanize.count(68434) == "68,434"
    assert humanize.compact(3600) == "3.6k"
    assert humanize.percent(0.1234) == "12.3%"
    assert humanize.per_second(250) == "250/s"
    assert humanize.per_second(0.05) == "3.0/min"
    assert humanize.per_second(1 / 3600) == "1/h"
    assert humanize.change(1.5, 1.0) == "+50%"
    assert humanize.spark([0, 1, 2, 4]) == "▁▃▅█"
    assert humanize.clock(datetime(2026, 11, 1, 9, 5, 7)) == "09:05:07"


def test_filter_words_become_fields_and_free_text() -> None:
    found = TrafficFilter.parse('status:error wf:support_triage "rate limited"')
    assert found.fields == {"status": "error", "workflow": "support_triage"}
    assert found.text == "rate limited"
    assert found.params(10) == {
        "status": "error",
        "workflow": "support_triage",
        "text": "rate limited",
        "limit": 10,
    }
    assert TrafficFilter.parse("").describe() == "all traffic"


def test_since_bounds_the_stream_to_the_last_stretch_before_now() -> None:
    found = TrafficFilter.parse("status:error since:90m")
    assert found.describe() == "status=error, last 90m"
    now = datetime(2026, 11, 1, 23, 50)
    assert found.params(5, now)["since"] == datetime(2026, 11, 1, 22, 20)
    assert "since" not in TrafficFilter.parse("status:error").params(5, now)


@pytest.mark.parametrize("typed", ["colour:red", 'status:"error', "since:soon", "since:0h"])
def test_bad_filters_are_refused_with_a_reason(typed: str) -> None:
    with pytest.raises(FilterError):
        TrafficFilter.parse(typed)


def test_chain_links_find_the_first_break() -> None:
    events = [{"seq": 1, "hash": "a", "prev_hash": None}, {"seq": 2, "hash": "b", "prev_hash": "a"}]
    assert chain_links(events).intact
    events.append({"seq": 3, "hash": "c", "prev_hash": "x"})
    assert chain_links(events).first_break_seq == 3
