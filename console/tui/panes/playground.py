"""Playground: chat through the gateway with a chosen route or model, streamed as it arrives."""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar

import httpx
import orjson
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, Select, Static
from textual.widgets.select import InvalidSelectValueError

from console.tui.context import ConsoleContext
from console.tui.panes.base import Pane

WORKFLOW = "playground"
MAX_TOKENS = 256


def stream_text(line: str) -> str | None:
    """The text delta of one SSE line of a chat completion stream (None for anything else)."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if not data or data == "[DONE]":
        return None
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if "error" in chunk:
        raise PlaygroundError(str(chunk["error"].get("message", chunk["error"])))
    choices = chunk.get("choices") or []
    delta = choices[0].get("delta", {}) if choices else {}
    content = delta.get("content")
    return content if isinstance(content, str) else None


def error_message(body: bytes) -> str:
    """The message of an OpenAI error envelope, else the body as text."""
    try:
        return str(orjson.loads(body)["error"]["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return body.decode("utf-8", "replace")[:200]


class PlaygroundError(Exception):
    """An error the gateway answered; its message is for the user."""


class PlaygroundPane(Pane):
    TITLE = "Playground"
    REFRESH_S = 0.0
    FOCUS = "#playground-input"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+l", "clear", "New chat"),
        Binding("ctrl+r", "reload_models", "Reload models", show=False),
    ]

    def __init__(self, context: ConsoleContext, *, id: str = "playground") -> None:
        super().__init__(context, id=id)
        self.messages: list[dict[str, str]] = []
        self.sending = False
        self._answer: Static | None = None
        self._answer_text = ""
        self.replay_model: str | None = None  # a replayed trace's model, chosen once the models load

    def compose(self) -> ComposeResult:
        with Horizontal(id="playground-bar"):
            yield Select[str]([], prompt="route or model", id="playground-model", allow_blank=True)
            yield Static("", id="playground-status", classes="pane-status")
        yield VerticalScroll(id="playground-chat")
        yield Input(placeholder="Ask something; Enter sends, ctrl+l starts over", id="playground-input")

    def activate(self) -> None:
        self.active = True
        self.load_models()
        self.call_after_refresh(self.focus_main)

    def status(self, text: str, error: bool = False) -> None:
        line = self.query_one("#playground-status", Static)
        line.update(text)
        line.set_class(error, "-error")

    def action_reload_models(self) -> None:
        self.load_models()

    @work(exclusive=True, group="playground-models", exit_on_error=False)
    async def load_models(self) -> None:
        url = self.context.gateway_url
        if url is None:
            self.status("the gateway is not running: nothing to chat with", error=True)
            return
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                response = await client.get(f"{url}/v1/models", headers=self._headers())
                response.raise_for_status()
        except httpx.HTTPError as exc:
            self.status(f"could not list models: {exc}", error=True)
            return
        names = [str(item["id"]) for item in response.json().get("data", [])]
        select: Select[str] = self.query_one("#playground-model", Select)
        chosen = self.replay_model or select.value
        select.set_options((name, name) for name in names)
        if isinstance(chosen, str) and chosen in names:
            select.value = chosen
        elif names:
            select.value = next((n for n in names if n.startswith("route:")), names[0])
        self.status(f"{len(names)} routes and models via {url}/v1")

    def _headers(self) -> dict[str, str]:
        headers = {"x-fleetdeck-workflow": WORKFLOW}
        key = self.context.dev_key
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "playground-input":
            return
        event.stop()
        prompt = event.value.strip()
        if not prompt or self.sending:
            return
        model = self.query_one("#playground-model", Select).value
        if not isinstance(model, str):
            self.status("choose a route or model first", error=True)
            return
        event.input.value = ""
        self.messages.append({"role": "user", "content": prompt})
        chat = self.query_one("#playground-chat", VerticalScroll)
        chat.mount(Static(prompt, classes="chat-user"))
        self._answer = Static("…", classes="chat-assistant")
        self._answer_text = ""
        chat.mount(self._answer)
        chat.scroll_end(animate=False)
        self.sending = True
        self.status(f"asking {model}…")
        self.send(model, list(self.messages))

    @work(exclusive=True, group="playground-send", exit_on_error=False)
    async def send(self, model: str, messages: list[dict[str, str]]) -> None:
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "stream": True,
            "max_tokens": MAX_TOKENS,
            "stream_options": {"include_usage": True},
        }
        try:
            await self._stream(body)
        except (httpx.HTTPError, PlaygroundError) as exc:
            self._finish(error=str(exc) or type(exc).__name__)
        else:
            self._finish()

    async def _stream(self, body: dict[str, Any]) -> None:
        url = f"{self.context.gateway_url}/v1/chat/completions"
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(120, connect=5)) as client,
            client.stream("POST", url, json=body, headers=self._headers()) as response,
        ):
            if response.status_code != 200:
                raise PlaygroundError(f"{response.status_code}: {error_message(await response.aread())}")
            async for line in response.aiter_lines():
                piece = stream_text(line)
                if piece:
                    self._answer_text += piece
                    if self._answer is not None:
                        self._answer.update(self._answer_text)
                        self.query_one("#playground-chat", VerticalScroll).scroll_end(animate=False)

    def _finish(self, error: str | None = None) -> None:
        self.sending = False
        if error is not None:
            if self._answer is not None:
                self._answer.update(f"error: {error}")
                self._answer.add_class("-error")
            self.status(error, error=True)
            self.messages.pop()
            return
        self.messages.append({"role": "assistant", "content": self._answer_text})
        self.status("done · the call is in Traffic (workflow playground)")

    def prefill(self, model: str, history: list[dict[str, str]], prompt: str) -> None:
        """A replayed conversation: its turns shown, the model chosen, the last prompt in the field."""
        self.action_clear()
        self.messages = list(history)
        chat = self.query_one("#playground-chat", VerticalScroll)
        for turn in history:
            chat.mount(
                Static(turn["content"], classes="chat-user" if turn["role"] == "user" else "chat-assistant")
            )
        self.replay_model = model
        select: Select[str] = self.query_one("#playground-model", Select)
        with contextlib.suppress(InvalidSelectValueError):
            select.value = model
        self.query_one("#playground-input", Input).value = prompt
        self.status(f"replaying a trace on {model}: Enter sends it again")

    def action_clear(self) -> None:
        self.messages.clear()
        self.query_one("#playground-chat", VerticalScroll).remove_children()
        self.status("new chat")
