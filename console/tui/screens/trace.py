"""One trace in full: what was asked, where it went, every attempt, the guards, the payload."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import duckdb
from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Static

from console.tui import humanize
from console.tui.context import ConsoleContext
from console.tui.readmodel import replay, traffic
from console.tui.readmodel.traffic import TraceDetail
from console.tui.screens.oversight import Override, OverrideScreen, console_actor

KEYS_HINT = "p replay in Playground · y copy as curl · o override verdict · Esc close"
SUMMARY_FIELDS = (
    ("request", "request_id"),
    ("task", "task_id"),
    ("session", "session_id"),
    ("workflow", "workflow_id"),
    ("route", "route"),
    ("asked for", "request_model"),
    ("answered by", "response_model"),
    ("reason", "reason_code"),
    ("status", "status"),
    ("error", "error_type"),
    ("key", "key_id"),
    ("environment", "environment"),
    ("cache", "cache"),
    ("schema valid", "schema_valid"),
    ("PII redactions", "pii_redactions"),
    ("injection score", "injection_score"),
)


def summary_text(row: dict[str, Any]) -> str:
    lines = [f"{label:>16}  {humanize.text(row.get(key))}" for label, key in SUMMARY_FIELDS]
    lines.append(f"{'started':>16}  {humanize.day_and_time(row.get('ts_start'))} UTC")
    lines.append(
        f"{'latency':>16}  {humanize.duration_ms(row.get('latency_ms'))}"
        f" (first token {humanize.duration_ms(row.get('ttft_ms'))})"
    )
    lines.append(
        f"{'tokens':>16}  in {humanize.count(row.get('input_tokens'))}"
        f" · out {humanize.count(row.get('output_tokens'))}"
        f" · cached {humanize.count(row.get('cache_read_tokens'))}"
    )
    lines.append(
        f"{'cost':>16}  {humanize.usd(row.get('cost_usd'))} ({humanize.text(row.get('price_source'))})"
    )
    return "\n".join(lines)


def attempts_text(attempts: list[dict[str, Any]]) -> str:
    if not attempts:
        return "no attempt: the call never reached a model"
    lines = []
    for number, attempt in enumerate(attempts, start=1):
        described = ", ".join(f"{key}={value}" for key, value in attempt.items() if value is not None)
        lines.append(f"{number}. {described}")
    return "\n".join(lines)


def session_text(calls: list[dict[str, Any]], current: str) -> str:
    """The session's calls as a timeline, this one marked, with the running cost."""
    if not calls:
        return "not part of a session (send X-Fleetdeck-Session to group a conversation's calls)"
    lines = []
    for call in calls:
        mark = "▶" if call["request_id"] == current else " "
        lines.append(
            f"{mark} {humanize.day_and_time(call.get('ts_start'))}  {humanize.text(call.get('protocol')):<16}"
            f" {humanize.text(call.get('model')):<28} {humanize.text(call.get('status')):<9}"
            f" {humanize.duration_ms(call.get('latency_ms')):>8}  {humanize.usd(call.get('cost_usd')):>9}"
            f"  Σ {humanize.usd(call.get('running_cost_usd'))}"
        )
    total = calls[-1].get("running_cost_usd")
    lines.append(f"{len(calls)} calls · {humanize.usd(total)} in all")
    return "\n".join(lines)


def task_text(calls: list[dict[str, Any]], current: str) -> str:
    """The task's steps as a timeline, this call marked, each with its cost and the running total."""
    if not calls:
        return "not part of a task (send X-Fleetdeck-Task to group a task's calls and price its outcome)"
    lines = []
    for call in calls:
        mark = "▶" if call["request_id"] == current else " "
        step = call.get("step")
        lines.append(
            f"{mark} {humanize.day_and_time(call.get('ts_start'))}  step {humanize.text(step):<4}"
            f" {humanize.text(call.get('route')):<24} {humanize.text(call.get('model')):<28}"
            f" {humanize.text(call.get('status')):<9} {humanize.usd(call.get('cost_usd')):>9}"
            f"  Σ {humanize.usd(call.get('running_cost_usd'))}"
        )
    lines.append(f"{len(calls)} steps · {humanize.usd(calls[-1].get('running_cost_usd'))} in all")
    return escape("\n".join(lines))


def verdicts_text(verdicts: list[dict[str, Any]]) -> str:
    """Every verdict on the call, newest first; the newest human one stands over the judge's."""
    if not verdicts:
        return "not judged (the judge samples calls; o gives a human verdict)"
    lines = []
    standing = next((v["eval_id"] for v in verdicts if v.get("human")), None)
    for verdict in verdicts:
        mark = "▶" if verdict["eval_id"] == standing else " "
        score = f" score {verdict['score']:.2f}" if verdict.get("score") is not None else ""
        lines.append(
            f"{mark} {humanize.day_and_time(verdict.get('ts'))}  {verdict['verdict']:<9}"
            f" {verdict['component']:<12} by {verdict['evaluator']}{score}"
            f"  {humanize.text(verdict.get('rationale'))}"
        )
    if standing is not None:
        lines.append("▶ a human's override: it stands over the judge's verdict")
    return escape("\n".join(lines))


def audit_text(entries: list[dict[str, Any]]) -> str:
    """The audit entries that name the call, oldest first."""
    if not entries:
        return "no audit entry names this call"
    lines = [
        f"#{entry['seq']}  {humanize.day_and_time(entry.get('ts'))}  {entry['action']:<20}"
        f" by {entry['actor']} ({entry['actor_kind']})  {humanize.text(entry.get('payload'))[:120]}"
        for entry in entries
    ]
    return escape("\n".join(lines))


def handoffs_text(handoffs: list[dict[str, Any]], current: str) -> str:
    """The task's handoffs as chains: the fields' source calls → the payload → its gate → consumers."""
    if not handoffs:
        return "no handoff in this task"
    lines = []
    for handoff in handoffs:
        verdict = handoff["status"] + (f" ({handoff['problem']})" if handoff.get("problem") else "")
        lines.append(
            f"{handoff['handoff_id']}  {handoff['contract']}  gate {handoff['gate'] or 'none'} → {verdict}"
            f"  by {handoff['decided_by']}  → consumed by {handoff['consumed_by_calls']} call(s)"
        )
        for name, sources in handoff["provenance"].items():
            marked = ", ".join(f"▶{s}" if s == current else str(s) for s in sources)
            lines.append(f"    {name} ← {marked}")
    return escape("\n".join(lines))  # payload problems quote JSON: brackets are not markup


def pretty(value: Any, absent: str) -> str:
    if value is None:
        return absent
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


class TraceScreen(ModalScreen[None]):
    AUTO_FOCUS = "*"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close"),
        Binding("q", "dismiss", "Close", show=False),
        Binding("y", "copy_curl", "Copy as curl"),
        Binding("p", "replay", "Replay in Playground"),
        Binding("o", "override", "Override verdict"),
    ]

    class Replay(Message):
        """Open the Playground on this conversation: the model, the turns before, the last prompt."""

        def __init__(self, model: str, history: list[dict[str, str]], prompt: str) -> None:
            super().__init__()
            self.model, self.history, self.prompt = model, history, prompt

    class Ready(Message):
        def __init__(self, found: TraceDetail | None, error: str | None = None) -> None:
            super().__init__()
            self.found = found
            self.error = error

    def __init__(self, context: ConsoleContext, request_id: str) -> None:
        super().__init__(id="trace-screen")
        self.context = context
        self.request_id = request_id
        self.detail: TraceDetail | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="trace-body"):
            yield Static(f"Trace {self.request_id}", classes="section-title")
            yield Static("loading…", id="trace-summary")
            yield Static("Session", classes="section-title")
            yield Static("", id="trace-session")
            yield Static("Verdicts", classes="section-title")
            yield Static("", id="trace-verdicts")
            yield Static("Task steps", classes="section-title")
            yield Static("", id="trace-task")
            yield Static("Handoffs", classes="section-title")
            yield Static("", id="trace-handoffs")
            yield Static("Audit entries naming it", classes="section-title")
            yield Static("", id="trace-audit")
            yield Static("Attempts", classes="section-title")
            yield Static("", id="trace-attempts")
            yield Static("Guard results", classes="section-title")
            yield Static("", id="trace-guards")
            yield Static("Request (redacted)", classes="section-title")
            yield Static("", id="trace-request")
            yield Static("Response (redacted)", classes="section-title")
            yield Static("", id="trace-response")

    def on_mount(self) -> None:
        self.query_one("#trace-body").border_subtitle = KEYS_HINT
        self._load(self.context.new_cursor())

    def action_override(self) -> None:
        """A human verdict on this call (pass, partial or fail, and why), audited."""
        self.app.push_screen(OverrideScreen(self.request_id), self._override_chosen)

    def _override_chosen(self, override: Override | None) -> None:
        if override is not None:
            self._override(override, self.context.new_cursor())

    @work(thread=True, exit_on_error=False, group="trace-override")
    def _override(self, override: Override, cursor: duckdb.DuckDBPyConnection) -> None:
        """Through the Engine's oversight (an eval row by human:<actor>, one audit entry), then shown."""
        try:
            self.context.engine.oversight.override(
                override.request_id, override.verdict, override.reason, console_actor()
            )
        except ValueError as exc:
            self.context.release(cursor)
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.context.engine.recorder.flush()  # the verdict and its audit entry are in the store
        self.app.call_from_thread(self.notify, f"override recorded: {override.verdict}", title="Verdict")
        self._load_now(cursor)

    @work(thread=True, exit_on_error=False)
    def _load(self, cursor: duckdb.DuckDBPyConnection) -> None:
        self._load_now(cursor)

    def _load_now(self, cursor: duckdb.DuckDBPyConnection) -> None:
        """On a worker thread: read the trace, tell the screen, release the cursor."""
        try:
            self.post_message(self.Ready(traffic.detail(cursor, self.request_id)))
        except Exception as exc:
            self.post_message(self.Ready(None, f"{type(exc).__name__}: {exc}"))
        finally:
            self.context.release(cursor)

    def action_copy_curl(self) -> None:
        detail = self.detail
        command = (
            replay.curl_command(detail.row, detail.request, self.context.gateway_url) if detail else None
        )
        if command is None:
            self.notify("this trace kept no request to send again", severity="warning")
            return
        self.app.copy_to_clipboard(command)
        self.notify("copied as curl (the key is read from $FLEETDECK_KEY)", title="Copy as curl")

    def action_replay(self) -> None:
        detail = self.detail
        chat = replay.playground_chat(detail.row, detail.request) if detail else None
        if chat is None:
            self.notify("only a chat with a text last turn replays in the Playground", severity="warning")
            return
        self.dismiss()
        self.app.post_message(self.Replay(*chat))

    def on_trace_screen_ready(self, message: TraceScreen.Ready) -> None:
        summary = self.query_one("#trace-summary", Static)
        if message.found is None:
            summary.update(message.error or f"no trace {self.request_id} in the store")
            summary.add_class("-error")
            return
        self.detail = detail = message.found
        summary.update(summary_text(detail.row))
        self.query_one("#trace-session", Static).update(session_text(detail.session, self.request_id))
        self.query_one("#trace-verdicts", Static).update(verdicts_text(detail.verdicts))
        self.query_one("#trace-task", Static).update(task_text(detail.task, self.request_id))
        self.query_one("#trace-audit", Static).update(audit_text(detail.audit))
        self.query_one("#trace-handoffs", Static).update(handoffs_text(detail.handoffs, self.request_id))
        self.query_one("#trace-attempts", Static).update(attempts_text(detail.attempts))
        self.query_one("#trace-guards", Static).update(pretty(detail.guards, "no guard ran"))
        self.query_one("#trace-request", Static).update(pretty(detail.request, "no payload kept"))
        self.query_one("#trace-response", Static).update(pretty(detail.response, "no payload kept"))
