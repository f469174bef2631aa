"""`fleetdeck scorecard`: options in, the rendered scorecard out; the CLI only parses and prints."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import duckdb

from console import policy as policies
from console.commands import instance
from console.errors import DomainError
from console.reports import period, render_csv, render_html, render_json, render_md
from console.reports import scorecard as sc
from console.settings import Settings
from console.store import queries


class ReportFormat(StrEnum):
    html = "html"
    md = "md"
    json = "json"
    csv = "csv"


RENDERERS: dict[ReportFormat, Callable[[sc.Scorecard], str]] = {
    ReportFormat.html: render_html.render,
    ReportFormat.md: render_md.render,
    ReportFormat.json: render_json.render,
    ReportFormat.csv: render_csv.render,
}
SUFFIXES = {".html": ReportFormat.html, ".htm": ReportFormat.html, ".md": ReportFormat.md}


class ScorecardError(Exception):
    """A scorecard that cannot be made; the message is meant for the user."""


@dataclass(frozen=True)
class Request:
    period: str | None = None
    start: str | None = None
    end: str | None = None
    workflows: Sequence[str] = ()
    slo: Sequence[str] = ()
    policy_file: Path | None = None
    fmt: ReportFormat | None = None
    out: Path | None = None


def choose_format(fmt: ReportFormat | None, out: Path | None) -> ReportFormat:
    """The format asked for; else the one --out's suffix names (.html, .md, .json, .csv); else Markdown."""
    if fmt is not None:
        return fmt
    if out is not None:
        suffix = out.suffix.lower()
        return SUFFIXES.get(suffix) or ReportFormat.__members__.get(suffix.lstrip("."), ReportFormat.md)
    return ReportFormat.md


def parse_slo(pairs: Sequence[str]) -> dict[str, float]:
    slo: dict[str, float] = {}
    for pair in pairs:
        route, sep, value = pair.partition("=")
        try:
            slo[route.strip()] = float(value)
        except ValueError:
            raise ScorecardError(
                f"--slo {pair!r}: expected route=milliseconds, e.g. triage_ticket=1500"
            ) from None
        if not sep or not route.strip() or slo[route.strip()] <= 0:
            raise ScorecardError(f"--slo {pair!r}: expected route=milliseconds, e.g. triage_ticket=1500")
    return slo


def policy_in_use(settings: Settings, override: Path | None) -> tuple[policies.Policy, str]:
    """The policy whose caps are the budgets: --policy, else the settings' file, else the shipped one."""
    path = override or settings.policy_file
    try:
        return (
            (policies.load_policy(path), str(path)) if path else (policies.default_policy(), "default policy")
        )
    except policies.PolicyError as exc:
        raise ScorecardError(str(exc)) from None


def make(settings: Settings, request: Request) -> str:
    """The rendered scorecard; raises ScorecardError with a message for the user."""
    try:
        window = period.resolve(request.period, request.start, request.end)
    except period.PeriodError as exc:
        raise ScorecardError(str(exc)) from None
    policy, source = policy_in_use(settings, request.policy_file)
    options = sc.Options(
        window=window,
        workflows=tuple(request.workflows) or None,
        policy=policy,
        policy_source=source,
        slo_ms=parse_slo(request.slo),
    )
    try:
        with instance.opened(settings) as fleetdeck:
            card = sc.build(fleetdeck.named, options)
    except DomainError as exc:
        raise ScorecardError(exc.message) from None
    except (queries.QueryError, duckdb.Error) as exc:
        raise ScorecardError(f"scorecard query failed: {exc}") from None
    return RENDERERS[choose_format(request.fmt, request.out)](card)
