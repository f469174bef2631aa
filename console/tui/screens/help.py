"""F1: what each pane shows and the keys that drive the console."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

from console.tui.readmodel.overview import THRESHOLDS

HELP = """\
# Fleetdeck

Every LLM call your apps send to the gateway is routed, capped, guarded, priced and
recorded as a trace. The panes read those traces; each refreshes only while it is shown.

| key | pane | what it shows |
| --- | --- | --- |
| `1` | Overview | a green, amber or red tile per signal; `Enter` opens what is behind one |
| `2` | Traffic | the live request stream and the last hour's charts; `/` filters, `Enter` opens a trace |
| `3` | Fleet | providers, breakers, latency, errors, load (charts: tokens/s, calls in flight), budget burn |
| `4` | Cost | charts of spend per day by route and cost per outcome; the tables per workflow and route |
| `5` | Drift | last week's quality metrics against the four weeks before, charted per workflow |
| `6` | Audit | the audit log, its chain links, overrides and approvals; `v` verifies it all |
| `7` | SQL | read-only SQL over the traces; saved queries from `queries/` |
| `8` | Playground | chat through the gateway with a route or model |

## Keys everywhere

- `1`–`8` switch panes (while typing in a text field the digit is typed: `Esc` or
  `Tab` leaves the field first); `Alt+1`–`Alt+8` switch from anywhere, while typing too
- `Enter` on a row of Cost, Fleet or Drift opens the traces behind it in Traffic
- `ctrl+p` command palette: every pane and action
- `F1` this help, `Esc` closes it
- `ctrl+q` quit

## Overview

Arrows move between tiles; `Enter` opens what is behind one: Traffic filtered to its
calls (the filter is in the field, to edit), or the pane that holds it. The tiles turn
amber and red at these thresholds:

{thresholds}

## Charts

Traffic, Fleet, Cost and Drift open with a row of charts; `c` hides them (more room for
the tables) and shows them again. They redraw at the terminal's size and in the theme's
colours; the legend and the unit are on each chart's bottom border.

- Traffic: requests/s and errors/s, p50 and p95 latency, per minute of the last hour,
  for the traffic the filter shows.
- Fleet: output tokens/s and calls in flight (mean) per provider, per minute of the last hour.
- Cost: spend per UTC day stacked by route (14 days), cost per resolved task per workflow (30 days).
- Drift: the highlighted row's workflow, baseline against the last 7 days: its latency
  distribution (`m` switches to output tokens) and its verdict mix.

## Traffic

Filter with `field:value` words (`status:error`, `workflow:support-triage`,
`route:triage_ticket`, `model:local/smollm2-135m`, `provider:local`, `key:K`), `since:1h`
(also `15m`, `7d`: the last stretch before now) and free text, e.g. `status:error timeout`.
`Esc` clears the filter.

## A trace

`Enter` on a row opens the call: its attempts, the redacted payload, its verdicts (the
judge's and any human's), its task's steps with their costs, its session, its handoffs and
the audit entries that name it. `p` replays it in the Playground, `y` copies it as `curl`,
`o` overrides its verdict (pass, partial or fail, and why: a human verdict, audited).

## Audit

Tool calls and handoffs held for approval are listed together: `a` approves the
highlighted one, `x` denies it. `s` and `r` stop and resume a route, `o` overrides a
verdict, `v` verifies every hash and signed checkpoint.

## SQL

`ctrl+j` (or `ctrl+enter`) runs the statement (the selection, if any); `ctrl+g` cancels
it; `ctrl+s` exports the whole result to CSV or Parquet. Only read-only statements run:
writes are refused. The table shows the first 10,000 rows and says how many there were.
`ctrl+t` opens a new result tab for the next run (the others keep theirs), `ctrl+w` closes
one. `Tab` takes the completion offered; `ctrl+↑`/`ctrl+↓` walk the history.

## Long jobs

The first-run import, MiniLM's conversion, the cache index load, drift runs (`d` on the
Drift pane starts one), retention and exports show their percentage in the header and a
notification when they are done.

## Playground

Choose a route or model, type, `Enter`. `ctrl+l` starts a new chat.
"""


class HelpScreen(ModalScreen[None]):
    AUTO_FOCUS = "*"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f1,q", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body", classes="dialog"):
            yield Markdown(HELP.format(thresholds="\n".join(f"- {line}" for line in THRESHOLDS.lines())))
